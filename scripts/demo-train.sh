#!/usr/bin/env bash
# npm run demo:train [-- OPTIONS]: the miniature Long-CLIP reproduction (training/recipe/).
# Trains CLIP-77, then Long-CLIP and its ablations (group-aware batching, PCM weighting) on
# rendered data, exports Long-CLIP to models/demo and writes docs/reproduction.md. Options:
# --smoke, --stages report, --out DIR, --jobs N (fine-tunes side by side), sizes (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/python -m training demo "$@"
