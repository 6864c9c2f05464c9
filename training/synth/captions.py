"""Captions of a scene: the one-sentence summary and the long, relation-rich description."""

import random

from .scene import REGIONS, SIZES, Background, Scene, Thing, contrast_name

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")


def short_caption(scene: Scene) -> str:
    s = scene.salient
    return f"A {s.size} {s.colour} {s.shape} {scene.verb} the {REGIONS[s.cell]} of the picture."


def texture_phrase(thing: Thing) -> str:
    contrast = contrast_name(thing.colour)
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
            f"In the {where} there is a {thing.size} {thing.name}, {texture_phrase(thing)}; "
            f"it lies {relation}.",
            f"A {thing.size} {thing.name} {texture_phrase(thing)} sits in the {where}, "
            f"{relation}.",
            f"The {where} holds a {thing.size} {thing.name}, {texture_phrase(thing)}, placed "
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
        f"This {s.shape} is {texture_phrase(s)} and is clearly the biggest shape in the scene.",
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
