"""The scene model: the objects, backgrounds and layouts a synthetic picture is made of."""

import random
from dataclasses import dataclass

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


def image_rng(seed: int, group: int, member: int) -> random.Random:
    # Integer seeds hash identically in every Python process (unlike str/tuple hashing).
    return random.Random((seed * 1_000_003 + group) * 1_009 + member)


def salient_for_group(seed: int, group: int) -> tuple:
    """The salient object and first-sentence verb every member of a group shares."""
    rng = image_rng(seed, group, 1_000)
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


def contrast_name(colour: str) -> str:
    """The colour of stripes and dots on ``colour``: captions name it, rendering paints it."""
    r, g, b = COLOURS[colour]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"
