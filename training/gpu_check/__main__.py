"""``python3 -m training.gpu_check [--dry-run] [--out DIR] [--work DIR]`` (see __init__.py)."""

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from .. import synth
from ..__main__ import main as cli
from ..export.exporter import TOLERANCE, relative_difference, sample_inputs
from ..export.onnx_run import CPU_ONLY, run_onnx, runtime_providers, session_providers
from ..export.quantize import MIN_COSINE, cosines
from ..model.checkpoint import load_checkpoint, save_official
from ..model.clip import CLIP
from ..model.tokenizer import ClipTokenizer
from . import report as reports
from .sizes import DRY_RUN, GPU, clip77_config, published_peak

REPO_ROOT = Path(__file__).resolve().parents[2]
# ONNX Runtime's CUDA kernels and PyTorch's pick their own algorithms, whose float32 sums run in
# other orders than the CPU export check (1e-4); 1e-3 of the largest output is still far below
# what a wrong operator gives (a lost mask or bias moves outputs by several percent).
DEVICE_TOLERANCE = 1e-3
# A DDP run of one process computes what the single-process run does; only the GPU's
# non-deterministic reductions (atomic adds in backward) separate them, by far less than this.
DDP_BOUND = 0.01
LABELS = {"bf16": "bf16 autocast", "fp16": "fp16 autocast + scaler", "fp32": "fp32"}


class StageFailed(RuntimeError):
    """A stage did not produce what the next ones need; the message says why."""


def _write_shard(job) -> None:
    out, count, seed, size = job
    synth.write_dataset(out, count, seed, "sharegpt4v", size, 4)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _environment(device: str) -> dict:
    cuda = device == "cuda"
    nccl = torch.cuda.nccl.version() if cuda else None
    return {
        "device": torch.cuda.get_device_name() if cuda else f"CPU: {_cpu_name()}",
        "gpu_memory_gib": (
            round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None
        ),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        # torch 2.x gives (major, minor, patch), 1.13 one number (2708 for 2.7.8)
        "nccl": ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl,
        "python": platform.python_version(),
    }


def _ieee_float32() -> None:
    """fp32 means fp32: no TF32 in matrix products or convolutions (the flags torch 1.13 to 2.x
    read; newer versions warn that they have a successor, and still obey them)."""
    if torch.cuda.is_available():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False


class Check:
    def __init__(self, dry_run: bool, work: Path):
        self.size = DRY_RUN if dry_run else GPU
        self.device = "cpu" if dry_run else "cuda"
        self.work = work
        cores = os.cpu_count() or 1
        # dry run: one CPU thread, which on a busy machine is several times faster than more
        self.threads = 1 if dry_run else min(cores, 16)
        # dry run: load in-process (worker start-up would cost more than the decoding)
        self.workers = 0 if dry_run else max(1, min(14, cores - 2))
        if dry_run:
            self.precisions = ["bf16"]  # torch 1.13 has no fp16 autocast on the CPU
        else:
            self.precisions = ["bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp16"]
        self.stages: dict = {}
        self.checks: list = []
        self.runs: dict = {}
        self.logs: dict = {}
        self.onnx = {"runtime": "not run", "available": [], "used": "not run"}
        self.environment = _environment(self.device)
        self.peaks = published_peak(self.environment["device"])

    def record(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"gpu-check: {'pass' if ok else 'FAIL'}: {name}: {detail}", file=sys.stderr)
        return bool(ok)

    def stage(self, name: str, action):
        """Runs one stage, timed; a failure is recorded as a failed check and gives None."""
        print(f"gpu-check: {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            return action()
        except Exception as error:  # every failure belongs in the report, not a traceback
            self.record(name, False, f"{type(error).__name__}: {error}")
            return None
        finally:
            self.stages[name] = time.monotonic() - started

    def command(self, argv: list) -> None:
        """One ``python3 -m training`` command, in this process."""
        code = cli([str(value) for value in argv])
        if code != 0:
            raise StageFailed(f"'python3 -m training {argv[0]}' exited with {code}")

    def run(self) -> dict:
        started = time.monotonic()
        data = self.stage("synthetic scenes", self.make_data)
        vocab = data and self.stage("BPE vocabulary", lambda: self.make_vocab(data))
        longclip = vocab and self.stage("KPS stretch", lambda: self.make_model(vocab))
        if longclip:
            _ieee_float32()
            for precision in self.precisions + ["fp32"]:
                name = f"train {LABELS[precision]}"
                self.stage(name, lambda: self.train(precision, longclip, data, vocab))
            self.compare()
            primary = self.work / f"run-{self.precisions[0]}" / "longclip.pt"
            if primary.is_file():
                dirs = self.stage("ONNX export", lambda: self.export(primary, vocab))
                if dirs:
                    self.stage("ONNX on the device", lambda: self.check_onnx(primary, *dirs))
            self.stage("DDP under torchrun", lambda: self.ddp(longclip, data, vocab))
        total = time.monotonic() - started
        if self.device == "cuda":  # the design target; on a shared CPU a time proves nothing
            budget = self.size.budget_s
            self.record("time", total <= budget, f"{total:.0f} s (designed for under {budget} s)")
        return {
            "size": self.size.name,
            "passed": bool(self.checks) and all(check["ok"] for check in self.checks),
            "total_s": total,
            "budget_s": self.size.budget_s,
            "environment": self.environment,
            "peaks": self.peaks,
            "settings": self.size.__dict__,
            "runs": self.runs,
            "checks": self.checks,
            "onnx": self.onnx,
            "stages": self.stages,
        }

    def make_data(self) -> Path:
        """Renders the scenes in shards on every core, then one captions.jsonl over all."""
        size = self.size
        shards = max(1, min(os.cpu_count() or 1, size.images // 512))
        counts = [size.images // shards + (i < size.images % shards) for i in range(shards)]
        root = self.work / "data"
        jobs = [(root / f"shard{i}", count, i, size.image_size) for i, count in enumerate(counts)]
        if shards == 1:
            _write_shard(jobs[0])
        else:
            with ProcessPoolExecutor(shards) as pool:
                list(pool.map(_write_shard, jobs))
        lines = []
        for index, (shard, count, _, _) in enumerate(jobs):
            for line in (shard / "captions.jsonl").read_text().splitlines():
                row = json.loads(line)
                row["image"] = f"{shard.name}/{row['image']}"
                row["group"] += index * count  # groups of different shards are different
                lines.append(json.dumps(row))
        data = root / "captions.jsonl"
        data.write_text("\n".join(lines) + "\n")
        self.record("synthetic scenes", len(lines) == size.images, f"{len(lines)} scenes")
        return data

    def make_vocab(self, data: Path) -> Path:
        vocab = self.work / "bpe.txt.gz"
        self.command(["vocab", "--corpus", data, "--merges", self.size.merges, "--out", vocab])
        return vocab

    def make_model(self, vocab: Path) -> Path:
        """A random 77-position CLIP, stretched to 248 positions by the stretch command."""
        config = clip77_config(self.size, ClipTokenizer(vocab).vocab_size)
        torch.manual_seed(0)
        clip77, longclip = self.work / "clip77.pt", self.work / "longclip.pt"
        save_official(CLIP.random_init(config), clip77)
        self.command(["stretch", "--checkpoint", clip77, "--out", longclip])
        self.config = load_checkpoint(longclip)[0].config
        positions = (config.context_length, self.config.context_length)
        self.record(
            "KPS stretch",
            self.config.model_type == "longclip" and positions == (77, 248),
            f"{positions[0]} → {positions[1]} positions, {self.config.model_type}",
        )
        return longclip

    def train_argv(self, out: Path, steps: int, precision: str, longclip, data, vocab) -> list:
        size = self.size
        argv = ["train", "--checkpoint", longclip, "--data", data, "--vocab", vocab]
        argv += ["--out", out, "--steps", steps, "--batch-size", size.batch_size]
        argv += ["--lr", size.lr, "--warmup-steps", size.warmup_steps]
        argv += ["--pcm-components", size.pcm_components, "--workers", self.workers]
        argv += ["--device", self.device, "--threads", self.threads, "--seed", 0]
        argv += ["--log-every", 50]
        if size.context_length is not None:
            argv += ["--context-length", size.context_length]
        if precision == "fp32":
            return argv + ["--no-amp"]
        return argv + ["--amp", "--amp-dtype", precision]

    def train(self, precision: str, longclip: Path, data: Path, vocab: Path) -> None:
        out = self.work / f"run-{precision}"
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.command(self.train_argv(out, self.size.steps, precision, longclip, data, vocab))
        log = reports.read_log(out)
        self.logs[LABELS[precision]] = log
        peak = (self.peaks or {}).get(precision)
        run = reports.run_metrics(log, self.config, self.size.batch_size, peak)
        if self.device == "cuda":
            run["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        self.runs[LABELS[precision]] = run
        finite = all(math.isfinite(entry["loss"]) for entry in log)
        self.record(
            f"train {LABELS[precision]}",
            finite and len(log) == self.size.steps,
            f"{len(log)} steps, loss {run['loss_first']:.3f} → {run['loss_last']:.3f}",
        )

    def compare(self) -> None:
        reference = self.logs.get(LABELS["fp32"])
        for precision in self.precisions:
            name = f"loss curve: {LABELS[precision]} vs fp32"
            other = self.logs.get(LABELS[precision])
            if reference is None or other is None:
                self.record(name, False, "a run is missing")
                continue
            result = reports.compare_curves(
                [entry["loss"] for entry in reference], [entry["loss"] for entry in other]
            )
            self.runs[LABELS[precision]]["comparison"] = result
            failed = [key for key, ok in result["checks"].items() if not ok]
            self.record(
                name,
                result["ok"],
                f"first step {100 * result['first_step_relative_difference']:.2f}% apart (bound "
                f"{100 * reports.FIRST_STEP_BOUND:g}%); tenths of the run at most "
                f"{result['max_window_difference']:.4f} apart (bound {result['bound']:.4f}: "
                f"{100 * reports.CURVE_BOUND:g}% of fp32's gain {result['fp32_gain']:.3f})"
                + (f"; failed: {', '.join(failed)}" if failed else ""),
            )

    def export(self, checkpoint: Path, vocab: Path):
        fp32, fp16 = self.work / "model-fp32", self.work / "model-fp16"
        args = ["export", "--checkpoint", checkpoint, "--vocab", vocab, "--out", fp32]
        self.command(args + ["--name", "gpu-check", "--threads", self.threads])
        self.record("ONNX export fp32", True, f"checked against PyTorch on the CPU ({TOLERANCE:g})")
        args = ["quantize", "--precision", "fp16", "--model-dir", fp32, "--out", fp16]
        self.command(args + ["--threads", self.threads])
        self.record("ONNX fp16 copy", True, f"min cosine to fp32 ≥ {MIN_COSINE} on the CPU")
        return fp32, fp16

    def providers(self, model_file: Path):
        """The execution providers to run on: CUDA's (TF32 off where the option exists) when
        on a GPU and offered, else the CPU's; and the one that really runs."""
        runtime, available = runtime_providers()
        self.onnx.update(runtime=runtime, available=available)
        if self.device != "cuda" or "CUDAExecutionProvider" not in available:
            self.onnx["used"] = "CPUExecutionProvider"
            return CPU_ONLY
        for providers in (
            (("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"),
            ("CUDAExecutionProvider", "CPUExecutionProvider"),
        ):
            try:
                self.onnx["used"] = session_providers(model_file, providers)[0]
                return providers
            except Exception as error:  # an onnxruntime without the use_tf32 option
                self.onnx["note"] = f"CUDA provider options refused: {error}"
        raise StageFailed("onnxruntime offers CUDAExecutionProvider but cannot open a session")

    def check_onnx(self, checkpoint: Path, fp32: Path, fp16: Path) -> None:
        """Both model directories through onnxruntime on the device, against PyTorch there."""
        model = load_checkpoint(checkpoint)[0].to(self.device).eval()
        pixels, id_batches = sample_inputs(model)
        with torch.no_grad():
            expected = [model.encode_image(pixels.to(self.device)).cpu().numpy()]
            expected += [model.encode_text(ids.to(self.device)).cpu().numpy() for ids in id_batches]
        jobs = []
        for directory in (fp32, fp16):
            jobs.append(
                (str(directory / "vision.onnx"), "pixel_values", pixels.numpy(), "image_embeds")
            )
            text = str(directory / "text.onnx")
            jobs += [(text, "input_ids", ids.numpy(), "text_embeds") for ids in id_batches]
        providers = self.providers(fp32 / "vision.onnx")
        outputs = run_onnx(jobs, self.threads, providers)
        count = len(expected)
        where = f"{self.onnx['used']} vs PyTorch on {self.device}"
        worst = max(relative_difference(a, b) for a, b in zip(outputs[:count], expected))
        self.record(
            "ONNX fp32 on the device",
            worst <= DEVICE_TOLERANCE,
            f"{where}: max relative difference {worst:.2e} (bound {DEVICE_TOLERANCE:g})",
        )
        cosine = min(float(cosines(a, b).min()) for a, b in zip(outputs[count:], expected))
        self.record(
            "ONNX fp16 on the device",
            cosine >= MIN_COSINE,
            f"{where} (fp32): min cosine {cosine:.5f} (bound {MIN_COSINE})",
        )

    def ddp(self, longclip: Path, data: Path, vocab: Path) -> None:
        """``train`` under torchrun with one process: NCCL on a GPU, gloo on the CPU."""
        precision = self.precisions[0]
        out = self.work / "run-ddp"
        argv = self.train_argv(out, self.size.ddp_steps, precision, longclip, data, vocab)
        # stdout to a log file, stderr teed: torchrun 1.13 on Python 3.11 fails with its
        # defaults (its enum of streams loses the value 0), and the check reads stderr
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node", "1", "--redirects", "1", "--tee", "2"]
        command += ["-m", "training", *map(str, argv)]
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        )
        proc = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        backend = "nccl" if self.device == "cuda" else "gloo"
        expected_line = f"DistributedDataParallel: {backend} backend, world size 1"
        if proc.returncode != 0:
            raise StageFailed(f"torchrun exited with {proc.returncode}: {proc.stderr[-1500:]}")
        log = reports.read_log(out)
        single = [entry["loss"] for entry in self.logs.get(LABELS[precision], [])][: len(log)]
        losses = [entry["loss"] for entry in log]
        apart = (
            max(abs(a - b) / abs(b) for a, b in zip(losses, single))
            if len(single) == len(losses)
            else float("inf")
        )
        self.logs["DDP under torchrun"] = log
        self.record(
            f"DDP ({backend}, world size 1)",
            expected_line in proc.stderr and len(log) == self.size.ddp_steps and apart <= DDP_BOUND,
            f"{len(log)} steps under torchrun; "
            + ("" if expected_line in proc.stderr else "no DistributedDataParallel log line; ")
            + f"losses within {100 * apart:.3f}% of the single-process {LABELS[precision]} run "
            f"(bound {100 * DDP_BOUND:g}%)",
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/gpu-train-check.sh",
        description="The GPU training check (issue 29; docs/training.md, 'GPU check'): KPS + "
        "PCM training in mixed precision and fp32, ONNX export checked on the GPU, DDP under "
        "torchrun; a report in --out.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="the same stages on the CPU at tiny sizes"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "artifacts" / "gpu-train-check",
        help="report folder: report.md, report.json, losses.csv",
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="keep the data, checkpoints and models here (default: a "
        "temporary folder, removed at the end)",
    )
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "error: no CUDA device; run with --dry-run to check the stages on the CPU",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-train-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        check = Check(args.dry_run, work)
        report = check.run()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    reports.write(args.out, report, check.logs)
    print(reports.markdown(report))
    print(f"wrote {args.out}/report.md, report.json, losses.csv")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
