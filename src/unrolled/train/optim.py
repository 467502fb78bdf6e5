"""Optimizers and learning-rate schedules by name."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    kinds = {
        "adam": lambda: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay),
        # NT-ASGD: plain SGD; the trainer starts averaging the iterates when validation stalls
        "ntasgd": lambda: torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay),
        "adagrad": lambda: torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    }
    return kinds[cfg.optimizer]()


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int, time_spent: float = 0.0) -> float:
    """The multiplier of --lr at optimizer step `step` (0-based) for the step-based schedules.

    `time_spent` is the fraction of --time-budget used so far: the cosine follows whichever of the
    step count and the clock is further along.
    """
    if cfg.schedule == "cosine":
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = max((step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps), time_spent)
        cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos
    if cfg.schedule == "step":
        epoch = step // steps_per_epoch  # 0-based
        return cfg.gamma ** max(0, epoch + 1 - cfg.decay_start)
    return 1.0  # constant, and plateau (which acts on evaluations instead)


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int, steps_per_epoch: int, time_spent=lambda: 0.0):
    """A LambdaLR stepped once per optimizer step, or ReduceLROnPlateau stepped per evaluation.

    `time_spent()` gives the fraction of the time budget used so far (see `lr_factor`).
    """
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.gamma, patience=cfg.patience)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch, time_spent())
    )


def clip_gradients(model: nn.Module, cfg: TrainConfig) -> tuple[float, bool]:
    """Clip by value and/or global norm; return the global norm before clipping and whether it was clipped."""
    params = [p for p in model.parameters() if p.grad is not None]
    if cfg.clip_value:
        nn.utils.clip_grad_value_(params, cfg.clip_value)
    if cfg.clip_norm:
        norm = float(nn.utils.clip_grad_norm_(params, cfg.clip_norm))
        return norm, norm > cfg.clip_norm
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
    return norm, False
