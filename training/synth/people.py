"""Descriptions of a scene in the words people use, for training the demo model to read them.

The long caption (captions.py) always says the same thing the same way: one template, one word
per shape, colour, pattern, size and place. People describing the same picture use other words
("a plus sign", "a donut", "light blue", "polka dots", "just the outline", "upper left"),
mention some objects and skip others, start anywhere, write fragments or full sentences, and
may say nothing of the background. ``person_description`` draws one such description; its
``length`` picks how much it tells:

- ``short``: the salient object alone, sometimes with the background (a one-line query);
- ``partial``: the salient object (usually) and some of the others, few details;
- ``full``: every object, most details, usually the background.

Every choice comes from the ``random.Random`` passed in, so a description is reproducible. The
phrasings are written from how people talk about shapes and colours; they are not tuned on any
evaluation set of person-written descriptions.
"""

import random

from .scene import Background, Scene, Thing, contrast_name

LENGTHS = ("short", "partial", "full")

# Each tuple lists the words for one thing; repeats make the plain word the most likely.
SHAPE_WORDS = {
    "circle": ("circle", "circle", "circle", "disc", "disk", "dot", "round shape", "ball"),
    "square": ("square", "square", "square", "box", "block", "square shape", "tile"),
    "triangle": ("triangle", "triangle", "triangle", "triangular shape", "pyramid shape"),
    "star": ("star", "star", "star", "five-pointed star", "5-pointed star", "star shape"),
    "ring": ("ring", "ring", "donut", "doughnut", "hoop", "circle with a hole in it", "loop"),
    "cross": ("cross", "cross", "plus sign", "plus sign", "plus", "plus symbol", "cross shape"),
    "diamond": ("diamond", "diamond", "diamond", "rhombus", "diamond shape", "lozenge"),
    "hexagon": ("hexagon", "hexagon", "hexagon", "six-sided shape", "hexagonal shape", "hex"),
    "pentagon": ("pentagon", "pentagon", "pentagon", "five-sided shape", "pentagonal shape"),
}

COLOUR_WORDS = {
    "red": ("red", "red", "red", "bright red", "scarlet", "crimson"),
    "orange": ("orange", "orange", "orange", "bright orange", "tangerine"),
    "yellow": ("yellow", "yellow", "yellow", "bright yellow", "golden", "lemon yellow", "gold"),
    "green": ("green", "green", "green", "grass green", "emerald green", "medium green"),
    "blue": ("blue", "blue", "blue", "royal blue", "bright blue", "dark blue", "cobalt blue"),
    "purple": ("purple", "purple", "purple", "violet", "dark purple", "plum"),
    "pink": ("pink", "pink", "pink", "hot pink", "bubblegum pink", "magenta", "rose"),
    "brown": ("brown", "brown", "brown", "dark brown", "chocolate brown", "chocolate"),
    "black": ("black", "black", "black", "jet black", "dark"),
    "white": ("white", "white", "white", "pure white", "bright white"),
    "cyan": ("cyan", "turquoise", "light blue", "teal", "aqua", "sky blue", "bright turquoise"),
    "grey": ("grey", "gray", "grey", "gray", "medium grey", "silver", "silvery grey"),
}
BACKGROUND_WORDS = {
    "cream": ("cream", "cream", "beige", "off-white", "pale yellow", "light beige", "eggshell"),
    "sand": ("sand", "sandy", "tan", "beige", "light brown", "khaki", "sand-coloured"),
    "mint": ("mint", "mint green", "pale green", "light green", "pastel green", "seafoam"),
    "lavender": ("lavender", "lilac", "light purple", "pale purple", "pastel purple", "mauve"),
    "peach": ("peach", "peachy", "light orange", "salmon", "apricot", "pale orange"),
    "navy": ("navy", "navy blue", "dark blue", "midnight blue", "deep blue", "dark navy"),
    "olive": ("olive", "olive green", "khaki green", "army green", "dark olive", "mustardy green"),
    "charcoal": ("charcoal", "dark grey", "dark gray", "charcoal grey", "nearly black"),
    "slate": ("slate", "slate grey", "blue-grey", "blue-gray", "greyish blue", "steel blue"),
    "ivory": ("ivory", "off-white", "white", "very pale cream", "ivory white", "whitish"),
}
SIZE_WORDS = {
    "small": ("small", "small", "little", "tiny", "smallish", "small-sized", "little"),
    "medium": ("medium", "medium-sized", "mid-sized", "middle-sized", "medium size", "moderate"),
    "large": ("large", "big", "big", "huge", "giant", "very large", "really big", "massive"),
}

# Where a cell is, as (vertical, horizontal): 0/1/2 = top/middle/bottom and left/centre/right.
_VERTICAL = {0: ("top", "upper", "top"), 2: ("bottom", "lower", "bottom")}
_HORIZONTAL = {0: "left", 2: "right"}
_MIDDLE = ("middle", "centre", "center", "middle", "center of the picture", "dead centre")


def _pick(rng: random.Random, options) -> str:
    return options[rng.randrange(len(options))]


def article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def place(rng: random.Random, cell: tuple) -> str:
    """A place on the picture as people say it, with its preposition: 'in the upper left'."""
    column, row = cell
    if (column, row) == (1, 1):
        word = _pick(rng, _MIDDLE)
        return _pick(rng, ("in the ", "in the ", "right in the ", "at the ")) + word
    if row == 1:
        side = _HORIZONTAL[column]
        return _pick(
            rng,
            (
                f"on the {side}",
                f"on the {side}",
                f"on the {side} side",
                f"on the {side}-hand side",
                f"at the {side} edge",
                f"in the middle {side}",
                f"middle {side}",
                f"over on the {side}",
                f"to the {side}",
            ),
        )
    vertical = _pick(rng, _VERTICAL[row])
    if column == 1:
        edge = _VERTICAL[row][0]
        return _pick(
            rng,
            (
                f"at the {edge}",
                f"at the {edge}",
                f"{vertical} middle",
                f"in the {vertical} middle",
                f"at the {edge} centre",
                f"at the {edge} center",
                f"along the {edge} edge",
                f"near the {edge}",
            ),
        )
    side = _HORIZONTAL[column]
    joined = _pick(rng, (f"{vertical} {side}", f"{vertical}-{side}", f"{vertical} {side}"))
    corner = _pick(rng, ("", " corner", " corner"))
    return _pick(
        rng, ("in the ", "in the ", "at the ", "up in the " if row == 0 else "down in the ", "")
    ) + (joined + corner)


def colour_word(rng: random.Random, colour: str) -> str:
    return _pick(rng, COLOUR_WORDS[colour])


def shape_word(rng: random.Random, shape: str) -> str:
    return _pick(rng, SHAPE_WORDS[shape])


def _pattern_before(rng: random.Random, thing: Thing) -> str:
    """The pattern as an adjective before the noun ('' for a plain one, mostly)."""
    options = {
        "solid": ("", "", "", "", "solid", "plain", "filled-in", "flat"),
        "striped": ("striped", "striped", "stripy", "stripey", "hatched"),
        "dotted": ("dotted", "polka-dot", "polka dot", "spotted", "spotty", "dotty"),
        "outlined": ("outlined", "hollow", "hollow", "empty", "unfilled", "outline of a"),
    }[thing.texture]
    return _pick(rng, options)


def _pattern_after(rng: random.Random, thing: Thing) -> str:
    """The pattern as a phrase after the noun: 'with white stripes'."""
    contrast = contrast_name(thing.colour)
    options = {
        "solid": ("", "", "filled in", "with no pattern", "that is plain", "filled solid"),
        "striped": (
            "with stripes",
            f"with {contrast} stripes",
            f"with thin {contrast} stripes",
            "with diagonal stripes",
            f"with diagonal {contrast} lines",
            "with slanted lines",
            f"striped with {contrast}",
            "with lines across it",
        ),
        "dotted": (
            "with dots",
            f"with {contrast} dots",
            "with polka dots",
            f"with little {contrast} dots",
            "covered in dots",
            f"covered in small {contrast} dots",
            "with spots",
            f"with {contrast} spots",
        ),
        "outlined": (
            "drawn as an outline",
            "that is just an outline",
            "with nothing inside",
            "that is only an outline",
            "which is hollow",
            "not filled in",
            "with an empty middle",
            "drawn with just a line",
        ),
    }[thing.texture]
    return _pick(rng, options)


def object_phrase(rng: random.Random, thing: Thing, size: bool, pattern: bool) -> str:
    """A noun phrase with its article: 'a little dotted plus sign', 'an orange ring with white
    stripes'; ``size`` and ``pattern`` say whether to mention them (colour is always named)."""
    noun = shape_word(rng, thing.shape)
    words = [_pick(rng, SIZE_WORDS[thing.size])] if size else []
    if size and thing.size != "large" and rng.random() < 0.1:
        words = ["smaller"]
    after = ""
    if pattern and rng.random() < 0.5:
        before = _pattern_before(rng, thing)
        if before == "outline of a":
            # "an outline of a red star": the pattern leads the phrase
            inner = " ".join(words + [colour_word(rng, thing.colour), noun])
            return f"{article('outline')} of {article(inner)}"
        if before:
            words.append(before)
    elif pattern:
        after = _pattern_after(rng, thing)
    words += [colour_word(rng, thing.colour), noun]
    phrase = article(" ".join(words))
    return f"{phrase} {after}" if after else phrase


def background_phrase(rng: random.Random, background: Background) -> str:
    """The background as a noun phrase without article: 'plain beige background'."""
    a = _pick(rng, BACKGROUND_WORDS[background.first])
    b = _pick(rng, BACKGROUND_WORDS[background.second])
    noun = _pick(rng, ("background", "background", "backdrop", "background"))
    direction = background.direction
    ends = {
        "vertical": ("at the top", "at the bottom"),
        "horizontal": ("on the left", "on the right"),
        "diagonal": ("in the top left", "in the bottom right"),
    }[direction]
    return _pick(
        rng,
        {
            "solid": (
                f"{a} {noun}",
                f"plain {a} {noun}",
                f"solid {a} {noun}",
                f"flat {a} {noun}",
                f"{noun} that is all {a}",
            ),
            "gradient": (
                f"{a} to {b} gradient {noun}",
                f"{noun} fading from {a} to {b}",
                f"{noun} that fades from {a} {ends[0]} to {b} {ends[1]}",
                f"gradient {noun}, {a} and {b}",
                f"{a} and {b} ombre {noun}",
                f"{noun} shading from {a} into {b}",
            ),
            "stripes": (
                f"{a} and {b} striped {noun}",
                f"{noun} of {direction} {a} and {b} stripes",
                f"{a} {noun} with wide {b} stripes",
                f"striped {noun} in {a} and {b}",
                f"{noun} with broad {direction} bands of {a} and {b}",
                f"{direction}ly striped {noun}, {a} and {b}",
            ),
            "noise": (
                f"grainy {a} {noun}",
                f"noisy {a} and {b} {noun}",
                f"speckled {a} {noun}",
                f"{a} {noun} speckled with {b}",
                f"{a} {noun} with {b} specks",
                f"mottled {a} and {b} {noun}",
                f"grainy, static-like {a} {noun}",
                f"textured {a} {noun} with bits of {b}",
            ),
        }[background.kind],
    )


def _background_sentence(rng: random.Random, background: Background, first: bool) -> str:
    """The background as a sentence; ``first``: it opens the description."""
    phrase = background_phrase(rng, background)
    if first:
        return _pick(
            rng,
            (
                f"{article(phrase).capitalize()}.",
                f"{phrase.capitalize()}.",
                f"On {article(phrase)}:",
                f"The picture has {article(phrase)}.",
                f"Shapes on {article(phrase)}.",
            ),
        )
    return _pick(
        rng,
        (
            f"It's all on {article(phrase)}.",
            f"{article(phrase).capitalize()}.",
            f"All on {article(phrase)}.",
            f"Everything sits on {article(phrase)}.",
            f"{phrase.capitalize()}.",
            f"They are on {article(phrase)}.",
        ),
    )


def _clause(rng: random.Random, phrase: str, where: str, opening: bool) -> str:
    """One object and its place as a sentence or fragment."""
    if not where:
        return _pick(
            rng,
            (phrase, f"there's {phrase}", f"I see {phrase}")
            + (() if opening else (f"also {phrase}",)),
        )
    frames = [
        f"{phrase} {where}",
        f"{phrase} {where}",
        f"there's {phrase} {where}",
        f"there is {phrase} {where}",
        f"{where} there's {phrase}",
        f"{where} is {phrase}",
        f"{where}, {phrase}",
        f"{phrase} sits {where}",
        f"you can see {phrase} {where}",
        f"{phrase} is {where}",
        f"{phrase} is placed {where}",
        f"{where} we have {phrase}",
        f"{where} I can see {phrase}",
    ]
    if opening:
        frames += [
            f"I see {phrase} {where}",
            f"a picture of {phrase} {where}",
            f"this image shows {phrase} {where}",
            f"an image with {phrase} {where}",
        ]
    else:
        frames += [f"there's also {phrase} {where}", f"and {phrase} {where}"]
    return _pick(rng, frames)


def relative_place(rng: random.Random, thing: Thing, salient: Thing) -> str:
    """Where ``thing`` is from the salient object: 'just above the big star'."""
    dx, dy = thing.cell[0] - salient.cell[0], thing.cell[1] - salient.cell[1]
    vertical = _pick(rng, ("above", "over")) if dy < 0 else "below" if dy > 0 else ""
    horizontal = "to the left of" if dx < 0 else "to the right of" if dx > 0 else ""
    if vertical and horizontal:
        where = f"{vertical} and {horizontal}"
    elif vertical:
        where = _pick(rng, (vertical, f"right {vertical}", f"just {vertical}"))
    else:
        where = horizontal
    big = _pick(rng, ("big ", "large ", "big ", ""))
    noun = _pick(rng, (f"the {big}{shape_word(rng, salient.shape)}", "it", "the big one"))
    if max(abs(dx), abs(dy)) == 1 and rng.random() < 0.3:
        return _pick(rng, (f"next to {noun}", f"beside {noun}", f"near {noun}"))
    return f"{where} {noun}"


def _with_where(rng: random.Random, thing: Thing, mention: float, salient) -> str:
    """A place for ``thing``: on the picture, or from the salient object when it was named
    already (``salient``, else None)."""
    if rng.random() >= mention:
        return ""
    if salient is not None and thing is not salient and rng.random() < 0.25:
        return relative_place(rng, thing, salient)
    return place(rng, thing.cell)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _order(rng: random.Random, scene: Scene, chosen: list) -> list:
    """People start with the big one, or read the picture left to right or top to bottom."""
    how = rng.random()
    if how < 0.6 and scene.salient in chosen:
        rest = [t for t in chosen if t is not scene.salient]
        rng.shuffle(rest)
        return [scene.salient] + rest
    if how < 0.75:
        return sorted(chosen, key=lambda t: (t.cell[1], t.cell[0]))
    if how < 0.85:
        return sorted(chosen, key=lambda t: (t.cell[0], t.cell[1]))
    shuffled = list(chosen)
    rng.shuffle(shuffled)
    return shuffled


def _objects(rng: random.Random, scene: Scene, length: str) -> list:
    if length == "short":
        return [scene.salient]
    others = list(scene.others)
    if length == "full":
        return [scene.salient] + others
    # partial: most often the big one and at least one other (the detail that tells a scene
    # from its group), sometimes only small ones
    keep = rng.randint(1, len(others))
    picked = rng.sample(others, keep)
    return ([scene.salient] if rng.random() < 0.85 else []) + picked


_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _intro(rng: random.Random, scene: Scene) -> str:
    count = 1 + len(scene.others)
    number = _pick(rng, (_NUMBERS[count - 1], str(count)))
    things = _pick(rng, ("shapes", "objects", "things", "shapes", "figures"))
    if count == 1:
        return _pick(rng, ("A single shape.", "Just one shape.", "Only one shape."))
    return _pick(
        rng,
        (
            f"{number.capitalize()} {things}.",
            f"There are {number} {things}.",
            f"A picture with {number} {things}.",
            f"Simple image of {number} {things}.",
            f"{number.capitalize()} colourful {things} on a background.",
            f"{number.capitalize()} colorful {things}.",
            f"Geometric shapes, {number} of them.",
            f"This image shows {number} {things}.",
            f"The picture contains {number} coloured {things}.",
            f"Photo of {number} colored {things}.",
        ),
    )


def plural_of(word: str) -> str:
    if word == "circle with a hole in it":
        return "circles with holes in them"
    return word + ("es" if word.endswith(("x", "s", "sh", "ch")) else "s")


def _alike(things: list) -> list:
    """Objects of one shape when the list holds two or more of it, else []."""
    by_shape: dict = {}
    for thing in things:
        by_shape.setdefault(thing.shape, []).append(thing)
    return max(by_shape.values(), key=len) if len(things) > 2 else []


def _together(rng: random.Random, alike: list, detail: float) -> str:
    """Objects of one shape in one clause: 'two stars, a red one at the top and a blue one'."""
    plural = "shapes" if rng.random() < 0.1 else plural_of(shape_word(rng, alike[0].shape))
    ones = []
    for thing in alike:
        adjectives = [_pick(rng, SIZE_WORDS[thing.size])] if rng.random() < detail * 0.5 else []
        if rng.random() < detail * 0.5:
            adjectives.append(_pattern_before(rng, thing) or "plain")
        one = article(" ".join(adjectives + [colour_word(rng, thing.colour), "one"]))
        where = place(rng, thing.cell) if rng.random() < 0.3 + detail * 0.6 else ""
        ones.append(f"{one} {where}".strip())
    listed = ", ".join(ones[:-1]) + " and " + ones[-1]
    number = _NUMBERS[len(alike) - 1]
    return _pick(rng, (f"{number} {plural}, {listed}", f"{number} {plural}: {listed}"))


def _sentences(rng: random.Random, scene: Scene, things: list, detail: float) -> list:
    """One clause per object (objects of one shape sometimes together), joined into
    sentences or one run-on list."""
    clauses = []
    alike = _alike(things)
    if len(alike) >= 2 and rng.random() < 0.5:
        clauses.append(_together(rng, alike, detail))
        things = [thing for thing in things if thing not in alike]
    for index, thing in enumerate(things):
        big = thing is scene.salient
        size = rng.random() < (0.85 if big else detail * 0.7)
        pattern = rng.random() < detail
        phrase = object_phrase(rng, thing, size, pattern)
        if big and rng.random() < 0.15:
            phrase += _pick(
                rng, (", the biggest shape", ", the main thing", " that takes up a lot of space")
            )
        named = scene.salient if scene.salient in things[:index] else None
        where = _with_where(rng, thing, 0.3 + detail * 0.6, named)
        clauses.append(_clause(rng, phrase, where, not clauses))
    style = rng.random()
    if style < 0.45:
        return [_sentence(c) for c in clauses]
    if style < 0.75 or len(clauses) < 2:
        joined = ", ".join(clauses[:-1]) + (" and " if len(clauses) > 1 else "") + clauses[-1]
        return [_sentence(joined)]
    return [_sentence("; ".join(clauses))]


def person_description(rng: random.Random, scene: Scene, length: str) -> str:
    """A description of ``scene`` in the words people use (see the module docstring)."""
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {', '.join(LENGTHS)}, not {length!r}")
    things = _order(rng, scene, _objects(rng, scene, length))
    detail = {"short": 0.6, "partial": 0.45, "full": 0.8}[length]
    parts = _sentences(rng, scene, things, detail)
    background = {"short": 0.25, "partial": 0.35, "full": 0.75}[length]
    if rng.random() < background:
        if rng.random() < 0.7:
            parts.append(_background_sentence(rng, scene.background, False))
        else:
            parts.insert(0, _background_sentence(rng, scene.background, True))
    if length == "full" and rng.random() < 0.3:
        parts.insert(0, _intro(rng, scene))
    if length == "short" and len(parts) == 1 and rng.random() < 0.5:
        return parts[0].rstrip(".")[:1].lower() + parts[0].rstrip(".")[1:]
    return " ".join(parts)
