"""Learn a CLIP-style byte-level BPE vocabulary from a caption corpus.

The project cannot ship CLIP's own merges file, so it learns one on its synthetic captions with
the algorithm that made CLIP's: text cleaned and lower-cased, split into words by CLIP's regex,
each word's UTF-8 bytes mapped to CLIP's printable byte symbols with ``</w>`` on the last one,
then the most frequent adjacent symbol pair merged, over and over. The result is written in the
merges-file format of ``bpe_simple_vocab_16e6.txt.gz`` (a header line, then one ``a b`` merge
per line), so any CLIP tokenizer loads it with ``num_merges = N`` and a vocabulary of
512 + N + 2 ids.

Ties between equally frequent pairs go to the lexicographically smallest ``(first, second)`` so
that the same corpus always gives the same file.
"""

import gzip
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Set, Tuple

from training.model.tokenizer import (
    basic_clean,
    bytes_to_unicode,
    merge_pair,
    whitespace_clean,
    word_pattern,
)

HEADER = "#version: 0.2"
Pair = Tuple[str, str]


def read_corpus(path: Path) -> Iterator[str]:
    """Caption texts from ShareGPT4V ``captions.json``, ``captions.jsonl`` or plain text.

    ``.json``: a list of ShareGPT4V entries (every ``gpt`` turn) or of strings. ``.jsonl``: one
    object per line, its ``long`` and ``short`` fields (else ``text`` or ``caption``). Any other
    file: one text per non-empty line.
    """
    path = Path(path)
    if path.suffix == ".json":
        entries = json.loads(path.read_text(encoding="utf-8"))
        for entry in entries:
            if isinstance(entry, str):
                yield entry
                continue
            for turn in entry.get("conversations", []):
                if turn.get("from") == "gpt":
                    yield turn["value"]
    elif path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                record = json.loads(line)
                fields = [k for k in ("long", "short") if k in record] or [
                    k for k in ("text", "caption") if k in record
                ]
                for key in fields:
                    yield record[key]
    else:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield line


def word_counts(texts: Iterable[str]) -> Counter:
    """Words as CLIP pre-tokenises them, in byte symbols, with their corpus frequencies."""
    byte_encoder = bytes_to_unicode()
    pattern = word_pattern()
    counts: Counter = Counter()
    for text in texts:
        text = whitespace_clean(basic_clean(text)).lower()
        for word in pattern.findall(text):
            counts["".join(byte_encoder[b] for b in word.encode("utf-8"))] += 1
    return counts


def learn_merges(counts: Dict[str, int], num_merges: int) -> List[Pair]:
    """Up to ``num_merges`` merges, fewer when every word has become a single symbol."""
    words: List[List[str]] = [list(w[:-1]) + [w[-1] + "</w>"] for w in sorted(counts)]
    freqs = [counts[w] for w in sorted(counts)]
    pair_counts: Counter = Counter()
    holders: Dict[Pair, Set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freqs[index]
            holders[pair].add(index)
    known = set(bytes_to_unicode().values())
    known |= {s + "</w>" for s in known}
    merges: List[Pair] = []
    while len(merges) < num_merges:
        # A merge whose result already is a token would give two ids one string; CLIP
        # tokenizers key their vocabulary by string, so such a pair is never merged.
        candidates = [p for p, c in pair_counts.items() if c > 0 and p[0] + p[1] not in known]
        if not candidates:
            break
        best = min(candidates, key=lambda p: (-pair_counts[p], p))
        merges.append(best)
        known.add(best[0] + best[1])
        for index in sorted(holders.pop(best)):
            word = words[index]
            for pair in zip(word, word[1:]):
                pair_counts[pair] -= freqs[index]
            words[index] = word = merge_pair(word, best)
            for pair in zip(word, word[1:]):
                pair_counts[pair] += freqs[index]
                holders[pair].add(index)
        del pair_counts[best]
    return merges


def write_merges(path: Path, merges: List[Pair]) -> None:
    text = HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        # mtime=0 keeps the file byte-identical across builds of the same corpus.
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")


def add_arguments(parser) -> None:
    parser.add_argument(
        "--corpus",
        required=True,
        nargs="+",
        type=Path,
        help="captions.json (ShareGPT4V), captions.jsonl or .txt files (one text per line)",
    )
    parser.add_argument("--merges", required=True, type=int, help="number of merges to learn")
    parser.add_argument(
        "--out", required=True, type=Path, help="merges file to write (.txt or .txt.gz)"
    )


def run(args) -> int:
    if args.merges < 1:
        print("error: --merges must be at least 1", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.corpus if not p.is_file()]
    if missing:
        print(f"error: corpus file(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    counts: Counter = Counter()
    for path in args.corpus:
        counts.update(word_counts(read_corpus(path)))
    print(
        f"vocab: {sum(counts.values())} words, {len(counts)} distinct, from "
        f"{len(args.corpus)} file(s)",
        file=sys.stderr,
    )
    merges = learn_merges(counts, args.merges)
    if len(merges) < args.merges:
        print(
            f"vocab: the corpus allows only {len(merges)} merges (every word is one token); "
            f"use num_merges={len(merges)}",
            file=sys.stderr,
        )
    write_merges(args.out, merges)
    print(
        f"vocab: wrote {len(merges)} merges to {args.out} (vocab size {512 + len(merges) + 2}) "
        f"in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return 0
