"""Knowledge-preserving stretching (KPS) of CLIP's text positions, and ``stretch`` command.

KPS keeps the first ``keep`` rows (well trained on short captions) and interpolates the rest
linearly by ``ratio``: 77 rows with keep 20 and ratio 4 give 4 * 77 - 3 * 20 = 248 rows. The
arithmetic (order of multiplications and divisions, and the extrapolated tail past the last
source row) follows the official Long-CLIP ``load_from_clip`` so results are bit-identical.
"""

import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from .checkpoint import OPENAI_EXTRA_KEYS, _read, save_official
from .clip import KEEP_POSITIONS, LONGCLIP_CONTEXT, build_model


def stretched_length(length: int, keep: int = KEEP_POSITIONS, ratio: int = 4) -> int:
    return ratio * length - (ratio - 1) * keep


def stretch_positional_embedding(
    pe: torch.Tensor,
    keep: int = KEEP_POSITIONS,
    ratio: int = 4,
    compute_dtype: Optional[torch.dtype] = torch.float16,
) -> torch.Tensor:
    """[L, W] -> [ratio * L - (ratio - 1) * keep, W], returned in the input's dtype.

    The official code stretches after its builder has cast the model to fp16
    (``positional_embedding.type(model.dtype)``), so the arithmetic runs in fp16 by default;
    ``compute_dtype=None`` computes in the input's dtype instead.
    """
    source_dtype = pe.dtype
    pe = pe.detach().to(compute_dtype or source_dtype)
    length = pe.shape[0]
    if not 0 < keep < length - 1 or ratio < 1:
        raise ValueError(
            f"need 0 < keep < {length - 1} and ratio >= 1 (keep={keep}, ratio={ratio})"
        )
    out = torch.zeros(stretched_length(length, keep, ratio), pe.shape[1], dtype=pe.dtype)
    out[:keep] = pe[:keep]
    # each source step from row keep+i to keep+i+1 becomes `ratio` rows
    left, right = pe[keep : length - 1], pe[keep + 1 : length]
    steps = length - 1 - keep
    for j in range(ratio):
        rows = slice(keep + j, keep + ratio * steps, ratio)
        out[rows] = left if j == 0 else (ratio - j) * left / ratio + j * right / ratio
    # the last source row starts a tail of `ratio` rows that extrapolates its last step
    last, delta = pe[length - 1], pe[length - 1] - pe[length - 2]
    for j in range(ratio):
        out[out.shape[0] - ratio + j] = last + j * delta / ratio
    return out.to(source_dtype)


def uniform_stretch(pe: torch.Tensor, length: int = LONGCLIP_CONTEXT) -> torch.Tensor:
    """Naive baseline for ablations: linear interpolation over all rows, ends aligned."""
    stretched = F.interpolate(
        pe.detach().float().t().unsqueeze(0), size=length, mode="linear", align_corners=True
    )
    return stretched.squeeze(0).t().contiguous().to(pe.dtype)


def stretch_state_dict(
    state_dict: dict, method: str = "kps", keep: int = KEEP_POSITIONS, ratio: int = 4
) -> dict:
    """An OpenAI-format (77-position) state dict -> a Long-CLIP one; ``positional_embedding_res``
    starts as a copy of the stretched table, as in the official code."""
    if "positional_embedding_res" in state_dict:
        raise ValueError("the checkpoint already has positional_embedding_res (it is Long-CLIP)")
    pe = state_dict["positional_embedding"]
    if method == "kps":
        stretched = stretch_positional_embedding(pe, keep, ratio)
    elif method == "uniform":
        stretched = uniform_stretch(pe, stretched_length(pe.shape[0], keep, ratio))
    else:
        raise ValueError(f"method must be 'kps' or 'uniform', not {method!r}")
    out = {k: v for k, v in state_dict.items() if k not in OPENAI_EXTRA_KEYS}
    out["positional_embedding"] = stretched
    out["positional_embedding_res"] = stretched.clone()
    return out


def add_arguments(parser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="OpenAI CLIP checkpoint (TorchScript archive or state dict)",
    )
    parser.add_argument("--out", type=Path, required=True, help="Long-CLIP checkpoint to write")
    parser.add_argument(
        "--keep", type=int, default=KEEP_POSITIONS, help="leading positions kept unchanged"
    )
    parser.add_argument("--ratio", type=int, default=4, help="interpolation ratio")
    parser.add_argument(
        "--method",
        choices=["kps", "uniform"],
        default="kps",
        help="kps (official) or uniform interpolation of all rows (ablation)",
    )


def run(args) -> int:
    try:
        raw, _ = _read(args.checkpoint, trust_pickle=False)
        if not isinstance(raw, dict) or "positional_embedding" not in raw:
            raise ValueError(f"{args.checkpoint} is not a CLIP state dict")
        state_dict = stretch_state_dict(raw, args.method, args.keep, args.ratio)
        model = build_model(state_dict, keep_positions=args.keep)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save_official(model, args.out)
    rows = state_dict["positional_embedding"].shape[0]
    print(f"wrote {args.out}: {args.method} stretch to {rows} positions (keep {args.keep})")
    return 0
