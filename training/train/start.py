"""Where a ``train`` run starts and what it saves to resume: the model from ``--resume`` (a
training checkpoint, with the optimizer state and the RNG state saved with the run's arguments),
``--checkpoint`` (official weights; a 77-position CLIP is stretched to 248 on load) or
``--init-config`` (a random initialisation)."""

import json
import logging
import random
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..model.checkpoint import TRAINING_FORMAT, load_checkpoint
from ..model.kps import stretch_state_dict
from ..model.clip import CLIP, KEEP_POSITIONS, ModelConfig, build_model, model_config
from ..model.tokenizer import ClipTokenizer

LOG = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)\.pt$")


def _init_config(value: str, model_type: str, vocab_size: int) -> ModelConfig:
    path = Path(value)
    if path.suffix == ".json" or path.is_file():
        try:
            fields = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"error: cannot read model config {path}: {error}") from None
        model_type = fields.pop("model_type", model_type)
        config = model_config(fields.pop("preset", "tiny"), model_type)
        unknown = sorted(set(fields) - set(config.to_dict()))
        if unknown:
            raise SystemExit(
                f"error: unknown model config fields {unknown} in {path}; known: "
                f"{', '.join(config.to_dict())}"
            )
        for key, field in fields.items():
            setattr(config, key, field)
    else:
        config = model_config(value, model_type)
    config.vocab_size = vocab_size
    return config


def _latest_checkpoint(out: Path) -> Optional[Path]:
    found = []
    for path in out.glob("checkpoint-*.pt"):
        match = CHECKPOINT_PATTERN.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def starting_model(args, tokenizer: ClipTokenizer):
    """(model, resume state or None) from --resume, --checkpoint or --init-config."""
    if args.resume:
        path = _latest_checkpoint(args.out) if args.resume == "auto" else Path(args.resume)
        if path is None:
            raise SystemExit(
                f"error: --resume auto found no checkpoint-*.pt in {args.out}; start without "
                "--resume or name the checkpoint"
            )
        model, info = load_checkpoint(path, trust_pickle=args.trust_pickle)
        if info.get("format") != TRAINING_FORMAT:
            raise SystemExit(
                f"error: {path} is not a training checkpoint, so there is no optimizer state to "
                "resume; start from it with --checkpoint instead"
            )
        LOG.info("resuming from %s (step %d)", path, info["step"])
        return model, info["training"]
    if args.checkpoint:
        model, info = load_checkpoint(args.checkpoint, trust_pickle=args.trust_pickle)
        if info["model_type"] == "clip" and args.stretch != "none":
            state = stretch_state_dict(model.state_dict(), args.stretch, KEEP_POSITIONS, 4)
            model = build_model(state)
            LOG.info("stretched %s to %d positions (%s)", args.checkpoint, 248, args.stretch)
        return model, None
    if args.init_config:
        config = _init_config(args.init_config, args.model_type, tokenizer.vocab_size)
        return CLIP.random_init(config), None
    raise SystemExit("error: give --checkpoint, --init-config or --resume")


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def saved_args(args) -> dict:
    saved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    # the RNG state rides along with the run's arguments (the checkpoint format has no slot)
    saved["rng"] = rng_state()
    return saved
