"""The CLIP byte-level BPE tokenizer, equal to the official ``SimpleTokenizer``.

The official code splits words with the third-party ``regex`` module, pattern
``<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+``
with IGNORECASE. The standard ``re`` has no ``\\p{..}`` classes, so the letter and number classes
are built here from ``unicodedata`` as explicit ranges. Under IGNORECASE ``regex`` counts a
character as a letter (number) when any of its case variants is one (e.g. U+0345, which
upper-cases to a Greek capital iota), so the classes are closed over case variants the same way.
ftfy.fix_text is not applied (the reference cases treat it as the identity).
"""

import gzip
import html
import re
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch

CLIP_NUM_MERGES = 49152 - 256 - 2
START = "<|startoftext|>"
END = "<|endoftext|>"


def bytes_to_unicode() -> Dict[int, str]:
    """CLIP's reversible map from bytes to printable characters (spaces/controls shifted)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


def _case_variants(char: str) -> List[str]:
    variants = [char]
    for other in (char.lower(), char.upper(), char.casefold()):
        if len(other) == 1:
            variants.append(other)
    return variants


def _class_body(codes: List[int]) -> str:
    """A character-class body covering the sorted code points ``codes`` as ranges."""
    parts = []
    index = 0
    while index < len(codes):
        first = last = codes[index]
        while index + 1 < len(codes) and codes[index + 1] == last + 1:
            index += 1
            last = codes[index]
        parts.append(re.escape(chr(first)))
        if last > first:
            parts.append("-" + re.escape(chr(last)))
        index += 1
    return "".join(parts)


@lru_cache(maxsize=1)
def word_pattern() -> "re.Pattern[str]":
    letters: List[int] = []
    numbers: List[int] = []
    category = unicodedata.category
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        kinds = {category(v)[0] for v in _case_variants(char)}
        if "L" in kinds:
            letters.append(code)
        if "N" in kinds:
            numbers.append(code)
    letter_class, number_class = _class_body(letters), _class_body(numbers)
    return re.compile(
        r"(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)"
        rf"|[{letter_class}]+|[{number_class}]|[^\s{letter_class}{number_class}]+"
    )


def basic_clean(text: str) -> str:
    return html.unescape(html.unescape(text)).strip()


def whitespace_clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def merge_pair(word: List[str], pair: Tuple[str, str]) -> List[str]:
    """Replaces every occurrence of ``pair`` in ``word``, left to right, by the merged symbol."""
    first, second = pair
    merged = []
    i = 0
    while i < len(word):
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


def _merge_lines(path: Path) -> List[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    return [line for line in lines[1:] if line.strip()]


def count_merges(path, num_merges: Optional[int] = None) -> int:
    """Merges used from ``path``: all lines after the header, at most CLIP's 48,894."""
    available = len(_merge_lines(Path(path)))
    if num_merges is None:
        return min(available, CLIP_NUM_MERGES)
    if not 0 < num_merges <= available:
        raise ValueError(f"num_merges must be in 1..{available} for {path}, not {num_merges}")
    return num_merges


class ClipTokenizer:
    """``encode`` gives BPE ids without start/end; ``tokenize`` gives model input rows."""

    def __init__(self, vocab_path, num_merges: Optional[int] = None):
        path = Path(vocab_path)
        count = count_merges(path, num_merges)
        merges = [tuple(line.split()) for line in _merge_lines(path)[:count]]
        self.byte_encoder = bytes_to_unicode()
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += [START, END]
        self.encoder = {token: index for index, token in enumerate(vocab)}
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe_ranks: Dict[Tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self.num_merges = count
        self.vocab_size = len(vocab)
        self.start_id = self.encoder[START]
        self.end_id = self.encoder[END]
        self.pattern = word_pattern()
        self.cache: Dict[str, List[int]] = {START: [self.start_id], END: [self.end_id]}

    def _bpe(self, token: str) -> List[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if best not in self.bpe_ranks:
                break
            word = merge_pair(word, best)
        return word

    def _word_ids(self, token: str) -> List[int]:
        ids = self.cache.get(token)
        if ids is None:
            ids = [self.encoder[piece] for piece in self._bpe(token)]
            if len(self.cache) < 1_000_000:
                self.cache[token] = ids
        return ids

    def encode(self, text: str) -> List[int]:
        text = whitespace_clean(basic_clean(text)).lower()
        ids: List[int] = []
        for word in self.pattern.findall(text):
            token = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self._word_ids(token))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        text = "".join(self.decoder[i] for i in ids)
        data = bytearray(self.byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def tokenize(self, texts, context_length: int = 248) -> torch.Tensor:
        """[N, context_length] int64: start + ids + end, cut with the last kept id = end,
        zero padded (the official ``tokenize(..., truncate=True)``)."""
        if isinstance(texts, str):
            texts = [texts]
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.start_id] + self.encode(text) + [self.end_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.end_id
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result
