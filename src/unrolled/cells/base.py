"""The cell contract: one time step, batched, knowing nothing of time.

    state, y = cell(state, x)        x: (B, input_size), y: (B, output_size)
    state = cell.init_state(B)       the zero state; a Tensor, or a NamedTuple of them

A cell owns its parameters when used on its own. A layer owns the parameters under
torch.nn's names and hands them to a cell with `bind`, so that a parametrization on the
layer (weight-drop, say) is seen by the cell too.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import UnrolledError
from ..linear import chunk_steps


class LSTMState(NamedTuple):
    """LSTM state: hidden `h` and memory cell `c`, (B, H) for a cell, (layers*dirs, B, H) for a layer."""

    h: Tensor
    c: Tensor


class RNNState(NamedTuple):
    """Single-tensor state of a layer (Elman, GRU, Jordan): `h` of shape (layers*dirs, B, H)."""

    h: Tensor


def _identity(x: Tensor) -> Tensor:
    return x


def _softmax(x: Tensor) -> Tensor:
    return torch.softmax(x, dim=-1)


ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": _identity,
    "softmax": _softmax,
}


# the activations' codes in the engine's C++ loops (engine/csrc/common.h, enum Act)
ACT_CODES = {"identity": 0, "tanh": 1, "relu": 2, "sigmoid": 3}


def last_steps(buf: Tensor, lengths: Tensor | None) -> Tensor:
    """Each sequence's row of a time-major (T, B, ·) buffer at its own last step (the final state)."""
    if lengths is None:
        return buf[-1]
    return buf[lengths - 1, torch.arange(buf.shape[1], device=buf.device)]


def tanh_via_sigmoid(a: Tensor, out: Tensor | None = None) -> Tensor:
    """tanh(a) = 2σ(2a) − 1. On this project's CPU build σ's kernel is about 4× faster than tanh's (and
    tanh's does not use a second thread): docs/benchmarks.md. Absolute error ≤ 2e-7 in float32."""
    return torch.mul(a, 2, out=out).sigmoid_().mul_(2).sub_(1)


def activation_into(name: str, a: Tensor, out: Tensor) -> Tensor:
    """The activation `name` of `a`, written into `out` (which may be `a`): the engine's fast forms."""
    if name == "tanh":
        return tanh_via_sigmoid(a, out=out)
    if name == "sigmoid":
        return torch.sigmoid(a, out=out)
    if name == "relu":
        return torch.clamp(a, min=0, out=out)
    return out.copy_(ACTIVATIONS[name](a))


def tanh_grad(d: Tensor, y: Tensor, out: Tensor | None = None) -> Tensor:
    """d ⊙ (1 − y²): back through y = tanh(a), from the output y, in one kernel (autograd's own op)."""
    op = torch.ops.aten.tanh_backward
    return op(d, y) if out is None else op.grad_input(d, y, grad_input=out)


def sigmoid_grad(d: Tensor, y: Tensor, out: Tensor | None = None) -> Tensor:
    """d ⊙ y ⊙ (1 − y): back through y = σ(a), from the output y, in one kernel (autograd's own op)."""
    op = torch.ops.aten.sigmoid_backward
    return op(d, y) if out is None else op.grad_input(d, y, grad_input=out)


def activation(name: str, allowed: tuple[str, ...], what: str):
    """Look up an activation by name, with a clear error for an unknown one."""
    if name not in allowed:
        raise UnrolledError(f"unknown {what} {name!r}; choose one of {', '.join(allowed)}")
    return ACTIVATIONS[name]


class Cell(nn.Module):
    """Base class of every cell: sizes, the zero state, uniform init and `bind`."""

    input_size: int
    hidden_size: int
    output_size: int
    # The BPTT engine's view (engine/bptt.py). An additive cell's step sees only z = xp + rp, the input
    # and recurrent projections summed: `step(z, state, y_out) -> (new_state, saved)` writes y_t into
    # y_out, and `step_backward(saved, d_state, dy, dz_out) -> direct part of d_state_{t-1}` writes
    # ∂L/∂z. Otherwise it sees both: `step(xp, rp, state, y_out)`, `step_backward(..., dxp_out, drp_out)`.
    # z (xp and rp) is the step's own scratch: it may overwrite it. A cell that saves views of z (its gates)
    # says so with `saves_z`; then dz_out is z's own memory, and step_backward must read what it saved
    # there before writing dz_out.
    # When new_state's first field is y_out itself, the engine keeps no separate copy of it.
    additive: bool = False
    saves_z: bool = False
    # A cell with `native` has the same two steps T at a time in C++ (engine/csrc/), which the engine
    # uses where it can: `native_forward(ops, XP, state, Y, rec, b_rec, lengths) -> (final state, saved)`
    # and `native_backward(ops, saved, t0, t1, dY, d_state, d_final, back, dxp, drp, lengths, norms) ->
    # (d_state_{t0-1}, sums)` for the steps t0..t1-1, sums being Σ ∂xp (and Σ ∂rp), (1 or 2, G), the
    # biases' gradients (rec and back: the PackedLinear of W_rec and of W_recᵀ; d_final: ∂L/∂ the final
    # state, which enters a padded row at its own last step; lengths: None or (B,) int64; norms: None or
    # the (T,) tensor that receives ‖∂L/∂h_t‖ for these steps). A non-additive cell whose native_backward
    # does not write ∂L/∂rp whole has `native_rec_blocks(saved, dxp)`: where its column blocks are. (Jordan's
    # `native` says only that its C++ pass, engine/jordan.py, serves it: that pass is an op of its own.)
    native: bool = False
    native_rec_blocks = None
    # Whether the backward reads the outputs Y (for W_rec's gradient: r_{t-1} = y_{t-1}; or σ_y'). A cell
    # that can do without them (Jordan with an identity output) says False and has `rec_input_grads`.
    backward_reads_outputs: bool = True

    def _param(self, *shape: int, device=None, dtype=None) -> nn.Parameter:
        return nn.Parameter(torch.empty(*shape, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters(recurse=False):
            nn.init.uniform_(p, -bound, bound)

    def _zeros(self, batch_size: int, size: int, device=None, dtype=None) -> Tensor:
        ref = self.weight_ih  # every cell has one; a bound cell's may live on another device
        return torch.zeros(batch_size, size, device=device or ref.device, dtype=dtype or ref.dtype)

    def init_state(self, batch_size: int, device=None, dtype=None):
        raise NotImplementedError

    def bind(self, tensors: dict[str, Tensor]) -> Cell:
        """A shallow copy of this cell that computes with `tensors` instead of its own parameters."""
        cell = copy.copy(self)
        cell.__dict__["_parameters"] = {}
        cell.__dict__.update(tensors)
        return cell

    def engine_setup(self, batch_size: int, steps: int) -> None:
        """Called by the BPTT engine on its bound copy once per pass, before the first step."""

    def chunk_steps(self, batch_size: int, steps: int) -> int:
        """Steps per chunk of the engine's sums over time, for a cell that does not keep its gates in z."""
        return chunk_steps(batch_size, steps)

    def extra_grads(self, t0: int, t1: int) -> dict[str, Tensor]:
        """Gradients of weights outside the engine's view (W_ih, W_rec, biases) from steps t0..t1-1, called
        once their step_backwards have run (chunks from the last to t0 = 0); the engine adds them up."""
        return {}

    def rec_input_grads(self, d: Tensor, s0: int, s1: int, onednn: bool) -> Tensor:
        """Σ_i d_iᵀ y_{s0+i} over steps s0..s1-1 (d: (s1 - s0, B, G)), from what the cell keeps, where
        `backward_reads_outputs` is False."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"
