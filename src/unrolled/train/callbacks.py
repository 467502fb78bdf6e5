"""Callbacks: what the training loop reports goes to files, TensorBoard and pictures from here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Callback:
    """Hooks the trainer calls; each gets the trainer and a flat dict of numbers."""

    def on_step(self, trainer, record: dict[str, Any]) -> None: ...

    def on_eval(self, trainer, record: dict[str, Any]) -> None: ...

    def on_end(self, trainer) -> None: ...


class MetricsLog(Callback):
    """Appends one JSON object per record to RUN/metrics.jsonl (and TensorBoard when installed)."""

    def __init__(self, run_dir: Path, resume_step: int = 0, every: int = 10) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        self.every = every
        if self.path.exists():  # a resumed run drops what the killed run logged past its checkpoint
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:
            pass

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, int | float):
                    self.writer.add_scalar(f"{record['split']}/{k}", v, record["step"])

    def on_step(self, trainer, record):
        if record["step"] % self.every == 0:
            self._write(record)

    def on_eval(self, trainer, record):
        self._write(record)

    def on_end(self, trainer):
        if self.writer is not None:
            self.writer.close()


class GradientStats(Callback):
    """Adds to the logged training records: how often clipping fired since the last record, and the
    largest singular value of every recurrent matrix (W_hh, Jordan's W_yh), every `every` steps.

    Put it before `MetricsLog` in the list: it writes into the record that `MetricsLog` then logs.
    """

    def __init__(self, every: int = 10, spectrum_every: int = 100) -> None:
        self.every, self.spectrum_every = every, spectrum_every
        self.clipped = self.seen = 0

    def on_step(self, trainer, record):
        self.clipped += record.get("clipped", 0)
        self.seen += 1
        if record["step"] % self.every == 0:
            record["clip_rate"] = self.clipped / self.seen
            self.clipped = self.seen = 0
        if record["step"] % self.spectrum_every == 0:
            import torch

            for name, w in trainer.model.named_parameters():
                if ".weight_hh" in name or ".weight_yh" in name or name.startswith(("weight_hh", "weight_yh")):
                    record[f"sigma_max/{name}"] = float(torch.linalg.matrix_norm(w.detach().float(), ord=2))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class LossPlot(Callback):
    """Draws RUN/loss.png (training and validation loss against step) after each evaluation."""

    def __init__(self, run_dir: Path, ylabel: str = "loss") -> None:
        self.run_dir, self.ylabel = run_dir, ylabel

    def on_eval(self, trainer, record):
        plot_loss(self.run_dir, self.ylabel)


def plot_loss(run_dir: Path, ylabel: str = "loss") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    for split, style in (("train", "-"), ("valid", "o-")):
        pts = [(r["step"], r["loss"]) for r in records if r.get("split") == split]
        if pts:
            ax.plot(*zip(*pts), style, label=split, alpha=0.8 if split == "train" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(run_dir) / "loss.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
