"""What the demo recipe trains: the models (CLIP-77 and the fine-tuned variants), the default and
``--smoke`` settings, the seeds of its data sets and the shipped model's targets."""

from typing import NamedTuple


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
    "train_count": 16384,
    "person_share": 0.6,
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
    "finetune_steps": 1800,
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
# At most; the training captions allow fewer (every word one token), so the vocabulary is
# every word of the training captions, people's words included.
VOCAB_MERGES = 1500
# The shipped model's targets on the unseen set (issue 17): R@1 at 248 tokens at least
# TARGET_R1, and at least TARGET_GAIN above R@1 with captions cut to 20 tokens, both directions.
TARGET_R1, TARGET_GAIN = 0.5, 0.10
# The shipped model's target on descriptions people wrote of the demo gallery (issue 26): the
# set in tools/eval/descriptions, text->image over the gallery's 36 images.
PEOPLE_TARGET_SET, PEOPLE_TARGET_R1, PEOPLE_TARGET_R5 = "demo-gallery", 0.6, 0.9
# The dense output every recipe model is exported with (export --dense; issue 28: the demo model
# ships with patch embeddings for heat maps).
DEMO_DENSE = "value"
