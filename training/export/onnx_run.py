"""Running exported ONNX towers on sample inputs, and the model id of a model directory.

Used by ``export`` (to verify against PyTorch) and ``quantize`` (to check int8 against fp32):
the Python ``onnxruntime`` when it is importable, else ``node training/export/onnx_check.mjs``
with the repository's onnxruntime-node.
"""

import hashlib
import importlib.util
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

NODE_HELPER = Path(__file__).with_name("onnx_check.mjs")


class OnnxRunError(RuntimeError):
    """No ONNX Runtime to run the towers with, or the run failed; the message says what to do."""


def _run_python_ort(jobs, threads: int):
    import onnxruntime as ort

    outputs = []
    for model_path, input_name, array, output_name in jobs:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        outputs.append(session.run([output_name], {input_name: array})[0])
    return outputs


def _run_node_ort(jobs, threads: int):
    node = shutil.which("node")
    if node is None:
        raise OnnxRunError(
            "cannot verify the ONNX files: neither the Python package onnxruntime nor node is "
            "available. Install one (pip install onnxruntime, or Node.js with 'npm install' in the "
            "repository for onnxruntime-node) or pass --no-verify"
        )
    with tempfile.TemporaryDirectory(prefix="onnx-check-") as tmp:
        request = {"threads": threads, "jobs": []}
        for index, (model_path, input_name, array, output_name) in enumerate(jobs):
            input_file = Path(tmp, f"in{index}.bin")
            array.astype(array.dtype.newbyteorder("<")).tofile(input_file)
            request["jobs"].append(
                {
                    "model": str(model_path),
                    "input": input_name,
                    "dtype": "int64" if array.dtype == np.int64 else "float32",
                    "shape": list(array.shape),
                    "input_file": str(input_file),
                    "output": output_name,
                    "output_file": str(Path(tmp, f"out{index}.bin")),
                }
            )
        request_file = Path(tmp, "request.json")
        request_file.write_text(json.dumps(request))
        proc = subprocess.run(
            [node, str(NODE_HELPER), str(request_file)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise OnnxRunError(
                f"ONNX Runtime check through node failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-2000:]}. Fix the installation or pass --no-verify"
            )
        shapes = json.loads(proc.stdout)["jobs"]
        return [
            np.fromfile(job["output_file"], dtype="<f4").reshape(shape["output_shape"])
            for job, shape in zip(request["jobs"], shapes)
        ]


def run_onnx(jobs, threads: int = 2):
    """jobs: (model_path, input_name, numpy array, output_name) → list of float32 outputs."""
    if importlib.util.find_spec("onnxruntime") is not None:
        return _run_python_ort(jobs, threads)
    return _run_node_ort(jobs, threads)


def model_id(name: str, out: Path) -> str:
    digest = hashlib.sha256()
    for file in ("vision.onnx", "text.onnx"):
        with open(out / file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return f"{name}-{digest.hexdigest()[:12]}"
