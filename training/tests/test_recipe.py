"""The demo recipe: the smoke run end to end (CI), and the report's computed verdicts."""

import json
import shutil

import pytest

from training.__main__ import main
from training.recipe import sizing_flags
from training.recipe.config import MODELS, SMOKE, UNSEEN_MODELS
from training.recipe.findings import difference_verdict, effective_length

from .conftest import REPO_ROOT


def _node_ready():
    return shutil.which("node") is not None and (REPO_ROOT / "node_modules" / "tsx").is_dir()


@pytest.mark.skipif(not _node_ready(), reason="node and npm packages (npm ci) are needed")
def test_smoke_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out), "--threads", "1", "--jobs", "2"]) == 0

    model = out / "demo-model"
    config = json.loads((model / "config.json").read_text())
    assert config["name"] == "longclip-demo"
    assert config["model_type"] == "longclip" and config["context_length"] == 248
    # the demo model ships with the dense output for heat maps (64-px images, 16-px patches)
    assert config["vision"]["dense"] == {"output": "patch_embeds", "kind": "value", "grid": [4, 4]}
    for name in ("vision.onnx", "text.onnx", config["tokenizer"]["file"]):
        assert (model / name).is_file()
    gallery = json.loads((model / "gallery" / "gallery.json").read_text())
    assert len(gallery["items"]) == SMOKE["gallery_count"]
    for item in gallery["items"]:
        assert (model / "gallery" / item["file"]).is_file()
        assert item["caption"].startswith(item["short_caption"].rstrip("."))

    for name in MODELS:
        long = json.loads((out / "eval" / f"{name}-long.json").read_text())
        assert long["n"] == SMOKE["eval_count"]
        assert [p["max_tokens"] for p in long["sweep"]][-1] == 248
        zero = json.loads((out / "eval" / f"{name}-zeroshot.json").read_text())
        assert zero["n"] == SMOKE["eval_count"] and 0 <= zero["top1"] <= 1
        # descriptions in people's words: the generator's, and the person-written sets
        person = json.loads((out / "eval" / f"{name}-person.json").read_text())
        assert person["n"] == SMOKE["eval_count"]
        described = json.loads((out / "eval" / f"{name}-descriptions.json").read_text())
        assert {"demo-gallery", "seed101"} <= set(described["sets"])
    clip77 = json.loads((out / "eval" / "clip77-long.json").read_text())
    assert clip77["max_tokens"] == 77
    for name in UNSEEN_MODELS:
        unseen = json.loads((out / "eval" / f"{name}-unseen-long.json").read_text())
        assert unseen["n"] == SMOKE["unseen_count"]
    # PCM's short-caption term where the variant has PCM, not where it has none
    for name, pcm in (("longclip", True), ("pcm1", True), ("kps", False)):
        log = (out / "runs" / name / "train-log.jsonl").read_text().splitlines()
        assert all((json.loads(line)["loss_short"] is not None) == pcm for line in log), name

    report = (out / "reproduction.md").read_text()
    assert "Smoke run" in report and "effective-length.png" in report
    assert "against its targets (unseen set)" in report and "PCM weight" in report
    assert "Descriptions in people's words" in report and "person-written, demo-gallery" in report
    assert (out / "figures" / "effective-length.png").read_bytes()[:4] == b"\x89PNG"
    timings = json.loads((out / "timings.json").read_text())
    assert {"synth", "vocab", "pretrain CLIP-77", "fine-tune longclip", "export"} <= set(timings)
    assert timings["fine-tune pcm1"]["part_of"] == "fine-tune (all, 2 side by side)"
    # the report alone is regenerated from the artifacts
    (out / "reproduction.md").unlink()
    assert main(["demo", "--smoke", "--out", str(out), "--stages", "report"]) == 0
    assert (out / "reproduction.md").read_text() == report


def test_unknown_stage_is_refused(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--stages", "synth,train"]) == 2
    assert "unknown stage(s) train" in capsys.readouterr().err


def test_effective_length_is_first_budget_near_the_best():
    sweep = [
        {"max_tokens": 5, "r": 0.10},
        {"max_tokens": 20, "r": 0.40},
        {"max_tokens": 77, "r": 0.39},
        {"max_tokens": 248, "r": 0.41},
    ]
    # 95% of 0.41 is 0.3895: reached first at 20 tokens
    assert effective_length(sweep, "r") == 20


def test_verdict_counts_only_differences_beyond_two_standard_errors():
    # n=1000, p=0.5 each: standard error of the difference sqrt(0.5/1000) = 0.0224
    assert difference_verdict(0.55, 0.50, 1000) == "higher"
    assert difference_verdict(0.50, 0.55, 1000) == "lower"
    assert difference_verdict(0.52, 0.50, 1000) == "tied"


def test_sizing_flags_drop_stage_selection_and_output_locations():
    argv = ["--out", "x", "--stages", "report", "--width", "96", "--stages=eval", "--report=r.md"]
    assert sizing_flags(argv) == ["--width", "96"]
