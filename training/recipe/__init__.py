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
   zero-shot analogue (training/recipe/zeroshot.py) on the held-out set; the shipped model and
   CLIP-77 also on the unseen set, against the demo model's targets.
7. ``report``: ``--report`` (Markdown) and the effective-length chart in ``--figures``.

Wall time and load average of every stage go to ``OUT/timings.json`` so that ``--stages report``
regenerates the report from trained artifacts.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .config import BASELINE, FULL, MODELS, SMOKE, VARIANTS
from .stages import REPO_ROOT, Recipe

STAGES = ("synth", "vocab", "pretrain", "finetune", "export", "eval", "report")


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
