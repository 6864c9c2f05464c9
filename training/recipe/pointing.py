"""``pointing``: does a heat map point at the object a caption names?

Heat map = cosine between a caption's text embedding and each patch embedding of the vision
tower's dense output (export ``--dense``). On rendered scenes of a seed the model never saw, the
generator knows every object's box; each object gets a caption naming it alone ("A small red
star with thin diagonal white stripes."), and the heat map *points* at it when its hottest
patch's centre lies inside the box. The baseline is the box-area share: the chance that a patch
drawn at random has its centre in the box. Reported for every object and apart for the large
(salient) and the small ones.

Two sources: ``--checkpoint`` (PyTorch; every dense kind, and the value path with and without
the residual, from the same weights) or ``--model`` (an exported directory's ONNX towers and
its ``patch_embeds``, as the server will run them).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..export.onnx_run import run_onnx
from ..model.tokenizer import ClipTokenizer
from ..synth import generate
from ..synth.captions import texture_phrase

# Seeds the recipe uses: 0 training, 1 held-out, 2 gallery, 3 unseen; 101 the description set.
DEFAULT_SEED = 102
# (label, dense kind, residual) measured from a checkpoint
CHECKPOINT_KINDS = (
    ("value", "value", False),
    ("value + residual", "value", True),
    ("final", "final", False),
)


def object_caption(thing) -> str:
    return f"A {thing.size} {thing.colour} {thing.shape}, {texture_phrase(thing)}."


def cases(count: int, seed: int, side: int):
    """(jpeg bytes, [(caption, box, is_salient)]) of ``count`` scenes rendered at ``side``."""
    for sample in generate(count, seed, side):
        things = (sample.scene.salient, *sample.scene.others)
        named = [
            (object_caption(thing), box, index == 0)
            for index, (thing, box) in enumerate(zip(things, sample.boxes))
        ]
        yield sample.jpeg, named


def patch_centres(grid: tuple, side: int) -> np.ndarray:
    """[rows*columns, 2] (x, y) pixel centres of the patches, row-major."""
    rows, columns = grid
    ys, xs = np.mgrid[0:rows, 0:columns]
    return np.stack([(xs.ravel() + 0.5) * side / columns, (ys.ravel() + 0.5) * side / rows], 1)


def inside(points: np.ndarray, box: tuple) -> np.ndarray:
    left, top, right, bottom = box
    x, y = points[:, 0], points[:, 1]
    return (x >= left) & (x < right) & (y >= top) & (y < bottom)


def score(heat: np.ndarray, box: tuple, centres: np.ndarray) -> tuple:
    """(hit: the hottest patch's centre is in the box, baseline: share of centres in it)."""
    within = inside(centres, box)
    return bool(within[int(np.argmax(heat))]), float(within.mean())


def _normalised(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=-1, keepdims=True)


def summarise(records: list) -> dict:
    """records: (hit, baseline, is_salient) → shares for all objects, salient and small."""

    def share(rows):
        if not rows:
            return {"n": 0, "pointing": 0.0, "baseline": 0.0}
        return {
            "n": len(rows),
            "pointing": sum(r[0] for r in rows) / len(rows),
            "baseline": sum(r[1] for r in rows) / len(rows),
        }

    return {
        "all": share(records),
        "salient": share([r for r in records if r[2]]),
        "small": share([r for r in records if not r[2]]),
    }


def _decode(jpegs: list, resolution: int) -> torch.Tensor:
    from io import BytesIO

    from PIL import Image

    from ..train.data import preprocess_image

    return torch.stack([preprocess_image(Image.open(BytesIO(j)), resolution) for j in jpegs])


def measure_checkpoint(checkpoint: Path, vocab: Path, count: int, seed: int) -> dict:
    from ..model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    model = model.float().eval()
    resolution = model.config.image_resolution
    tokenizer = ClipTokenizer(vocab)
    data = list(cases(count, seed, resolution))
    pixels = _decode([jpeg for jpeg, _ in data], resolution)
    captions = [caption for _, named in data for caption, _, _ in named]
    centres = patch_centres(model.visual.grid, resolution)
    with torch.no_grad():
        ids = tokenizer.tokenize(captions, model.config.context_length)
        texts = _normalised(model.encode_text(ids).numpy())
        results = {}
        for label, kind, residual in CHECKPOINT_KINDS:
            patches = _normalised(model.visual.forward_dense(pixels, kind, residual)[1].numpy())
            results[label] = summarise(_records(data, patches, texts, centres))
    return results


def _records(data: list, patches: np.ndarray, texts: np.ndarray, centres: np.ndarray) -> list:
    records, row = [], 0
    for image, (_, named) in enumerate(data):
        for _, box, salient in named:
            hit, baseline = score(patches[image] @ texts[row], box, centres)
            records.append((hit, baseline, salient))
            row += 1
    return records


def measure_model(model_dir: Path, count: int, seed: int, threads: int) -> dict:
    config = json.loads((model_dir / "config.json").read_text())
    dense = config["vision"].get("dense")
    if dense is None:
        raise SystemExit(
            f"error: {model_dir} has no dense output (vision.dense in config.json); export it "
            "with --dense value or --dense final"
        )
    resolution = config["image_resolution"]
    tokenizer = ClipTokenizer(model_dir / config["tokenizer"]["file"])
    data = list(cases(count, seed, resolution))
    pixels = _decode([jpeg for jpeg, _ in data], resolution).numpy()
    captions = [caption for _, named in data for caption, _, _ in named]
    ids = tokenizer.tokenize(captions, config["context_length"]).numpy().astype(np.int64)
    vision, text = str(model_dir / config["vision"]["file"]), str(
        model_dir / config["text"]["file"]
    )
    patches, texts = run_onnx(
        [
            (vision, config["vision"]["input"], pixels, dense["output"]),
            (text, config["text"]["input"], ids, config["text"]["output"]),
        ],
        threads,
    )
    centres = patch_centres(tuple(dense["grid"]), resolution)
    records = _records(data, _normalised(patches), _normalised(texts), centres)
    return {f"{dense['kind']} ({config['model_id']})": summarise(records)}


def add_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint (every dense kind)")
    source.add_argument("--model", type=Path, help="exported model directory with a dense output")
    parser.add_argument("--vocab", type=Path, help="with --checkpoint: its BPE merges file")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"scene seed (default {DEFAULT_SEED})"
    )
    parser.add_argument("--count", type=int, default=300, help="scenes (default 300)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--json", type=Path, help="write the results as JSON")


def format_table(results: dict) -> str:
    lines = [
        "| dense output | all objects | large (salient) | small | box-area baseline (all / "
        "large / small) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, r in results.items():
        shares = " | ".join(f"{100 * r[k]['pointing']:.1f}%" for k in ("all", "salient", "small"))
        baseline = " / ".join(f"{100 * r[k]['baseline']:.1f}%" for k in ("all", "salient", "small"))
        lines.append(f"| {label} | {shares} | {baseline} |")
    return "\n".join(lines)


def run(args) -> int:
    torch.set_num_threads(args.threads)
    if args.count < 1:
        print("error: --count must be at least 1", file=sys.stderr)
        return 2
    if args.checkpoint is not None:
        if args.vocab is None:
            print("error: --checkpoint needs --vocab", file=sys.stderr)
            return 2
        results = measure_checkpoint(args.checkpoint, args.vocab, args.count, args.seed)
    else:
        results = measure_model(args.model, args.count, args.seed, args.threads)
    objects = next(iter(results.values()))["all"]["n"]
    print(f"pointing: {args.count} scenes of seed {args.seed}, {objects} objects named alone")
    print(format_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps({"seed": args.seed, "count": args.count, **results}) + "\n")
    return 0
