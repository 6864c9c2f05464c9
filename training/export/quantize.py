"""int8 towers: dynamic quantisation of an exported ONNX tower's matrix products.

onnx 1.12 has no quantiser and the Python onnxruntime (which has one) cannot be installed on
the development machine, so this rewrites the graph itself. Each MatMul whose second input is a
constant 2-D float weight ``[K, N]`` becomes::

    DynamicQuantizeLinear(x) -> x_q (uint8), x_scale, x_zero      (per call, per tensor)
    MatMulInteger(x_q, w_q, x_zero, 0) -> int32                   (w_q int8, symmetric)
    Cast(float) * (x_scale * w_scale)                             (w_scale per column, [N])

Weights are symmetric with one scale per output column (per output channel): a column's values
map to -63..63, so dequantised weights are within half a scale step of the original. ONNX
Runtime's MatMulInteger takes the integer product only; the per-column scale is applied
afterwards by the float Mul, so it needs no per-channel support from the kernel.

Why 7 bits and not -127..127: on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) ONNX
Runtime's uint8 x int8 kernel multiplies with vpmaddubsw, which adds each adjacent pair of
products into an int16 and saturates there. With 8-bit weights a pair reaches 255 * 127 * 2 =
64,770 and the result is silently wrong (measured: the reference tiny model's vision tower fell
to cosine 0.71 to fp32 on an AVX2 CPU); with |w| <= 63 a pair stays within 32,130 < 32,767, so
every kernel (AVX2, AVX-512, VNNI, AMX, ARM) computes the exact integer product and the fast
uint8 x int8 kernels stay in use. ONNX Runtime's own quantiser calls this ``reduce_range``.

``python3 -m training quantize --model-dir DIR --out DIR`` turns an exported model directory
into an int8 copy (by default the vision tower, the ingest bottleneck), checked against the
fp32 directory through ONNX Runtime with a cosine threshold, and records each tower's
precision in config.json. ``--precision fp16`` makes fp16 towers instead
(training/export/half.py; by default both, for a GPU), with the same check.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .half import halve_model
from .onnx_run import OnnxRunError, model_id, run_onnx

# An int8 or fp16 tower must give embeddings within this cosine of the fp32 tower's on the
# check inputs.
MIN_COSINE = 0.99
TOWERS = ("vision", "text")
PRECISIONS = ("int8", "fp16")
# Towers converted when --towers is not given: int8 pays off on the CPU for the ingest
# bottleneck; fp16 is for a GPU, where both towers gain.
DEFAULT_TOWERS = {"int8": ("vision",), "fp16": TOWERS}


# The largest quantised weight magnitude: 7 bits, so that 255 * WEIGHT_PEAK * 2 fits in int16.
WEIGHT_PEAK = 63


class QuantizeError(RuntimeError):
    """Quantisation or its check failed; the message says what to do."""


def quantize_weight(weight: np.ndarray):
    """Symmetric per-column, within ±WEIGHT_PEAK: returns (int8 [K, N], float32 scales [N])."""
    peak = np.abs(weight).max(axis=0).astype(np.float32)
    # An all-zero column keeps scale 1 so that dequantising never divides by zero.
    scale = np.where(peak > 0, peak / WEIGHT_PEAK, 1).astype(np.float32)
    quantized = np.clip(np.round(weight / scale), -WEIGHT_PEAK, WEIGHT_PEAK).astype(np.int8)
    return quantized, scale


def _uses(graph) -> dict:
    counts: dict = {}
    for node in graph.node:
        for name in node.input:
            counts[name] = counts.get(name, 0) + 1
    return counts


def quantize_model(model: onnx.ModelProto) -> int:
    """Rewrites ``model`` in place; returns the number of MatMuls made int8."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    uses = _uses(graph)
    nodes, replaced, unused = [], 0, set()
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or weight.data_type != TensorProto.FLOAT or len(weight.dims) != 2:
            nodes.append(node)
            continue
        quantized, scale = quantize_weight(numpy_helper.to_array(weight))
        base = f"int8_{replaced}"
        graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{base}_w"),
                numpy_helper.from_array(scale, f"{base}_wscale"),
                numpy_helper.from_array(np.array(0, dtype=np.int8), f"{base}_wzero"),
            ]
        )
        x_q, x_scale, x_zero = f"{base}_x", f"{base}_xscale", f"{base}_xzero"
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [node.input[0]], [x_q, x_scale, x_zero]),
            helper.make_node(
                "MatMulInteger", [x_q, f"{base}_w", x_zero, f"{base}_wzero"], [f"{base}_int"]
            ),
            helper.make_node("Cast", [f"{base}_int"], [f"{base}_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [x_scale, f"{base}_wscale"], [f"{base}_scale"]),
            helper.make_node("Mul", [f"{base}_float", f"{base}_scale"], [node.output[0]]),
        ]
        uses[weight.name] -= 1
        if uses[weight.name] == 0:
            unused.add(weight.name)
        replaced += 1
    kept = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return replaced


def quantize_file(source: Path, out: Path, precision: str = "int8") -> dict:
    """An int8 or fp16 copy of the ONNX file ``source`` at ``out`` (written atomically);
    ``converted`` counts the MatMuls made int8 or the tensors made fp16."""
    model = onnx.load(str(source))
    if precision == "fp16":
        converted = halve_model(model)
        if converted == 0:
            raise QuantizeError(f"{source} has no float32 weights to convert")
    else:
        converted = quantize_model(model)
        if converted == 0:
            raise QuantizeError(f"{source} has no MatMul with a constant float weight to quantise")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return {"out": str(out), "converted": converted, "bytes": out.stat().st_size}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, D] arrays."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def check_inputs(config: dict, seed: int = 1) -> dict:
    """Inputs for comparing towers: random pixels and token rows (one full-length)."""
    rng = np.random.default_rng(seed)
    res = config["image_resolution"]
    pixels = rng.standard_normal((4, 3, res, res)).astype(np.float32)
    start, end = config["start_token_id"], config["end_token_id"]
    ids = rng.integers(1, start, size=(3, config["context_length"]), dtype=np.int64)
    ids[:, 0] = start
    ids[0, -1] = end
    ids[1, 20] = end
    ids[1, 21:] = 0
    ids[2, 5] = end
    ids[2, 6:] = 0
    return {"vision": pixels, "text": ids}


def device_check_inputs(resolution: int, context_length: int, start: int, end: int) -> dict:
    """The inputs of the check a server runs when it opens an int8 or fp16 tower, since the
    kernels of its device (a GPU's fp16 ones above all) are not those the conversion was
    checked with. Defined by formula, so the server rebuilds them without a data file
    (src/encode/tower-check.ts; docs/model-format.md): pixels 1.5·sin(0.7·i) over the flat
    [1, 3, R, R] index i, and one row of min(context, 32) ids: start, (7919·i mod (start-1))+1
    for i = 1.., end."""
    index = np.arange(3 * resolution * resolution, dtype=np.float64)
    pixels = (1.5 * np.sin(0.7 * index)).astype(np.float32).reshape(1, 3, resolution, resolution)
    length = min(context_length, 32)
    ids = [start] + [(7919 * i) % (start - 1) + 1 for i in range(1, length - 1)] + [end]
    return {"vision": pixels, "text": np.array([ids], dtype=np.int64)}


def device_check(embedding: np.ndarray) -> dict:
    """config.json's ``check`` entry of a converted tower: the fp32 embedding of its device
    check input, and the cosine the server requires of the converted tower's."""
    return {"min_cosine": MIN_COSINE, "embedding": [float(v) for v in embedding.reshape(-1)]}


def check_cosine(outputs: dict, precision: str = "int8") -> dict:
    """outputs: tower -> (fp32 embeddings, converted embeddings) of the same check inputs.
    Returns each tower's minimum row cosine; raises below MIN_COSINE."""
    report = {
        tower: float(cosines(fp32, converted).min()) for tower, (fp32, converted) in outputs.items()
    }
    worst = min(report, key=report.get)
    if report[worst] < MIN_COSINE:
        raise QuantizeError(
            f"the {precision} {worst} tower's embeddings have cosine {report[worst]:.4f} "
            f"< {MIN_COSINE} to fp32 (all: {report}); keep the fp32 tower for this model"
        )
    return report


def quantize_dir(
    model_dir: Path, out: Path, towers=("vision",), threads: int = 2, precision: str = "int8"
) -> dict:
    """Writes a copy of the model directory ``model_dir`` to ``out`` with the named towers in
    ``precision`` (int8 or fp16), the rest and the tokenizer copied; config.json last, after
    the cosine check."""
    config = json.loads((model_dir / "config.json").read_text())
    if model_dir.resolve() == out.resolve():
        raise QuantizeError("--out must differ from --model-dir: the check compares the two")
    for tower in towers:
        current = config[tower].get("precision", "fp32")
        if current != "fp32":
            raise QuantizeError(
                f"the {tower} tower of {model_dir} is already {current}; convert the fp32 export"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").unlink(missing_ok=True)
    converted = {}
    for tower in TOWERS:
        source, target = model_dir / config[tower]["file"], out / config[tower]["file"]
        if tower in towers:
            converted[tower] = quantize_file(source, target, precision)["converted"]
            config[tower]["precision"] = precision
        else:
            shutil.copyfile(source, target)
            config[tower].setdefault("precision", "fp32")
    shutil.copyfile(model_dir / config["tokenizer"]["file"], out / config["tokenizer"]["file"])
    # The sample gallery (models/demo) is indexed by `serve`; the copy serves it too.
    if (model_dir / "gallery").is_dir():
        shutil.copytree(model_dir / "gallery", out / "gallery", dirs_exist_ok=True)
    # One ONNX Runtime run: per tower, the fp32 file on the check inputs and on the device
    # check input (whose embedding config.json records), the converted file on the check inputs.
    inputs = check_inputs(config)
    device_inputs = device_check_inputs(
        config["image_resolution"],
        config["context_length"],
        config["start_token_id"],
        config["end_token_id"],
    )
    jobs = []
    for tower in towers:
        file, input_name, output_name = (config[tower][key] for key in ("file", "input", "output"))
        jobs += [
            (str(model_dir / file), input_name, inputs[tower], output_name),
            (str(model_dir / file), input_name, device_inputs[tower], output_name),
            (str(out / file), input_name, inputs[tower], output_name),
        ]
    outputs = run_onnx(jobs, threads)
    runs = {tower: outputs[3 * index : 3 * index + 3] for index, tower in enumerate(towers)}
    report = check_cosine(
        {tower: (fp32, converted) for tower, (fp32, _, converted) in runs.items()}, precision
    )
    for tower, (_, device_embedding, _) in runs.items():
        config[tower]["check"] = device_check(device_embedding)
    config["model_id"] = model_id(config["name"], out)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {
        "model_id": config["model_id"],
        "precision": precision,
        # int8: MatMuls quantised; fp16: weight and constant tensors converted.
        "converted": converted,
        "bytes": {tower: (out / config[tower]["file"]).stat().st_size for tower in towers},
        "min_cosine": report,
    }


def add_arguments(parser) -> None:
    parser.add_argument("--model-dir", type=Path, required=True, help="exported fp32 model")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="int8",
        help="int8 (CPU: dynamic quantisation) or fp16 (GPU: half precision); default int8",
    )
    parser.add_argument(
        "--towers",
        help="comma-separated towers to convert (vision, text; default: vision for int8, "
        "both for fp16)",
    )
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (check)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")


def run(args) -> int:
    if args.towers is None:
        towers = DEFAULT_TOWERS[args.precision]
    else:
        towers = tuple(t.strip() for t in args.towers.split(",") if t.strip())
    try:
        unknown = [t for t in towers if t not in TOWERS]
        if unknown or not towers:
            raise QuantizeError(f"--towers takes vision and/or text, not {args.towers!r}")
        if not (args.model_dir / "config.json").is_file():
            raise QuantizeError(
                f"{args.model_dir} has no config.json; export a model first "
                "(python3 -m training export)"
            )
        result = quantize_dir(args.model_dir, args.out, towers, args.threads, args.precision)
    except (QuantizeError, OnnxRunError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    figures = ", ".join(f"{k} {v:.6f}" for k, v in result["min_cosine"].items())
    print(f"{args.precision} checked against fp32 (min cosine, threshold {MIN_COSINE}): {figures}")
    print(f"wrote {args.out} ({result['model_id']})")
    return 0
