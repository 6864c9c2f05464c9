"""The Python CLIP tokenizer against the official SimpleTokenizer outputs."""

import json

import pytest

from training.model.tokenizer import ClipTokenizer, count_merges

from .conftest import CLIP_VOCAB, REFERENCE_DIR, needs_shared


@pytest.fixture(scope="module")
def tokenizer():
    return ClipTokenizer(CLIP_VOCAB)


@needs_shared
def test_vocabulary_layout(tokenizer):
    assert count_merges(CLIP_VOCAB) == 48894
    assert (tokenizer.vocab_size, tokenizer.start_id, tokenizer.end_id) == (49408, 49406, 49407)


@needs_shared
def test_all_reference_cases(tokenizer):
    cases = json.loads((REFERENCE_DIR / "tokenizer-cases.json").read_text())["cases"]
    assert len(cases) == 400
    mismatches = [case["text"] for case in cases if tokenizer.encode(case["text"]) != case["ids"]]
    assert mismatches == []


@needs_shared
def test_reference_texts_and_truncation(tokenizer, reference):
    texts = [text["text"] for text in reference["texts"]]
    rows = tokenizer.tokenize(texts, context_length=248)
    assert rows.shape == (len(texts), 248)
    for row, text in zip(rows.tolist(), reference["texts"]):
        ids = [tokenizer.start_id] + tokenizer.encode(text["text"]) + [tokenizer.end_id]
        assert ids == text["ids"]
        length = len(text["ids_248"])
        assert row[:length] == text["ids_248"]
        assert all(value == 0 for value in row[length:])
    long_rows = zip(rows.tolist(), reference["texts"])
    truncated = [row for row, text in long_rows if len(text["ids"]) > 248]
    assert truncated and all(row[-1] == tokenizer.end_id for row in truncated)


@needs_shared
def test_cleaning_and_decode(tokenizer):
    assert tokenizer.encode("A  red\tCAR &amp;amp; it's") == tokenizer.encode("a red car & it's")
    assert tokenizer.decode(tokenizer.encode("a photo of a dog")).strip() == "a photo of a dog"
    assert tokenizer.encode("<|endoftext|>") == [tokenizer.end_id]
    assert tokenizer.tokenize("", context_length=5).tolist() == [[49406, 49407, 0, 0, 0]]


@needs_shared
def test_fewer_merges_give_a_smaller_vocabulary():
    small = ClipTokenizer(CLIP_VOCAB, num_merges=1000)
    assert (small.vocab_size, small.end_id) == (1514, 1513)
    assert max(small.encode("an extraordinarily long caption")) < 1512
    with pytest.raises(ValueError, match="num_merges"):
        ClipTokenizer(CLIP_VOCAB, num_merges=10**7)
