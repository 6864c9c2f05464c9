"""``export``: a checkpoint to the server's model directory (see docs/model-format.md).

Writes vision.onnx and text.onnx (float32, dynamic batch; dynamic text length 1..context),
checks them against PyTorch with ONNX Runtime (Python ``onnxruntime`` if importable, else
``node training/export/onnx_check.mjs`` with onnxruntime-node), then writes config.json and
copies the tokenizer file. config.json is written last, so a directory with one has passed
verification. With ``--int8`` the verified vision tower is then rewritten to int8
(training/export/quantize.py), and with ``--fp16`` both towers to fp16 for a GPU
(training/export/half.py); each rewritten tower is checked by cosine to the fp32 tower instead
of to 1e-4, and config.json records each precision.
"""

import hashlib
import inspect
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..model.checkpoint import load_checkpoint
from ..model.clip import CLIP, model_config
from .onnx_run import OnnxRunError, model_id, run_onnx
from .quantize import (
    DEFAULT_TOWERS,
    MIN_COSINE,
    QuantizeError,
    check_cosine,
    device_check,
    device_check_inputs,
    quantize_file,
)
from ..model.tokenizer import count_merges

IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]
TOLERANCE = 1e-4
# torch 2.9 made the dynamo-based exporter (which needs onnxscript) the default; these graphs
# are the TorchScript-based exporter's, the only one torch 1.13 has
LEGACY_EXPORTER = (
    {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
)


class ExportError(RuntimeError):
    """Export or verification failed; the message says what to do."""


DENSE_KINDS = ("none", "value", "final")
DENSE_OUTPUT = "patch_embeds"
# Off unless asked for, so that an export's graph stays what it was; the demo recipe asks for
# "value" (training/recipe/config.py, DEMO_DENSE).
DEFAULT_DENSE = "none"
# The value kind without the residual stream, as ClearCLIP argues (the residual carries the
# pooled, global content into every patch); `python3 -m training pointing --checkpoint` measures
# both on a checkpoint.
DENSE_RESIDUAL = False


class _Vision(nn.Module):
    def __init__(self, model: CLIP, dense: str = "none"):
        super().__init__()
        self.model = model
        self.dense = dense

    def forward(self, pixel_values):
        if self.dense == "none":
            return self.model.encode_image(pixel_values)
        return self.model.visual.forward_dense(pixel_values, self.dense, DENSE_RESIDUAL)


class _Text(nn.Module):
    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model.encode_text(input_ids)


def add_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", type=Path, help="official Long-CLIP, OpenAI CLIP or training checkpoint"
    )
    source.add_argument(
        "--random-init",
        choices=["ViT-B/16", "ViT-L/14", "tiny"],
        help="export random weights of this size (speed measurements)",
    )
    parser.add_argument(
        "--vocab",
        type=Path,
        required=True,
        help="CLIP BPE merges file (.txt or .txt.gz), copied into the directory",
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--name", help="model name (default: the output directory's name)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (torch 1.13: <= 17)")
    parser.add_argument(
        "--num-merges",
        type=int,
        default=None,
        help="merge lines used from the vocab (default: all, at most 48894)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read --checkpoint with Python's full unpickler, which runs code the file names: "
        "only for training checkpoints you wrote with an earlier version of this project",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads for PyTorch and ONNX Runtime"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the ONNX Runtime check against PyTorch"
    )
    parser.add_argument(
        "--dense",
        choices=DENSE_KINDS,
        default=DEFAULT_DENSE,
        help=f"the vision tower's second output {DENSE_OUTPUT!r}, patch embeddings in the joint "
        "space for heat maps: value (the last block's value path, MaskCLIP), final (the last "
        f"patch tokens) or none; the pooled embedding is the same in all (default "
        f"{DEFAULT_DENSE})",
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--int8",
        action="store_true",
        help="make the vision tower int8 after the fp32 one is verified (checked by cosine)",
    )
    precision.add_argument(
        "--fp16",
        action="store_true",
        help="make both towers fp16 (for CUDA) after the fp32 ones are verified (checked by "
        "cosine)",
    )


def _state_sha256(model: nn.Module) -> str:
    """Identifies random-init weights, which have no source file."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _onnx_export(
    module: nn.Module,
    example,
    path: Path,
    input_name: str,
    output_names: list,
    dynamic: dict,
    opset: int,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=output_names,
            dynamic_axes={input_name: dynamic, **{name: {0: "batch"} for name in output_names}},
            opset_version=opset,
            do_constant_folding=True,
            **LEGACY_EXPORTER,
        )


def sample_inputs(model: CLIP, seed: int = 1):
    """Inputs for the ONNX check: random pixels (batch 2) and token rows of several lengths,
    including the full context, a short unpadded one, a zero-padded one and length 1."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    res = cfg.image_resolution
    pixels = torch.randn(2, 3, res, res, generator=gen)
    end = cfg.vocab_size - 1
    full = torch.randint(1, end - 1, (2, cfg.context_length), generator=gen)
    full[0, -1] = end
    full[1, 40] = end
    full[1, 41:] = 0
    short = torch.randint(1, end - 1, (2, 7), generator=gen)
    short[:, 0] = end - 1
    short[:, -1] = end
    single = torch.full((1, 1), end, dtype=torch.long)
    return pixels, [full, short, single]


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| over max |expected|."""
    scale = float(np.abs(expected).max()) or 1.0
    return float(np.abs(actual - expected).max()) / scale


def verify(model: CLIP, out: Path, threads: int = 2, dense: str = "none") -> dict:
    """Compares ONNX Runtime with PyTorch on sample inputs; raises past TOLERANCE. With a
    ``dense`` output its patch embeddings are compared too."""
    pixels, id_batches = sample_inputs(model)
    vision = str(out / "vision.onnx")
    with torch.no_grad():
        expected = [model.encode_image(pixels).numpy()]
        if dense != "none":
            expected.append(model.visual.forward_dense(pixels, dense, DENSE_RESIDUAL)[1].numpy())
        expected += [model.encode_text(ids).numpy() for ids in id_batches]
    jobs = [(vision, "pixel_values", pixels.numpy(), "image_embeds")]
    if dense != "none":
        jobs.append((vision, "pixel_values", pixels.numpy(), DENSE_OUTPUT))
    text = str(out / "text.onnx")
    jobs += [(text, "input_ids", ids.numpy(), "text_embeds") for ids in id_batches]
    actual = run_onnx(jobs, threads)
    report = {}
    labels = ["vision"] + ([f"vision {DENSE_OUTPUT}"] if dense != "none" else [])
    labels += [f"text L={ids.shape[1]}" for ids in id_batches]
    for label, got, want in zip(labels, actual, expected):
        if got.shape != want.shape:
            raise ExportError(f"{label}: ONNX output shape {got.shape} != PyTorch {want.shape}")
        report[label] = relative_difference(got, want)
    worst = max(report, key=report.get)
    if report[worst] > TOLERANCE:
        raise ExportError(
            f"ONNX output differs from PyTorch: {worst} max relative difference "
            f"{report[worst]:.3g} > {TOLERANCE:g} (all: {report}); the export is not faithful"
        )
    return report


def export_model(model: CLIP, out: Path, opset: int = 17, dense: str = "none") -> None:
    """Writes vision.onnx and text.onnx for ``model`` (float32) into ``out``; ``dense`` other
    than "none" adds the vision tower's second output, DENSE_OUTPUT, of that kind."""
    model = model.float().eval()
    cfg = model.config
    out.mkdir(parents=True, exist_ok=True)
    pixels = torch.zeros(2, 3, cfg.image_resolution, cfg.image_resolution)
    ids = torch.zeros(2, min(16, cfg.context_length), dtype=torch.long)
    ids[:, -1] = cfg.vocab_size - 1
    with torch.no_grad():
        vision, text = out / "vision.onnx", out / "text.onnx"
        outputs = ["image_embeds"] + ([DENSE_OUTPUT] if dense != "none" else [])
        _onnx_export(
            _Vision(model, dense), pixels, vision, "pixel_values", outputs, {0: "batch"}, opset
        )
        _onnx_export(
            _Text(model),
            ids,
            text,
            "input_ids",
            ["text_embeds"],
            {0: "batch", 1: "sequence"},
            opset,
        )


def check_vocab(model: CLIP, num_merges: int) -> int:
    """The vocabulary size the tokenizer file gives, which must match the token embedding."""
    vocab_size = 512 + num_merges + 2
    if vocab_size != model.config.vocab_size:
        raise ExportError(
            f"the vocabulary gives {vocab_size} tokens (512 + {num_merges} merges + 2) but the "
            f"model's token embedding has {model.config.vocab_size} rows; pass the vocab file the "
            "model was trained with, or --num-merges"
        )
    return vocab_size


def build_config(
    model: CLIP,
    name: str,
    out: Path,
    vocab_file: str,
    num_merges: int,
    source_sha256: str,
    precision: str = "fp32",
    checks: dict | None = None,
    dense: str = "none",
) -> dict:
    """config.json; ``precision`` is what ``export`` converted (its towers, DEFAULT_TOWERS),
    ``checks`` the converted towers' ``check`` entries (from ``convert_towers``) and ``dense``
    the kind of the vision tower's patch output ("none": no ``vision.dense`` entry)."""
    cfg = model.config
    vocab_size = check_vocab(model, num_merges)
    converted = DEFAULT_TOWERS.get(precision, ())
    checks = checks or {}

    def precision_of(tower: str) -> str:
        return precision if tower in converted else "fp32"

    def check_of(tower: str) -> dict:
        return {"check": checks[tower]} if tower in checks else {}

    return {
        "format": "longclip-onnx",
        "format_version": 1,
        "model_id": model_id(name, out),
        "name": name,
        "model_type": cfg.model_type,
        "embed_dim": cfg.embed_dim,
        "image_resolution": cfg.image_resolution,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "context_length": cfg.context_length,
        "vocab_size": vocab_size,
        "start_token_id": vocab_size - 2,
        "end_token_id": vocab_size - 1,
        "tokenizer": {"file": vocab_file, "type": "clip-bpe", "num_merges": num_merges},
        "vision": {
            "file": "vision.onnx",
            "input": "pixel_values",
            "output": "image_embeds",
            "precision": precision_of("vision"),
            **check_of("vision"),
            **dense_of(model, dense),
        },
        "text": {
            "file": "text.onnx",
            "input": "input_ids",
            "output": "text_embeds",
            "precision": precision_of("text"),
            **check_of("text"),
        },
        "source_sha256": source_sha256,
        "exporter_version": __version__,
    }


def dense_of(model: CLIP, dense: str) -> dict:
    """config.json's ``vision.dense`` entry: the patch output's name, kind and [rows, columns]
    grid (patches are row-major along the output's second axis)."""
    if dense == "none":
        return {}
    rows, columns = model.visual.grid
    return {"dense": {"output": DENSE_OUTPUT, "kind": dense, "grid": [rows, columns]}}


def device_checks(model: CLIP, towers) -> dict:
    """config.json's ``check`` entry of each tower in ``towers``: the fp32 model's embedding of
    the device check input, which the server compares with the converted tower's when it opens
    it."""
    cfg = model.config
    inputs = device_check_inputs(
        cfg.image_resolution, cfg.context_length, cfg.vocab_size - 2, cfg.vocab_size - 1
    )
    encode = {"vision": model.encode_image, "text": model.encode_text}
    with torch.no_grad():
        return {
            tower: device_check(encode[tower](torch.from_numpy(inputs[tower])).numpy())
            for tower in towers
        }


def convert_towers(
    model: CLIP, out: Path, precision: str, check: bool, threads: int = 2
) -> tuple[str, dict]:
    """Replaces the towers DEFAULT_TOWERS names for ``precision`` (int8: vision; fp16: both) by
    their converted copies, after checking each copy's embeddings of the verification inputs
    against the fp32 file's; returns what was done, for the log, and the converted towers'
    ``check`` entries for config.json."""
    pixels, id_batches = sample_inputs(model)
    inputs = {
        "vision": ("pixel_values", pixels.numpy(), "image_embeds"),
        "text": ("input_ids", id_batches[0].numpy(), "text_embeds"),
    }
    towers = DEFAULT_TOWERS[precision]
    files = {tower: (out / f"{tower}.onnx", out / f"{tower}.{precision}.onnx") for tower in towers}
    done = []
    for tower, (fp32, converted) in files.items():
        done.append(f"{tower} ({quantize_file(fp32, converted, precision)['converted']})")
    message = f"{precision} towers: {', '.join(done)}"
    if check:
        jobs = [(str(file), *inputs[tower]) for tower in towers for file in files[tower]]
        outputs = run_onnx(jobs, threads)
        pairs = {
            tower: tuple(outputs[2 * index : 2 * index + 2]) for index, tower in enumerate(towers)
        }
        try:
            cosine = check_cosine(pairs, precision)
        except QuantizeError as error:
            for _, converted in files.values():
                converted.unlink()
            raise ExportError(f"{error}; export without --{precision}") from error
        figures = ", ".join(f"{tower} {value:.6f}" for tower, value in cosine.items())
        message += f"; min cosine to fp32 {figures} (threshold {MIN_COSINE})"
    for fp32, converted in files.values():
        converted.replace(fp32)
    return message, device_checks(model, towers)


def run(args) -> int:
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    try:
        if not args.vocab.is_file():
            raise ExportError(f"vocab file not found: {args.vocab}")
        num_merges = count_merges(args.vocab, args.num_merges)
        if args.random_init:
            torch.manual_seed(args.seed)
            model = CLIP.random_init(model_config(args.random_init)).eval()
            source_sha256 = _state_sha256(model)
        else:
            model, info = load_checkpoint(args.checkpoint, trust_pickle=args.trust_pickle)
            source_sha256 = info["sha256"]
        check_vocab(model, num_merges)
        out = args.out
        name = args.name or out.resolve().name
        (out / "config.json").unlink(missing_ok=True)
        export_model(model, out, args.opset, args.dense)
        if args.no_verify:
            print("verification skipped (--no-verify)", file=sys.stderr)
        else:
            report = verify(model, out, args.threads, args.dense)
            figures = ", ".join(f"{k} {v:.2e}" for k, v in report.items())
            print(f"verified against PyTorch (max relative difference): {figures}")
        precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
        checks = {}
        if precision != "fp32":
            message, checks = convert_towers(
                model, out, precision, not args.no_verify, args.threads
            )
            print(message)
        shutil.copyfile(args.vocab, out / args.vocab.name)
        config = build_config(
            model,
            name,
            out,
            args.vocab.name,
            num_merges,
            source_sha256,
            precision,
            checks,
            args.dense,
        )
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    except (ExportError, OnnxRunError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({config['model_id']}) in {time.monotonic() - started:.1f}s")
    return 0
