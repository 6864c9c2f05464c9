"""fp16 towers: an exported ONNX tower with half-precision weights and arithmetic.

A GPU runs fp16 matrix products on its tensor cores, at several times its fp32 rate, and moves
half the bytes of weights and activations. The rewritten tower keeps float32 at its edges: a
Cast to fp16 follows each float input and a Cast to float32 precedes each float output, so the
server feeds and reads the same tensors at either precision and the conversions run on the
device. Inside, every float32 tensor becomes fp16: initializers, ``Constant`` and
``ConstantOfShape`` values, and the targets of ``Cast`` nodes.

ONNX Runtime's CPU provider runs such a graph as well (it wraps the operators it has no fp16
kernel for in casts to float32): slow, but enough for the cosine check against the fp32 tower
on a machine without a GPU. ``python3 -m training export --fp16`` and ``python3 -m training
quantize --precision fp16`` use it (training/export/quantize.py holds the check).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16_MAX = float(np.finfo(np.float16).max)


def to_half(array: np.ndarray) -> np.ndarray:
    """float32 to float16; finite values beyond fp16's range saturate, ±inf (masks) stay."""
    clipped = np.where(np.isfinite(array), np.clip(array, -FP16_MAX, FP16_MAX), array)
    return clipped.astype(np.float16)


def _half_tensor(tensor: onnx.TensorProto) -> bool:
    """Rewrites a float32 TensorProto in place as float16; False if it is not float32."""
    if tensor.data_type != TensorProto.FLOAT:
        return False
    half = numpy_helper.from_array(to_half(numpy_helper.to_array(tensor)), tensor.name)
    tensor.CopyFrom(half)
    return True


def _is_float(value_info: onnx.ValueInfoProto) -> bool:
    return value_info.type.tensor_type.elem_type == TensorProto.FLOAT


def halve_model(model: onnx.ModelProto) -> int:
    """Rewrites ``model`` in place to compute in fp16 with float32 inputs and outputs; returns
    the number of weight and constant tensors converted."""
    graph = model.graph
    converted = sum(_half_tensor(init) for init in graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                converted += _half_tensor(attribute.t)
        if node.op_type == "Cast":
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                    attribute.i = TensorProto.FLOAT16

    # Float inputs: consumers read a fp16 copy.
    renamed = {}
    entry = []
    for value in graph.input:
        if _is_float(value):
            renamed[value.name] = f"{value.name}_fp16"
            entry.append(
                helper.make_node(
                    "Cast", [value.name], [renamed[value.name]], to=TensorProto.FLOAT16
                )
            )
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]

    # Float outputs: the producer writes a fp16 tensor, cast back to float32 under the old name.
    exit_casts = []
    for value in graph.output:
        if not _is_float(value):
            continue
        inner = f"{value.name}_fp16"
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == value.name:
                    node.output[i] = inner
        exit_casts.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT))

    nodes = entry + list(graph.node) + exit_casts
    del graph.node[:]
    graph.node.extend(nodes)
    # Intermediate types recorded by the exporter are float32; ONNX Runtime infers them again.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return converted
