"""The train command end to end on a tiny random model and a tiny rendered dataset (CPU)."""

import json
import logging
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
from PIL import Image, ImageDraw

from training.__main__ import main
from training.model.checkpoint import load_checkpoint, save_official
from training.model.clip import CLIP, model_config
from training.tests.conftest import REPO_ROOT
from training.train.loop import lr_factor

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
RGB = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 160),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
SHAPES = ["square", "circle"]
# a tiny BPE vocabulary, so the test needs no downloaded file: 512 byte symbols + 4 merges + 2
MERGES = ["t h", "th e</w>", "a n", "i n"]
MODEL = {"preset": "tiny", "image_resolution": 32, "vision_layers": 1, "text_layers": 1}
FAST = ["--device", "cpu", "--threads", "1", "--workers", "0", "--no-amp", "--seed", "0"]


@pytest.fixture
def dataset(tmp_path):
    """Eight 48x40 images, one colour each, a square or a circle, with long and short captions."""
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for index, color in enumerate(COLORS):
        shape = SHAPES[index % 2]
        image = Image.new("RGB", (48, 40), (128, 128, 128))
        draw = ImageDraw.Draw(image)
        box = (8, 4, 40, 36)
        (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=RGB[color])
        image.save(images / f"{index}.png")
        long = (
            f"A {color} {shape} on a grey background. The {shape} fills most of the frame, "
            f"its {color} colour is flat."
        )
        lines.append(json.dumps({"image": f"images/{index}.png", "long": long}))
    data = tmp_path / "captions.jsonl"
    data.write_text("\n".join(lines) + "\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    config = tmp_path / "model.json"
    config.write_text(json.dumps(MODEL))
    return {"data": data, "vocab": vocab, "config": config, "root": tmp_path}


def _train(dataset, out, *extra):
    argv = ["train", "--data", str(dataset["data"]), "--vocab", str(dataset["vocab"])]
    argv += ["--out", str(out), "--context-length", "64", *FAST, *extra]
    assert main(argv) == 0
    return [json.loads(line) for line in (out / "train-log.jsonl").read_text().splitlines()]


def _tiny_model(model_type="longclip") -> CLIP:
    config = model_config("tiny", model_type)
    for key, value in MODEL.items():
        if key != "preset":
            setattr(config, key, value)
    config.vocab_size = 512 + len(MERGES) + 2
    return CLIP.random_init(config)


def test_a_few_steps_lower_the_loss_and_keep_the_first_20_positions(dataset, tmp_path):
    start = _tiny_model()
    save_official(start, tmp_path / "start.pt")
    before, _ = load_checkpoint(tmp_path / "start.pt")
    log = _train(
        dataset,
        tmp_path / "run",
        "--checkpoint",
        str(tmp_path / "start.pt"),
        "--steps",
        "10",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--warmup-steps",
        "2",
    )
    losses = [entry["loss"] for entry in log]
    assert [entry["step"] for entry in log] == list(range(1, 11))
    assert all(math.isfinite(loss) for loss in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses

    after, info = load_checkpoint(tmp_path / "run" / "longclip.pt")
    assert info["model_type"] == "longclip"
    # positions 0..19 come from the frozen table; 20.. from the trained one
    assert torch.equal(after.positional_embedding, before.positional_embedding)
    moved = (after.positional_embedding_res[20:40] - before.positional_embedding_res[20:40]).abs()
    assert (moved.amax(dim=1) > 1e-4).all()
    assert not torch.equal(after.visual.conv1.weight, before.visual.conv1.weight)

    final, final_info = load_checkpoint(tmp_path / "run" / "checkpoint-00000010.pt")
    assert final_info["step"] == 10
    assert torch.equal(final.positional_embedding_res, after.positional_embedding_res.float())


def test_group_aware_batching_uses_the_rows_group_keys(dataset, tmp_path):
    common = ["--init-config", str(dataset["config"]), "--steps", "2", "--batch-size", "4"]
    common += ["--batching", "groups", "--pcm-weight", "0.5"]
    with pytest.raises(SystemExit, match="needs a 'group' key"):
        _train(dataset, tmp_path / "ungrouped", *common)
    rows = [json.loads(line) for line in dataset["data"].read_text().splitlines()]
    dataset["data"].write_text(
        "".join(json.dumps({**row, "group": index // 2}) + "\n" for index, row in enumerate(rows))
    )
    log = _train(dataset, tmp_path / "grouped", *common)
    assert [entry["step"] for entry in log] == [1, 2]
    for entry in log:
        assert entry["loss"] == pytest.approx(entry["loss_long"] + 0.5 * entry["loss_short"])


def test_pcm_batch_random_draws_the_short_captions_batch_apart(dataset, tmp_path):
    rows = [json.loads(line) for line in dataset["data"].read_text().splitlines()]
    dataset["data"].write_text(
        "".join(json.dumps({**row, "group": index // 4}) + "\n" for index, row in enumerate(rows))
    )
    common = ["--init-config", str(dataset["config"]), "--steps", "4", "--batch-size", "4"]
    common += ["--batching", "groups", "--lr", "1e-3", "--warmup-steps", "1"]
    same = _train(dataset, tmp_path / "same", *common)
    apart = _train(dataset, tmp_path / "apart", *common, "--pcm-batch", "random")
    # same start, same long-caption batches: the first long terms agree, the short terms differ
    assert apart[0]["loss_long"] == pytest.approx(same[0]["loss_long"], rel=1e-6)
    assert apart[0]["loss_short"] != pytest.approx(same[0]["loss_short"], rel=1e-3)
    # the short-caption batches are drawn deterministically, so resuming gives the same losses
    saved = _train(dataset, tmp_path / "a", *common, "--pcm-batch", "random", "--save-every", "1")
    resumed = _train(
        dataset,
        tmp_path / "b",
        *common,
        "--pcm-batch",
        "random",
        "--resume",
        str(tmp_path / "a" / "checkpoint-00000003.pt"),
    )
    assert resumed[0]["loss"] == pytest.approx(saved[3]["loss"], rel=1e-6, abs=0)
    assert saved[3]["loss"] == pytest.approx(apart[3]["loss"], rel=1e-6, abs=0)


def test_resume_continues_with_the_same_losses(dataset, tmp_path):
    common = ["--init-config", str(dataset["config"]), "--steps", "4", "--batch-size", "4"]
    common += ["--lr", "1e-3", "--warmup-steps", "1"]
    straight = _train(dataset, tmp_path / "a", *common, "--save-every", "1")
    # two steps per epoch: resuming after step 3 restarts in the middle of the second epoch
    resumed = _train(
        dataset,
        tmp_path / "b",
        *common,
        "--resume",
        str(tmp_path / "a" / "checkpoint-00000003.pt"),
    )
    assert [entry["step"] for entry in resumed] == [4]
    assert resumed[0]["epoch"] == straight[3]["epoch"] == 1
    assert resumed[0]["loss"] == pytest.approx(straight[3]["loss"], rel=1e-6, abs=0)
    assert resumed[0]["lr"] == straight[3]["lr"]


def test_resume_auto_picks_the_newest_checkpoint(dataset, tmp_path):
    common = ["--init-config", str(dataset["config"]), "--batch-size", "4", "--lr", "1e-3"]
    _train(dataset, tmp_path / "run", *common, "--steps", "2", "--save-every", "1")
    log = _train(dataset, tmp_path / "run", *common, "--steps", "3", "--resume")
    assert [entry["step"] for entry in log] == [1, 2, 3]


def test_a_77_position_checkpoint_is_stretched_on_load(dataset, tmp_path):
    clip = _tiny_model("clip")
    clip.config.context_length = 77
    save_official(clip, tmp_path / "clip.pt")
    source, _ = load_checkpoint(tmp_path / "clip.pt")
    assert source.positional_embedding.shape[0] == 77
    start = ["--checkpoint", str(tmp_path / "clip.pt"), "--steps", "1", "--batch-size", "8"]
    _train(dataset, tmp_path / "run", *start)
    model, info = load_checkpoint(tmp_path / "run" / "longclip.pt")
    assert info["model_type"] == "longclip"
    assert model.positional_embedding.shape[0] == 248
    # KPS keeps the first 20 rows (the stretch computes in fp16, as the official code does)
    kept = source.positional_embedding[:20].half().float()
    assert torch.equal(model.positional_embedding[:20], kept)


def test_bad_rows_are_skipped_and_logged(dataset, tmp_path, caplog):
    (dataset["root"] / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with dataset["data"].open("a") as handle:
        handle.write(json.dumps({"image": "images/broken.png", "long": "A broken file."}) + "\n")
        handle.write(json.dumps({"image": "images/gone.png", "long": "A missing file."}) + "\n")
        handle.write(json.dumps({"image": "images/0.png", "long": ""}) + "\n")
    caplog.set_level(logging.INFO, logger="training.train")
    options = ["--init-config", str(dataset["config"]), "--epochs", "1", "--batch-size", "9"]
    log = _train(dataset, tmp_path / "run", *options, "--lr", "1e-3")
    assert len(log) == 1 and log[0]["samples"] == 8
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "9 usable rows; 2 rows skipped (1 empty caption, 1 missing image)" in messages
    assert "1 rows skipped (1 unreadable image)" in messages


def test_learning_rate_schedule_is_warmup_then_cosine():
    warmup, total = 10, 110
    assert lr_factor(0, warmup, total) == pytest.approx(0.1)
    assert lr_factor(9, warmup, total) == pytest.approx(1.0)
    assert lr_factor(10, warmup, total) == pytest.approx(1.0)
    assert lr_factor(60, warmup, total) == pytest.approx(0.5)
    assert lr_factor(110, warmup, total) == pytest.approx(0.0, abs=1e-12)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_match_one_process_with_the_same_global_batch(dataset, tmp_path):
    """Data-parallel training on 2 gloo processes (launched as torchrun would, through RANK,
    WORLD_SIZE and LOCAL_RANK) takes the same steps as one process with twice the batch: the
    features are gathered with gradients and DDP averages the gradients. PCM is off because its
    PCA runs per process (as in the official code), which one process cannot reproduce."""
    common = ["--init-config", str(dataset["config"]), "--steps", "3", "--lr", "1e-3"]
    common += ["--warmup-steps", "1", "--no-pcm"]
    single = _train(dataset, tmp_path / "one", *common, "--batch-size", "8")
    argv = [sys.executable, "-m", "training", "train", "--data", str(dataset["data"])]
    argv += ["--vocab", str(dataset["vocab"]), "--out", str(tmp_path / "two")]
    argv += ["--context-length", "64", *FAST, *common, "--batch-size", "4"]
    port = str(_free_port())
    workers = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank))
        env.update(LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
        workers.append(
            subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
        )
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors
    parallel = [json.loads(line) for line in (tmp_path / "two" / "train-log.jsonl").open()]
    assert [entry["samples"] for entry in parallel] == [8.0, 8.0, 8.0]
    # steps 2 and 3 are scored after one and two updates, so equal losses mean equal updates.
    # (Parameters are not compared element by element: Adam turns the rounding noise of
    # gradients that are mathematically zero, such as the attention key biases', into
    # lr-sized steps that differ between the two summation orders.)
    for one, two in zip(single, parallel):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
