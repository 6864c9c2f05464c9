"""The demo recipe's stages on its work directory: ``python3 -m training`` commands,
``bench:urban``, the zero-shot analogue and the report; ``Recipe.timed`` records each stage's
wall time and load average."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import zeroshot
from .config import (
    BASELINE,
    DEMO_DENSE,
    EVAL_SEED,
    GALLERY_SEED,
    MODELS,
    TRAIN_SEED,
    UNSEEN_MODELS,
    UNSEEN_SEED,
    VARIANTS,
    VOCAB_MERGES,
)
from .report import PEOPLE_PARTS, render_report

REPO_ROOT = Path(__file__).resolve().parents[2]


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
        command = ["node", "--import", "tsx", "tools/eval/bench-urban.ts", *argv]
        subprocess.run(command, check=True, cwd=REPO_ROOT, stdout=sys.stderr)

    # -- stages --------------------------------------------------------------------------------

    def synth(self) -> None:
        s = self.settings
        for out, count, seed, layout, size, share in (
            (
                self.train_dir,
                s["train_count"],
                TRAIN_SEED,
                "sharegpt4v",
                s["image_size"],
                s["person_share"],
            ),
            (self.eval_dir, s["eval_count"], EVAL_SEED, "urban1k", s["image_size"], 0),
            (self.unseen_dir, s["unseen_count"], UNSEEN_SEED, "urban1k", s["image_size"], 0),
            (self.gallery_src, s["gallery_count"], GALLERY_SEED, "urban1k", 128, 0),
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
                "--person-share",
                str(share),
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

    def _train(
        self, name: str, steps: int, lr: float, batch_size: int, extra: list, data: Path = None
    ) -> None:
        """``data``: the rows to train on (default the training set's captions.jsonl)."""
        s = self.settings
        out = self.runs / name
        shutil.rmtree(out, ignore_errors=True)
        self.python(
            "train",
            "--data",
            str(data or self.train_dir / "captions.jsonl"),
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
            self.train_dir / "finetune.jsonl",
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
            "--dense",
            DEMO_DENSE,
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

    def urban(self, data: Path, model: str, captions: str, out: Path, *extra: str) -> None:
        """bench:urban of ``model`` on ``data`` with the captions of its ``captions`` folder,
        figures to the JSON file ``out``."""
        self.node_bench(
            "--data",
            str(data),
            "--model",
            model,
            "--captions",
            captions,
            "--json",
            str(out),
            *extra,
        )

    def bench(self, name: str, data: Path, prefix: str) -> None:
        """bench:urban on ``data``: long captions with the budget sweep, then short captions."""
        model = str(self.models / name)
        sweep = ["--sweep", "--chart", str(self.results / f"{prefix}-sweep.png")]
        for kind, subdir, extra in (("long", "caption", sweep), ("short", "short", [])):
            self.urban(data, model, subdir, self.results / f"{prefix}-{kind}.json", *extra)

    def bench_people(self, name: str) -> None:
        """Descriptions in people's words: the generator's (``person/`` of the held-out and,
        for the shipped model and CLIP-77, the unseen set) and the person-written sets
        (``bench:descriptions``, tools/eval/descriptions)."""
        model = str(self.models / name)
        sets = [(self.eval_dir, name)]
        if name in UNSEEN_MODELS:
            sets.append((self.unseen_dir, f"{name}-unseen"))
        for data, prefix in sets:
            self.urban(data, model, "person", self.results / f"{prefix}-person.json")
        command = ["node", "--import", "tsx", "tools/eval/bench-descriptions.ts"]
        command += ["--model", model, "--json", str(self.results / f"{name}-descriptions.json")]
        subprocess.run(command, check=True, cwd=REPO_ROOT, stdout=sys.stderr)

    def evaluate(self, name: str) -> None:
        self.results.mkdir(parents=True, exist_ok=True)
        self.bench(name, self.eval_dir, name)
        if name in UNSEEN_MODELS:
            self.bench(name, self.unseen_dir, f"{name}-unseen")
        self.bench_people(name)
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
            "import { writeLineChartPng } from './tools/eval/chart.ts';"
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
                # people's words: optional, so that older artifacts still give a report
                people = {k: self.results / f"{name}-{k}.json" for k in PEOPLE_PARTS}
                results[name].update(
                    {k: json.loads(p.read_text()) for k, p in people.items() if p.is_file()}
                )
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
