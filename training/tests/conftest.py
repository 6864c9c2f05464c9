"""Shared fixtures: the reference material in ../shared (skipped with a message when absent)."""

import json
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("LONGCLIP_SHARED", REPO_ROOT.parent / "shared")).resolve()
REFERENCE_DIR = SHARED_DIR / "reference"
TINY_DIR = REFERENCE_DIR / "longclip-tiny"
CLIP_VOCAB = REFERENCE_DIR / "clip-bpe" / "bpe_simple_vocab_16e6.txt.gz"

needs_shared = pytest.mark.skipif(
    not (TINY_DIR / "reference.json").exists(),
    reason=f"reference material not found at {REFERENCE_DIR} (place shared/ beside the checkout "
    "or set LONGCLIP_SHARED)",
)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def reference():
    return json.loads((TINY_DIR / "reference.json").read_text())


def _onnx_runtime_missing():
    """Why the ONNX Runtime checks cannot run here, or None when they can."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("onnxruntime") is not None:
        return None
    if shutil.which("node") is None:
        return "neither the Python package onnxruntime nor node is installed"
    if not (REPO_ROOT / "node_modules" / "onnxruntime-node").is_dir():
        return "onnxruntime-node is not installed (run 'npm install' in the repository)"
    return None


_ORT_MISSING = _onnx_runtime_missing()
needs_onnx_runtime = pytest.mark.skipif(
    _ORT_MISSING is not None, reason=f"ONNX Runtime checks skipped: {_ORT_MISSING}"
)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """longclip-tiny.pt exported once per session with the real CLI (verification included)."""
    from training.__main__ import main

    out = tmp_path_factory.mktemp("export") / "longclip-tiny"
    checkpoint = TINY_DIR / "longclip-tiny.pt"
    args = ["export", "--checkpoint", str(checkpoint), "--vocab", str(CLIP_VOCAB)]
    assert main(args + ["--out", str(out)]) == 0
    return out
