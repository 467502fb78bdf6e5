"""Text corpora and vocabularies: reading files (UTF-8, optionally gzipped), the default corpus, tokenising.

Character vocabularies map each Unicode character to an id; word vocabularies map whitespace-separated
tokens to ids, with `<eos>` at the end of every line (the pytorch/examples word_language_model convention).
Both serialise to plain JSON so that a checkpoint carries its vocabulary without pickles.
"""

from __future__ import annotations

import gzip
import os
import sysconfig
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import UnrolledError
from .registry import TextSource, locate, resolve_text_source


def read_text(path: str | os.PathLike, errors: str = "strict") -> str:
    """The UTF-8 text of `path` (gunzipped when it ends in .gz). `errors="replace"` substitutes U+FFFD."""
    p = Path(path)
    if errors not in ("strict", "replace"):
        raise UnrolledError(f"errors must be 'strict' or 'replace', got {errors!r}")
    if not p.exists():
        raise UnrolledError(f"{p} does not exist")
    if not p.is_file():
        raise UnrolledError(f"{p} is not a regular file")
    data = p.read_bytes()
    gz = p.name.endswith(".gz")
    if gz:
        try:
            data = gzip.decompress(data)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise UnrolledError(f"{p} is not a valid gzip file ({e})") from None
    try:
        text = data.decode("utf-8", errors)
    except UnicodeDecodeError as e:
        where = f"offset {e.start}" + (" of the uncompressed text" if gz else "")
        raise UnrolledError(
            f"{p} is not valid UTF-8: invalid byte 0x{data[e.start]:02x} at {where} "
            "(use --errors replace to substitute U+FFFD)"
        ) from None
    if not text:
        raise UnrolledError(f"{p} is empty")
    return text


# Tests are mostly fixtures and generated data, and the others are tools or 2to3 relics rather than library
# code; leaving them out keeps the default corpus representative and its size modest (about 10 MB).
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "idlelib", "lib2to3", "turtledemo"}


def stdlib_files() -> list[tuple[str, Path]]:
    """(relative posix path, path) of the standard library's .py sources that make up `stdlib_corpus`, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and "test" not in d]  # prune: site-packages is big
        for fn in filenames:
            rel = (Path(dirpath) / fn).relative_to(root).as_posix()
            if fn.endswith(".py") and "test" not in rel:
                found.append((rel, Path(dirpath) / fn))
    return sorted(found)


def stdlib_corpus(max_chars: int | None = None) -> str:
    """The default corpus, needing no download: this Python's standard-library sources, in sorted path order,
    each preceded by a line `# ---- <relative path> ----`, cut at exactly `max_chars` characters when given."""
    if max_chars is not None and max_chars < 1:
        raise UnrolledError(f"max_chars must be at least 1, got {max_chars}")
    files = stdlib_files()
    if not files:
        raise UnrolledError(f"found no standard-library sources under {sysconfig.get_paths()['stdlib']}; use --data")
    pieces, total = [], 0
    for rel, path in files:
        piece = f"# ---- {rel} ----\n" + path.read_text(encoding="utf-8", errors="replace")
        pieces.append(piece)
        total += len(piece)
        if max_chars is not None and total >= max_chars:
            break
    return "".join(pieces)[:max_chars]


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(s) for s in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _ids_list(ids: Tensor | Sequence[int], size: int) -> list[int]:
    out = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    out = out if isinstance(out, list) else [out]  # a 0-d tensor
    bad = [i for i in out if not 0 <= i < size]
    if bad:
        raise UnrolledError(f"ids must lie in [0, {size - 1}] (the vocabulary size is {size}), got {bad[0]}")
    return out


class CharVocab:
    """One id per character; `build` sorts the characters so that the same text always gives the same ids."""

    def __init__(self, itos: Sequence[str]):
        itos = list(itos)
        if not itos or any(not isinstance(c, str) or len(c) != 1 for c in itos) or len(set(itos)) != len(itos):
            raise UnrolledError("a character vocabulary must be a non-empty list of distinct single characters")
        self.itos = itos
        self.stoi = {c: i for i, c in enumerate(itos)}
        codes = np.array([ord(c) for c in itos], dtype=np.int64)
        self._order = np.argsort(codes)  # encode looks codes up by binary search in sorted order
        self._sorted = codes[self._order]

    @classmethod
    def build(cls, text: str) -> CharVocab:
        if not text:
            raise UnrolledError("cannot build a character vocabulary from empty text")
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, what: str = "the text") -> Tensor:
        """The ids of `text`, shape (len(text),), int64; `what` names the text in the error for unknown characters."""
        # Vectorised through numpy: a Python loop over a 10M-character corpus takes seconds.
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, codes), len(self._sorted) - 1)
        known = self._sorted[pos] == codes
        if not known.all():
            unknown, first = np.unique(codes[~known], return_index=True)
            chars = [chr(c) for c in unknown[np.argsort(first)]]
            raise UnrolledError(f"{what} has characters not in the model's vocabulary: {_listing(chars)}")
        return torch.from_numpy(self._order[pos])

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        return "".join(self.itos[i] for i in _ids_list(ids, len(self)))

    def to_json(self) -> dict:
        return {"type": "char", "itos": list(self.itos)}

    @classmethod
    def from_json(cls, d: dict) -> CharVocab:
        if not isinstance(d, dict) or d.get("type") != "char" or not isinstance(d.get("itos"), list):
            raise UnrolledError('a character vocabulary must be a JSON object {"type": "char", "itos": [...]}')
        return cls(d["itos"])


def split_lines(text: str) -> list[str]:
    """Lines split at "\\n" only (not at the other characters `str.splitlines` treats as breaks); a final
    newline does not start an extra empty line."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


class WordVocab:
    """Ids by frequency in the training text, most frequent first (ties: first appearance); each line
    ends with the token `eos`. The order is what an adaptive softmax's clusters rely on.

    `unk` is the token unseen words may map to; it is only usable when the training text contains it (PTB and
    WikiText-2 do), since an id that training never saw would have an untrained embedding.
    """

    def __init__(self, itos: Sequence[str], eos: str = "<eos>", unk: str = "<unk>"):
        itos = list(itos)
        if not all(isinstance(w, str) and w for w in itos) or len(set(itos)) != len(itos) or eos not in itos:
            raise UnrolledError(f"a word vocabulary must be a list of distinct non-empty words including {eos!r}")
        self.itos, self.eos, self.unk = itos, eos, unk
        self.stoi = {w: i for i, w in enumerate(itos)}

    @classmethod
    def build(cls, lines: Iterable[str] | str, eos: str = "<eos>", unk: str = "<unk>") -> WordVocab:
        """From training lines (a string is split into lines first)."""
        counts: Counter[str] = Counter()
        for line in split_lines(lines) if isinstance(lines, str) else lines:
            counts.update(line.split())
            counts[eos] += 1
        if not counts:
            raise UnrolledError("cannot build a word vocabulary from no lines")
        return cls([w for w, _ in counts.most_common()], eos, unk)  # most_common is stable: ties keep their order

    def __len__(self) -> int:
        return len(self.itos)

    def encode_lines(self, lines: Iterable[str], unknown: str = "error", what: str = "the text") -> Tensor:
        """All tokens of `lines`, each line followed by `eos`, as one (N,) int64 tensor.

        unknown="unk" maps unseen words to `unk` when the vocabulary has it; otherwise unseen words raise.
        """
        if unknown not in ("error", "unk"):
            raise UnrolledError(f"unknown must be 'error' or 'unk', got {unknown!r}")
        stoi, eos = self.stoi, self.stoi[self.eos]
        unk = stoi.get(self.unk, -1) if unknown == "unk" else -1
        ids: list[int] = []
        unseen: dict[str, None] = {}
        for line in lines:
            for w in line.split():
                i = stoi.get(w, unk)
                if i < 0:
                    unseen[w] = None
                ids.append(i)
            ids.append(eos)
        if unseen:
            hint = "" if self.unk in stoi else f" (and the vocabulary has no {self.unk!r} to map them to)"
            raise UnrolledError(f"{what} has words not in the vocabulary{hint}: {_listing(list(unseen))}")
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """Words joined by spaces, with `eos` rendered as a line break."""
        out, line = [], []
        for i in _ids_list(ids, len(self)):
            if self.itos[i] == self.eos:
                out.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(self.itos[i])
        return "".join(out) + " ".join(line)

    def to_json(self) -> dict:
        return {"type": "word", "itos": list(self.itos), "eos": self.eos, "unk": self.unk}

    @classmethod
    def from_json(cls, d: dict) -> WordVocab:
        if not isinstance(d, dict) or d.get("type") != "word" or not isinstance(d.get("itos"), list):
            raise UnrolledError('a word vocabulary must be a JSON object {"type": "word", "itos": [...], ...}')
        return cls(d["itos"], d.get("eos", "<eos>"), d.get("unk", "<unk>"))


def vocab_from_json(d: dict) -> CharVocab | WordVocab:
    """Rebuild a vocabulary saved with `to_json`, whichever kind it is."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "char":
        return CharVocab.from_json(d)
    if kind == "word":
        return WordVocab.from_json(d)
    raise UnrolledError(f"a vocabulary must have type 'char' or 'word', got {kind!r}")


def split_tail(seq, valid_fraction: float = 0.1):
    """(head, tail) of a str, list or tensor: the tail is the last `valid_fraction` of it, for validation."""
    if not 0 < valid_fraction < 1:
        raise UnrolledError(f"valid_fraction must lie strictly between 0 and 1, got {valid_fraction}")
    n = len(seq)
    cut = int(n * (1 - valid_fraction))
    if cut == 0 or cut == n:
        raise UnrolledError(
            f"a corpus of {n} tokens is too short to split {1 - valid_fraction:.0%}/{valid_fraction:.0%} "
            "into non-empty training and validation parts"
        )
    return seq[:cut], seq[cut:]


def _spaced_symbols(text: str) -> str:
    """ptb-char's format ("c a t _ s a t \\n") as one character per symbol, "\\n" ending each non-empty line."""
    return "".join("".join(line.split()) + "\n" for line in text.split("\n") if line.strip())


def _source(source: str | os.PathLike | TextSource | None) -> TextSource:
    return source if isinstance(source, TextSource) else resolve_text_source(source)


def load_char_corpus(
    source: str | os.PathLike | TextSource | None = None, errors: str = "strict", max_chars: int | None = None
) -> tuple[str, str, str | None]:
    """(train, valid, test or None) texts for a character model.

    `source` is a file, a dataset name (or a `TextSource`), or None for `stdlib_corpus(max_chars)`. A single
    text (a file, the stdlib corpus, a dataset's "text" file) is split 90/10 by `split_tail` and has no test
    part; a dataset with train/valid/test files uses them. ptb-char's spaced symbols become one character
    each: "_" (between words) stays "_" and every line ends with "\\n" (which plays the part of <eos>).
    """
    src = _source(source)
    if src.dataset is None:
        text = read_text(src.path, errors) if src.path is not None else stdlib_corpus(max_chars)
        return (*split_tail(text), None)
    ds = src.dataset
    if "text" in ds.files:
        return (*split_tail(read_text(locate(ds.name, "text"), errors)), None)
    convert = _spaced_symbols if ds.format == "spaced-symbols" else (lambda t: t)
    train, valid, test = (convert(read_text(locate(ds.name, k), errors)) for k in ("train", "valid", "test"))
    return train, valid, test


def load_word_corpus(
    source: str | os.PathLike | TextSource, errors: str = "strict"
) -> tuple[list[str], list[str], list[str] | None]:
    """(train, valid, test or None) lines for a word model, from a file (split 90/10 by lines) or a dataset."""
    src = _source(source)
    if src.path is None and src.dataset is None:
        raise UnrolledError("a word-level model needs --data: a text file or a dataset such as ptb or wikitext2")
    if src.path is not None:
        return (*split_tail(split_lines(read_text(src.path, errors))), None)
    ds = src.dataset
    if "text" in ds.files:
        return (*split_tail(split_lines(read_text(locate(ds.name, "text"), errors))), None)
    train, valid, test = (split_lines(read_text(locate(ds.name, k), errors)) for k in ("train", "valid", "test"))
    return train, valid, test
