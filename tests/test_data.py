"""The data layer: registry lookup order and checksums, text reading, vocabularies, TBPTT batching, `unrolled data`."""

import gzip
import io
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from unrolled.cli import main
from unrolled.data import (
    CharVocab,
    TBPTTStream,
    WordVocab,
    get,
    load_char_corpus,
    load_word_corpus,
    locate,
    read_text,
    resolve_text_source,
    split_tail,
    stdlib_corpus,
    stdlib_files,
    verify,
    vocab_from_json,
)
from unrolled.errors import UnrolledError

MIRROR = Path(os.environ["UNROLLED_DATA_DIR"])  # the real shared mirror, set by conftest.py
SHAKESPEARE = "tinyshakespeare/input.txt"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache; fail loudly if a test reaches the network by accident."""
    monkeypatch.setenv("UNROLLED_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(url, timeout=None):
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


@pytest.fixture
def empty_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("UNROLLED_DATA_DIR", str(mirror))
    return mirror


def _put(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _serve(monkeypatch, data: bytes) -> list[str]:
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(data)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return urls


# ---- registry ----


def test_get_unknown_name_lists_the_known_ones():
    assert get("ptb").kind == "word" and get("shakespeare").kind == "char"
    with pytest.raises(UnrolledError, match=r"unknown dataset 'nope'; known: shakespeare, ptb-char, ptb, wikitext2"):
        get("nope")
    with pytest.raises(UnrolledError, match="has no file 'train'; it has: text"):
        locate("shakespeare", "train")


def test_locate_prefers_mirror_then_cache_without_hashing(empty_mirror, tmp_path):
    cached = _put(tmp_path / "cache", SHAKESPEARE, b"from the cache")
    assert locate("shakespeare", "text") == cached
    mirrored = _put(empty_mirror, SHAKESPEARE, b"from the mirror")  # wrong bytes: lookup must not hash
    assert locate("shakespeare", "text") == mirrored


def test_failed_download_says_where_to_put_the_file(empty_mirror, tmp_path, monkeypatch):
    def refuse(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    spec = get("shakespeare").files["text"]
    with pytest.raises(UnrolledError) as err:
        locate("shakespeare", "text")
    msg = str(err.value)
    assert spec.url in msg and "no route to host" in msg
    assert str(empty_mirror / SHAKESPEARE) in msg and str(tmp_path / "cache" / SHAKESPEARE) in msg
    assert not list((tmp_path / "cache").rglob("*.part"))  # no half-written file left behind


def test_download_checks_sha256(empty_mirror, tmp_path, monkeypatch):
    good = (MIRROR / SHAKESPEARE).read_bytes()
    urls = _serve(monkeypatch, good[:-1] + b"?")
    with pytest.raises(UnrolledError, match=r"has sha256 \w+, not the expected 86c4e6aa"):
        locate("shakespeare", "text")
    assert not (tmp_path / "cache" / SHAKESPEARE).exists() and not list((tmp_path / "cache").rglob("*.part"))
    _serve(monkeypatch, good)
    path = locate("shakespeare", "text")
    assert path == tmp_path / "cache" / SHAKESPEARE and path.read_bytes() == good
    assert urls == [get("shakespeare").files["text"].url]
    assert [(r.status, r.path) for r in verify("shakespeare")] == [("ok", path)]


def test_rebuilt_gzip_file_downloads_the_uncompressed_original(empty_mirror, tmp_path, monkeypatch):
    original = gzip.decompress((MIRROR / "ptb/ptb.char.train.txt.gz").read_bytes())
    _serve(monkeypatch, original)
    path = locate("ptb-char", "train")
    assert path == tmp_path / "cache" / "ptb/ptb.char.train.txt"
    assert verify("ptb-char")[0] == ("ptb-char", "train", path, "ok")


def test_verify_real_mirror_and_a_corrupted_copy(tmp_path, monkeypatch):
    assert [(r.key, r.status) for r in verify("shakespeare")] == [("text", "ok")]
    bad = bytearray((MIRROR / SHAKESPEARE).read_bytes())
    bad[1000] ^= 1
    _put(tmp_path / "bad", SHAKESPEARE, bytes(bad))
    monkeypatch.setenv("UNROLLED_DATA_DIR", str(tmp_path / "bad"))
    results = {(r.dataset, r.key): r.status for r in verify()}
    assert results[("shakespeare", "text")] == "mismatch"
    assert results[("ptb", "train")] == "missing"


def test_resolve_text_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_text_source(None).label == "stdlib"
    assert resolve_text_source("ptb").dataset is get("ptb")
    Path("ptb").write_text("a file wins over a dataset of the same name")
    assert resolve_text_source("ptb").path == Path("ptb")
    with pytest.raises(UnrolledError, match=r"--data 'nope.txt' is neither a file nor a known dataset \(known: "):
        resolve_text_source("nope.txt")


# ---- text ----


def test_read_text_reports_file_and_byte_offset(tmp_path):
    path = _put(tmp_path, "bad.txt", "héé".encode() + b"\xff rest")
    with pytest.raises(UnrolledError) as err:
        read_text(path)
    assert str(err.value) == (
        f"{path} is not valid UTF-8: invalid byte 0xff at offset 5 (use --errors replace to substitute U+FFFD)"
    )
    assert read_text(path, errors="replace") == "héé\ufffd rest"


def test_read_text_empty_missing_and_gzip(tmp_path):
    with pytest.raises(UnrolledError, match=r"empty\.txt is empty$"):
        read_text(_put(tmp_path, "empty.txt", b""))
    with pytest.raises(UnrolledError, match=r"nothere\.txt does not exist$"):
        read_text(tmp_path / "nothere.txt")
    assert read_text(_put(tmp_path, "a.txt.gz", gzip.compress("naïve\n".encode()))) == "naïve\n"
    with pytest.raises(UnrolledError, match="offset 2 of the uncompressed text"):
        read_text(_put(tmp_path, "b.txt.gz", gzip.compress(b"ok\x80")))


def test_stdlib_corpus_is_deterministic_and_cut_exactly():
    rels = [rel for rel, _ in stdlib_files()]
    assert rels == sorted(rels) and len(rels) > 100
    assert not [r for r in rels if "test" in r or r.startswith(("idlelib/", "lib2to3/", "turtledemo/"))]
    text = stdlib_corpus(max_chars=50_000)
    assert len(text) == 50_000 and text.startswith(f"# ---- {rels[0]} ----\n")
    assert stdlib_corpus(max_chars=120_000)[:50_000] == text  # same order every time, a longer cut extends it
    assert text.count("# ---- ") >= 2


def test_char_vocab_round_trip_and_unknown_characters():
    text = "hello, world\n"
    vocab = CharVocab.build(text)
    assert vocab.itos == sorted(set(text)) and len(vocab) == 10
    assert all(vocab.stoi[c] == i for i, c in enumerate(vocab.itos))
    ids = vocab.encode(text)
    assert ids.dtype == torch.long and ids.tolist() == [vocab.itos.index(c) for c in text]
    assert vocab.decode(ids) == text
    again = vocab_from_json(json.loads(json.dumps(vocab.to_json())))
    assert isinstance(again, CharVocab) and again.itos == vocab.itos
    assert CharVocab(["c", "a", "b"]).encode("abcab").tolist() == [1, 2, 0, 1, 2]  # any order, not just sorted
    with pytest.raises(UnrolledError) as err:
        vocab.encode("hé€llé", what="the prime text")
    assert str(err.value) == "the prime text has characters not in the model's vocabulary: 'é', '€'"
    with pytest.raises(UnrolledError, match=r"and 2 more$"):
        CharVocab.build("a").encode("bcdefghijklm")
    with pytest.raises(UnrolledError, match=r"ids must lie in \[0, 9\]"):
        vocab.decode([10])


def test_word_vocab_eos_unk_and_json():
    vocab = WordVocab.build(["the cat sat", " the <unk> ran "])
    assert vocab.itos == ["the", "<eos>", "cat", "sat", "<unk>", "ran"]  # by frequency, ties in order of appearance
    ids = vocab.encode_lines(["the dog sat"], unknown="unk")
    assert ids.tolist() == [0, 4, 3, 1]
    assert vocab.decode(vocab.encode_lines(["cat sat", "ran"])) == "cat sat\nran\n"
    with pytest.raises(UnrolledError, match=r"the validation text has words not in the vocabulary: 'dog', 'owl'"):
        vocab.encode_lines(["dog owl dog"], what="the validation text")
    with pytest.raises(UnrolledError, match=r"has no '<unk>' to map them to\): 'dog'"):
        WordVocab.build(["a cat"]).encode_lines(["a dog"], unknown="unk")
    again = vocab_from_json(json.loads(json.dumps(vocab.to_json())))
    assert isinstance(again, WordVocab) and again.itos == vocab.itos and again.eos == "<eos>"
    with pytest.raises(UnrolledError, match="type 'char' or 'word'"):
        vocab_from_json({"type": "bpe"})


def test_split_tail():
    assert split_tail("abcdefghij") == ("abcdefghi", "j")
    head, tail = split_tail(torch.arange(100), 0.25)
    assert head.tolist() == list(range(75)) and tail.tolist() == list(range(75, 100))
    assert split_tail("ab") == ("a", "b")
    for seq, fraction in (("a", 0.1), ("abcdefghij", 0.95)):
        with pytest.raises(UnrolledError, match="too short"):
            split_tail(seq, fraction)
    with pytest.raises(UnrolledError, match="strictly between 0 and 1"):
        split_tail("abc", 1.0)


def test_ptb_char_symbols_become_one_character_each(empty_mirror):
    _put(empty_mirror, "ptb/ptb.char.train.txt.gz", gzip.compress(b"a _ c a t \n t h e _ < u n k > \n "))
    _put(empty_mirror, "ptb/ptb.char.valid.txt", b"c a t \n")
    _put(empty_mirror, "ptb/ptb.char.test.txt", b" a \n ")
    assert load_char_corpus("ptb-char") == ("a_cat\nthe_<unk>\n", "cat\n", "a\n")


def test_ptb_word_corpus_matches_the_published_counts():
    train, valid, test = load_word_corpus("ptb")
    vocab = WordVocab.build(train)
    assert len(vocab) == 10_000
    counts = [len(vocab.encode_lines(part)) for part in (train, valid, test)]
    assert counts == [929_589, 73_760, 82_430]


def test_single_file_corpus_splits_90_10(tmp_path):
    path = _put(tmp_path, "t.txt", b"x" * 90 + b"y" * 10)
    assert load_char_corpus(str(path)) == ("x" * 90, "y" * 10, None)
    lines = _put(tmp_path, "w.txt", "".join(f"w{i}\n" for i in range(20)).encode())
    train, valid, test = load_word_corpus(str(lines))
    assert train == [f"w{i}" for i in range(18)] and valid == ["w18", "w19"] and test is None
    with pytest.raises(UnrolledError, match="needs --data"):
        load_word_corpus(None)


# ---- batching ----


def test_tbptt_windows_tile_each_stream_exactly():
    ids = torch.arange(103)
    stream = TBPTTStream(ids, batch_size=4, seq_len=5)  # 4 streams of 25 tokens, 3 dropped
    assert stream.data.shape == (4, 25) and len(stream) == 5  # ceil(24 / 5)
    windows = list(stream)
    assert [x.shape[1] for x, _ in windows] == [5, 5, 5, 5, 4]
    for b in range(4):
        xs = torch.cat([x[b] for x, _ in windows])
        ys = torch.cat([y[b] for _, y in windows])
        assert xs.tolist() == list(range(25 * b, 25 * b + 24))
        assert ys.tolist() == list(range(25 * b + 1, 25 * b + 25))
    assert sum(y.numel() for _, y in windows) == stream.targets_per_epoch == 96


def test_tbptt_resumes_at_the_same_window():
    stream = TBPTTStream(torch.randint(0, 50, (1000,)), batch_size=3, seq_len=7)
    full = list(stream.windows())
    resumed = list(stream.windows(start=20))
    assert [i for i, _, _ in resumed] == list(range(20, len(stream)))
    for (i, x, y), (j, x2, y2) in zip(full[20:], resumed):
        assert i == j and torch.equal(x, x2) and torch.equal(y, y2)
    assert list(stream.windows(start=len(stream))) == []
    with pytest.raises(UnrolledError, match="window cursor must lie in"):
        stream.windows(start=len(stream) + 1)


def test_tbptt_too_short_corpus():
    one = TBPTTStream(torch.arange(12), batch_size=2, seq_len=5)  # exactly seq_len + 1 tokens per stream
    assert len(one) == 1 and one.window(0)[0].shape == (2, 5)
    with pytest.raises(UnrolledError) as err:
        TBPTTStream(torch.arange(11), batch_size=2, seq_len=5)
    assert str(err.value) == (
        "the corpus has 11 tokens, fewer than one batch window needs (batch_size × (seq_len + 1) = 12); "
        "use a smaller --batch-size or --seq-len"
    )
    with pytest.raises(UnrolledError, match="1-D tensor"):
        TBPTTStream(torch.zeros(2, 20, dtype=torch.long), batch_size=1, seq_len=2)


# ---- CLI ----


def test_cli_data_list_and_verify(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "shakespeare" in out and "mirror" in out
    assert main(["data", "verify", "shakespeare"]) == 0
    assert capsys.readouterr().out.startswith("ok  shakespeare/text")


def test_cli_data_verify_fails_on_mismatch_and_missing(tmp_path, monkeypatch, capsys):
    _put(tmp_path / "bad", SHAKESPEARE, b"not shakespeare")
    monkeypatch.setenv("UNROLLED_DATA_DIR", str(tmp_path / "bad"))
    assert main(["data", "verify"]) == 1
    assert "MISMATCH  shakespeare/text" in capsys.readouterr().out
    _put(tmp_path / "bad", SHAKESPEARE, (MIRROR / SHAKESPEARE).read_bytes())
    assert main(["data", "verify"]) == 0  # missing files alone do not fail the full sweep
    assert main(["data", "verify", "ptb"]) == 1  # but do fail for a named dataset
    assert main(["data", "verify", "nope"]) == 2
