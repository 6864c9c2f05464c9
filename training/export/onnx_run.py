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


CPU_ONLY = ("CPUExecutionProvider",)


def _run_python_ort(jobs, threads: int, providers):
    import onnxruntime as ort

    outputs = []
    for model_path, input_name, array, output_name in jobs:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model_path, options, providers=list(providers))
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


def run_onnx(jobs, threads: int = 2, providers=CPU_ONLY):
    """jobs: (model_path, input_name, numpy array, output_name) → list of float32 outputs.
    ``providers``: ONNX Runtime execution providers in order of preference (names, or (name,
    options) pairs); other than the CPU only with the Python onnxruntime."""
    if importlib.util.find_spec("onnxruntime") is not None:
        return _run_python_ort(jobs, threads, providers)
    if tuple(providers) != CPU_ONLY:
        raise OnnxRunError(
            f"execution providers {providers} need the Python onnxruntime (pip install "
            "onnxruntime-gpu for CUDA); onnxruntime-node runs here on the CPU only"
        )
    return _run_node_ort(jobs, threads)


def runtime_providers() -> tuple:
    """(the ONNX Runtime that run_onnx uses, the execution providers it offers)."""
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__} (Python)", list(ort.get_available_providers())
    return "onnxruntime-node (training/export/onnx_check.mjs)", list(CPU_ONLY)


def session_providers(model_path, providers) -> list:
    """The providers a Python onnxruntime session really uses for ``model_path`` when asked
    for ``providers`` (it falls back to the CPU when, say, the CUDA libraries do not load)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(model_path), providers=list(providers)).get_providers()


def model_id(name: str, out: Path) -> str:
    digest = hashlib.sha256()
    for file in ("vision.onnx", "text.onnx"):
        with open(out / file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return f"{name}-{digest.hexdigest()[:12]}"
