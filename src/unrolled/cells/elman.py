"""The Elman (simple) recurrent cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ACT_CODES, Cell, activation, activation_into, last_steps, tanh_grad


class ElmanCell(Cell):
    r"""Elman's simple recurrent network, one step:

        h_t = σ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),    y_t = h_t

    with σ = tanh or ReLU (or the identity: the linear network of the vanishing-gradient analysis). Parameters `weight_ih` (H, I), `weight_hh` (H, H), `bias_ih` (H),
    `bias_hh` (H) are named and shaped as in `torch.nn.RNNCell`, so state dicts move both ways.
    The state is the hidden vector h, a tensor (B, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.act = activation(nonlinearity, ("tanh", "relu", "identity"), "nonlinearity")
        self.nonlinearity = nonlinearity
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = self._param(hidden_size, input_size, **kw)
        self.weight_hh = self._param(hidden_size, hidden_size, **kw)
        self.bias_ih = self._param(hidden_size, **kw) if bias else None
        self.bias_hh = self._param(hidden_size, **kw) if bias else None
        self.reset_parameters()

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.act(F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh))
        return h, h

    # -- the BPTT engine's view: z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh comes precomputed --
    rec_weight, rec_bias, in_bias, additive = "weight_hh", "bias_hh", "bias_ih", True

    def step(self, z: Tensor, h: Tensor, y: Tensor):
        activation_into(self.nonlinearity, z, y)
        return y, y  # new state h_t = y_t, saved for backward

    def step_backward(self, h: Tensor, dh: Tensor, dy: Tensor, dz: Tensor):
        """∂L/∂z into `dz` from ∂L/∂h_t (through the state and the output): σ'(z) = 1 − h², [h > 0] or 1."""
        d = dh + dy
        if self.nonlinearity == "tanh":
            tanh_grad(d, h, out=dz)
        elif self.nonlinearity == "relu":
            torch.mul(d, h > 0, out=dz)
        else:
            dz.copy_(d)
        return None  # direct ∂L/∂h_{t-1}: none, only through W_hh

    # -- the same two steps, T at a time, in C++ (engine/csrc/simple.cpp: elman_forward, elman_backward) --
    native = True

    def native_forward(self, ops, XP: Tensor, h: Tensor, Y: Tensor, rec, b_rec, lengths):
        ops.elman_forward(XP, h, rec.weight, rec.packed, ACT_CODES[self.nonlinearity], Y, lengths)
        return last_steps(Y, lengths), Y  # h_t = y_t: Y is all the backward needs

    def native_backward(self, ops, Y, t0, t1, dY, dh, d_final, back, dz, _, lengths, norms):
        code = ACT_CODES[self.nonlinearity]
        return ops.elman_backward(dz, Y, dY, dh, d_final, back.weight, back.packed, code, t0, t1, lengths, norms)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"
