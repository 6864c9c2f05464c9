"""Loading and saving checkpoints: official Long-CLIP, OpenAI CLIP, and our training format.

Every ``.pt`` is read with ``torch.load(..., weights_only=True)``: a checkpoint is data, and
Python's full unpickler would run whatever code a crafted file names. Our own training
checkpoints are written so that the restricted reader takes them (tensors, plus the rest as
one JSON string). Only ``trust_pickle=True`` (``--trust-pickle``) uses the full unpickler, for
training checkpoints written before that format; TorchScript archives (OpenAI's own files) are
read by ``torch.jit.load``, which compiles the archive's TorchScript code.
"""

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from .clip import CLIP, UnsupportedCheckpointError, build_model

TRAINING_FORMAT = "longclip-training"
# entries that are metadata or derived, not parameters: OpenAI's TorchScript archives carry the
# first three; a traced model also carries its causal mask
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
# parameters the official convert_weights stores in fp16 (conv/linear weights and biases,
# attention in-projections, the two projections); everything else stays fp32
_FP16_SUFFIXES = (
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)
_FP16_KEYS = ("visual.conv1.weight", "visual.proj", "text_projection")


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_torchscript(path: Path) -> bool:
    # the same rule as the TypeScript converter (src/convert/torch-zip.ts)
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist()
        )


def _read(path: Path, trust_pickle: bool):
    if not trust_pickle and not zipfile.is_zipfile(path):
        raise UnsupportedCheckpointError(
            f"cannot read {path} as a PyTorch checkpoint: it is not a torch.save zip archive "
            "(files saved by PyTorch older than 1.6 must be re-saved with a newer one)"
        )
    try:
        if _is_torchscript(path):
            archive = torch.jit.load(str(path), map_location="cpu")
            return archive.state_dict(), "openai-torchscript"
        return torch.load(str(path), map_location="cpu", weights_only=not trust_pickle), None
    except pickle.UnpicklingError as error:
        raise UnsupportedCheckpointError(
            f"{path} holds Python objects beyond tensors, which are only read with the full "
            "unpickler, and that runs code the file names. If it is a training checkpoint you "
            "wrote yourself with an earlier version of this project, pass --trust-pickle; "
            f"otherwise use a plain state dict (torch.save(model.state_dict(), path)). ({error})"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise UnsupportedCheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({error}); expected an official "
            "Long-CLIP or OpenAI CLIP .pt file or a training checkpoint"
        ) from error


# Training state beyond the weights (optimizer, scheduler, arguments, RNG states) holds floats,
# tuples, numpy arrays and int-keyed dicts, which torch's restricted reader refuses; it is kept
# as one JSON string with its tensors beside it, and tagged objects for what JSON lacks.
def _to_json(value, tensors: dict):
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = value.detach().cpu()
        return {"$tensor": name}
    if isinstance(value, np.ndarray):
        return {"$ndarray": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"$tuple": [_to_json(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_to_json(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _to_json(v, tensors) for k, v in value.items()}
        return {"$items": [[_to_json(k, tensors), _to_json(v, tensors)] for k, v in value.items()]}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} in a training checkpoint")


def _from_json(value, tensors: dict):
    if isinstance(value, list):
        return [_from_json(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        return tensors[value["$tensor"]]
    if "$ndarray" in value:
        return np.array(value["$ndarray"], dtype=value["dtype"])
    if "$tuple" in value:
        return tuple(_from_json(v, tensors) for v in value["$tuple"])
    if "$items" in value:
        return {_from_json(k, tensors): _from_json(v, tensors) for k, v in value["$items"]}
    return {k: _from_json(v, tensors) for k, v in value.items()}


def _training_state(raw: dict) -> dict:
    """The saved dict as ``save_training_checkpoint`` was given it."""
    if "state_json" not in raw:  # written before the JSON part existed (full unpickler only)
        return raw
    state = _from_json(json.loads(raw["state_json"]), raw["state_tensors"])
    state.update(format=TRAINING_FORMAT, state_dict=raw["state_dict"])
    return state


def load_checkpoint(
    path, keep_positions: Optional[int] = None, trust_pickle: bool = False
) -> Tuple[CLIP, dict]:
    """Loads any supported checkpoint into a float32 CPU model in eval mode.

    ``trust_pickle`` reads the file with Python's full unpickler, which runs code the file
    names: only for training checkpoints of earlier versions that the user wrote.

    ``info`` has ``format`` ("longclip", "openai", "openai-torchscript" or "longclip-training"),
    ``model_type``, ``sha256``, ``path``, and for training checkpoints ``step`` and ``training``
    (the whole saved dict, for resuming: optimizer, scheduler, scaler, args).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raw, kind = _read(path, trust_pickle)
    info = {"path": str(path), "sha256": sha256_file(path)}
    if isinstance(raw, dict) and raw.get("format") == TRAINING_FORMAT:
        raw = _training_state(raw)
        state_dict = raw["state_dict"]
        info.update(format=TRAINING_FORMAT, step=raw.get("step", 0), training=raw)
        if keep_positions is None:
            keep_positions = raw.get("keep_positions")
    elif isinstance(raw, dict) and "state_dict" in raw and "visual.proj" not in raw:
        raise UnsupportedCheckpointError(
            f"{path} holds a 'state_dict' but is not a {TRAINING_FORMAT} checkpoint; pass an "
            "official Long-CLIP/OpenAI CLIP file or one written by 'python3 -m training train'"
        )
    elif isinstance(raw, dict):
        state_dict = raw
        if kind is None:
            kind = "longclip" if "positional_embedding_res" in raw else "openai"
        info["format"] = kind
    else:
        raise UnsupportedCheckpointError(
            f"{path} is not a state dict (got {type(raw).__name__}); expected an official "
            "Long-CLIP or OpenAI CLIP checkpoint"
        )
    state_dict = {k: v for k, v in state_dict.items() if k not in OPENAI_EXTRA_KEYS}
    model = build_model(state_dict, keep_positions=keep_positions or 20)
    info["model_type"] = model.config.model_type
    return model, info


def _unwrap(model: nn.Module) -> CLIP:
    return model.module if hasattr(model, "module") else model


def official_state_dict(model: nn.Module) -> dict:
    """The state dict with the official dtypes (fp16 where convert_weights puts fp16)."""
    out = {}
    for key, value in _unwrap(model).state_dict().items():
        value = value.detach().cpu()
        half = key in _FP16_KEYS or key.endswith(_FP16_SUFFIXES)
        out[key] = value.half() if half else value.float()
    return out


def _atomic_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def save_official(model: nn.Module, path) -> None:
    """Writes an official-format checkpoint (a plain state dict like longclip-B.pt; a "clip"
    model gives an OpenAI-style 77-position one) loadable by the official code."""
    _atomic_save(official_state_dict(model), path)


def save_training_checkpoint(path, model, optimizer, scheduler, scaler, step, args, vocab=None):
    """Saves everything needed to resume; ``load_checkpoint`` reads the model back.

    ``args`` may be an argparse Namespace or a dict; ``vocab`` the tokenizer file used. The
    weights stay a plain ``state_dict`` entry; the rest is one JSON string and its tensors, so
    that ``torch.load(..., weights_only=True)`` reads the whole file.
    """
    clip = _unwrap(model)
    rest = {
        "model_type": clip.config.model_type,
        "config": clip.config.to_dict(),
        "keep_positions": clip.config.keep_positions,
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "args": dict(vars(args)) if hasattr(args, "__dict__") else dict(args or {}),
        "vocab": str(vocab) if vocab is not None else None,
    }
    tensors: dict = {}
    state = {
        "format": TRAINING_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in clip.state_dict().items()},
        "state_json": json.dumps(_to_json(rest, tensors)),
        "state_tensors": tensors,
    }
    _atomic_save(state, path)
