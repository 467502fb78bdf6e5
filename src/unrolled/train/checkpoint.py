"""Checkpoints: a directory of safetensors weights, JSON config and state, torch tensors for the rest.

    RUN/ckpt-00001200/model.safetensors   weights (shared tensors, e.g. tied embeddings, handled)
    RUN/ckpt-00001200/config.json         {"format", "task", "config", "vocab"}: enough to rebuild the model
    RUN/ckpt-00001200/state.json          step, epoch, data cursor, metrics
    RUN/ckpt-00001200/averaged.safetensors  NT-ASGD's averaged weights, once averaging has begun
    RUN/ckpt-00001200/training.pt         optimizer, scheduler, RNG, carried hidden state (weights_only load)
    RUN/latest -> ckpt-...                symlinks, replaced atomically
    RUN/best   -> ckpt-...

A checkpoint is written into a temporary directory and renamed into place; the `latest` and
`best` links are switched with `os.replace`. A run killed at any instant leaves the previous
complete checkpoint reachable. Loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from ..errors import UnrolledError

FORMAT = "unrolled-checkpoint/1"
FILES = ("model.safetensors", "config.json", "state.json", "training.pt")


@dataclass
class Checkpoint:
    path: Path
    task: str
    config: dict[str, Any]
    vocab: dict[str, Any] | None
    state: dict[str, Any]

    @property
    def has_averaged(self) -> bool:
        return (self.path / "averaged.safetensors").is_file()

    def load_weights(self, model: nn.Module, name: str = "model") -> None:
        """Weights from `model.safetensors` (the trained ones) or `averaged.safetensors` (NT-ASGD's average)."""
        try:
            missing, unexpected = load_model(model, self.path / f"{name}.safetensors", strict=False)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise UnrolledError(f"checkpoint {self.path} is damaged: {name}.safetensors cannot be read ({e})") from e
        if missing or unexpected:
            raise UnrolledError(
                f"checkpoint {self.path} does not fit this model: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]}"
            )

    def training_state(self) -> dict[str, Any]:
        try:
            return torch.load(self.path / "training.pt", weights_only=True)
        except Exception as e:  # a truncated zip raises any of several types
            raise UnrolledError(f"checkpoint {self.path} is damaged: training.pt cannot be read ({e})") from e


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(run_dir: Path, name: str, target: str) -> None:
    tmp = run_dir / f".{name}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, run_dir / name)


def save(
    run_dir: Path,
    *,
    model: nn.Module,
    task: str,
    config: dict,
    vocab: dict | None,
    state: dict,
    training: dict,
    best: bool,
    averaged: nn.Module | None = None,
) -> Path:
    """Write checkpoint `ckpt-<step>` atomically, point `latest` (and `best`) at it, drop unreferenced ones."""
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{state['step']:08d}"
    final = run_dir / name
    if not final.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=run_dir))
        save_model(model, str(tmp / "model.safetensors"))
        if averaged is not None:
            save_model(averaged, str(tmp / "averaged.safetensors"))
        _write_json(tmp / "config.json", {"format": FORMAT, "task": task, "config": config, "vocab": vocab})
        _write_json(tmp / "state.json", state)
        torch.save(training, tmp / "training.pt")
        for f in FILES:
            _fsync(tmp / f)
        os.rename(tmp, final)
        _fsync(run_dir)
    _link(run_dir, "latest", name)
    if best:
        _link(run_dir, "best", name)
    keep = {os.readlink(run_dir / n) for n in ("latest", "best") if (run_dir / n).is_symlink()}
    for old in run_dir.glob("ckpt-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in run_dir.glob(".tmp-*"):  # left by a run killed mid-write
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve(path: Path, prefer: str = "best") -> Path:
    """A checkpoint directory from a checkpoint or a run directory (its `best`, else `latest`)."""
    path = Path(path)
    if not path.exists():
        raise UnrolledError(f"no checkpoint at {path}: the path does not exist")
    if (path / "config.json").exists():
        return path
    for name in (prefer, "latest", "best"):
        if (path / name).exists():
            return (path / name).resolve()
    raise UnrolledError(f"{path} is not an unrolled checkpoint or run directory (no config.json, latest or best)")


def load(path: Path, prefer: str = "best") -> Checkpoint:
    """Read a checkpoint's JSON parts and check that the rest is there; weights load on demand."""
    ckpt = resolve(path, prefer)
    try:
        meta = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnrolledError(f"checkpoint {ckpt} is damaged: config.json cannot be read ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UnrolledError(f"{ckpt} is not an unrolled checkpoint (config.json has no format {FORMAT!r})")
    missing = [f for f in FILES if not (ckpt / f).is_file()]
    if missing:
        raise UnrolledError(f"checkpoint {ckpt} is damaged: {', '.join(missing)} missing")
    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnrolledError(f"checkpoint {ckpt} is damaged: state.json cannot be read ({e})") from e
    return Checkpoint(ckpt, meta["task"], meta["config"], meta.get("vocab"), state)
