"""Rendering a scene with PIL: textured background, then each object as a masked, filled shape."""

import math
import random
from io import BytesIO

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from .scene import BACKGROUND_COLOURS, COLOURS, SIZES, Background, Scene, Thing, contrast_name


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
    contrast = COLOURS[contrast_name(thing.colour)]
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


def _paint(canvas: Image.Image, rng: random.Random, thing: Thing) -> tuple:
    """Paints ``thing``; returns its box (left, top, right, bottom) in pixels, right and
    bottom exclusive: the bounds of the pixels its mask covers."""
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
    inner = mask.getbbox() or (0, 0, 0, 0)
    return (left + inner[0], top + inner[1], left + inner[2], top + inner[3])


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


def render_with_boxes(rng: random.Random, scene: Scene, side: int) -> tuple:
    """(the picture, each object's box as ``_paint`` gives it: the salient object's first,
    then the others in order)."""
    canvas = _background(rng, scene.background, side)
    boxes = [_paint(canvas, rng, thing) for thing in scene.others]
    # Salient last, so small neighbours never hide the object the first sentence is about.
    return canvas, (_paint(canvas, rng, scene.salient), *boxes)


def render(rng: random.Random, scene: Scene, side: int) -> Image.Image:
    return render_with_boxes(rng, scene, side)[0]


def encode_jpeg(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
