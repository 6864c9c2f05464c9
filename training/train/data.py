"""Training data: long-caption image datasets and the official image preprocessing.

Two formats:

- ``sharegpt4v``: the ShareGPT4V caption JSON exactly as published
  (``share-captioner_coco_lcs_sam_1246k_1107.json``): a list of
  ``{"id"?, "image": RELATIVE_PATH, "conversations": [{"from": "human", ...},
  {"from": "gpt", "value": LONG}]}``; image paths are relative to ``--image-root``.
- ``jsonl``: one ``{"image", "long", "short"?, "group"?}`` object per line.

The short caption, when not given, is the first sentence of the long one (ShareGPT4V's
captions open with a one-sentence summary). The optional ``group`` key (any JSON value; a
ShareGPT4V record may carry one too) names a set of hard negatives, images that are easily
confused with each other (``synth`` writes its groups of scenes that share the first
sentence); ``epoch_indices(..., groups=...)`` keeps a group inside one batch.

Rows with a malformed record, a missing image or an empty caption are dropped when the dataset
is built; an image that exists but cannot be decoded is dropped when it is loaded. Both are
counted and never stop training.
"""

import json
import logging
import os
import re
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

LOG = logging.getLogger(__name__)

FORMATS = ("sharegpt4v", "jsonl")

# OpenAI CLIP's normalisation, used by every Long-CLIP checkpoint.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Skip reasons, as counted and logged.
MALFORMED = "malformed record"
MISSING_IMAGE = "missing image"
EMPTY_CAPTION = "empty caption"
UNREADABLE_IMAGE = "unreadable image"

# Words whose trailing period does not end a sentence.
# ("etc." is not listed: before a capital it usually does end one.)
_ABBREVIATIONS = frozenset("e.g i.e vs approx ca cf mr mrs ms dr st jr sr prof fig".split())
# A sentence terminator, optional closing quotes/brackets, then whitespace.
_BOUNDARY = re.compile(r"([.!?]+)([\"')\]]*)\s+")


def first_sentence(text: str) -> str:
    """The first sentence of ``text``, without its final period.

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace and a word that does not
    start in lower case; a period after a known abbreviation ("e.g.", "i.e.", "Mr.")
    or a single letter does not end one, and a period inside a number ("3.5") never does.
    Text without a terminator is one sentence. The final period is dropped, as the official
    ``caption.split(". ")[0]`` does.
    """
    text = " ".join(text.split())
    for match in _BOUNDARY.finditer(text):
        following = text[match.end() : match.end() + 1]
        if following.islower():
            continue
        if match.group(1) == ".":
            word = text[: match.start()].rsplit(" ", 1)[-1].lower().lstrip("(\"'")
            if word.rstrip(".") in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        return _strip_period(text[: match.end(2)])
    return _strip_period(text)


def _strip_period(sentence: str) -> str:
    sentence = sentence.strip()
    if sentence.endswith(".") and not sentence.endswith(".."):
        sentence = sentence[:-1].rstrip()
    return sentence


@dataclass(frozen=True)
class Record:
    image: Path
    long: str
    short: str
    # hard-negative group key (None: the row is a group of its own)
    group: Optional[str] = None


class SkipCounter(Counter):
    """Rows dropped, by reason."""

    def summary(self) -> str:
        if not self:
            return "no rows skipped"
        parts = ", ".join(f"{count} {reason}" for reason, count in sorted(self.items()))
        return f"{sum(self.values())} rows skipped ({parts})"


def _clean_caption(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(value.replace("\n", " ").split())


Row = Tuple[object, object, object, object]  # image, long, short, group


def _group_key(value: object) -> Optional[str]:
    return None if value is None else json.dumps(value, sort_keys=True)


def _sharegpt4v_rows(path: Path) -> Iterable[Optional[Row]]:
    with path.open(encoding="utf-8") as handle:
        try:
            rows = json.load(handle)
        except json.JSONDecodeError as error:
            raise SystemExit(
                f"error: {path} is not valid JSON ({error}); for one object per line use "
                "--format jsonl"
            ) from None
    if not isinstance(rows, list):
        raise SystemExit(
            f"error: {path} must hold a JSON list of ShareGPT4V records; for one object per "
            "line use --format jsonl"
        )
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("conversations"), list):
            yield None
            continue
        answers = [
            turn.get("value")
            for turn in row["conversations"]
            if isinstance(turn, dict) and turn.get("from") == "gpt"
        ]
        yield row.get("image"), answers[-1] if answers else None, None, row.get("group")


def _jsonl_rows(path: Path) -> Iterable[Optional[Row]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                yield None
                continue
            if not isinstance(row, dict):
                yield None
                continue
            yield row.get("image"), row.get("long"), row.get("short"), row.get("group")


def load_records(
    data: Path, fmt: str, image_root: Optional[Path] = None
) -> Tuple[List[Record], SkipCounter]:
    """Read a caption file, keeping rows whose image file exists and whose caption is not empty.

    ``image_root`` defaults to the caption file's directory; absolute image paths are used as
    they are. Returns the kept records and the counts of dropped rows by reason.
    """
    if fmt not in FORMATS:
        raise SystemExit(f"error: unknown data format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not data.is_file():
        raise SystemExit(f"error: caption file {data} not found; check --data")
    root = Path(image_root) if image_root is not None else data.parent
    if not root.is_dir():
        raise SystemExit(f"error: image root {root} is not a directory; check --image-root")
    rows = _sharegpt4v_rows(data) if fmt == "sharegpt4v" else _jsonl_rows(data)
    records: List[Record] = []
    skipped = SkipCounter()
    for row in rows:
        if row is None or not isinstance(row[0], str) or not row[0]:
            skipped[MALFORMED] += 1
            continue
        image, long_value, short_value, group = row
        long = _clean_caption(long_value)
        if not long:
            skipped[EMPTY_CAPTION] += 1
            continue
        path = root / image
        if not path.is_file():
            skipped[MISSING_IMAGE] += 1
            continue
        short = _clean_caption(short_value) or first_sentence(long)
        records.append(Record(path, long, short, _group_key(group)))
    return records, skipped


def preprocess_image(
    image: Image.Image,
    resolution: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """The official CLIP/Long-CLIP preprocessing, in its order, as a float32 [3, R, R] tensor.

    Resize so the short side is ``resolution`` (PIL bicubic; the long side truncated as
    torchvision computes it), centre crop (offsets rounded as torchvision rounds them), then
    convert to RGB (alpha dropped, no EXIF rotation), scale to [0, 1] and normalise.
    """
    width, height = image.size
    if width <= height:
        size = (resolution, int(resolution * height / width))
    else:
        size = (int(resolution * width / height), resolution)
    image = image.resize(size, Image.BICUBIC)
    left = int(round((size[0] - resolution) / 2.0))
    top = int(round((size[1] - resolution) / 2.0))
    image = image.crop((left, top, left + resolution, top + resolution)).convert("RGB")
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    pixels = pixels.permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (pixels - mean_t) / std_t


def load_image(path: Path, resolution: int, mean=CLIP_MEAN, std=CLIP_STD) -> Optional[torch.Tensor]:
    """Decode and preprocess one image; None when the file cannot be read or decoded."""
    try:
        with Image.open(path) as image:
            image.load()
            return preprocess_image(image, resolution, mean, std)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        LOG.debug("skipping unreadable image %s: %s", path, error)
        return None


class CaptionDataset(torch.utils.data.Dataset):
    """(pixels, long caption, short caption) per record; None for an unreadable image."""

    def __init__(
        self,
        records: Sequence[Record],
        resolution: int,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ):
        self.records = list(records)
        self.resolution = resolution
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        pixels = load_image(record.image, self.resolution, self.mean, self.std)
        if pixels is None:
            return None
        return pixels, record.long, record.short


@dataclass
class Batch:
    pixels: torch.Tensor
    long_ids: torch.Tensor
    short_ids: torch.Tensor
    dropped: int


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """``ids`` [N, L] without the columns that are padding (0) in every row; at least one
    column is kept. The text tower's causal mask makes the result identical (model.encode_text),
    and a batch of 60-token captions no longer pays for 248 positions."""
    used = (ids != 0).any(dim=0).nonzero()
    return ids[:, : int(used.max()) + 1 if len(used) else 1]


class Collate:
    """Stack a batch, dropping rows whose image could not be decoded (counted in ``dropped``).

    ``tokenize(texts, context_length) -> LongTensor[N, L]`` runs here, in the loader's worker
    processes, so that tokenising long captions overlaps with training. The token batches are
    cut after their last non-padding column (``trim_padding``).
    """

    def __init__(
        self,
        tokenize: Callable[[List[str], int], torch.Tensor],
        context_length: int,
        resolution: int,
    ):
        self.tokenize = tokenize
        self.context_length = context_length
        self.resolution = resolution

    def __call__(self, items) -> Batch:
        kept = [item for item in items if item is not None]
        if not kept:
            no_ids = torch.zeros(0, 1, dtype=torch.long)
            return Batch(
                torch.empty(0, 3, self.resolution, self.resolution),
                no_ids,
                no_ids,
                len(items),
            )
        long_ids = self.tokenize([item[1] for item in kept], self.context_length)
        short_ids = self.tokenize([item[2] for item in kept], self.context_length)
        return Batch(
            torch.stack([item[0] for item in kept]),
            trim_padding(long_ids),
            trim_padding(short_ids),
            len(items) - len(kept),
        )


def pack_groups(runs: List[List[int]], batch_size: int) -> List[int]:
    """Lays ``runs`` (lists of row indices, in the order given) out one after another so that
    a run crosses a batch boundary only when no remaining run fits the room left in the batch.

    When the next run does not fit, the first remaining run of the largest size that does is
    taken instead; runs longer than a batch are cut into batch-sized pieces first.
    """
    pieces = [run[i : i + batch_size] for run in runs for i in range(0, len(run), batch_size)]
    by_size: dict = {}
    for index, piece in enumerate(pieces):
        by_size.setdefault(len(piece), deque()).append(index)
    used = [False] * len(pieces)
    order: List[int] = []

    def first_unused(size: int) -> Optional[int]:
        queue = by_size.get(size)
        while queue and used[queue[0]]:
            queue.popleft()
        return queue[0] if queue else None

    for index in range(len(pieces)):
        while not used[index]:
            room = batch_size - len(order) % batch_size
            chosen = index if len(pieces[index]) <= room else None
            for size in range(room, 0, -1):
                if chosen is not None:
                    break
                chosen = first_unused(size)
            chosen = index if chosen is None else chosen  # nothing fits: cross the boundary
            used[chosen] = True
            order += pieces[chosen]
    return order


def epoch_indices(
    size: int,
    epoch: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    groups: Optional[Sequence[Optional[str]]] = None,
    batch_size: int = 1,
    group_fraction: float = 1.0,
) -> List[int]:
    """This process's share of one epoch's sample order, deterministic in (seed, epoch).

    The permutation is padded by wrapping around so every process gets the same number of
    rows (as torch's DistributedSampler does), then dealt out round-robin.

    With ``groups`` (a key per row; None is a group of one) the order is *group-aware*: the
    groups are shuffled, members too, laid out by ``pack_groups`` and dealt out in runs of
    ``batch_size`` rows (padded to whole runs), so each batch holds whole groups of hard
    negatives (a group is split only where no other fits the batch's remaining room).
    ``group_fraction`` below 1 mixes hard and random negatives: each epoch only that share of
    the groups (drawn at random) is kept whole, the others' rows are laid out as groups of one.
    """
    if not 0.0 <= group_fraction <= 1.0:
        raise ValueError(f"group_fraction must be within [0, 1], got {group_fraction}")
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    if groups is None:
        order = torch.randperm(size, generator=generator).tolist() if shuffle else list(range(size))
        chunk = 1
    else:
        if len(groups) != size:
            raise ValueError(f"{len(groups)} group keys for {size} rows")
        members: dict = {}
        for index, key in enumerate(groups):
            members.setdefault(index if key is None else key, []).append(index)
        runs = list(members.values())
        if group_fraction < 1.0:
            draws = torch.rand(len(runs), generator=generator).tolist()
            runs = [
                part
                for run, draw in zip(runs, draws)
                for part in ([run] if draw < group_fraction else [[i] for i in run])
            ]
        if shuffle:
            runs = [runs[i] for i in torch.randperm(len(runs), generator=generator).tolist()]
            runs = [[g[i] for i in torch.randperm(len(g), generator=generator)] for g in runs]
        order = pack_groups(runs, batch_size)
        chunk = batch_size
    per_rank = -(-size // (world_size * chunk)) * chunk
    total = per_rank * world_size
    while len(order) < total:
        order += order[: total - len(order)]
    return [
        index
        for start in range(rank * chunk, total, world_size * chunk)
        for index in order[start : start + chunk]
    ]


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)
