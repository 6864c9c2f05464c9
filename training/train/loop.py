"""``train``: fine-tune CLIP into Long-CLIP with primary component matching (PCM).

Starts from an official Long-CLIP checkpoint, an OpenAI CLIP checkpoint (stretched to 248
positions on load, KPS by default), a training checkpoint, or a random initialisation (start.py).
The recipe follows the official Long-CLIP training: AdamW (0.9, 0.999, 1e-8, weight decay 1e-2),
linear warm-up then cosine decay per step, the first 20 positions frozen, features gathered
across processes with gradients under torchrun, fp16 autocast with a gradient scaler on CUDA
(or bf16 autocast, on CUDA or the CPU, with ``--amp-dtype bf16``).

Outputs in ``--out``: ``checkpoint-STEP.pt`` (training format, every ``--save-every`` steps and
at the end), ``longclip.pt`` (or ``clip.pt`` for a 77-position model: the official format, for
``export``) and ``train-log.jsonl`` (one line per step).
"""

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from . import distributed
from ..model.checkpoint import save_official, save_training_checkpoint
from .data import (
    CLIP_MEAN,
    CLIP_STD,
    FORMATS,
    UNREADABLE_IMAGE,
    CaptionDataset,
    Collate,
    SkipCounter,
    default_workers,
    epoch_indices,
    load_records,
)
from ..model.clip import CLIP, UnsupportedCheckpointError, freeze_kept_positions
from ..model.pcm import LOGIT_SCALE_MAX, pcm_loss
from .start import saved_args, set_rng_state, starting_model
from ..model.tokenizer import ClipTokenizer

LOG = logging.getLogger("training.train")
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# --pcm-batch random draws its batches from a random order seeded --seed + this
SHORT_STREAM_SEED = 7919


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint",
        type=Path,
        help="starting weights: official Long-CLIP, OpenAI CLIP (stretched to 248 positions on "
        "load, see --stretch) or a training checkpoint (weights only; see --resume)",
    )
    source.add_argument(
        "--init-config",
        help="random initialisation instead: a preset (tiny, ViT-B/16, ViT-L/14) or a JSON file "
        'of model dimensions, e.g. {"preset": "tiny", "text_layers": 4, "image_resolution": 64}',
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read --checkpoint/--resume with Python's full unpickler, which runs code the file "
        "names: only for training checkpoints you wrote with an earlier version of this project",
    )
    parser.add_argument(
        "--model-type",
        choices=["longclip", "clip"],
        default="longclip",
        help="with --init-config: longclip (248 positions) or clip (77, e.g. to pre-train)",
    )
    parser.add_argument("--data", type=Path, required=True, help="caption file")
    parser.add_argument(
        "--image-root", type=Path, help="directory image paths are relative to (default: --data's)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, help="caption file format (default: jsonl for *.jsonl)"
    )
    parser.add_argument("--vocab", type=Path, required=True, help="CLIP BPE merges file")
    parser.add_argument("--num-merges", type=int, help="merges to use from --vocab (default all)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    parser.add_argument("--steps", type=int, help="total optimizer steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=128, help="per process (default 128)")
    parser.add_argument(
        "--lr", type=float, default=1e-6, help="peak learning rate (default 1e-6, the official)"
    )
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--warmup-steps", type=int, default=200, help="linear warm-up steps")
    parser.add_argument(
        "--context-length", type=int, help="text tokens per caption (default: the model's, 248)"
    )
    parser.add_argument(
        "--stretch",
        choices=["kps", "uniform", "none"],
        default="kps",
        help="how a 77-position --checkpoint is stretched to 248: kps (Long-CLIP), uniform "
        "(the naive ablation) or none (keep training it as a 77-position CLIP)",
    )
    parser.add_argument(
        "--no-pcm", dest="pcm", action="store_false", help="long-caption loss only (ablation)"
    )
    parser.add_argument("--pcm-components", type=int, default=32, help="PCA components kept")
    parser.add_argument(
        "--pcm-weight",
        type=float,
        default=1.0,
        help="weight of the short-caption term against the long-caption term (default 1, the "
        "official)",
    )
    parser.add_argument(
        "--batching",
        choices=["random", "groups"],
        default="random",
        help="random batches, or groups: hard-negative batching, each data row's 'group' key "
        "kept together in one batch (rows without one are groups of their own)",
    )
    parser.add_argument(
        "--group-fraction",
        type=float,
        default=1.0,
        help="with --batching groups: the share of groups kept whole in each epoch (drawn at "
        "random); the other groups' rows are spread like random batches, so a batch mixes hard "
        "and random negatives (default 1: every group whole)",
    )
    parser.add_argument(
        "--pcm-batch",
        choices=["same", "random"],
        default="same",
        help="rows of PCM's short-caption term: the same batch as the long-caption term (the "
        "official), or random: a batch of its own drawn in random order, so that with "
        "--batching groups the short captions still meet many different ones (a group shares "
        "one); costs a second image forward",
    )
    parser.add_argument(
        "--caption",
        choices=["long", "short"],
        default="long",
        help="caption matched with the full image feature; short (with --no-pcm) pre-trains "
        "on short captions",
    )
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument(
        "--logit-scale",
        type=float,
        help="reset the learnable log logit scale (the official fine-tuning uses 4.6052 = ln 100)",
    )
    parser.add_argument(
        "--save-every", type=int, default=0, help="checkpoint every N steps (0: only at the end)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="continue a run from a training checkpoint, or 'auto': the newest in --out",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="image loading processes"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores)")
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mixed precision: autocast in --amp-dtype (default on; fp16 only on CUDA)",
    )
    parser.add_argument(
        "--amp-dtype",
        choices=sorted(AMP_DTYPES),
        default="fp16",
        help="fp16 (with gradient scaling; CUDA only) or bf16 (float32's range, so no scaling; "
        "CUDA from Ampere on, and the CPU); default fp16",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument(
        "--log-every", type=int, default=10, help="log line interval when not on a terminal"
    )


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The official schedule as a multiple of the peak: (step+1)/warmup during warm-up, then
    half a cosine from 1 down to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))


class Towers(nn.Module):
    """Both towers in one forward, so DistributedDataParallel sees every parameter used."""

    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, pixels, text_ids, short_ids=None, short_pixels=None):
        image = self.model.encode_image(pixels)
        text = self.model.encode_text(text_ids)
        short = self.model.encode_text(short_ids) if short_ids is not None else None
        short_image = self.model.encode_image(short_pixels) if short_pixels is not None else None
        return image, text, short, short_image, self.model.logit_scale


class Progress:
    """A one-line bar on a terminal, otherwise a log line every ``every`` steps."""

    def __init__(self, total: int, start: int, every: int, enabled: bool):
        self.total = total
        self.every = max(1, every)
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.rate = None
        self.started = time.perf_counter()
        self.done_at_start = start
        self.open_line = False

    def update(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        if not self.enabled:
            return
        self.rate = samples_per_s if self.rate is None else 0.9 * self.rate + 0.1 * samples_per_s
        if self.tty:
            width = 30
            filled = int(width * step / max(1, self.total))
            elapsed = time.perf_counter() - self.started
            eta = elapsed / max(1, step - self.done_at_start) * (self.total - step)
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{self.total} "
                f"loss {loss:.4f} lr {lr:.2e} {self.rate:.1f} samples/s eta {eta:.0f}s"
            )
            sys.stderr.flush()
            self.open_line = True
        elif step % self.every == 0 or step >= self.total:
            LOG.info(
                "step %d/%d loss %.4f lr %.2e %.1f samples/s",
                step,
                self.total,
                loss,
                lr,
                self.rate,
            )

    def end_line(self) -> None:
        """Finish the bar's line before other output."""
        if self.open_line:
            sys.stderr.write("\n")
            self.open_line = False


def _resolve_device(name: Optional[str], info: distributed.DistInfo) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda requested but CUDA is not available; use cpu")
        if info.enabled:
            return torch.device("cuda", info.local_rank)
    return torch.device(name)


def run(args) -> int:
    info = distributed.env_info()
    logging.basicConfig(
        level=logging.INFO if info.is_main else logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return _train(args)
    except (UnsupportedCheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()


def _train(args) -> int:
    if args.caption == "short" and args.pcm:
        raise SystemExit("error: --caption short trains on short captions only; add --no-pcm")
    if args.batch_size < 2:
        raise SystemExit("error: --batch-size must be at least 2 for a contrastive loss")
    env = distributed.env_info()
    device = _resolve_device(args.device, env)
    info = distributed.init_from_env(device.type)
    if device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    tokenizer = ClipTokenizer(args.vocab, args.num_merges)
    model, resume = starting_model(args, tokenizer)
    config = model.config
    if tokenizer.vocab_size != config.vocab_size:
        raise SystemExit(
            f"error: --vocab has {tokenizer.vocab_size} tokens but the model has "
            f"{config.vocab_size}; use the vocabulary the model was trained with"
        )
    context_length = args.context_length or config.context_length
    if not 2 <= context_length <= config.context_length:
        raise SystemExit(
            f"error: --context-length must be in 2..{config.context_length} for this model"
        )
    model = model.float().to(device).train()
    if config.model_type == "longclip":
        freeze_kept_positions(model)
    if args.logit_scale is not None and resume is None:
        with torch.no_grad():
            model.logit_scale.fill_(args.logit_scale)

    fmt = args.format or ("jsonl" if args.data.suffix == ".jsonl" else "sharegpt4v")
    records, skipped = load_records(args.data, fmt, args.image_root)
    LOG.info("%s: %d usable rows; %s", args.data, len(records), skipped.summary())
    if len(records) < 2:
        raise SystemExit(f"error: {args.data} has fewer than 2 usable rows; nothing to train on")
    dataset = CaptionDataset(records, config.image_resolution, CLIP_MEAN, CLIP_STD)
    collate = Collate(tokenizer.tokenize, context_length, config.image_resolution)
    groups = [r.group for r in records] if args.batching == "groups" else None
    if groups is not None and all(group is None for group in groups):
        raise SystemExit(
            f"error: --batching groups needs a 'group' key on the rows of {args.data}; none has one"
        )

    def order(epoch: int) -> list:
        return epoch_indices(
            len(records),
            epoch,
            args.seed,
            info.rank,
            info.world_size,
            groups=groups,
            batch_size=args.batch_size,
            group_fraction=args.group_fraction,
        )

    per_rank = len(order(0))
    drop_last = per_rank >= args.batch_size
    steps_per_epoch = per_rank // args.batch_size if drop_last else 1
    total_steps = args.steps or args.epochs * steps_per_epoch

    def loader_of(indices: list) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=args.batch_size,
            sampler=indices,
            drop_last=drop_last,
            num_workers=args.workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
        )

    def short_batches(start: int):
        """The PCM term's own batches (--pcm-batch random), from step ``start`` on: random
        order on a seed of its own, so resuming draws the same batches."""

        def indices(epoch: int) -> list:
            seed = args.seed + SHORT_STREAM_SEED
            return epoch_indices(len(records), epoch, seed, info.rank, info.world_size)

        per_epoch = len(indices(0)) // args.batch_size if drop_last else 1
        epoch, skip = divmod(start, per_epoch)
        while True:
            yield from loader_of(indices(epoch)[skip * args.batch_size :])
            epoch, skip = epoch + 1, 0

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, args.warmup_steps, total_steps)
    )
    # fp16 autocast has no CPU kernels in torch 1.13; bf16 runs on both
    use_amp = args.amp and (device.type == "cuda" or args.amp_dtype == "bf16")
    amp_dtype = AMP_DTYPES[args.amp_dtype] if use_amp else None
    scaler = _grad_scaler(enabled=amp_dtype == torch.float16)
    step = 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        step = int(resume["step"])
        rng = (resume.get("args") or {}).get("rng")
        if rng is not None:
            set_rng_state(rng)

    towers = Towers(model)
    if info.enabled:
        towers = nn.parallel.DistributedDataParallel(
            towers,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,  # the only buffer is the constant causal mask
        )
        LOG.info(
            "DistributedDataParallel: %s backend, world size %d",
            distributed.backend(),
            info.world_size,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = (args.out / "train-log.jsonl").open("a") if info.is_main else None
    LOG.info(
        "training %s (%s, %d positions) on %s x%d: %d steps, %s batches of %d per process, "
        "lr %.1e, PCM %s",
        args.checkpoint or args.init_config or args.resume,
        config.model_type,
        config.context_length,
        device,
        info.world_size,
        total_steps,
        args.batching,
        args.batch_size,
        args.lr,
        (f"on ({args.pcm_components} components, weight {args.pcm_weight:g})")
        if args.pcm
        else "off",
    )
    progress = Progress(total_steps, step, args.log_every, info.is_main)

    def save(path: Path) -> None:
        if info.is_main:
            save_training_checkpoint(
                path, model, optimizer, scheduler, scaler, step, saved_args(args), args.vocab
            )
        distributed.barrier()

    separate = short_batches(step) if args.pcm and args.pcm_batch == "random" else None
    epoch, skip = divmod(step, steps_per_epoch)
    while step < total_steps:
        loader = loader_of(order(epoch)[skip * args.batch_size :])
        unreadable = 0
        last = time.perf_counter()
        for batch in loader:
            if step >= total_steps:
                break
            unreadable += batch.dropped
            short_batch = next(separate) if separate is not None else None
            # how long the step waited for its batches (loading and the last step's logging)
            waited = time.perf_counter() - last
            losses = _train_step(
                towers, model, batch, short_batch, optimizer, scaler, device, amp_dtype, args
            )
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step += 1
            # wall time since the previous step, so image loading counts too
            now = time.perf_counter()
            seconds, last = now - last, now
            rows = distributed.all_sum(float(batch.pixels.shape[0]), device)
            progress.update(step, losses["loss"], lr, rows / max(seconds, 1e-9))
            if log_file is not None:
                entry = {"step": step, "epoch": epoch, "lr": lr, "samples": rows}
                entry.update(seconds=seconds, data_seconds=waited)
                log_file.write(json.dumps({**entry, **losses}) + "\n")
                log_file.flush()
            if args.save_every and step % args.save_every == 0 and step < total_steps:
                save(args.out / f"checkpoint-{step:08d}.pt")
        unreadable = int(distributed.all_sum(float(unreadable), device))
        progress.end_line()
        LOG.info(
            "epoch %d done at step %d; %s",
            epoch,
            step,
            SkipCounter({UNREADABLE_IMAGE: unreadable} if unreadable else {}).summary(),
        )
        epoch, skip = epoch + 1, 0

    save(args.out / f"checkpoint-{step:08d}.pt")
    official = args.out / ("longclip.pt" if config.model_type == "longclip" else "clip.pt")
    if info.is_main:
        save_official(model, official)
        log_file.close()
        LOG.info("wrote %s and %s", args.out / f"checkpoint-{step:08d}.pt", official)
    return 0


def _finite_gradients(optimizer) -> bool:
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    return all(bool(torch.isfinite(g).all()) for g in grads if g is not None)


def _grad_scaler(enabled: bool):
    """The CUDA gradient scaler: torch.amp.GradScaler from torch 2.3 on (torch.cuda.amp's is
    deprecated there), torch.cuda.amp.GradScaler before."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def _train_step(towers, model, batch, short_batch, optimizer, scaler, device, amp_dtype, args):
    """One optimizer step; returns the losses as floats (NaN terms when the step was skipped).
    ``short_batch``, when given, holds the rows of PCM's short-caption term (--pcm-batch);
    ``amp_dtype`` is the autocast dtype, None for float32."""
    pixels = batch.pixels.to(device, non_blocking=True)
    long_ids = batch.long_ids.to(device, non_blocking=True)
    short_ids = batch.short_ids.to(device, non_blocking=True)
    text_ids = short_ids if args.caption == "short" else long_ids
    short_pixels = None
    if short_batch is not None:
        short_pixels = short_batch.pixels.to(device, non_blocking=True)
        short_ids = short_batch.short_ids.to(device, non_blocking=True)
    optimizer.zero_grad(set_to_none=True)
    rows = [pixels] if short_pixels is None else [pixels, short_pixels]
    if min(distributed.all_sum(float(p.shape[0]), device) for p in rows) < 2:
        # every image of this step (or of its short-caption batch) was unreadable
        return {"loss": float("nan"), "loss_long": float("nan"), "loss_short": None}
    autocast = nullcontext() if amp_dtype is None else torch.autocast(device.type, dtype=amp_dtype)
    with autocast:
        image, text, short, short_image, logit_scale = towers(
            pixels, text_ids, short_ids if args.pcm else None, short_pixels
        )
        losses = pcm_loss(
            image,
            text,
            short,
            logit_scale,
            short_image_features=short_image,
            pcm=args.pcm,
            components=args.pcm_components,
            weight=args.pcm_weight,
            label_smoothing=args.label_smoothing,
            gather=distributed.gather_with_grad,
        )
    scaler.scale(losses.total).backward()
    # the gradient scaler skips non-finite steps on CUDA; without it, check here (the SVD's
    # backward can overflow when singular values nearly coincide, as the official code notes)
    if scaler.is_enabled() or _finite_gradients(optimizer):
        scaler.step(optimizer)
    else:
        LOG.warning("non-finite gradients (loss %.4f); this step's update is skipped", losses.total)
    scaler.update()
    with torch.no_grad():
        model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
    # logged losses are the mean over processes: the loss DDP's averaged gradient descends
    short_term = losses.short if losses.short is not None else torch.zeros(())
    total, long, short = distributed.all_mean(
        [losses.total.item(), losses.long.item(), short_term.item()], device
    )
    return {
        "loss": total,
        "loss_long": long,
        "loss_short": short if losses.short is not None else None,
        "logit_scale": model.logit_scale.item(),
        # the text positions the towers ran (a batch is cut after its longest caption)
        "text_positions": text_ids.shape[1],
        "short_positions": short_ids.shape[1] if args.pcm else None,
    }
