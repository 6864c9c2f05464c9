"""BPE vocabulary learning: hand-counted merges, the merges-file format, loading it back."""

import argparse
import gzip
import json
import re


from training import synth
from training.model import vocab
from training.model.tokenizer import ClipTokenizer

# Sennrich et al.'s example: low x5, lower x2, newest x6, widest x3.
CORPUS = "LOW low low low low lower lower " + "newest " * 6 + "widest widest widest"

# Counted by hand from the words above ("</w>" ends each word; ties -> smallest pair):
# es 9 = st</w> 9 -> (e, s); then (es, t</w>) 9; (l, o) 7; (e, w) = (n, e) = (w, est</w>) 6
# -> (e, w); (ew, est</w>) = (n, ew) 6 -> (ew, est</w>); (n, ewest</w>) 6; (lo, w</w>) 5;
# (d, est</w>) = (i, d) = (w, i) 3 -> (d, est</w>).
EXPECTED = [
    ("e", "s"),
    ("es", "t</w>"),
    ("l", "o"),
    ("e", "w"),
    ("ew", "est</w>"),
    ("n", "ewest</w>"),
    ("lo", "w</w>"),
    ("d", "est</w>"),
]


def _run(argv):
    parser = argparse.ArgumentParser()
    vocab.add_arguments(parser)
    return vocab.run(parser.parse_args(argv))


def test_word_counts_use_clip_cleaning_and_byte_symbols():
    counts = vocab.word_counts(["A  cat's\tnap,  a CAT!", "café 42"])
    # CLIP's regex: 's is its own word, digits split one by one, punctuation runs kept.
    assert counts == {
        "a": 2,
        "cat": 2,
        "'s": 1,
        "nap": 1,
        ",": 1,
        "!": 1,
        "cafÃ©": 1,  # é is two UTF-8 bytes, each mapped to its printable symbol
        "4": 1,
        "2": 1,
    }


def test_merges_match_hand_counting():
    assert vocab.learn_merges(vocab.word_counts([CORPUS]), 8) == EXPECTED


def test_stops_when_every_word_is_one_symbol():
    merges = vocab.learn_merges(vocab.word_counts(["ab ab b"]), 50)
    assert merges == [("a", "b</w>")]


def test_never_learns_a_token_twice():
    counts = vocab.word_counts([CORPUS, "the theme thesis athens"] * 3)
    merges = vocab.learn_merges(counts, 10_000)
    joined = [a + b for a, b in merges]
    assert len(joined) == len(set(joined))


def test_merges_file_format_and_determinism(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS + "\n\n")
    out = tmp_path / "bpe.txt.gz"
    assert _run(["--corpus", str(corpus), "--merges", "8", "--out", str(out)]) == 0
    lines = gzip.decompress(out.read_bytes()).decode("utf-8").split("\n")
    assert lines[0] == "#version: 0.2"
    assert lines[1:] == [f"{a} {b}" for a, b in EXPECTED] + [""]
    first = out.read_bytes()
    assert _run(["--corpus", str(corpus), "--merges", "8", "--out", str(out)]) == 0
    assert out.read_bytes() == first


def test_reads_sharegpt4v_json_and_jsonl(tmp_path):
    entries = [
        {
            "id": "1",
            "image": "images/1.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe this image in detail."},
                {"from": "gpt", "value": "A red circle."},
            ],
        }
    ]
    (tmp_path / "captions.json").write_text(json.dumps(entries))
    (tmp_path / "captions.jsonl").write_text(
        json.dumps({"image": "x.jpg", "long": "A blue star. More.", "short": "A blue star."}) + "\n"
    )
    assert list(vocab.read_corpus(tmp_path / "captions.json")) == ["A red circle."]
    assert list(vocab.read_corpus(tmp_path / "captions.jsonl")) == [
        "A blue star. More.",
        "A blue star.",
    ]


def test_missing_corpus_is_reported(tmp_path, capsys):
    assert _run(["--corpus", str(tmp_path / "nope.txt"), "--merges", "5", "--out", "x"]) == 2
    assert "corpus file(s) not found" in capsys.readouterr().err


def test_clip_tokenizer_loads_the_learnt_vocabulary(tmp_path):
    data = tmp_path / "data"
    synth.write_dataset(data, 8, 0, "sharegpt4v", 64, 4)
    out = tmp_path / "bpe.txt.gz"
    args = ["--corpus", str(data / "captions.json"), str(data / "captions.jsonl")]
    assert _run(args + ["--merges", "300", "--out", str(out)]) == 0
    merges = gzip.decompress(out.read_bytes()).decode("utf-8").splitlines()[1:]
    assert len(merges) == 300
    tokenizer = ClipTokenizer(out, num_merges=300)
    assert tokenizer.vocab_size == 512 + 300 + 2
    assert (tokenizer.start_id, tokenizer.end_id) == (812, 813)
    caption = json.loads((data / "captions.jsonl").read_text().splitlines()[0])["long"]
    ids = tokenizer.encode(caption)
    assert max(ids) < 812
    # Decoding gives back the lower-cased words and punctuation runs of the caption.
    assert tokenizer.decode(ids).split() == re.findall(r"[a-z]+|[^\sa-z]+", caption.lower())
    # A word as frequent as "the" has become a single learnt token.
    assert tokenizer.encode("The") == [tokenizer.encoder["the</w>"]]
    assert tokenizer.encoder["the</w>"] >= 512
