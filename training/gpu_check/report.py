"""The GPU check's measurements: a run's speed from its train-log.jsonl, the loss-curve
comparison of a mixed-precision run with the fp32 one, and the report (markdown, JSON, the
loss curves as CSV)."""

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional

from ..model.clip import ModelConfig
from .sizes import PEAK_SOURCE, training_flops

# The loss-curve bound. Both runs start from the same weights and see the same batches, so they
# differ only by rounding: bf16 keeps 8 significant bits (relative step 2^-8), fp16 11. At the
# first step that is all there is, and the losses may differ by FIRST_STEP_BOUND of the loss.
# Later the trajectories drift apart as any two trainings do, but rounding noise far below the
# batch-to-batch gradient noise leaves the curve's course unchanged: the mean loss of each
# tenth of the run may differ by CURVE_BOUND of what the fp32 run gained (its first tenth's
# mean minus its last tenth's). A real fault is far outside: fp16 overflow that the gradient
# scaler keeps skipping leaves a flat curve (the whole gain apart), a loss computed in low
# precision or a wrong cast shifts every window. The gain itself must be at least MIN_GAIN of
# the starting loss, or the comparison says nothing.
FIRST_STEP_BOUND = 0.01
CURVE_BOUND = 0.10
MIN_GAIN = 0.05
WINDOWS = 10


def read_log(run_dir: Path) -> List[dict]:
    path = Path(run_dir) / "train-log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_metrics(
    log: List[dict], config: ModelConfig, batch_size: int, peak: Optional[float]
) -> dict:
    """Speed of a run: per-step medians (robust to the first step's warm-up and the loader's
    start of each epoch). ``compute`` leaves out the time a step waited for its batch."""
    seconds = statistics.median(entry["seconds"] for entry in log)
    compute = statistics.median(entry["seconds"] - entry["data_seconds"] for entry in log)
    flops = statistics.mean(
        training_flops(config, entry["text_positions"], entry["short_positions"]) for entry in log
    )
    tflops = batch_size * flops / compute / 1e12
    losses = [entry["loss"] for entry in log]
    return {
        "steps": len(log),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "wall_s": sum(entry["seconds"] for entry in log),
        "steps_per_s": 1 / seconds,
        "images_per_s": batch_size / seconds,
        "compute_steps_per_s": 1 / compute,
        "compute_images_per_s": batch_size / compute,
        "data_wait_share": statistics.median(entry["data_seconds"] for entry in log) / seconds,
        "model_tflops_per_step": batch_size * flops / 1e12,
        "model_tflops_per_s": tflops,
        "peak_tflops": peak,
        "peak_fraction": tflops / peak if peak else None,
    }


def _window_means(values: List[float]) -> List[float]:
    count = len(values)
    edges = [round(count * index / WINDOWS) for index in range(WINDOWS + 1)]
    return [statistics.mean(values[a:b]) for a, b in zip(edges, edges[1:]) if b > a]


def compare_curves(reference: List[float], other: List[float]) -> dict:
    """Whether ``other`` (a mixed-precision run) follows ``reference`` (fp32, same steps)."""
    if len(reference) != len(other) or len(reference) < WINDOWS:
        raise ValueError(
            f"the runs logged {len(reference)} and {len(other)} steps; the comparison needs the "
            f"same steps, at least {WINDOWS}"
        )
    finite = all(math.isfinite(value) for value in reference + other)
    ref_windows, other_windows = _window_means(reference), _window_means(other)
    gain = ref_windows[0] - ref_windows[-1]
    drift = max(abs(a - b) for a, b in zip(ref_windows, other_windows))
    first = abs(other[0] - reference[0]) / abs(reference[0])
    checks = {
        "finite": finite,
        "learns": gain >= MIN_GAIN * ref_windows[0],
        "first_step": first <= FIRST_STEP_BOUND,
        "curve": finite and drift <= CURVE_BOUND * max(gain, 0.0),
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "fp32_gain": gain,
        "max_window_difference": drift,
        "bound": CURVE_BOUND * max(gain, 0.0),
        "first_step_relative_difference": first,
        "reference_windows": ref_windows,
        "windows": other_windows,
    }


def runs_table(runs: Dict[str, dict]) -> List[str]:
    lines = [
        "| run | steps | loss first → last | steps/s | images/s | compute images/s | "
        "waiting for data | model TFLOP/s | of peak |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, run in runs.items():
        peak = "–" if run["peak_fraction"] is None else f"{100 * run['peak_fraction']:.1f}%"
        lines.append(
            f"| {name} | {run['steps']} | {run['loss_first']:.3f} → {run['loss_last']:.3f} | "
            f"{run['steps_per_s']:.2f} | {run['images_per_s']:.0f} | "
            f"{run['compute_images_per_s']:.0f} | {100 * run['data_wait_share']:.0f}% | "
            f"{run['model_tflops_per_s']:.3g} | {peak} |"
        )
    return lines


def checks_table(checks: List[dict]) -> List[str]:
    lines = ["| check | result | detail |", "| --- | --- | --- |"]
    for check in checks:
        result = "pass" if check["ok"] else "FAIL"
        lines.append(f"| {check['name']} | {result} | {check['detail']} |")
    return lines


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# GPU training check",
        "",
        f"{report['size']} on {env['device']} ({env['torch']}, CUDA {env['cuda']}, "
        f"cuDNN {env['cudnn']}, NCCL {env['nccl']}; Python {env['python']}); "
        f"{report['total_s']:.0f} s in all (designed for under {report['budget_s']} s). "
        f"{'All checks passed.' if report['passed'] else 'Some checks FAILED.'}",
        "",
        "## Training runs (same steps, data and initial weights)",
        "",
        *runs_table(report["runs"]),
        "",
        "steps/s and images/s are medians over the steps, with image loading; compute leaves "
        "out the time a step waited for its batch. Model FLOPs: matrix products of the forward "
        "pass times 3. Peaks: "
        + (
            ", ".join(f"{k} {v:g} TFLOP/s" for k, v in report["peaks"].items())
            if report["peaks"]
            else "none published for this device"
        )
        + f" ({PEAK_SOURCE}).",
        "",
        "## Checks",
        "",
        *checks_table(report["checks"]),
        "",
        f"ONNX Runtime: {report['onnx']['runtime']}; execution providers offered: "
        f"{', '.join(report['onnx']['available'])}; used: {report['onnx']['used']}.",
        "",
        "Stage times: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report["stages"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def write(out: Path, report: dict, logs: Dict[str, List[dict]]) -> None:
    """report.json, report.md and losses.csv (one row per step, one column per run)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    names = [name for name, log in logs.items() if log]
    with open(out / "losses.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["step", *names])
        for index in range(max((len(logs[name]) for name in names), default=0)):
            losses = [
                logs[name][index]["loss"] if index < len(logs[name]) else "" for name in names
            ]
            writer.writerow([index + 1, *losses])
