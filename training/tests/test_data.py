"""Caption datasets: formats, the first-sentence rule, bad rows, preprocessing, sample order."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from training.train.data import (
    EMPTY_CAPTION,
    MALFORMED,
    MISSING_IMAGE,
    CaptionDataset,
    Collate,
    epoch_indices,
    first_sentence,
    load_image,
    load_records,
    pack_groups,
    trim_padding,
)
from training.tests.conftest import TINY_DIR, needs_shared


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The image shows a red car. It is parked.", "The image shows a red car"),
        ("A bottle holds 3.5 liters of water. Next to it", "A bottle holds 3.5 liters of water"),
        (
            "Fruit, e.g. apples and pears, fill a bowl. A cat sleeps.",
            "Fruit, e.g. apples and pears, fill a bowl",
        ),
        ("Signs, i.e. The Stop sign, stand here. More", "Signs, i.e. The Stop sign, stand here"),
        ("No final period in this caption", "No final period in this caption"),
        ("Only one sentence ends here.", "Only one sentence ends here"),
        ("What is this? A dog.", "What is this?"),
        ("Toys, bikes, etc. and more are seen. The end.", "Toys, bikes, etc. and more are seen"),
        ('A sign reads "open." Below it', 'A sign reads "open."'),
        ("Mr. Smith waves at the camera. Behind him", "Mr. Smith waves at the camera"),
        ("  A caption\nwith a line break. Then  ", "A caption with a line break"),
        ("", ""),
    ],
)
def test_first_sentence(text, expected):
    assert first_sentence(text) == expected


def _image(path, size=(40, 30), color=(200, 30, 30)):
    Image.new("RGB", size, color).save(path)
    return path.name


def test_sharegpt4v_json_as_published(tmp_path):
    (tmp_path / "coco").mkdir()
    _image(tmp_path / "coco" / "a.jpg")
    rows = [
        {
            "id": "000000000009",
            "image": "coco/a.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat do you see happening in this image?"},
                {"from": "gpt", "value": "The image shows a red square.\nIt fills the frame."},
            ],
        }
    ]
    data = tmp_path / "share-captioner.json"
    data.write_text(json.dumps(rows))
    records, skipped = load_records(data, "sharegpt4v", tmp_path)
    assert not skipped
    assert len(records) == 1
    assert records[0].image == tmp_path / "coco" / "a.jpg"
    assert records[0].long == "The image shows a red square. It fills the frame."
    assert records[0].short == "The image shows a red square"


def test_jsonl_with_and_without_short(tmp_path):
    _image(tmp_path / "a.png")
    lines = [
        {"image": "a.png", "long": "A red square. On white.", "short": "red"},
        {"image": "a.png", "long": "A red square. On white."},
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    records, skipped = load_records(data, "jsonl")
    assert not skipped
    assert [r.short for r in records] == ["red", "A red square"]


def test_bad_rows_are_skipped_and_counted(tmp_path):
    _image(tmp_path / "good.png")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    truncated = tmp_path / "truncated.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    lines = [
        json.dumps({"image": "good.png", "long": "A good row."}),
        json.dumps({"image": "missing.png", "long": "Its image is missing."}),
        json.dumps({"image": "good.png", "long": "   "}),
        json.dumps({"image": "good.png"}),
        json.dumps({"long": "No image key."}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"image": "corrupt.jpg", "long": "A corrupt file."}),
        json.dumps({"image": "truncated.png", "long": "A truncated file."}),
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(lines))
    records, skipped = load_records(data, "jsonl")
    assert skipped == {MISSING_IMAGE: 1, EMPTY_CAPTION: 2, MALFORMED: 3}
    assert "6 rows skipped" in skipped.summary()
    assert [r.image.name for r in records] == ["good.png", "corrupt.jpg", "truncated.png"]

    # the unreadable files exist, so they are dropped when loaded, and counted by the collate
    dataset = CaptionDataset(records, resolution=16)
    assert dataset[1] is None and dataset[2] is None
    collate = Collate(lambda texts, n: torch.ones(len(texts), n, dtype=torch.long), 8, 16)
    batch = collate([dataset[i] for i in range(3)])
    assert batch.dropped == 2
    assert batch.pixels.shape == (1, 3, 16, 16)
    assert batch.long_ids.shape == batch.short_ids.shape == (1, 8)
    empty = collate([dataset[1]])
    assert empty.dropped == 1 and empty.pixels.shape == (0, 3, 16, 16)


def test_sharegpt4v_rows_without_an_answer_are_malformed(tmp_path):
    _image(tmp_path / "a.png")
    rows = [
        {"image": "a.png", "conversations": [{"from": "human", "value": "hi"}]},
        {"image": "a.png"},
        "a string",
        {"image": "a.png", "conversations": [{"from": "gpt", "value": ""}]},
    ]
    data = tmp_path / "d.json"
    data.write_text(json.dumps(rows))
    records, skipped = load_records(data, "sharegpt4v")
    assert records == []
    assert skipped == {EMPTY_CAPTION: 2, MALFORMED: 2}


def test_wrong_format_is_a_clear_error(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"image": "a.png", "long": "x"}\n{"image": "b.png", "long": "y"}\n')
    with pytest.raises(SystemExit, match="--format jsonl"):
        load_records(data, "sharegpt4v")


def test_preprocessing_resizes_short_side_and_centre_crops(tmp_path):
    # left third red, middle green, right blue: the centre crop of a 3:1 image is all green
    image = Image.new("RGB", (90, 30))
    for x0, color in ((0, (255, 0, 0)), (30, (0, 255, 0)), (60, (0, 0, 255))):
        image.paste(color, (x0, 0, x0 + 30, 30))
    image.save(tmp_path / "wide.png")
    pixels = load_image(tmp_path / "wide.png", 16, mean=(0, 0, 0), std=(1, 1, 1))
    assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.float32
    assert torch.allclose(pixels[:, 4:12, 4:12], torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1))


@needs_shared
def test_preprocessing_equals_the_official_pixels(reference):
    for entry in reference["images"]:
        expected = np.fromfile(TINY_DIR / entry["pixels"], dtype="<f4").reshape(entry["shape"])
        got = load_image(
            TINY_DIR / "images" / entry["file"],
            reference["config"]["image_resolution"],
            reference["config"]["mean"],
            reference["config"]["std"],
        )
        assert np.abs(got.numpy() - expected).max() <= 1e-6, entry["file"]


def test_epoch_order_is_seeded_and_split_across_processes():
    first = epoch_indices(10, epoch=0, seed=3)
    assert sorted(first) == list(range(10))
    assert first == epoch_indices(10, epoch=0, seed=3)
    assert first != epoch_indices(10, epoch=1, seed=3)
    shares = [epoch_indices(10, epoch=0, seed=3, rank=r, world_size=3) for r in range(3)]
    assert all(len(share) == 4 for share in shares)
    assert set(sum(shares, [])) == set(range(10))


def test_group_aware_order_keeps_groups_in_one_batch_on_every_process():
    # 5 groups of 4 and 4 rows without a group, shuffled: a single row can always fill the
    # room a group of 4 does not fit, so no group is ever split
    groups = [f"g{i // 4}" for i in range(20)] + [None] * 4
    for world_size in (1, 2):
        shares = [
            epoch_indices(24, 3, 0, rank, world_size, groups=groups, batch_size=8)
            for rank in range(world_size)
        ]
        # padded to whole batches on every process, every row present
        assert len({len(share) for share in shares}) == 1 and len(shares[0]) % 8 == 0
        assert set(sum(shares, [])) == set(range(24))
        for share in shares:
            for start in range(0, len(share), 8):
                batch = share[start : start + 8]
                keys = [groups[i] for i in batch if groups[i] is not None]
                # a group of 4 in a batch of 8 is never split: it appears 4 times (or not)
                assert all(keys.count(key) == 4 for key in keys), batch
    one = epoch_indices(24, 3, 0, groups=groups, batch_size=8)
    assert one == epoch_indices(24, 3, 0, groups=groups, batch_size=8)
    assert one != epoch_indices(24, 4, 0, groups=groups, batch_size=8)
    with pytest.raises(ValueError, match="group keys"):
        epoch_indices(25, 0, 0, groups=groups)


def test_group_fraction_keeps_that_share_of_groups_whole():
    # 200 groups of 4 in batches of 32: with fraction 0.5 about half the groups are laid out
    # whole, the rest spread as single rows, so batches mix hard and random negatives
    groups = [f"g{i // 4}" for i in range(800)]

    def whole_groups(order):
        batches = [order[s : s + 32] for s in range(0, len(order), 32)]
        return sum(
            1
            for batch in batches
            for key in {groups[i] for i in batch}
            if sum(groups[i] == key for i in batch) == 4
        )

    full = epoch_indices(800, 0, 5, groups=groups, batch_size=32)
    mixed = epoch_indices(800, 0, 5, groups=groups, batch_size=32, group_fraction=0.5)
    none = epoch_indices(800, 0, 5, groups=groups, batch_size=32, group_fraction=0.0)
    assert sorted(mixed) == list(range(800))
    assert mixed == epoch_indices(800, 0, 5, groups=groups, batch_size=32, group_fraction=0.5)
    assert whole_groups(full) == 200
    assert 70 <= whole_groups(mixed) <= 130
    # spread rows meet a sibling by chance only (about 3 in 800 per row)
    assert whole_groups(none) <= 2
    with pytest.raises(ValueError, match="group_fraction"):
        epoch_indices(8, 0, 5, groups=groups[:8], batch_size=4, group_fraction=1.5)


def test_packing_fills_a_batch_with_a_smaller_group_before_splitting_one():
    runs = [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13]]
    # batch 4: [0 1 2] leaves 1, [3 4 5] does not fit and nothing of size 1 is left, so it is
    # split; after it room 2 takes [6 7]; the group of 6 is cut to 4 + 2 first
    assert pack_groups(runs, 4) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    # batch 5: [0 1 2] leaves 2, so [6 7] comes before [3 4 5]; that leaves 2, which the
    # group of 6's second piece [13] fills before its first piece [8..12] must be split
    assert pack_groups(runs, 5) == [0, 1, 2, 6, 7, 3, 4, 5, 13, 8, 9, 10, 11, 12]


def test_group_keys_are_read_from_jsonl_rows(tmp_path):
    _image(tmp_path / "a.png")
    lines = [
        {"image": "a.png", "long": "One.", "group": 3},
        {"image": "a.png", "long": "Two.", "group": "3"},
        {"image": "a.png", "long": "Three."},
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(line) for line in lines))
    records, _ = load_records(data, "jsonl")
    # 3 and "3" are different JSON values, so different groups
    assert [r.group for r in records] == ["3", '"3"', None]


def test_collate_trims_the_all_padding_tail():
    ids = torch.tensor([[5, 6, 9, 0, 0, 0], [5, 9, 0, 0, 0, 0]])
    assert trim_padding(ids).tolist() == [[5, 6, 9], [5, 9, 0]]
    assert trim_padding(torch.zeros(2, 4, dtype=torch.long)).shape == (2, 1)

    def tokenize(texts, n):
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for row, text in enumerate(texts):
            out[row, : len(text)] = torch.tensor([ord(c) for c in text])
        return out

    item = (torch.zeros(3, 4, 4),)
    batch = Collate(tokenize, 16, 4)([item + ("abcde", "ab"), item + ("abc", "ab")])
    assert batch.long_ids.shape == (2, 5) and batch.short_ids.shape == (2, 2)
