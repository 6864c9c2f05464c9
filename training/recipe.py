"""``demo``: the miniature Long-CLIP reproduction, from rendered data to the committed demo model.

Stages (each can be re-run alone with ``--stages``; artifacts live in ``--out``):

1. ``synth``: a training set (ShareGPT4V layout, with hard-negative group keys), a held-out set
   and an unseen check set (Urban1k layout, other seeds), plus the sample gallery (a fourth
   seed).
2. ``vocab``: the project's BPE vocabulary learnt on the training captions.
3. ``pretrain``: a small CLIP from scratch on short captions with 77 positions ("CLIP-77").
4. ``finetune``: from CLIP-77, on long captions with group-aware (hard-negative) batches: the
   shipped Long-CLIP (KPS + PCM, PCM's short captions on a random batch of their own), and with
   fewer steps each the ablations: Long-CLIP again as their reference, direct fine-tuning
   (uniform interpolation, no PCM), KPS only, PCM only, random batches, PCM on the group batch
   (the official pairing) and the official PCM weight. ``--jobs`` runs fine-tunes side by
   side; ``--variants`` picks the models of finetune, export and eval.
5. ``export``: every model to ``OUT/models/NAME``; Long-CLIP and the gallery to ``--model-out``.
6. ``eval``: ``bench:urban`` (long captions with the token-budget sweep, short captions) and the
   zero-shot analogue (training/zeroshot.py) on the held-out set; the shipped model and CLIP-77
   also on the unseen set, against the demo model's targets.
7. ``report``: ``--report`` (Markdown) and the effective-length chart in ``--figures``.

Wall time and load average of every stage go to ``OUT/timings.json`` so that ``--stages report``
regenerates the report from trained artifacts.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import torch

from . import zeroshot

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("synth", "vocab", "pretrain", "finetune", "export", "eval", "report")


class Variant(NamedTuple):
    label: str
    steps: str  # the setting that gives its step count: finetune_steps or ablation_steps
    kps: bool  # KPS, else uniform interpolation
    pcm: str  # "off", "recipe" (the pcm_weight setting) or "official" (weight 1)
    batching: str  # groups (hard negatives) or random
    pcm_batch: str = "same"  # PCM's short captions on the same batch, or "random": their own

    def weight(self, settings: dict) -> float:
        return {"off": 0.0, "recipe": settings["pcm_weight"], "official": 1.0}[self.pcm]

    def options(self, settings: dict) -> list:
        """train.py options on top of the shared ones."""
        options = ["--stretch", "kps" if self.kps else "uniform", "--batching", self.batching]
        if self.pcm == "off":
            return options + ["--no-pcm"]
        return options + [
            "--pcm-weight",
            str(self.weight(settings)),
            "--pcm-components",
            str(settings["pcm_components"]),
            "--pcm-batch",
            self.pcm_batch,
        ]


SHIP, ABLATE = "finetune_steps", "ablation_steps"
# All start from CLIP-77. "longclip" is the shipped model; the others are the ablations, all
# with ablation_steps, "reference" being the shipped recipe with those steps; each ablation
# changes one thing of it.
VARIANTS = {
    "longclip": Variant("Long-CLIP (KPS + PCM), shipped", SHIP, True, "recipe", "groups", "random"),
    "reference": Variant("Long-CLIP (KPS + PCM)", ABLATE, True, "recipe", "groups", "random"),
    "direct": Variant("Direct fine-tuning (uniform, no PCM)", ABLATE, False, "off", "groups"),
    "kps": Variant("KPS only (no PCM)", ABLATE, True, "off", "groups"),
    "pcm": Variant("PCM only (uniform + PCM)", ABLATE, False, "recipe", "groups", "random"),
    "random": Variant("Long-CLIP, random batches", ABLATE, True, "recipe", "random", "random"),
    "samebatch": Variant(
        "Long-CLIP, PCM on the group batch", ABLATE, True, "recipe", "groups", "same"
    ),
    "pcm1": Variant("Long-CLIP, PCM weight 1", ABLATE, True, "official", "groups", "random"),
}
BASELINE = "clip77"
MODELS = (BASELINE, *VARIANTS)
# evaluated on the unseen set too, for the targets
UNSEEN_MODELS = (BASELINE, "longclip")
LABELS = {
    BASELINE: "CLIP-77 (pre-trained, short captions)",
    **{k: v.label for k, v in VARIANTS.items()},
}
# The recipe for models/demo. Fine-tuning: lr 1e-4 and random batches never left chance among
# a group's four images (issue 17's probe); lr 5e-4 with whole groups in each batch learns the
# details. On those group batches PCM's short-caption term sees only 8 different short captions
# (a group's four images share one), and short-caption retrieval fell far below CLIP-77's; on a
# random batch of its own it meets 32. Weight and steps were chosen on the held-out set (seed 1),
# never the unseen one, as the highest long-caption R@1 whose short-caption R@5 stays within
# noise of CLIP-77's, among weight 0.5 for 800 and 1200 steps and 0.35 for 1200 (the
# long-caption gain grows with the steps; docs/training.md has the figures). Fine-tuning
# batches of 32 (8 groups) halve the cost of a step; PCM keeps 8 components, a quarter of the
# batch as the official 32 of 128 per GPU. The ablations run with fewer steps to keep the whole
# recipe within time.
FULL = {
    "train_count": 8192,
    "eval_count": 1000,
    "unseen_count": 300,
    "gallery_count": 36,
    "image_size": 64,
    "width": 64,
    "layers": 2,
    "embed_dim": 64,
    "patch": 8,
    "batch_size": 64,
    "pretrain_steps": 1500,
    "finetune_batch_size": 32,
    "finetune_steps": 1200,
    "ablation_steps": 400,
    "pretrain_lr": 5e-4,
    "finetune_lr": 5e-4,
    "pcm_weight": 0.35,
    "pcm_components": 8,
}
SMOKE = {
    **FULL,
    "train_count": 64,
    "eval_count": 24,
    "unseen_count": 12,
    "gallery_count": 8,
    "width": 64,
    "layers": 1,
    "embed_dim": 64,
    "patch": 16,
    "batch_size": 16,
    "finetune_batch_size": 16,
    "pretrain_steps": 2,
    "finetune_steps": 2,
    "ablation_steps": 2,
}
TRAIN_SEED, EVAL_SEED, GALLERY_SEED, UNSEEN_SEED = 0, 1, 2, 3
VOCAB_MERGES = 400
# The shipped model's targets on the unseen set (issue 17): R@1 at 248 tokens at least
# TARGET_R1, and at least TARGET_GAIN above R@1 with captions cut to 20 tokens, both directions.
TARGET_R1, TARGET_GAIN = 0.5, 0.10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo"), help="work directory")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny data and a few steps, every stage (CI); writes only inside --out",
    )
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated subset of {','.join(STAGES)} (default: all)",
    )
    parser.add_argument(
        "--model-out",
        type=Path,
        help="where Long-CLIP and the gallery go (default models/demo; --smoke: OUT/demo-model)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="Markdown report (default docs/reproduction.md; --smoke: OUT/reproduction.md)",
    )
    parser.add_argument(
        "--figures", type=Path, help="chart directory (default docs/figures; --smoke: OUT/figures)"
    )
    for key, value in FULL.items():
        kind = float if isinstance(value, float) else int
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            type=kind,
            help=f"default {value} ({SMOKE[key]} with --smoke)",
        )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads per process (default: cores)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="fine-tunes run side by side (default 1)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(MODELS),
        help=f"comma-separated models the finetune, export and eval stages run (default all: "
        f"{','.join(MODELS)}; {BASELINE} is the pre-trained model, so finetune skips it)",
    )


def settings_from_args(args) -> dict:
    base = SMOKE if args.smoke else FULL
    chosen = {key: getattr(args, key) for key in FULL if getattr(args, key) is not None}
    return {**base, **chosen, "smoke": args.smoke, "threads": args.threads, "jobs": args.jobs}


class LoadSampler:
    """Samples the 1-minute load average every few seconds while a stage runs."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])


class Recipe:
    def __init__(self, out: Path, settings: dict, model_out: Path, report: Path, figures: Path):
        self.out = out
        self.settings = settings
        self.model_out = model_out
        self.report = report
        self.figures = figures
        self.train_dir = out / "data" / "train"
        self.eval_dir = out / "data" / "eval"
        self.unseen_dir = out / "data" / "unseen"
        self.gallery_src = out / "data" / "gallery"
        self.vocab = out / "vocab.txt"
        self.runs = out / "runs"
        self.models = out / "models"
        self.results = out / "eval"
        self.timings_path = out / "timings.json"
        self._timings_lock = threading.Lock()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _read_json(self, path: Path, default):
        return json.loads(path.read_text()) if path.is_file() else default

    def _record(self, key: str, seconds: float, sampler: LoadSampler, part_of: str) -> None:
        entry = {
            "seconds": round(seconds, 1),
            "load_mean": round(sum(sampler.samples) / len(sampler.samples), 2),
            "load_max": round(max(sampler.samples), 2),
            "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        if part_of:
            entry["part_of"] = part_of
        with self._timings_lock:
            timings = self._read_json(self.timings_path, {})
            timings[key] = entry
            self.timings_path.write_text(json.dumps(timings, indent=1) + "\n")

    def timed(self, key: str, action, part_of: str = "") -> None:
        """Runs ``action`` and records its wall time; ``part_of`` names the stage whose wall
        time already includes it (runs side by side), so that totals count it once."""
        print(f"demo: {key} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        with LoadSampler() as sampler:
            action()
        seconds = time.monotonic() - started
        self._record(key, seconds, sampler, part_of)
        print(f"demo: {key} done in {seconds:.1f}s", file=sys.stderr, flush=True)

    def python(self, *argv: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        subprocess.run([sys.executable, "-m", "training", *argv], check=True, env=env)

    def node_bench(self, *argv: str) -> None:
        command = ["node", "--import", "tsx", "scripts/bench-urban.ts", *argv]
        subprocess.run(command, check=True, cwd=REPO_ROOT, stdout=sys.stderr)

    # -- stages --------------------------------------------------------------------------------

    def synth(self) -> None:
        s = self.settings
        for out, count, seed, layout, size in (
            (self.train_dir, s["train_count"], TRAIN_SEED, "sharegpt4v", s["image_size"]),
            (self.eval_dir, s["eval_count"], EVAL_SEED, "urban1k", s["image_size"]),
            (self.unseen_dir, s["unseen_count"], UNSEEN_SEED, "urban1k", s["image_size"]),
            (self.gallery_src, s["gallery_count"], GALLERY_SEED, "urban1k", 128),
        ):
            shutil.rmtree(out, ignore_errors=True)
            self.python(
                "synth",
                "--out",
                str(out),
                "--count",
                str(count),
                "--seed",
                str(seed),
                "--layout",
                layout,
                "--size",
                str(size),
            )

    def build_vocab(self) -> None:
        self.python(
            "vocab",
            "--corpus",
            str(self.train_dir / "captions.jsonl"),
            "--merges",
            str(VOCAB_MERGES),
            "--out",
            str(self.vocab),
        )

    def model_config_path(self) -> Path:
        s = self.settings
        path = self.out / "model-config.json"
        config = {
            "preset": "tiny",
            "embed_dim": s["embed_dim"],
            "image_resolution": s["image_size"],
            "vision_patch_size": s["patch"],
            "vision_width": s["width"],
            "vision_layers": s["layers"],
            "text_width": s["width"],
            "text_layers": s["layers"],
        }
        path.write_text(json.dumps(config, indent=1) + "\n")
        return path

    def _train(self, name: str, steps: int, lr: float, batch_size: int, extra: list) -> None:
        s = self.settings
        out = self.runs / name
        shutil.rmtree(out, ignore_errors=True)
        self.python(
            "train",
            "--data",
            str(self.train_dir / "captions.jsonl"),
            "--vocab",
            str(self.vocab),
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--batch-size",
            str(batch_size),
            "--lr",
            str(lr),
            "--warmup-steps",
            str(max(1, steps // 10)),
            "--seed",
            str(TRAIN_SEED),
            "--threads",
            str(s["threads"]),
            "--workers",
            "1",
            "--log-every",
            "25",
            *extra,
        )

    def pretrain(self) -> None:
        s = self.settings
        self._train(
            BASELINE,
            s["pretrain_steps"],
            s["pretrain_lr"],
            s["batch_size"],
            [
                "--init-config",
                str(self.model_config_path()),
                "--model-type",
                "clip",
                "--caption",
                "short",
                "--no-pcm",
            ],
        )

    def finetune(self, name: str) -> None:
        s = self.settings
        variant = VARIANTS[name]
        start = self.runs / BASELINE / "clip.pt"
        self._train(
            name,
            s[variant.steps],
            s["finetune_lr"],
            s["finetune_batch_size"],
            ["--checkpoint", str(start), "--caption", "long", *variant.options(s)],
        )

    def finetune_all(self, names: list) -> None:
        """The variants ``names``, ``jobs`` at a time (each a process with ``threads`` torch
        threads)."""
        jobs = max(1, self.settings["jobs"])
        part_of = f"fine-tune (all, {jobs} side by side)" if jobs > 1 else ""

        def run_all():
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                runs = [
                    pool.submit(
                        self.timed, f"fine-tune {name}", lambda v=name: self.finetune(v), part_of
                    )
                    for name in names
                ]
                for run in runs:
                    run.result()

        if part_of:
            self.timed(part_of, run_all)
        else:
            run_all()

    def checkpoint(self, name: str) -> Path:
        return self.runs / name / ("clip.pt" if name == BASELINE else "longclip.pt")

    def export(self, name: str) -> None:
        out = self.models / name
        shutil.rmtree(out, ignore_errors=True)
        label = "longclip-demo" if name == "longclip" else f"demo-{name}"
        self.python(
            "export",
            "--checkpoint",
            str(self.checkpoint(name)),
            "--vocab",
            str(self.vocab),
            "--out",
            str(out),
            "--name",
            label,
            "--threads",
            str(self.settings["threads"]),
        )

    def publish(self) -> None:
        """Long-CLIP's model directory and the gallery into --model-out."""
        source = self.models / "longclip"
        self.model_out.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if path.is_file():
                shutil.copyfile(path, self.model_out / path.name)
        gallery = self.model_out / "gallery"
        shutil.rmtree(gallery, ignore_errors=True)
        gallery.mkdir()
        labels = json.loads((self.gallery_src / "labels.json").read_text())
        items = []
        for image in sorted((self.gallery_src / "image").glob("*.jpg")):
            name = image.stem
            shutil.copyfile(image, gallery / image.name)
            items.append(
                {
                    "file": image.name,
                    "caption": (self.gallery_src / "caption" / f"{name}.txt").read_text().strip(),
                    "short_caption": (self.gallery_src / "short" / f"{name}.txt")
                    .read_text()
                    .strip(),
                    "label": labels[name],
                    "group": int(name) // 4,
                }
            )
        manifest = {
            "format": "longclip-gallery",
            "version": 1,
            "description": "Rendered synthetic scenes (training.synth, seed "
            f"{GALLERY_SEED}, not seen in training); groups of 4 share their first sentence.",
            "items": items,
        }
        (gallery / "gallery.json").write_text(json.dumps(manifest, indent=1) + "\n")

    def bench(self, name: str, data: Path, prefix: str) -> None:
        """bench:urban on ``data``: long captions with the budget sweep, then short captions."""
        model = str(self.models / name)
        sweep = ["--sweep", "--chart", str(self.results / f"{prefix}-sweep.png")]
        for kind, subdir, extra in (("long", "caption", sweep), ("short", "short", [])):
            self.node_bench(
                "--data",
                str(data),
                "--model",
                model,
                "--captions",
                subdir,
                "--json",
                str(self.results / f"{prefix}-{kind}.json"),
                *extra,
            )

    def evaluate(self, name: str) -> None:
        self.results.mkdir(parents=True, exist_ok=True)
        self.bench(name, self.eval_dir, name)
        if name in UNSEEN_MODELS:
            self.bench(name, self.unseen_dir, f"{name}-unseen")
        torch.set_num_threads(self.settings["threads"])
        result = zeroshot.zero_shot_accuracy(self.checkpoint(name), self.vocab, self.eval_dir)
        (self.results / f"{name}-zeroshot.json").write_text(json.dumps(result, indent=1) + "\n")

    # -- report --------------------------------------------------------------------------------

    def chart(self, results: dict) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        path = self.figures / "effective-length.png"
        series = []
        for name, short in ((BASELINE, "CLIP-77"), ("longclip", "Long-CLIP")):
            sweep = results[name]["long"]["sweep"]
            for key, direction in (("i2t_r1", "I2T"), ("t2i_r1", "T2I")):
                points = [[p["max_tokens"], p[key]] for p in sweep]
                series.append({"label": f"{short} {direction} R@1", "points": points})
        spec = {
            "path": str(path.resolve()),
            "series": series,
            "options": {
                "title": "R@1 against caption token budget "
                f"(held-out set, n={results['longclip']['long']['n']})",
                "xLabel": "caption tokens kept (start and end included)",
                "yLabel": "R@1",
            },
        }
        script = (
            "import { writeLineChartPng } from './src/eval/chart.ts';"
            "import { readFileSync } from 'node:fs';"
            "const s = JSON.parse(readFileSync(0, 'utf8'));"
            "await writeLineChartPng(s.path, s.series, s.options);"
        )
        subprocess.run(
            ["node", "--import", "tsx", "--input-type=module", "-e", script],
            input=json.dumps(spec),
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
        return path

    def load_results(self) -> dict:
        results = {}
        for name in MODELS:
            parts = {k: self.results / f"{name}-{k}.json" for k in ("long", "short", "zeroshot")}
            if name in UNSEEN_MODELS:
                parts.update(
                    {
                        f"unseen-{k}": self.results / f"{name}-unseen-{k}.json"
                        for k in ("long", "short")
                    }
                )
            if all(p.is_file() for p in parts.values()):
                results[name] = {k: json.loads(p.read_text()) for k, p in parts.items()}
        return results

    def write_report(self) -> None:
        results = self.load_results()
        missing = [m for m in (BASELINE, "longclip") if m not in results]
        if missing:
            raise SystemExit(
                f"error: no evaluation results for {', '.join(missing)}; run " "--stages eval first"
            )
        chart = self.chart(results)
        recipe = self._read_json(self.out / "recipe.json", {})
        timings = self._read_json(self.timings_path, {})
        text = render_report(recipe, timings, results, os.path.relpath(chart, self.report.parent))
        self.report.parent.mkdir(parents=True, exist_ok=True)
        self.report.write_text(text)
        print(f"demo: wrote {self.report} and {chart}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Report rendering


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def effective_length(sweep: list, key: str, fraction: float = 0.95) -> int:
    """The smallest token budget at which R@1 reaches ``fraction`` of its best over the sweep."""
    best = max(p[key] for p in sweep)
    return min(p["max_tokens"] for p in sweep if p[key] >= fraction * best)


def difference_verdict(a: float, b: float, n: int) -> str:
    """'higher'/'lower' when |a-b| exceeds two standard errors of the difference, else 'tied'."""
    se = math.sqrt(max(a * (1 - a) + b * (1 - b), 1e-12) / max(n, 1))
    if a - b > 2 * se:
        return "higher"
    if b - a > 2 * se:
        return "lower"
    return "tied"


def _seconds(value: float) -> str:
    return f"{value / 60:.1f} min" if value >= 90 else f"{value:.0f} s"


def _label(name: str) -> str:
    """The label without its parenthesised details."""
    return LABELS[name].split(" (")[0]


def _steps(name: str, settings: dict) -> str:
    if name == BASELINE:
        return f"{settings['pretrain_steps']} (pre-training)"
    return str(settings[VARIANTS[name].steps])


def _at(sweep: list, budget: int, key: str) -> float:
    return next(p[key] for p in sweep if p["max_tokens"] == budget)


def render_report(recipe: dict, timings: dict, results: dict, chart: str) -> str:
    s = {**FULL, **recipe.get("settings", {})}
    lines = [
        "# Long-CLIP's findings in miniature",
        "",
        "<!-- generated by `npm run demo:train` (training/recipe.py); edit the recipe, not this "
        "file -->",
        "",
        "Real Long-CLIP weights and Urban1k cannot be downloaded here, so this report trains a "
        "small CLIP from scratch on rendered scenes (`python3 -m training synth`) and repeats "
        "the paper's comparisons on a held-out synthetic set. Every number below comes from the "
        "run recorded here; regenerate everything with",
        "",
        "```",
        "npm run demo:train" + (f" -- {recipe['flags']}" if recipe.get("flags") else ""),
        "```",
        "",
        "or only this report from the trained artifacts with "
        "`npm run demo:train -- --stages report` (add the same `--out`).",
        "",
        "## Setup",
        "",
    ]
    changed = {k: v for k, v in FULL.items() if s[k] != v}
    present = [name for name in MODELS if name in results]
    absent = [name for name in MODELS if name not in results]
    groups_per_batch = s["finetune_batch_size"] // 4
    lines += [
        f"- Data: {s['train_count']} training images (ShareGPT4V layout, seed {TRAIN_SEED}), "
        f"{s['eval_count']} held-out images (Urban1k layout, seed {EVAL_SEED}) and "
        f"{s['unseen_count']} unseen images for the shipped model's targets (Urban1k layout, "
        f"seed {UNSEEN_SEED}), all {s['image_size']} px, in hard-negative groups of 4 that share "
        "the first sentence. Vocabulary: the project's BPE learnt on the training captions (at "
        f"most {VOCAB_MERGES} merges).",
        f"- Model: ViT with patch {s['patch']} at {s['image_size']} px and a text "
        f"transformer, each with {s['layers']} transformer layers of width {s['width']}, "
        f"embedding {s['embed_dim']}; CLIP-77 has 77 positions, the fine-tuned models 248 "
        "(the first 20 kept and frozen).",
        f"- CLIP-77: {s['pretrain_steps']} steps from random initialisation on short captions, "
        f"batch {s['batch_size']}, lr {s['pretrain_lr']:g} (AdamW, warm-up then cosine).",
        "- Fine-tuning, every model from CLIP-77 on long captions, batch "
        f"{s['finetune_batch_size']}, lr "
        f"{s['finetune_lr']:g}: the shipped Long-CLIP (`models/demo`) {s['finetune_steps']} "
        f"steps, each ablation {s['ablation_steps']} steps (with 'Long-CLIP' itself again as "
        "their reference). These learning rates are for a from-scratch miniature; the official "
        "1e-6 is for real CLIP weights.",
        "- Batches are group-aware (`train --batching groups`: whole hard-negative groups, "
        f"{groups_per_batch} groups of 4 per batch) unless marked random. PCM's short-caption "
        "term is computed on a batch of its own (`--pcm-batch random`: a second batch of the "
        "same size drawn in random order) unless marked 'on the group batch' (the official "
        f"pairing), has weight {s['pcm_weight']:g} (`--pcm-weight`; the official weight is 1) "
        f"unless marked, and keeps {s['pcm_components']} principal components (a quarter of "
        "the batch, as the official 32 of 128 per GPU).",
        f"- Torch threads: {s['threads']} per process, {s['jobs']} fine-tune(s) side by side"
        + (
            f" (this machine has {os.cpu_count()} cores and was shared with other jobs)"
            if s["threads"] < (os.cpu_count() or 1)
            else ""
        )
        + f"; seeds: training {TRAIN_SEED}, held-out {EVAL_SEED}, gallery {GALLERY_SEED}, "
        f"unseen {UNSEEN_SEED}.",
    ]
    if s.get("smoke"):
        lines.append(
            "- **Smoke run** (`--smoke`): sizes are for CI only; the numbers mean nothing."
        )
    elif changed:
        listed = ", ".join(f"{k} {s[k]} (default {v})" for k, v in changed.items())
        lines.append(
            f"- **Changed from the defaults**: {listed}. `npm run demo:train` without "
            "options runs the defaults."
        )
    if absent:
        lines.append(
            "- **Not run for this report** (no results, so left out of every table, and the "
            "claims that need them are marked 'not measured'): "
            + ", ".join(LABELS[name] for name in absent)
            + f". Run them with `--stages finetune,export,eval --variants {','.join(absent)}`, "
            "then `--stages report`."
        )
    if timings:
        lines += [
            "",
            "Wall time on this machine (2 cores; load average = 1-minute load sampled "
            "during the stage; indented rows ran side by side within the row above them). Each "
            "row is the latest run of its stage (`--stages` and `--variants` re-run parts), so "
            "the total adds up stages that may come from different runs; 'finished' tells them "
            "apart:",
            "",
            "| stage | wall time | load avg (mean / max) | finished |",
            "| --- | ---: | ---: | --- |",
        ]
        for key, t in timings.items():
            name = f"↳ {key}" if t.get("part_of") else key
            lines.append(
                f"| {name} | {_seconds(t['seconds'])} | {t['load_mean']:.1f} / "
                f"{t['load_max']:.1f} | {t['finished']} |"
            )
        total = sum(t["seconds"] for t in timings.values() if not t.get("part_of"))
        lines.append(f"| **total** | {_seconds(total)} | | |")

    n = results["longclip"]["long"]["n"]
    lines += ["", "## The shipped model against its targets (unseen set)", ""]
    lines += target_lines(results)

    def retrieval_table(kind: str) -> list:
        rows = [
            "| model | steps | I2T R@1 | I2T R@5 | I2T R@10 | T2I R@1 | T2I R@5 | T2I R@10 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in present:
            r = results[name][kind]
            rows.append(
                f"| {LABELS[name]} | {_steps(name, s)} | "
                + " | ".join(pct(r[d][k]) for d in ("i2t", "t2i") for k in ("r1", "r5", "r10"))
                + " |"
            )
        return rows

    lines += [
        "",
        "## Long-caption retrieval (cf. the paper's Table 1, Urban1k)",
        "",
        f"Held-out set, {n} image–caption pairs, recalls in %. CLIP-77 reads the first 77 "
        "tokens of each caption (the rest is cut, as CLIP does); the others read up to 248.",
        "",
    ]
    lines += retrieval_table("long")
    lines += [
        "",
        "## Short-caption retrieval (cf. Table 2, COCO/Flickr30k)",
        "",
        "Same images, each queried with its one-sentence short caption. Four images of a "
        "group share that sentence, so R@1 is bounded by the chance of picking the right "
        "member (about 25% when the group is found), while R@5/R@10 show whether the "
        "group is found.",
        "",
    ]
    lines += retrieval_table("short")
    z = results["longclip"]["zeroshot"]
    lines += [
        "",
        "## Zero-shot classification analogue (cf. Table 3, ImageNet etc.)",
        "",
        f"Class = the salient object's colour + shape ({z['classes']} classes present in "
        f"the held-out set, {z['n']} images); class embedding = mean over the prompts "
        + ", ".join(f"“{t.format('{label}')}”" for t in z["templates"])
        + ". Computed with the PyTorch checkpoints (training/zeroshot.py).",
        "",
        "| model | top-1 accuracy % |",
        "| --- | ---: |",
    ]
    for name in present:
        lines.append(f"| {LABELS[name]} | {pct(results[name]['zeroshot']['top1'])} |")

    lines += [
        "",
        "## Ablations: KPS and PCM (cf. Tables 4–5), batching, PCM's batch and weight",
        "",
        f"All fine-tuned from the same CLIP-77 with {s['ablation_steps']} steps and the same "
        "data and seed. 'at 20' = long captions cut to 20 tokens, about the first sentence: a "
        "model that gains nothing past it scores the same at 248.",
        "",
        "| KPS | PCM weight | batches | PCM's batch | model | long I2T R@1 | long T2I R@1 "
        "| long T2I R@1 at 20 | short I2T R@5 | short T2I R@5 | zero-shot |",
        "| :---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in (a for a in ABLATIONS if a in results):
        v, r = VARIANTS[name], results[name]
        lines.append(
            f"| {'✓' if v.kps else ''} | {v.weight(s):g} | {v.batching} | "
            f"{'' if v.pcm == 'off' else PCM_BATCH_NAMES[v.pcm_batch]} | {LABELS[name]} | "
            f"{pct(r['long']['i2t']['r1'])} | {pct(r['long']['t2i']['r1'])} | "
            f"{pct(_at(r['long']['sweep'], 20, 't2i_r1'))} | {pct(r['short']['i2t']['r5'])} | "
            f"{pct(r['short']['t2i']['r5'])} | {pct(r['zeroshot']['top1'])} |"
        )
    lines += [
        "",
        "Why batching may matter: 'random' batches almost never hold a sample's three hard "
        "negatives, so the first sentence alone separates a batch and the loss has little reason "
        "to read further; 'groups' batches hold whole groups, and only the details tell their "
        "members apart (whether that shows here: the verdicts below). "
        "PCM's batch: with whole groups in a batch, four images share each short caption, so "
        f"a batch of {groups_per_batch} groups gives the short-caption term only "
        f"{groups_per_batch} different captions to tell apart (random batches give "
        f"{s['finetune_batch_size']}). Counting identical short captions as shared positives "
        "(spreading each target over the copies) leaves CLIP's loss exactly as it is, since "
        "identical captions have equal logits "
        "(`test_identical_captions_as_shared_positives_give_the_same_loss` in "
        "training/tests/test_pcm.py); the levers studied here are the batch the short-caption "
        "term sees ('the batch': the group batch, 'its own': a second, random batch) and its "
        "weight.",
    ]

    budgets = [p["max_tokens"] for p in results["longclip"]["long"]["sweep"]]
    lines += [
        "",
        "## Effective length (cf. Figure 1 / Section 3.1)",
        "",
        "Long-caption R@1 with every caption cut to a token budget (start and end "
        "included), `bench:urban --sweep`. Cut = share of captions longer than the budget.",
        "",
        f"![effective length]({chart})",
        "",
        "| budget | " + " | ".join(str(b) for b in budgets) + " |",
        "| --- | " + " | ".join("---:" for _ in budgets) + " |",
    ]
    for name in present:
        for key, direction in (("i2t_r1", "I2T"), ("t2i_r1", "T2I")):
            sweep = results[name]["long"]["sweep"]
            lines.append(
                f"| {LABELS[name]} {direction} | " + " | ".join(pct(p[key]) for p in sweep) + " |"
            )
    cut = results["longclip"]["long"]["sweep"]
    lines.append("| captions cut | " + " | ".join(pct(p["cut"]) for p in cut) + " |")
    lines += [
        "",
        "Effective length (smallest budget reaching 95% of the model's best R@1 over "
        "the sweep):",
        "",
    ]
    for name in (BASELINE, "longclip"):
        sweep = results[name]["long"]["sweep"]
        lines.append(
            f"- {LABELS[name]}: I2T {effective_length(sweep, 'i2t_r1')} tokens, "
            f"T2I {effective_length(sweep, 't2i_r1')} tokens."
        )
    best = max(p[k] for p in results["longclip"]["long"]["sweep"] for k in ("i2t_r1", "t2i_r1"))
    lines += [
        "",
        f"At R@1 near {pct(best)}% two standard errors of a difference are about "
        f"{pct(2 * math.sqrt(2 * best * (1 - best) / n))} points, so neighbouring budgets often "
        "differ by noise only; the trend over the budgets is what the curve shows.",
    ]

    lines += ["", "## Does the miniature reproduce the paper's claims?", ""]
    lines += claim_lines(results, CLAIMS)
    lines += [
        "",
        "`>`/`<`: higher/lower by more than two standard errors of the difference; `≈`: within "
        "two standard errors (no significant difference). 'Keeps' counts ≈ as kept. Claims "
        "between fine-tuned models compare the ablations (same steps); claims against CLIP-77 "
        "use the shipped model.",
        "",
        "### This recipe's own choices",
        "",
    ]
    lines += claim_lines(results, RECIPE_CLAIMS)
    lines += ["", "### What the curves and tables show", ""] + observations(results)
    lines += ["", "### Why the miniature may differ from the paper", ""] + CAVEATS
    lines.append(
        f"- Noise: one seed per model and n = {n} pairs, so a difference of two standard errors "
        f"is about {pct(2 * math.sqrt(0.5 / n))} points at R@1 = 50%; smaller differences are "
        "reported as ties."
    )
    return "\n".join(lines) + "\n"


def target_lines(results: dict) -> list:
    """The shipped model on the unseen set against TARGET_R1 / TARGET_GAIN and CLIP-77."""
    ours, base = results["longclip"], results[BASELINE]
    n = ours["unseen-long"]["n"]
    lines = [
        f"{n} image–caption pairs of a seed used nowhere else (not for training, the ablations "
        "or any choice in the recipe), R@1 in %: long captions read whole (248 tokens; CLIP-77 "
        "77) and cut to their first 20 tokens, and short captions (R@5, as the group is what a "
        "short caption can find).",
        "",
        "| model | I2T R@1 | I2T R@1 at 20 | T2I R@1 | T2I R@1 at 20 | short I2T R@5 | "
        "short T2I R@5 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in (m for m in UNSEEN_MODELS if m in results):
        r = results[name]
        long, sweep = r["unseen-long"], r["unseen-long"]["sweep"]
        lines.append(
            f"| {LABELS[name]} | {pct(long['i2t']['r1'])} | {pct(_at(sweep, 20, 'i2t_r1'))} | "
            f"{pct(long['t2i']['r1'])} | {pct(_at(sweep, 20, 't2i_r1'))} | "
            f"{pct(r['unseen-short']['i2t']['r5'])} | {pct(r['unseen-short']['t2i']['r5'])} |"
        )
    lines.append("")
    for key, direction in (("i2t", "image→text"), ("t2i", "text→image")):
        full = ours["unseen-long"][key]["r1"]
        first = _at(ours["unseen-long"]["sweep"], 20, f"{key}_r1")
        met = full >= TARGET_R1 and full - first >= TARGET_GAIN
        lines.append(
            f"- {direction} R@1 {pct(full)}% at 248 tokens (target ≥ {pct(TARGET_R1)}), "
            f"{pct(full - first)} points above the 20-token {pct(first)}% (target ≥ "
            f"{pct(TARGET_GAIN)}) → **{'met' if met else 'not met'}**."
        )
    for key, direction in (("i2t", "image→text"), ("t2i", "text→image")):
        x, y = ours["unseen-short"][key]["r5"], base["unseen-short"][key]["r5"]
        verdict = difference_verdict(x, y, n)
        lines.append(
            f"- Short-caption {direction} R@5 {pct(x)}% against CLIP-77's {pct(y)}% "
            f"({'≈' if verdict == 'tied' else '>' if verdict == 'higher' else '<'}) → "
            f"**{'not below CLIP-77' if verdict != 'lower' else 'below CLIP-77'}**."
        )
    return lines


LONG_METRICS = (
    ("long", "i2t", "r1"),
    ("long", "t2i", "r1"),
    ("long", "i2t", "r5"),
    ("long", "t2i", "r5"),
)
SHORT_METRICS = (("short", "i2t", "r5"), ("short", "t2i", "r5"))
ZERO_SHOT = (("zeroshot", "", "top1"),)
PCM_BATCH_NAMES = {"random": "its own", "same": "the batch"}
ABLATIONS = ("reference", "direct", "kps", "pcm", "random", "samebatch", "pcm1")
# (claim, model, compared with, metrics, wanted verdict on each metric)
CLAIMS = (
    (
        "Long-CLIP retrieves long captions better than CLIP-77 (Table 1)",
        "longclip",
        BASELINE,
        LONG_METRICS,
        "higher",
    ),
    (
        "Long-CLIP retrieves long captions better than direct fine-tuning (Table 1)",
        "reference",
        "direct",
        LONG_METRICS,
        "higher",
    ),
    (
        "Long-CLIP keeps CLIP-77's short-caption retrieval (Table 2)",
        "longclip",
        BASELINE,
        SHORT_METRICS,
        "not lower",
    ),
    (
        "Direct fine-tuning loses more short-caption retrieval than Long-CLIP (Table 2)",
        "reference",
        "direct",
        SHORT_METRICS,
        "higher",
    ),
    (
        "Long-CLIP keeps CLIP-77's zero-shot classification (Table 3)",
        "longclip",
        BASELINE,
        ZERO_SHOT,
        "not lower",
    ),
    (
        "KPS beats uniform interpolation on long captions, without PCM (Table 4)",
        "kps",
        "direct",
        LONG_METRICS,
        "higher",
    ),
    ("… and with PCM", "reference", "pcm", LONG_METRICS, "higher"),
    (
        "PCM improves short-caption retrieval, with uniform interpolation (Table 5)",
        "pcm",
        "direct",
        SHORT_METRICS,
        "higher",
    ),
    ("… and with KPS", "reference", "kps", SHORT_METRICS, "higher"),
    (
        "PCM improves zero-shot classification, with KPS (Table 5)",
        "reference",
        "kps",
        ZERO_SHOT,
        "higher",
    ),
)
RECIPE_CLAIMS = (
    (
        "Group-aware batches retrieve long captions better than random batches",
        "reference",
        "random",
        LONG_METRICS,
        "higher",
    ),
    (
        "PCM on a batch of its own keeps short-caption retrieval better than on the group batch",
        "reference",
        "samebatch",
        SHORT_METRICS,
        "higher",
    ),
    (
        "… without losing long-caption retrieval",
        "reference",
        "samebatch",
        LONG_METRICS,
        "not lower",
    ),
    (
        "The recipe's PCM weight retrieves long captions better than the official weight 1",
        "reference",
        "pcm1",
        LONG_METRICS,
        "higher",
    ),
    (
        "… and keeps weight 1's short-caption retrieval",
        "reference",
        "pcm1",
        SHORT_METRICS,
        "not lower",
    ),
)


def _metric_value(result: dict, kind: str, direction: str, key: str) -> float:
    return result[kind][key] if kind == "zeroshot" else result[kind][direction][key]


def _metric_name(kind: str, direction: str, key: str) -> str:
    return "top-1" if kind == "zeroshot" else f"{direction.upper()} R@{key[1:]}"


def _status(met: int, total: int) -> str:
    if met == total:
        return "**reproduced**"
    return "**partly reproduced**" if met else "**not reproduced**"


def claim_lines(results: dict, claims) -> list:
    """One line per claim with the measured numbers; the verdicts are computed, not written."""
    n = results["longclip"]["long"]["n"]
    lines = []
    for claim, a, b, metrics, want in claims:
        if a not in results or b not in results:
            absent = " and ".join(LABELS[m] for m in (a, b) if m not in results)
            lines.append(f"- {claim}: **not measured** ({absent} not run for this report).")
            continue
        parts, met = [], 0
        for kind, direction, key in metrics:
            x = _metric_value(results[a], kind, direction, key)
            y = _metric_value(results[b], kind, direction, key)
            verdict = difference_verdict(x, y, n)
            met += verdict == want or (want == "not lower" and verdict != "lower")
            sign = {"higher": ">", "lower": "<", "tied": "≈"}[verdict]
            parts.append(f"{_metric_name(kind, direction, key)} {pct(x)} {sign} {pct(y)}")
        lines.append(
            f"- {claim}: {LABELS[a]} vs {LABELS[b]}: {'; '.join(parts)} → "
            f"{_status(met, len(metrics))} ({met} of {len(metrics)} as claimed)."
        )
    if claims is CLAIMS:
        efforts = []
        met = 0
        for key, direction in (("i2t_r1", "I2T"), ("t2i_r1", "T2I")):
            short = effective_length(results[BASELINE]["long"]["sweep"], key)
            long = effective_length(results["longclip"]["long"]["sweep"], key)
            met += long > short
            efforts.append(f"{direction} {short} vs {long} tokens")
        lines.append(
            "- CLIP-77's effective length is short and Long-CLIP's longer (Figure 1): "
            f"{'; '.join(efforts)} → {_status(met, 2)}."
        )
    return lines


def observations(results: dict) -> list:
    """Readings of the results that hold only when the numbers say so (each is checked here)."""
    n = results["longclip"]["long"]["n"]
    out = []
    sweep77 = {p["max_tokens"]: p for p in results[BASELINE]["long"]["sweep"]}
    sweep_long = {p["max_tokens"]: p for p in results["longclip"]["long"]["sweep"]}
    for key, direction in (("t2i_r1", "text→image"), ("i2t_r1", "image→text")):
        peak = max(sweep77.values(), key=lambda p: p[key])
        at77 = sweep77[77][key]
        if difference_verdict(peak[key], at77, n) == "higher":
            out.append(
                f"- CLIP-77 {direction} R@1 peaks at {peak['max_tokens']} tokens "
                f"({pct(peak[key])}%), about the length of the short captions it was trained on, "
                f"and falls to {pct(at77)}% when it reads 77 tokens: past the first sentence its "
                "untrained positions add noise rather than detail. This is the miniature's "
                "version of the paper's finding that CLIP's effective length is about 20 tokens."
            )
        best_long = max(sweep_long.values(), key=lambda p: p[key])
        full = sweep_long[248][key]
        if difference_verdict(best_long[key], full, n) == "tied":
            out.append(
                f"- Long-CLIP {direction} R@1 at 248 tokens ({pct(full)}%) is within noise of "
                f"its best ({pct(best_long[key])}% at {best_long['max_tokens']}): it no longer "
                "loses accuracy when it reads the whole caption, but "
                + (
                    "it gains little from the details past the first ~20 tokens either."
                    if difference_verdict(full, sweep_long[20][key], n) != "higher"
                    else "it does gain from the details past the first 20 tokens."
                )
            )
    zero = {name: results[name]["zeroshot"]["top1"] for name in MODELS if name in results}
    reference = max(zero.get("reference", 0.0), zero[BASELINE])
    uniform_better = [
        name
        for name in ("direct", "pcm")
        if name in zero
        and "reference" in zero
        and difference_verdict(zero[name], reference, n) == "higher"
    ]
    if uniform_better:
        out.append(
            "- Zero-shot: "
            + ", ".join(f"{_label(name)} {pct(zero[name])}%" for name in uniform_better)
            + f" beat{'s' if len(uniform_better) == 1 else ''} both Long-CLIP "
            f"{pct(zero['reference'])}% (same steps) and CLIP-77 {pct(zero[BASELINE])}%, "
            "against the paper. "
            f"{'Both use' if len(uniform_better) == 2 else 'It uses'} uniform interpolation, which "
            "blurs the frozen first 20 positions; a plausible reading (not tested here) is that "
            "blurred positions make the text tower less sensitive to word order, which helps with "
            "prompt templates phrased unlike the training captions (“a photo of a red star.” "
            "against “A large red star dominates …”)."
        )
    return out


CAVEATS = [
    "- Scale: a few hundred steps on a few thousand rendered images, against 400M image–text "
    "pairs for CLIP and 1M long captions for Long-CLIP. The miniature CLIP-77 is weak, so what "
    "fine-tuning preserves (Tables 2–3) starts from a low level, and the fine-tuning budget is "
    "small compared with what the new positions need to be learnt.",
    "- Trained positions: the short captions are about 15–17 tokens with start and end, so "
    "CLIP-77 trains only its first ~17 position rows; the rest keep their random "
    "initialisation (the paper's CLIP has about 20 useful positions, the reason KPS keeps 20). "
    "KPS keeps rows 0–19 exactly, while uniform interpolation moves the trained rows to "
    "non-integer places, and the fine-tuning freezes rows 0–19 in every variant, so the "
    "uniform-stretched models keep blurred positions for the first sentence.",
    "- Everything past the first sentence starts with untrained positions in every variant, "
    "so a model can only use the later details as a bag of words until its new positions are "
    "learnt; a short fine-tuning mostly measures how quickly that happens.",
    "- PCM: the short captions describe only the salient object, which the long captions also "
    "describe first, so the short-caption term adds little new signal; the PCA is taken "
    "over a small batch with a small embedding, so 'coarse' and 'fine' components are less "
    "separable than with ViT-B features; and in a group-aware batch four images share each "
    "short caption, so on that batch the short-caption term asks a group's images to be "
    "equally close to one sentence while the long-caption term asks them to differ, and has "
    "few different captions to contrast (hence the shipped batch of its own). Real data has "
    "hard negatives whose short captions differ.",
    "- Steps: the ablations ran fewer steps than the shipped model, so they show the "
    "directions of the effects more than their size at the shipped length.",
    "- Hard negatives: four images per group share the short caption, so short-caption R@1 is "
    "capped near 25% of the found groups, and a model that only reads the first sentence cannot "
    "rank the right member of a group first on long captions either.",
]


LOCATION_FLAGS = ("--stages", "--variants", "--out", "--model-out", "--report", "--figures")


def sizing_flags(argv: list) -> list:
    """The command line without stage selection and output locations: what the report shows as
    the command that reproduces the run."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in LOCATION_FLAGS:
            skip = True
        elif not item.startswith(tuple(f"{flag}=" for flag in LOCATION_FLAGS)):
            kept.append(item)
    return kept


def run(args) -> int:
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        print(
            f"error: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}",
            file=sys.stderr,
        )
        return 2
    chosen = {v.strip() for v in args.variants.split(",") if v.strip()}
    unknown = sorted(chosen - set(MODELS))
    if unknown:
        print(
            f"error: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}",
            file=sys.stderr,
        )
        return 2
    models = [name for name in MODELS if name in chosen]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_out = args.model_out or (out / "demo-model" if args.smoke else REPO_ROOT / "models/demo")
    report = args.report or (
        out / "reproduction.md" if args.smoke else REPO_ROOT / "docs/reproduction.md"
    )
    figures = args.figures or (out / "figures" if args.smoke else REPO_ROOT / "docs/figures")
    settings = settings_from_args(args)
    recipe = Recipe(out, settings, model_out.resolve(), report.resolve(), figures.resolve())
    if set(stages) & {"synth", "pretrain", "finetune"}:
        argv = sys.argv[sys.argv.index("demo") + 1 :] if "demo" in sys.argv else []
        flags = " ".join(sizing_flags(argv))
        (out / "recipe.json").write_text(
            json.dumps({"settings": settings, "flags": flags}, indent=1) + "\n"
        )
    elif not (out / "recipe.json").is_file():
        (out / "recipe.json").write_text(json.dumps({"settings": settings}, indent=1) + "\n")
    try:
        for stage in stages:
            if stage == "synth":
                recipe.timed("synth", recipe.synth)
            elif stage == "vocab":
                recipe.timed("vocab", recipe.build_vocab)
            elif stage == "pretrain":
                recipe.timed("pretrain CLIP-77", recipe.pretrain)
            elif stage == "finetune":
                recipe.finetune_all([name for name in models if name in VARIANTS])
            elif stage == "export":

                def export_all():
                    for name in models:
                        recipe.export(name)
                    if "longclip" in models:
                        recipe.publish()

                recipe.timed("export", export_all)
            elif stage == "eval":
                for name in models:
                    recipe.timed(f"eval {name}", lambda m=name: recipe.evaluate(m))
            elif stage == "report":
                recipe.write_report()
    except subprocess.CalledProcessError as error:
        print(
            f"error: {' '.join(map(str, error.cmd[:6]))} ... failed with exit code "
            f"{error.returncode}; see its output above",
            file=sys.stderr,
        )
        return 1
    return 0
