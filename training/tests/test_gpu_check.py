"""The GPU training check (training/gpu_check): its FLOP count, its loss-curve comparison, its
table of published peaks, and its dry run end to end (what CI runs; the CUDA run needs a GPU)."""

import json
import math
import subprocess

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from training.gpu_check import report
from training.gpu_check.sizes import (
    DRY_RUN,
    clip77_config,
    image_flops,
    published_peak,
    text_flops,
    training_flops,
)
from training.model.clip import CLIP

from .conftest import REPO_ROOT, needs_onnx_runtime

MATMULS = ("aten::conv2d", "aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")


@pytest.mark.skipif(
    int(torch.__version__.split(".")[0]) >= 2,
    reason="torch 2's attention runs scaled_dot_product_attention, which the profiler does not "
    "count",
)
def test_flops_are_what_the_profiler_counts():
    config = clip77_config(DRY_RUN, 500)
    config.vision_layers, config.text_layers = 2, 3
    model = CLIP.random_init(config).eval()
    pixels = torch.randn(3, 3, config.image_resolution, config.image_resolution)
    ids = torch.randint(1, 498, (5, 40))
    ids[:, -1] = 499
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        model.encode_image(pixels)
        model.encode_text(ids)
    counted = sum(event.flops for event in prof.key_averages() if event.key in MATMULS)
    assert counted == 3 * image_flops(config) + 5 * text_flops(config, 40)
    assert training_flops(config, 40, 12) == 3 * (
        image_flops(config) + text_flops(config, 40) + text_flops(config, 12)
    )


def _falling(steps=100, start=11.0, end=7.0):
    return [end + (start - end) * math.exp(-4 * step / steps) for step in range(steps)]


def test_a_curve_that_follows_fp32_passes():
    fp32 = _falling()
    # rounding-sized differences that grow over the run, as two trajectories drift apart
    mixed = [value * (1 + 0.0005 * math.sin(step) * step / 10) for step, value in enumerate(fp32)]
    result = report.compare_curves(fp32, mixed)
    assert result["ok"], result
    assert result["fp32_gain"] > 3


def test_a_curve_that_does_not_follow_fails():
    fp32 = _falling()
    flat = [fp32[0]] * len(fp32)  # an fp16 run whose updates the scaler keeps skipping
    assert report.compare_curves(fp32, flat)["checks"] == {
        "finite": True,
        "learns": True,
        "first_step": True,
        "curve": False,
    }
    shifted = [fp32[0] * 1.02] + fp32[1:]
    assert not report.compare_curves(fp32, shifted)["checks"]["first_step"]
    broken = fp32[:50] + [float("nan")] * 50
    assert not report.compare_curves(fp32, broken)["ok"]
    assert not report.compare_curves([11.0] * 100, [11.0] * 100)["checks"]["learns"]
    with pytest.raises(ValueError, match="same steps"):
        report.compare_curves(fp32, fp32[:-1])


def test_published_peaks_by_device_name():
    assert published_peak("NVIDIA H100 80GB HBM3") == {"bf16": 989.5, "fp16": 989.5, "fp32": 67.0}
    assert published_peak("NVIDIA H100 PCIe")["bf16"] == 756.5
    assert published_peak("NVIDIA H100 NVL")["fp32"] == 60.0
    assert published_peak("NVIDIA H200 NVL")["bf16"] == 835.5
    assert published_peak("NVIDIA H200")["bf16"] == 989.5
    assert published_peak("NVIDIA A100-SXM4-80GB") is None


@needs_onnx_runtime
def test_dry_run(tmp_path):
    """scripts/gpu-train-check.sh --dry-run: every stage on the CPU, every check passing, the
    report in a few small files and the tables printed."""
    out = tmp_path / "report"
    command = ["bash", "scripts/gpu-train-check.sh", "--dry-run", "--out", str(out)]
    proc = subprocess.run(
        command + ["--work", str(tmp_path / "work")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| run | steps |" in proc.stdout and "| check | result |" in proc.stdout
    files = sorted(path.name for path in out.iterdir())
    assert files == ["losses.csv", "report.json", "report.md"]
    assert all((out / name).stat().st_size < 16 * 2**20 for name in files)
    result = json.loads((out / "report.json").read_text())
    assert result["passed"] and result["size"] == DRY_RUN.name
    names = {check["name"]: check["ok"] for check in result["checks"]}
    assert names == {
        "synthetic scenes": True,
        "KPS stretch": True,
        "train bf16 autocast": True,
        "train fp32": True,
        "loss curve: bf16 autocast vs fp32": True,
        "ONNX export fp32": True,
        "ONNX fp16 copy": True,
        "ONNX fp32 on the device": True,
        "ONNX fp16 on the device": True,
        "DDP (gloo, world size 1)": True,
    }
    for run in result["runs"].values():
        assert run["steps"] == DRY_RUN.steps and run["images_per_s"] > 0
    losses = (out / "losses.csv").read_text().splitlines()
    assert losses[0] == "step,bf16 autocast,fp32,DDP under torchrun"
    assert len(losses) == 1 + DRY_RUN.steps
