"""Synthetic long-caption data: determinism, caption lengths, hard-negative groups, layouts."""

import argparse
import json
import re
from io import BytesIO

import pytest
from PIL import Image

from training import synth
from training.model.tokenizer import ClipTokenizer
from training.tests.conftest import CLIP_VOCAB


def main(argv):
    """The ``synth`` command as the CLI dispatcher runs it, without importing other commands."""
    assert argv[0] == "synth"
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    return synth.run(parser.parse_args(argv[1:]))


def _samples(count=12, seed=3, size=64, group_size=4):
    return list(synth.generate(count, seed, size, group_size))


def test_same_seed_gives_identical_bytes_and_captions():
    first, second = _samples(), _samples()
    assert [(s.name, s.short, s.long, s.label, s.jpeg) for s in first] == [
        (s.name, s.short, s.long, s.label, s.jpeg) for s in second
    ]


def test_other_seed_gives_other_data():
    first, other = _samples(seed=3), _samples(seed=4)
    assert [s.long for s in first] != [s.long for s in other]
    assert [s.jpeg for s in first] != [s.jpeg for s in other]


def test_an_image_does_not_depend_on_the_count():
    assert [s.jpeg for s in _samples(count=5)] == [s.jpeg for s in _samples(count=12)[:5]]


def test_images_are_jpegs_of_the_requested_size():
    for sample in _samples(count=4, size=96):
        image = Image.open(BytesIO(sample.jpeg))
        assert image.format == "JPEG"
        assert image.size == (96, 96)
        assert image.mode == "RGB"


def _clip_tokenizer():
    """The project's CLIP tokenizer with CLIP's vocabulary, or None with the reason."""
    if not CLIP_VOCAB.exists():
        return None, f"CLIP vocabulary not found at {CLIP_VOCAB}"
    return ClipTokenizer(CLIP_VOCAB), ""


def test_long_captions_fit_the_248_token_context():
    samples = _samples(count=200, seed=11)
    # Proxy: words and punctuation marks, each at least one CLIP token, plus start and end.
    proxy = [len(re.findall(r"[a-z]+|[^\sa-z]", s.long.lower())) + 2 for s in samples]
    assert min(proxy) >= 80
    assert max(proxy) <= 230
    tokenizer, reason = _clip_tokenizer()
    if tokenizer is None:
        pytest.skip(f"real token counts skipped: {reason}")
    lengths = [len(tokenizer.encode(s.long)) + 2 for s in samples]
    assert min(lengths) >= 80
    assert max(lengths) <= 248
    short = [len(tokenizer.encode(s.short)) + 2 for s in samples]
    assert max(short) <= 20


def test_groups_share_the_first_sentence_and_differ_later():
    samples = _samples(count=24, seed=5, group_size=4)
    groups = {}
    for sample in samples:
        groups.setdefault(sample.group, []).append(sample)
    assert len(groups) == 6
    shorts = set()
    for members in groups.values():
        assert len(members) == 4
        assert len({m.short for m in members}) == 1
        assert len({m.label for m in members}) == 1
        assert all(m.long.startswith(m.short + " ") for m in members)
        # The first 20 words agree, the captions as a whole do not.
        assert len({" ".join(m.long.split()[:20]) for m in members}) == 1
        assert len({m.long for m in members}) == 4
        assert len({m.jpeg for m in members}) == 4
        shorts.add(members[0].short)
    assert len(shorts) > 1


def test_short_caption_names_the_label_and_the_largest_object():
    for sample in _samples(count=8):
        assert sample.short.startswith(f"A large {sample.label} ")
        assert sample.short.endswith(" of the picture.")
        assert sample.short.count(".") == 1


def test_urban1k_layout(tmp_path):
    assert main(["synth", "--out", str(tmp_path), "--count", "6", "--seed", "2"] + _small()) == 0
    names = sorted(p.stem for p in (tmp_path / "image").iterdir())
    assert names == [f"{i:06d}" for i in range(6)]
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert sorted(labels) == names
    for name in names:
        long = (tmp_path / "caption" / f"{name}.txt").read_text().splitlines()
        short = (tmp_path / "short" / f"{name}.txt").read_text().splitlines()
        assert len(long) == 1 and len(short) == 1
        assert long[0].startswith(short[0])
        assert labels[name] in short[0]
        assert Image.open(tmp_path / "image" / f"{name}.jpg").size == (64, 64)


def test_sharegpt4v_layout(tmp_path):
    args = ["synth", "--out", str(tmp_path), "--count", "5", "--layout", "sharegpt4v"]
    assert main(args + ["--size", "64"]) == 0
    entries = json.loads((tmp_path / "captions.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert len(entries) == len(lines) == 5
    for entry, line in zip(entries, lines):
        assert set(entry) == {"id", "image", "conversations"}
        assert entry["image"] == f"images/{entry['id']}.jpg" == line["image"]
        assert (tmp_path / entry["image"]).is_file()
        human, gpt = entry["conversations"]
        assert human == {"from": "human", "value": "<image>\nDescribe this image in detail."}
        assert gpt["from"] == "gpt" and gpt["value"] == line["long"]
        assert line["long"].startswith(line["short"])


def test_rejects_sizes_outside_64_to_224(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "--count", "1", "--layout", "urban1k"]
    assert main(args + ["--size", "32"]) == 2
    assert "--size must be between 64 and 224" in capsys.readouterr().err
    assert not (tmp_path / "image").exists()


def _small():
    return ["--layout", "urban1k", "--size", "64"]


def test_crowded_scenes_give_captions_past_the_248_token_context():
    samples = list(synth.generate(40, seed=5, size=64, objects=(6, 8)))
    assert all(6 <= s.long.count(". ") for s in samples)
    tokenizer, reason = _clip_tokenizer()
    if tokenizer is None:
        pytest.skip(f"real token counts skipped: {reason}")
    lengths = [len(tokenizer.encode(s.long)) + 2 for s in samples]
    assert sum(n > 248 for n in lengths) >= 30, lengths
    # The default range is unchanged: the same seed draws the same scenes as before.
    assert [s.long for s in synth.generate(3, seed=5, size=64)] == [
        s.long for s in synth.generate(3, seed=5, size=64, objects=(1, 4))
    ]


def test_rejects_an_objects_range_outside_1_to_8(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "--count", "1", "--layout", "urban1k"]
    assert main(args + ["--objects", "0-9"]) == 2
    assert "--objects must be MIN-MAX" in capsys.readouterr().err
