"""Procedurally rendered scenes with long captions, for training and evaluating in miniature.

Each scene holds one large *salient* object and 1-4 smaller ones on a textured background. The
long caption opens with a one-sentence summary of the salient object (the short caption, as
ShareGPT4V captions open with a summary) and then describes every object, its attributes and its
relations, and the background. Scenes come in *hard-negative groups*: members share the salient
object exactly, hence the first sentence, and differ only in what the caption mentions later, so
only a model that reads past the first ~20 tokens can tell them apart (the Urban-200 idea).

Every image is drawn from its own ``random.Random`` seeded by (seed, group, member), so output is
reproducible and an image does not depend on how many others were generated.
"""

import json
import math
import random
import sys
import time
from io import BytesIO
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

COLOURS = {
    "red": (220, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 215, 30),
    "green": (40, 160, 60),
    "blue": (30, 70, 210),
    "purple": (125, 45, 170),
    "pink": (245, 120, 185),
    "brown": (120, 70, 30),
    "black": (15, 15, 15),
    "white": (250, 250, 250),
    "cyan": (30, 200, 215),
    "grey": (128, 128, 128),
}
# Background colours have names of their own so that a caption's colour words stay unambiguous.
BACKGROUND_COLOURS = {
    "cream": (245, 235, 200),
    "sand": (210, 185, 140),
    "mint": (180, 230, 200),
    "lavender": (205, 190, 235),
    "peach": (250, 200, 165),
    "navy": (20, 30, 80),
    "olive": (110, 115, 40),
    "charcoal": (50, 50, 55),
    "slate": (95, 110, 130),
    "ivory": (250, 248, 235),
}
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon", "pentagon")
TEXTURES = ("solid", "striped", "dotted", "outlined")
# Diameter as a fraction of the image side.
SIZES = {"small": 0.17, "medium": 0.25, "large": 0.42}
# 3x3 grid cells: (column, row) -> phrase used in captions.
REGIONS = {
    (0, 0): "top left corner",
    (1, 0): "top centre",
    (2, 0): "top right corner",
    (0, 1): "left side",
    (1, 1): "centre",
    (2, 1): "right side",
    (0, 2): "bottom left corner",
    (1, 2): "bottom centre",
    (2, 2): "bottom right corner",
}
BACKGROUND_KINDS = ("solid", "gradient", "stripes", "noise")
SALIENT_VERBS = ("dominates", "stands out in", "fills", "sits prominently in")
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")
LAYOUTS = ("urban1k", "sharegpt4v")
PROMPT = "<image>\nDescribe this image in detail."


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str
    cell: tuple
    texture: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Background:
    kind: str
    first: str
    second: str
    direction: str


@dataclass(frozen=True)
class Scene:
    salient: Thing
    verb: str
    others: tuple
    background: Background


@dataclass(frozen=True)
class Sample:
    name: str
    group: int
    label: str
    short: str
    long: str
    jpeg: bytes


def _image_rng(seed: int, group: int, member: int) -> random.Random:
    # Integer seeds hash identically in every Python process (unlike str/tuple hashing).
    return random.Random((seed * 1_000_003 + group) * 1_009 + member)


def salient_for_group(seed: int, group: int) -> tuple:
    """The salient object and first-sentence verb every member of a group shares."""
    rng = _image_rng(seed, group, 1_000)
    thing = Thing(
        shape=rng.choice(SHAPES),
        colour=rng.choice(list(COLOURS)),
        size="large",
        cell=rng.choice(list(REGIONS)),
        texture=rng.choice(TEXTURES),
    )
    return thing, rng.choice(SALIENT_VERBS)


def random_scene(
    rng: random.Random, salient: Thing, verb: str, min_objects: int = 1, max_objects: int = 4
) -> Scene:
    free = [cell for cell in REGIONS if cell != salient.cell]
    rng.shuffle(free)
    others = tuple(
        Thing(
            shape=rng.choice(SHAPES),
            colour=rng.choice([c for c in COLOURS if c != salient.colour]),
            size=rng.choice(("small", "medium")),
            cell=free[i],
            texture=rng.choice(TEXTURES),
        )
        for i in range(rng.randint(min_objects, max_objects))
    )
    first, second = rng.sample(list(BACKGROUND_COLOURS), 2)
    background = Background(
        kind=rng.choice(BACKGROUND_KINDS),
        first=first,
        second=second,
        direction=rng.choice(("horizontal", "vertical", "diagonal")),
    )
    return Scene(salient=salient, verb=verb, others=others, background=background)


# ---------------------------------------------------------------------------------------------
# Captions


def short_caption(scene: Scene) -> str:
    s = scene.salient
    return f"A {s.size} {s.colour} {s.shape} {scene.verb} the {REGIONS[s.cell]} of the picture."


def _texture_phrase(thing: Thing) -> str:
    contrast = _contrast_name(thing.colour)
    return {
        "solid": f"painted in flat, solid {thing.colour}",
        "striped": f"with thin diagonal {contrast} stripes",
        "dotted": f"with a grid of small {contrast} dots",
        "outlined": "drawn only as a hollow outline",
    }[thing.texture]


def _direction(a: tuple, b: tuple) -> str:
    """Where cell a lies relative to cell b, e.g. 'above and to the left of'."""
    vertical = "above" if a[1] < b[1] else "below" if a[1] > b[1] else ""
    horizontal = "to the left of" if a[0] < b[0] else "to the right of" if a[0] > b[0] else ""
    if vertical and horizontal:
        return f"{vertical} and {horizontal}"
    return vertical or horizontal


def _adjacent(a: tuple, b: tuple) -> bool:
    return max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1


def _size_relation(a: Thing, b: Thing) -> str:
    if SIZES[a.size] > SIZES[b.size]:
        return "larger than"
    if SIZES[a.size] < SIZES[b.size]:
        return "smaller than"
    return "the same size as"


def _object_sentence(rng: random.Random, thing: Thing, salient: Thing, previous: Thing) -> str:
    where = REGIONS[thing.cell]
    relation = f"{_direction(thing.cell, salient.cell)} the {salient.name}"
    if _adjacent(thing.cell, salient.cell):
        relation += ", right next to it"
    sentence = rng.choice(
        (
            f"In the {where} there is a {thing.size} {thing.name}, {_texture_phrase(thing)}; "
            f"it lies {relation}.",
            f"A {thing.size} {thing.name} {_texture_phrase(thing)} sits in the {where}, "
            f"{relation}.",
            f"The {where} holds a {thing.size} {thing.name}, {_texture_phrase(thing)}, placed "
            f"{relation}.",
        )
    )
    if previous is not salient:
        size = _size_relation(thing, previous)
        side = _direction(thing.cell, previous.cell)
        sentence += f" It is {size} the {previous.name} and sits {side} it."
    return sentence


def _listing(names: list) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _background_sentence(background: Background) -> str:
    a, b = background.first, background.second
    return {
        "solid": f"The background is a plain, even {a} colour with no pattern.",
        "gradient": f"The background is a smooth {background.direction} gradient that fades "
        f"from {a} into {b}.",
        "stripes": f"The background is made of broad {background.direction} stripes "
        f"alternating between {a} and {b}.",
        "noise": f"The background is a grainy, noisy {a} texture speckled with {b}.",
    }[background.kind]


def long_caption(rng: random.Random, scene: Scene, dense: bool = False) -> str:
    """The long caption; ``dense`` relates every small object to the previous one as well,
    however many there are (crowded scenes then run past the 248-token context)."""
    s = scene.salient
    count = len(scene.others)
    plural = "object" if count == 1 else "objects"
    parts = [
        short_caption(scene),
        f"This {s.shape} is {_texture_phrase(s)} and is clearly the biggest shape in the scene.",
        f"Around it there {'is' if count == 1 else 'are'} {NUMBER_WORDS[count]} smaller "
        f"{plural}.",
    ]
    previous = s
    for thing in scene.others:
        # Relations between small objects only while the caption stays well inside 248 tokens.
        parts.append(_object_sentence(rng, thing, s, previous if count <= 3 or dense else s))
        previous = thing
    everything = (s,) + scene.others
    # Summaries lengthen the captions of sparse scenes towards the busy ones' length.
    if count <= 2:
        left_to_right = sorted(everything, key=lambda t: (t.cell[0], t.cell[1]))
        names = _listing([t.name for t in left_to_right])
        parts.append(f"Reading from left to right, the shapes are the {names}.")
    if count <= 3:
        colours = _listing(sorted({t.colour for t in everything}))
        parts.append(f"The object colours in the picture are {colours}.")
    parts.append(_background_sentence(scene.background))
    return " ".join(parts)


def label(scene: Scene) -> str:
    """The salient object's colour+shape class, for the zero-shot classification analogue."""
    return scene.salient.name


# ---------------------------------------------------------------------------------------------
# Rendering


def _contrast_name(colour: str) -> str:
    r, g, b = COLOURS[colour]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def _polygon(cx: float, cy: float, r: float, corners: int, rotation: float) -> list:
    return [
        (
            cx + r * math.cos(rotation + 2 * math.pi * k / corners),
            cy + r * math.sin(rotation + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float) -> None:
    up = -math.pi / 2
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        inner = r * 0.55
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    elif shape == "square":
        h = r * 0.82
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=255)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy + r * 0.15, r, 3, up), fill=255)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = up + math.pi * k / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    elif shape == "cross":
        t = r * 0.33
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=255)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=255)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=255)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, 0.0), fill=255)
    elif shape == "pentagon":
        draw.polygon(_polygon(cx, cy, r, 5, up), fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _fill(thing: Thing, width: int, height: int) -> Image.Image:
    colour = COLOURS[thing.colour]
    contrast = COLOURS[_contrast_name(thing.colour)]
    fill = Image.new("RGB", (width, height), colour)
    step = max(4, width // 5)
    draw = ImageDraw.Draw(fill)
    if thing.texture == "striped":
        for offset in range(-height, width, step):
            draw.line((offset, height, offset + height, 0), fill=contrast, width=max(1, step // 3))
    elif thing.texture == "dotted":
        dot = max(1, step // 5)
        for y in range(step // 2, height, step):
            for x in range(step // 2, width, step):
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=contrast)
    return fill


def _paint(canvas: Image.Image, rng: random.Random, thing: Thing) -> None:
    side = canvas.width
    cell = side / 3
    r = SIZES[thing.size] * side / 2
    # Jitter inside the cell, keeping the object on the canvas.
    cx = (thing.cell[0] + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
    cy = (thing.cell[1] + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
    cx = min(max(cx, r + 1), side - r - 1)
    cy = min(max(cy, r + 1), side - r - 1)
    left, top = int(cx - r) - 1, int(cy - r) - 1
    box = (left, top, int(cx + r) + 2, int(cy + r) + 2)
    width, height = box[2] - box[0], box[3] - box[1]
    mask = Image.new("L", (width, height), 0)
    _draw_shape(ImageDraw.Draw(mask), thing.shape, cx - left, cy - top, r)
    if thing.texture == "outlined":
        thickness = 2 * max(1, round(r * 0.12)) + 1
        # The ring left after eroding the shape by the stroke thickness.
        mask = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(thickness)))
    canvas.paste(_fill(thing, width, height), box, mask)


def _background(rng: random.Random, background: Background, side: int) -> Image.Image:
    a = BACKGROUND_COLOURS[background.first]
    b = BACKGROUND_COLOURS[background.second]
    if background.kind == "solid":
        return Image.new("RGB", (side, side), a)
    if background.kind == "gradient":
        ramp = Image.linear_gradient("L")
        if background.direction == "horizontal":
            ramp = ramp.rotate(90)
        elif background.direction == "diagonal":
            ramp = Image.blend(ramp, ramp.rotate(90), 0.5)
        ramp = ramp.resize((side, side), Image.BILINEAR)
        return Image.composite(Image.new("RGB", ramp.size, b), Image.new("RGB", ramp.size, a), ramp)
    if background.kind == "stripes":
        image = Image.new("RGB", (side, side), a)
        draw = ImageDraw.Draw(image)
        band = max(3, side // 10)
        for k in range(-2 * side // band - 1, 2 * side // band + 1, 2):
            p = k * band
            if background.direction == "horizontal":
                draw.rectangle((0, p, side, p + band - 1), fill=b)
            elif background.direction == "vertical":
                draw.rectangle((p, 0, p + band - 1, side), fill=b)
            else:
                draw.polygon([(p, 0), (p + band, 0), (p + band + side, side), (p + side, side)], b)
        return image
    grain = max(2, side // 32)
    cells = side // grain + 1
    noise = Image.frombytes("L", (cells, cells), rng.randbytes(cells * cells))
    noise = noise.resize((cells * grain, cells * grain), Image.NEAREST).crop((0, 0, side, side))
    # Mostly the first colour, speckled with the second.
    noise = noise.point(lambda v: 255 if v > 200 else v // 3)
    return ImageOps.colorize(noise, black=a, white=b)


def render(rng: random.Random, scene: Scene, side: int) -> Image.Image:
    canvas = _background(rng, scene.background, side)
    for thing in scene.others:
        _paint(canvas, rng, thing)
    # Salient last, so small neighbours never hide the object the first sentence is about.
    _paint(canvas, rng, scene.salient)
    return canvas


def _jpeg(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Dataset generation


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
        rng = _image_rng(seed, group, member)
        scene = random_scene(rng, salient, verb, *objects)
        yield Sample(
            name=f"{index:06d}",
            group=group,
            label=label(scene),
            short=short_caption(scene),
            long=long_caption(rng, scene, dense),
            jpeg=_jpeg(render(rng, scene, size)),
        )


def write_dataset(
    out: Path,
    count: int,
    seed: int,
    layout: str,
    size: int,
    group_size: int,
    objects: tuple = (1, 4),
):
    out = Path(out)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout == "urban1k":
        for sub in ("image", "caption", "short"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    else:
        (out / "images").mkdir(parents=True, exist_ok=True)
    conversations, lines, labels = [], [], {}
    started = time.monotonic()
    every = max(1, min(1000, count // 10))
    samples = generate(count, seed, size, group_size, objects)
    for done, sample in enumerate(samples, start=1):
        if layout == "urban1k":
            (out / "image" / f"{sample.name}.jpg").write_bytes(sample.jpeg)
            (out / "caption" / f"{sample.name}.txt").write_text(sample.long + "\n")
            (out / "short" / f"{sample.name}.txt").write_text(sample.short + "\n")
            labels[sample.name] = sample.label
        else:
            relative = f"images/{sample.name}.jpg"
            (out / relative).write_bytes(sample.jpeg)
            conversations.append(
                {
                    "id": sample.name,
                    "image": relative,
                    "conversations": [
                        {"from": "human", "value": PROMPT},
                        {"from": "gpt", "value": sample.long},
                    ],
                }
            )
            lines.append(
                {
                    "image": relative,
                    "long": sample.long,
                    "short": sample.short,
                    "label": sample.label,
                    "group": sample.group,
                }
            )
        if done % every == 0 or done == count:
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"synth: {done}/{count} images ({rate:.0f}/s)", file=sys.stderr, flush=True)
    if layout == "urban1k":
        (out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    else:
        (out / "captions.json").write_text(json.dumps(conversations, indent=1) + "\n")
        with open(out / "captions.jsonl", "w") as handle:
            for line in lines:
                handle.write(json.dumps(line) + "\n")


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
    write_dataset(
        args.out, args.count, args.seed, args.layout, args.size, args.group_size, (low, high)
    )
    return 0
