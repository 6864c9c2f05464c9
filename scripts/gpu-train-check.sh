#!/usr/bin/env bash
# The GPU training check (issue 29; docs/training.md, "GPU check"): on one CUDA GPU, KPS + PCM
# training of a small ViT-B/16-shaped Long-CLIP on synthetic scenes in bf16/fp16 autocast and
# fp32, ONNX export fp32/fp16 checked on the GPU, DDP under torchrun (NCCL, world size 1); a
# report in --out (default artifacts/gpu-train-check). --dry-run: the same on the CPU, tiny.
# Needs only Python with torch, numpy, pillow and onnx (onnxruntime, or Node.js with the
# repository's onnxruntime-node, for the ONNX checks).
# Usage: scripts/gpu-train-check.sh [--dry-run] [--out DIR] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/python -m training.gpu_check "$@"
