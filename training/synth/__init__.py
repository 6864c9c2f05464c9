"""Procedurally rendered scenes with long captions, for training and evaluating in miniature.

Each scene holds one large *salient* object and 1-4 smaller ones on a textured background. The
long caption opens with a one-sentence summary of the salient object (the short caption, as
ShareGPT4V captions open with a summary) and then describes every object, its attributes and its
relations, and the background. Scenes come in *hard-negative groups*: members share the salient
object exactly, hence the first sentence, and differ only in what the caption mentions later, so
only a model that reads past the first ~20 tokens can tell them apart (the Urban-200 idea).

Every image is drawn from its own ``random.Random`` seeded by (seed, group, member), so output is
reproducible and an image does not depend on how many others were generated.

Besides the long and short captions, every sample carries descriptions in the words people use
(``people``: a short, a partial and a full one) from a random stream of their own, so they
never change the images or the captions. Training sets (ShareGPT4V layout) take one of them in
place of the long or short caption with probability ``person_share`` (``captions.jsonl``, which
pre-training and the vocabulary read) and, for fine-tuning, keep every long caption and add a
row of people's words per image beside it (``finetune.jsonl``, ``finetune_rows``); evaluation
sets (Urban1k layout) keep the captions and write the full descriptions beside them
(``person/``).

``scene`` draws the scene model, ``captions`` describes it, ``people`` describes it as people
do and ``render`` draws it; this module turns them into samples and datasets (``generate``,
``write_dataset``) and is the ``synth`` command.
"""

import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .captions import label, long_caption, short_caption
from .people import LENGTHS, person_description
from .render import encode_jpeg, render_with_boxes
from .scene import REGIONS, Scene, image_rng, random_scene, salient_for_group

LAYOUTS = ("urban1k", "sharegpt4v")
PROMPT = "<image>\nDescribe this image in detail."


@dataclass(frozen=True)
class Sample:
    name: str
    group: int
    label: str
    short: str
    long: str
    jpeg: bytes
    # descriptions in people's words, by length (people.LENGTHS)
    described: dict
    scene: Scene
    # each object's box in pixels (left, top, right, bottom): the salient one, then the others
    boxes: tuple


# The 3x3 grid has 8 cells besides the salient object's.
MAX_OBJECTS = len(REGIONS) - 1


def generate(
    count: int,
    seed: int,
    size: int = 128,
    group_size: int = 4,
    objects: tuple = (1, 4),
):
    """Yields ``count`` samples, in hard-negative groups of ``group_size`` consecutive samples.

    ``objects`` is the (min, max) number of small objects per scene. Beyond the default 1-4,
    captions relate every object to the previous one too (``long_caption(dense=True)``), so
    scenes of 6-8 objects give captions longer than the 248-token context.
    """
    dense = objects != (1, 4)
    for index in range(count):
        group, member = divmod(index, group_size)
        salient, verb = salient_for_group(seed, group)
        rng = image_rng(seed, group, member)
        scene = random_scene(rng, salient, verb, *objects)
        long = long_caption(rng, scene, dense)
        image, boxes = render_with_boxes(rng, scene, size)
        people = people_rng(seed, group, member)
        yield Sample(
            name=f"{index:06d}",
            group=group,
            label=label(scene),
            short=short_caption(scene),
            long=long,
            jpeg=encode_jpeg(image),
            described={length: person_description(people, scene, length) for length in LENGTHS},
            scene=scene,
            boxes=boxes,
        )


def people_rng(seed: int, group: int, member: int) -> random.Random:
    """The descriptions' own stream (a string seed hashes the same in every process), so that
    the image stream, hence every image and caption, is what it was before they existed."""
    return random.Random(f"people:{seed}:{group}:{member}")


def training_captions(sample: Sample, share: float, seed: int) -> tuple:
    """(long, short) of a training row: each replaced by a description in people's words with
    probability ``share`` (long: the partial or the full one; short: the short one), drawn
    from the sample's own stream so a row does not depend on the others."""
    draw = random.Random(f"mix:{seed}:{sample.name}")
    long, short = sample.long, sample.short
    if draw.random() < share:
        long = sample.described[draw.choice(("partial", "full"))]
    if draw.random() < share:
        short = sample.described["short"]
    return long, short


def finetune_rows(sample: Sample, seed: int) -> tuple:
    """The fine-tuning rows of a training sample: its long caption with its short one, and a
    row of people's words (the partial or the full description, with the short one). Replacing
    the long caption instead (``training_captions``) starved long-caption reading; both rows
    keep it. The people's row has a group of its own (the sample's group, prefixed), so that
    with hard-negative batching a group's four people's rows meet each other, and never their
    own images' long-caption rows (the same image twice in one batch is a false negative)."""
    draw = random.Random(f"people-row:{seed}:{sample.name}")
    described = sample.described[draw.choice(("partial", "full"))]
    return (
        (sample.long, sample.short, sample.group),
        (described, sample.described["short"], f"people-{sample.group}"),
    )


def write_dataset(
    out: Path,
    count: int,
    seed: int,
    layout: str,
    size: int,
    group_size: int,
    objects: tuple = (1, 4),
    person_share: float = 0.0,
):
    """Writes ``count`` samples in ``layout``; ``person_share`` (ShareGPT4V layout only) is
    the probability that a row's long, and its short, caption is a description in people's
    words instead (``training_captions``)."""
    out = Path(out)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout == "urban1k":
        for sub in ("image", "caption", "short", "person"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    else:
        (out / "images").mkdir(parents=True, exist_ok=True)
    conversations, lines, finetune, labels = [], [], [], {}
    started = time.monotonic()
    every = max(1, min(1000, count // 10))
    samples = generate(count, seed, size, group_size, objects)
    for done, sample in enumerate(samples, start=1):
        if layout == "urban1k":
            (out / "image" / f"{sample.name}.jpg").write_bytes(sample.jpeg)
            (out / "caption" / f"{sample.name}.txt").write_text(sample.long + "\n")
            (out / "short" / f"{sample.name}.txt").write_text(sample.short + "\n")
            (out / "person" / f"{sample.name}.txt").write_text(sample.described["full"] + "\n")
            labels[sample.name] = sample.label
        else:
            relative = f"images/{sample.name}.jpg"
            (out / relative).write_bytes(sample.jpeg)
            long, short = training_captions(sample, person_share, seed)
            conversations.append(
                {
                    "id": sample.name,
                    "image": relative,
                    "conversations": [
                        {"from": "human", "value": PROMPT},
                        {"from": "gpt", "value": long},
                    ],
                }
            )
            lines.append(
                {
                    "image": relative,
                    "long": long,
                    "short": short,
                    "label": sample.label,
                    "group": sample.group,
                }
            )
            for row_long, row_short, group in finetune_rows(sample, seed):
                finetune.append(
                    {
                        "image": relative,
                        "long": row_long,
                        "short": row_short,
                        "label": sample.label,
                        "group": group,
                    }
                )
        if done % every == 0 or done == count:
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"synth: {done}/{count} images ({rate:.0f}/s)", file=sys.stderr, flush=True)
    if layout == "urban1k":
        (out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    else:
        (out / "captions.json").write_text(json.dumps(conversations, indent=1) + "\n")
        for name, rows in (("captions.jsonl", lines), ("finetune.jsonl", finetune)):
            with open(out / name, "w") as handle:
                for row in rows:
                    handle.write(json.dumps(row) + "\n")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--count", required=True, type=int, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--layout", required=True, choices=LAYOUTS)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels, 64..224")
    parser.add_argument(
        "--group-size",
        type=int,
        default=4,
        help="images per hard-negative group sharing the first sentence (default 4)",
    )
    parser.add_argument(
        "--objects",
        default="1-4",
        help=f"small objects per scene, MIN-MAX within 1-{MAX_OBJECTS} (default 1-4); other "
        "ranges relate every object to the previous one, so e.g. 6-8 gives captions past 248 "
        "tokens (for long-query tests)",
    )
    parser.add_argument(
        "--person-share",
        type=float,
        default=0.0,
        help="ShareGPT4V layout: probability that a row's long (and, drawn apart, its short) "
        "caption is a description in people's words instead (default 0: the captions only)",
    )


def run(args) -> int:
    if not 64 <= args.size <= 224:
        print(f"error: --size must be between 64 and 224, not {args.size}", file=sys.stderr)
        return 2
    if args.count < 1 or args.group_size < 1:
        print("error: --count and --group-size must be at least 1", file=sys.stderr)
        return 2
    try:
        low, high = (int(part) for part in args.objects.split("-"))
    except ValueError:
        low, high = 0, -1
    if not 1 <= low <= high <= MAX_OBJECTS:
        print(
            f"error: --objects must be MIN-MAX with 1 <= MIN <= MAX <= {MAX_OBJECTS}, "
            f"not {args.objects}",
            file=sys.stderr,
        )
        return 2
    if not 0.0 <= args.person_share <= 1.0:
        print(
            f"error: --person-share must be within 0..1, not {args.person_share}", file=sys.stderr
        )
        return 2
    write_dataset(
        args.out,
        args.count,
        args.seed,
        args.layout,
        args.size,
        args.group_size,
        (low, high),
        args.person_share,
    )
    return 0
