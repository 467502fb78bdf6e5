"""`unroll`: the one loop over time of the reference path."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_lengths, check_sequence, check_state_like
from .cells.base import Cell


def where_state(mask: Tensor, new, old):
    """`new` where `mask` (B, 1) is true, else `old`, for a tensor state or a NamedTuple of them."""
    if isinstance(new, Tensor):
        return torch.where(mask, new, old)
    return type(new)(*(torch.where(mask, n, o) for n, o in zip(new, old)))


def reverse_padded(xs: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of `xs` (B, T, F) within its own length; padding stays in place.

    The map is its own inverse, so the same call turns reversed outputs back.
    """
    if lengths is None:
        return xs.flip(1)
    T = xs.shape[1]
    t = torch.arange(T, device=xs.device)
    idx = lengths[:, None] - 1 - t  # (B, T)
    idx = torch.where(idx >= 0, idx, t)
    return xs.gather(1, idx[:, :, None].expand_as(xs))


def prepare(cell: Cell, xs: Tensor, state, lengths, reverse: bool, validated: bool = False):
    """Validate `unroll`'s arguments (unless the caller has: `validated`, a layer); return xs (reversed within
    lengths if asked), the initial state, the lengths as a tensor (or None) and the time-major masks (T, B, 1) of
    steps inside each sequence."""
    if validated:
        B, T = xs.shape[:2]
    else:
        B, T = check_sequence(xs, cell.input_size)
        lengths = check_lengths(lengths, B, T, xs.device)
    if state is None:
        state = cell.init_state(B, device=xs.device, dtype=xs.dtype)
    elif not validated:
        check_state_like(state, cell.init_state(B, device="meta", dtype=xs.dtype), "state")
    if reverse:
        xs = reverse_padded(xs, lengths)
    return xs, state, lengths, step_masks(lengths, T)


def step_masks(lengths: Tensor | None, steps: int) -> Tensor | None:
    """The time-major masks (T, B, 1) of the steps inside each sequence, or None without lengths."""
    return None if lengths is None else (torch.arange(steps, device=lengths.device)[:, None] < lengths)[..., None]


def unroll(cell: Cell, xs: Tensor, state=None, *, lengths=None, reverse: bool = False):
    """Run `cell` over the time axis of a batch-first input.

    Args:
        cell: any cell, `state, y = cell(state, x)` on (B, F) tensors.
        xs: inputs (B, T, input_size).
        state: initial state as `cell.init_state(B)` returns it; zeros when None.
        lengths: optional (B,) ints in [1, T]. Sequence b is xs[b, :lengths[b]]; its final
            state is the state after its own last step and its outputs past that are zero.
        reverse: run each sequence from its last (own) step to its first; outputs are
            returned in the original time order.

    Returns:
        ys (B, T, output_size) and the final state.
    """
    xs, state, lengths, masks = prepare(cell, xs, state, lengths, reverse)
    ys = []
    for t in range(xs.shape[1]):
        new_state, y = cell(state, xs[:, t])
        if masks is None:
            state = new_state
        else:
            m = masks[t]  # (B, 1)
            state = where_state(m, new_state, state)
            y = torch.where(m, y, torch.zeros((), dtype=y.dtype, device=y.device))
        ys.append(y)
    ys = torch.stack(ys, dim=1)  # (B, T, O)
    if reverse:
        ys = reverse_padded(ys, lengths)
    return ys, state
