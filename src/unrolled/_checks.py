"""Input validation shared by `unroll`, the layers and the backends: one clear sentence each."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .errors import UnrolledError


def shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_sequence(xs: object, input_size: int) -> tuple[int, int]:
    """Check a batch-first input `xs` of shape (B, T, input_size); return (B, T)."""
    if not isinstance(xs, Tensor):
        raise UnrolledError(f"xs must be a tensor of shape (batch, time, {input_size}), got {type(xs).__name__}")
    if xs.dim() != 3:
        raise UnrolledError(
            f"xs must be a 3-D tensor (batch, time, features), got a {xs.dim()}-D tensor of shape {shape(xs)}"
        )
    B, T, F = xs.shape
    if input_size != F:
        raise UnrolledError(f"xs has {F} features per step but the input size is {input_size}")
    if B == 0 or T == 0:
        raise UnrolledError(f"xs must hold at least one sequence of at least one step, got shape {shape(xs)}")
    if not xs.is_floating_point():
        raise UnrolledError(f"xs must be a floating-point tensor, got {xs.dtype}")
    return B, T


def check_lengths(lengths: object, batch: int, steps: int, device: torch.device) -> Tensor | None:
    """Validate per-sequence lengths (B,) with values in [1, T]; return them as int64 on `device`."""
    if lengths is None:
        return None
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise UnrolledError(f"lengths must hold integers, got dtype {lengths.dtype}")
        lens = lengths.detach()
    elif isinstance(lengths, Sequence) and all(isinstance(v, int) for v in lengths):
        lens = torch.tensor(list(lengths), dtype=torch.long)
    else:
        raise UnrolledError(f"lengths must be a 1-D integer tensor or a list of ints, got {type(lengths).__name__}")
    if lens.dim() != 1 or lens.shape[0] != batch:
        raise UnrolledError(f"lengths must have shape ({batch},), one per sequence, got shape {shape(lens)}")
    lo, hi = int(lens.min()), int(lens.max())
    if lo < 1 or hi > steps:
        raise UnrolledError(f"lengths must lie in [1, {steps}] (the number of time steps), got values in [{lo}, {hi}]")
    return lens.to(device=device, dtype=torch.long)


def check_state_like(state: object, template: object, what: str) -> None:
    """Check that `state` has the type and shapes of `template` (a zero state built the right way)."""
    if isinstance(template, Tensor):
        if not isinstance(state, Tensor):
            raise UnrolledError(f"{what} must be a tensor of shape {shape(template)}, got {type(state).__name__}")
        if state.shape != template.shape:
            raise UnrolledError(f"{what} must have shape {shape(template)}, got {shape(state)}")
        return
    fields = type(template)._fields
    if not isinstance(state, tuple) or len(state) != len(fields):
        raise UnrolledError(
            f"{what} must be a {type(template).__name__}({', '.join(fields)}), got {type(state).__name__}"
        )
    for name, s, t in zip(fields, state, template):
        check_state_like(s, t, f"{what}.{name}")
