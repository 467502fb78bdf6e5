"""The long short-term memory cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Cell, LSTMState, last_steps, sigmoid_grad, tanh_grad, tanh_via_sigmoid


class LSTMCell(Cell):
    r"""Long short-term memory (Hochreiter & Schmidhuber 1997, with a forget gate), one step:

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate memory
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t),                              y_t = h_t

    The four gate blocks are stacked in torch.nn's order i, f, g, o in `weight_ih` (4H, I),
    `weight_hh` (4H, H), `bias_ih` (4H), `bias_hh` (4H), as in `torch.nn.LSTMCell`.
    The state is `LSTMState(h, c)`, each (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = self._param(4 * hidden_size, input_size, **kw)
        self.weight_hh = self._param(4 * hidden_size, hidden_size, **kw)
        self.bias_ih = self._param(4 * hidden_size, **kw) if bias else None
        self.bias_hh = self._param(4 * hidden_size, **kw) if bias else None
        self.reset_parameters()

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        zeros = self._zeros(batch_size, self.hidden_size, device, dtype)
        return LSTMState(zeros, zeros.clone())

    def forward(self, state: LSTMState, x: Tensor) -> tuple[LSTMState, Tensor]:
        h, c = state
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return LSTMState(h, c), h

    # -- the BPTT engine's view: z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh comes precomputed --
    rec_weight, rec_bias, in_bias, additive, saves_z = "weight_hh", "bias_hh", "bias_ih", True, True

    def step(self, z: Tensor, state: LSTMState, y: Tensor):
        H = self.hidden_size
        z[:, 2 * H : 3 * H].mul_(2)  # all four gates through one σ, in place: tanh(a) = 2σ(2a) − 1 for g
        s = z.sigmoid_()
        i, f, g, o = s[:, :H], s[:, H : 2 * H], s[:, 2 * H : 3 * H], s[:, 3 * H :]
        g.mul_(2).sub_(1)
        c = torch.addcmul(f * state.c, i, g)
        tc = tanh_via_sigmoid(c)
        torch.mul(o, tc, out=y)
        return LSTMState(y, c), (s, state.c, tc)

    def step_backward(self, saved, d: LSTMState, dy: Tensor, dz: Tensor):
        """Back through one step: from ∂L/∂h_t, ∂L/∂c_t to the gate pre-activations (into `dz`) and ∂L/∂c_{t-1}.

        dh = ∂h_t + dy;  dc = ∂c_t + dh ⊙ o ⊙ (1 − tanh²c_t)
        d i = dc ⊙ g,  d f = dc ⊙ c_{t-1},  d g = dc ⊙ i,  d o = dh ⊙ tanh c_t,  ∂c_{t-1} = dc ⊙ f
        then through σ' = s(1 − s) for i, f, o and tanh' = 1 − g² for g.
        `dz` is the memory of the gates s (the engine's contract): each gate is read before it is overwritten.
        """
        s, c_prev, tc = saved
        H = self.hidden_size
        i, f, g, o = s[:, :H], s[:, H : 2 * H], s[:, 2 * H : 3 * H], s[:, 3 * H :]
        di, df, dg, do = dz[:, :H], dz[:, H : 2 * H], dz[:, 2 * H : 3 * H], dz[:, 3 * H :]
        dh = d.h + dy
        dc = tanh_grad(dh * o, tc).add_(d.c)
        dc_prev = dc * f
        dg_new = tanh_grad(dc * i, g)
        sigmoid_grad(dh * tc, o, out=do)
        sigmoid_grad(dc * c_prev, f, out=df)
        sigmoid_grad(dc * g, i, out=di)
        dg.copy_(dg_new)
        return LSTMState(None, dc_prev)

    # -- the same two steps, T at a time, in C++ (engine/csrc/gated.cpp: lstm_forward, lstm_backward) --
    native = True

    def native_forward(self, ops, XP: Tensor, state: LSTMState, Y: Tensor, rec, b_rec, lengths):
        """All T steps: the gates over XP, h_t into Y, c_t into a (T, B, H) buffer C, which is what is saved."""
        C = torch.empty_like(Y)
        ops.lstm_forward(XP, state.h, state.c, rec.weight, rec.packed, Y, C, lengths)
        return LSTMState(last_steps(Y, lengths), last_steps(C, lengths)), (C, state.c)

    def native_backward(self, ops, saved, t0, t1, dY, d: LSTMState, d_final, back, dz, _, lengths, norms):
        """All T steps back (the engine gives this cell, which keeps its gates in z, one chunk: 0..T)."""
        C, c0 = saved
        dh, dc, db = ops.lstm_backward(dz, C, c0, dY, d.h, d.c, back.weight, back.packed, lengths, norms)
        return LSTMState(dh, dc), db
