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
