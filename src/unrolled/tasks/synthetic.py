"""The classic long-range tasks: the adding problem and the copy-memory task.

Adding (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015): each step carries a
number in [0, 1] and a marker; two steps are marked, one in each half; the target is the sum
of the two marked numbers. Answering 1.0 always scores a mean squared error of 1/6 ≈ 0.167.

Copy memory (Arjovsky et al. 2016): ten symbols from 1..8, then T − 1 blanks, a delimiter,
and ten more blanks; the network must output blanks until the delimiter and then the ten
symbols. Knowing no symbol scores 10·ln 8 / (T + 20) nats per step.

Each batch is drawn from its own seeded generator, so an epoch is a fixed set of sequences
and a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import opt
from ..errors import UnrolledError
from ..layers import LAYERS, RecurrentLayer, build_layer
from ..models import ManyToMany, ManyToOne

MEMORIZE = 10  # symbols to copy
SYMBOLS = 8


@dataclass
class SyntheticConfig:
    length: int = opt(100, "sequence length T (copy: the delay between the symbols and the delimiter)")
    cell: str = opt("lstm", "recurrent cell", choices=tuple(LAYERS))
    nonlinearity: str = opt("tanh", "the elman cell's nonlinearity", choices=("tanh", "relu"))
    layers: int = opt(1, "stacked recurrent layers")
    hidden: int = opt(128, "hidden units per layer")
    init_scale: float | None = opt(None, "recurrent weights: an orthogonal matrix (per gate) times this")
    train_sequences: int = opt(100_000, "sequences in the training set")
    test_sequences: int = opt(2_000, "sequences in the test set")
    data_seed: int = opt(0, "seed of the data (the model's is --seed)")
    backend: str = opt("auto", "layer backend: auto, fused, bptt, reference")


def adding_batch(g: torch.Generator, batch: int, length: int) -> tuple[Tensor, Tensor]:
    """x (B, T, 2): numbers and markers; y (B,): the sum of the two marked numbers."""
    if length < 2:
        raise UnrolledError(f"the adding problem needs --length ≥ 2, got {length}")
    values = torch.rand(batch, length, generator=g)
    first = torch.randint(0, length // 2, (batch,), generator=g)
    second = torch.randint(length // 2, length, (batch,), generator=g)
    rows = torch.arange(batch)
    marks = torch.zeros(batch, length)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    return torch.stack([values, marks], -1), values[rows, first] + values[rows, second]


def copy_batch(g: torch.Generator, batch: int, length: int) -> tuple[Tensor, Tensor]:
    """x (B, T + 20, 10) one-hot; y (B, T + 20) classes: 0 blank, 1..8 symbols, 9 delimiter."""
    if length < 1:
        raise UnrolledError(f"the copy task needs --length ≥ 1, got {length}")
    total = length + 2 * MEMORIZE
    symbols = torch.randint(1, SYMBOLS + 1, (batch, MEMORIZE), generator=g)
    inputs = torch.zeros(batch, total, dtype=torch.long)
    inputs[:, :MEMORIZE] = symbols
    inputs[:, MEMORIZE + length - 1] = SYMBOLS + 1
    targets = torch.zeros(batch, total, dtype=torch.long)
    targets[:, -MEMORIZE:] = symbols
    return F.one_hot(inputs, SYMBOLS + 2).float(), targets


class SyntheticStream:
    """`n_batches` batches, batch i drawn from a generator seeded with (seed, i)."""

    def __init__(self, make, batch_size: int, n_sequences: int, length: int, seed: int):
        self.make, self.batch_size, self.length, self.seed = make, batch_size, length, seed
        self.n_batches = max(1, n_sequences // batch_size)

    def __len__(self) -> int:
        return self.n_batches

    def windows(self, start: int = 0):
        for i in range(start, self.n_batches):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            yield (i, *self.make(g, self.batch_size, self.length))


def init_recurrent(layer: RecurrentLayer, scale: float) -> None:
    """Every recurrent matrix (W_hh, or W_yh for Jordan) := orthogonal × scale, gate block by gate block."""
    with torch.no_grad():
        for name, w in layer.named_parameters():
            if name.startswith(("weight_hh", "weight_yh")):
                for block in w.split(min(w.shape), 0):
                    nn.init.orthogonal_(block)
                    block.mul_(scale)


@dataclass(frozen=True)
class SyntheticTask:
    name: str
    make: object
    in_features: int
    carry_state = False
    unit = "sequence"

    @property
    def loss_label(self) -> str:
        return "mean squared error" if self.name == "adding" else "nats per step"

    @property
    def __doc__(self) -> str:
        return f"the {self.name} task (long-range memory)"

    config_class = SyntheticConfig
    presets: ClassVar[dict] = {}

    def prepare(self, cfg: SyntheticConfig, tcfg):
        train = SyntheticStream(self.make, tcfg.batch_size, cfg.train_sequences, cfg.length, cfg.data_seed)
        test = SyntheticStream(self.make, 500, cfg.test_sequences, cfg.length, cfg.data_seed + 7919)
        return None, train, test

    def build_model(self, cfg: SyntheticConfig, vocab=None) -> nn.Module:
        rnn = build_layer(cfg.cell, self.in_features, cfg.hidden, nonlinearity=cfg.nonlinearity, num_layers=cfg.layers)
        if cfg.init_scale is not None:
            init_recurrent(rnn, cfg.init_scale)
        if self.name == "adding":
            return ManyToOne(rnn, 1, backend=cfg.backend)
        return ManyToMany(rnn, SYMBOLS + 2, backend=cfg.backend)

    def baseline(self, cfg: SyntheticConfig) -> float:
        return 1 / 6 if self.name == "adding" else MEMORIZE * math.log(SYMBOLS) / (cfg.length + 2 * MEMORIZE)

    @staticmethod
    @torch.no_grad()
    def evaluate(model: nn.Module, stream: SyntheticStream, max_windows: int | None = None) -> dict[str, float]:
        was = model.training
        model.eval()
        total, count, right, symbols = 0.0, 0, 0, 0
        device = next(model.parameters()).device
        for i, x, y in stream.windows(0):
            if max_windows is not None and i >= max_windows:
                break
            x, y = x.to(device), y.to(device)
            loss, _ = model.loss((x, y))
            total += loss.item() * len(x)
            count += len(x)
            if isinstance(model, ManyToMany):
                pred = model(x)[:, -MEMORIZE:].argmax(-1)
                right += int((pred == y[:, -MEMORIZE:]).sum())
                symbols += y[:, -MEMORIZE:].numel()
        model.train(was)
        out = {"loss": total / count}
        if symbols:
            out["accuracy"] = right / symbols
        return out

    def result_metrics(self, summary: dict) -> list[tuple[str, str, float]]:
        return [("test", "mse" if self.name == "adding" else "nats_per_step", summary["best_valid"])]

    def default_dataset(self, cfg: SyntheticConfig) -> str:
        return f"{self.name}-T{cfg.length}"

    def describe(self, m: dict) -> str:
        if not m:
            return "not evaluated"
        if self.name == "adding":
            return f"test MSE {m['loss']:.5f}"
        return f"test cross-entropy {m['loss']:.5f} nats/step, copied symbols right {m['accuracy']:.1%}"


ADDING = SyntheticTask("adding", adding_batch, 2)
COPY = SyntheticTask("copy", copy_batch, SYMBOLS + 2)
