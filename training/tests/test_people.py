"""Descriptions in people's words (training/synth/people.py) and how training sets use them."""

import io
import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import synth
from training.synth.people import (
    BACKGROUND_WORDS,
    COLOUR_WORDS,
    LENGTHS,
    SHAPE_WORDS,
    person_description,
)
from training.synth.render import render_with_boxes
from training.synth.scene import BACKGROUND_COLOURS, Background, Scene, Thing

from .test_synth import _clip_tokenizer, main

REPO_ROOT = Path(__file__).resolve().parents[2]
GALLERY = REPO_ROOT / "models" / "demo" / "gallery"


def _samples(count=200, seed=11):
    return list(synth.generate(count, seed, 64))


def _mentions(text: str, words) -> bool:
    return any(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text.lower()) for w in words)


def test_descriptions_are_reproducible_and_apart_from_the_images_and_captions():
    first, second = _samples(20), _samples(20)
    assert [s.described for s in first] == [s.described for s in second]
    # the images and captions are drawn as if the descriptions did not exist
    for sample in first[:8]:
        group, member = divmod(int(sample.name), 4)
        salient, verb = synth.salient_for_group(11, group)
        rng = synth.image_rng(11, group, member)
        scene = synth.random_scene(rng, salient, verb)
        assert synth.long_caption(rng, scene) == sample.long
        assert synth.encode_jpeg(synth.render_with_boxes(rng, scene, 64)[0]) == sample.jpeg


def test_full_descriptions_name_the_colour_of_every_object():
    for sample in _samples(100):
        text = sample.described["full"]
        for thing in (sample.scene.salient, *sample.scene.others):
            assert _mentions(text, COLOUR_WORDS[thing.colour]), (thing, text)


def test_short_descriptions_are_about_the_large_object():
    for sample in _samples(100):
        text, salient = sample.described["short"], sample.scene.salient
        assert _mentions(text, COLOUR_WORDS[salient.colour]), text
        assert _mentions(text, SHAPE_WORDS[salient.shape]), text


def test_lengths_differ_and_partial_descriptions_leave_objects_out():
    samples = _samples(200)
    words = {n: np.mean([len(s.described[n].split()) for s in samples]) for n in LENGTHS}
    assert words["short"] < words["partial"] < words["full"]
    busy = [s for s in samples if len(s.scene.others) >= 3]
    left_out = 0
    for sample in busy:
        text = sample.described["partial"]
        named = [_mentions(text, COLOUR_WORDS[t.colour]) for t in sample.scene.others]
        left_out += not all(named)
    assert left_out > len(busy) / 3


def test_people_words_are_varied():
    samples = _samples(300)
    texts = " ".join(s.described[n] for s in samples for n in LENGTHS).lower()
    # every synonym of every shape, colour and background colour is used somewhere
    for table in (SHAPE_WORDS, COLOUR_WORDS, BACKGROUND_WORDS):
        for key, words in table.items():
            unused = [w for w in set(words) if not _mentions(texts, [w])]
            assert not unused, (key, unused)
    # sentence openings vary too
    openings = Counter(s.described["full"].split()[0].lower() for s in samples)
    assert len(openings) >= 15 and openings.most_common(1)[0][1] < len(samples) / 3


def test_relations_and_groups_of_one_shape():
    scene = Scene(
        salient=Thing("star", "red", "large", (0, 0), "solid"),
        verb="fills",
        others=(
            Thing("star", "blue", "small", (2, 2), "dotted"),
            Thing("star", "green", "medium", (2, 0), "striped"),
            Thing("ring", "white", "small", (0, 2), "outlined"),
        ),
        background=Background("solid", "cream", "sand", "vertical"),
    )
    texts = [person_description(random.Random(i), scene, "full") for i in range(200)]
    assert any(re.search(r"\bthree (star|star shape|five-pointed star)s\b", t, re.I) for t in texts)
    assert any(
        re.search(r"\b(below|to the right of|over|above)\b.*\b(it|big one)\b", t) for t in texts
    )


def test_descriptions_fit_the_context():
    tokenizer, reason = _clip_tokenizer()
    if tokenizer is None:
        pytest.skip(f"real token counts skipped: {reason}")
    lengths = [len(tokenizer.encode(s.described["full"])) + 2 for s in _samples(200)]
    assert max(lengths) <= 200


def test_training_rows_take_descriptions_at_the_share_asked(tmp_path):
    args = ["synth", "--out", str(tmp_path), "--count", "400", "--layout", "sharegpt4v"]
    assert main(args + ["--size", "64", "--person-share", "0.6", "--seed", "4"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    samples = list(synth.generate(400, 4, 64))
    replaced_long = sum(line["long"] != s.long for line, s in zip(lines, samples))
    replaced_short = sum(line["short"] != s.short for line, s in zip(lines, samples))
    for line, sample in zip(lines, samples):
        assert line["long"] in (sample.long, sample.described["partial"], sample.described["full"])
        assert line["short"] in (sample.short, sample.described["short"])
    assert 0.5 < replaced_long / 400 < 0.7 and 0.5 < replaced_short / 400 < 0.7
    entries = json.loads((tmp_path / "captions.json").read_text())
    assert [e["conversations"][1]["value"] for e in entries] == [line["long"] for line in lines]


def test_finetune_rows_keep_every_long_caption_and_add_people_rows_apart(tmp_path):
    args = ["synth", "--out", str(tmp_path), "--count", "40", "--layout", "sharegpt4v"]
    assert main(args + ["--size", "64", "--person-share", "0.6", "--seed", "4"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "finetune.jsonl").read_text().splitlines()]
    samples = list(synth.generate(40, 4, 64))
    assert len(rows) == 2 * len(samples)
    for (caption, people), sample in zip(zip(rows[::2], rows[1::2]), samples):
        image = f"images/{sample.name}.jpg"
        assert caption == {
            "image": image,
            "long": sample.long,
            "short": sample.short,
            "label": sample.label,
            "group": sample.group,
        }
        assert people["image"] == image and people["short"] == sample.described["short"]
        assert people["long"] in (sample.described["partial"], sample.described["full"])
        # a group of its own, so an image never meets itself in a hard-negative batch
        assert people["group"] == f"people-{sample.group}"
    drawn = Counter(
        "full" if row["long"] == s.described["full"] else "partial"
        for row, s in zip(rows[1::2], samples)
    )
    assert drawn["full"] > 0 and drawn["partial"] > 0


def test_person_share_outside_0_to_1_is_refused(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "--count", "1", "--layout", "sharegpt4v"]
    assert main(args + ["--person-share", "1.5"]) == 2
    assert "--person-share" in capsys.readouterr().err


def test_urban1k_sets_write_the_full_description_beside_the_caption(tmp_path):
    args = ["synth", "--out", str(tmp_path), "--count", "3", "--layout", "urban1k"]
    assert main(args + ["--size", "64", "--seed", "6"]) == 0
    for sample in synth.generate(3, 6, 64):
        written = (tmp_path / "person" / f"{sample.name}.txt").read_text().strip()
        assert written == sample.described["full"]
        assert (tmp_path / "caption" / f"{sample.name}.txt").read_text().strip() == sample.long


@pytest.mark.skipif(not GALLERY.is_dir(), reason=f"{GALLERY} not found")
def test_the_demo_gallery_is_still_what_the_generator_draws():
    """The gallery's images are kept (issue 26: people's descriptions of them exist); the
    recipe regenerates them from seed 2, so the generator must still draw the same pictures."""
    manifest = json.loads((GALLERY / "gallery.json").read_text())
    samples = list(synth.generate(len(manifest["items"]), 2, 128))
    for item, sample in zip(manifest["items"], samples):
        assert item["file"] == f"{sample.name}.jpg" and item["caption"] == sample.long
        kept = np.asarray(Image.open(GALLERY / item["file"]), dtype=np.int16)
        drawn = np.asarray(Image.open(io.BytesIO(sample.jpeg)), dtype=np.int16)
        assert np.abs(kept - drawn).mean() < 1.0, item["file"]


def test_boxes_hold_every_object_pixel():
    scene = Scene(
        salient=Thing("hexagon", "red", "large", (1, 1), "striped"),
        verb="fills",
        others=(
            Thing("star", "blue", "small", (0, 0), "dotted"),
            Thing("ring", "green", "medium", (2, 2), "outlined"),
            Thing("cross", "black", "small", (2, 0), "solid"),
        ),
        background=Background("solid", "ivory", "sand", "vertical"),
    )
    image, boxes = render_with_boxes(random.Random(3), scene, 96)
    pixels = np.asarray(image)
    drawn = np.any(pixels != np.array(BACKGROUND_COLOURS["ivory"], dtype=np.uint8), axis=-1)
    covered = np.zeros_like(drawn)
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= 96 and 0 <= top < bottom <= 96
        covered[top:bottom, left:right] = True
        assert drawn[top:bottom, left:right].any()
    assert drawn.any() and not (drawn & ~covered).any()
    salient = boxes[0]
    # the large object spans about 0.42 of the side, the small ones about 0.17
    assert 0.35 * 96 <= salient[2] - salient[0] <= 0.45 * 96
    assert boxes[1][2] - boxes[1][0] <= 0.2 * 96
