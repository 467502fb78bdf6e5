"""The training loop's configuration, shared by every task."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import opt

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "ntasgd")
SCHEDULES = ("constant", "step", "cosine", "plateau")


@dataclass
class TrainConfig:
    steps: int | None = opt(None, "optimizer steps in all; overrides --epochs when given")
    time_budget: float | None = opt(
        None, "stop after this many minutes (evaluations included); the cosine schedule then runs on the clock"
    )
    epochs: int = opt(1, "passes over the training data (when --steps is not given)")
    batch_size: int = opt(32, "sequences per batch (parallel streams for language models)")
    seq_len: int = opt(100, "truncated-BPTT window: time steps per batch")
    optimizer: str = opt("adamw", "optimizer", choices=OPTIMIZERS)
    nonmono: int = opt(5, "ntasgd: average the weights once the validation loss is worse than N evaluations ago")
    lr: float = opt(2e-3, "peak learning rate")
    weight_decay: float = opt(0.0, "weight decay (decoupled for adamw)")
    momentum: float = opt(0.0, "momentum for sgd and rmsprop")
    schedule: str = opt("cosine", "learning-rate schedule", choices=SCHEDULES)
    warmup_steps: int = opt(0, "linear warm-up steps (cosine schedule)")
    min_lr_ratio: float = opt(0.0, "cosine floor as a fraction of --lr")
    gamma: float = opt(0.5, "decay factor of the step and plateau schedules")
    decay_start: int = opt(1, "step schedule: the lr is multiplied by gamma after each epoch from this one on")
    patience: int = opt(1, "plateau schedule: evaluations without improvement before the lr decays")
    clip_norm: float | None = opt(1.0, "clip the global gradient norm to this (0 or none: off)")
    loss_scale: float = opt(1.0, "multiply the loss before backward; Zaremba's code sums it over the window: --seq-len")
    clip_value: float | None = opt(None, "clip each gradient element to ±this")
    eval_every: int = opt(200, "evaluate on the validation split every N steps, 0: after each epoch (and at the end)")
    eval_windows: int | None = opt(None, "evaluate on at most this many validation windows (default: all)")
    ckpt_every: int | None = opt(None, "write a checkpoint every N steps (default: at each evaluation)")
    early_stop: int | None = opt(None, "stop after this many evaluations without a better validation loss")
    seed: int = opt(0, "random seed")
    device: str = opt("auto", "cpu, cuda, or auto")
    threads: int | None = opt(None, "CPU threads for torch (default: torch's choice)")
