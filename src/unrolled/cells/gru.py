"""The gated recurrent unit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Cell, last_steps, sigmoid_grad, tanh_grad, tanh_via_sigmoid


class GRUCell(Cell):
    r"""Gated recurrent unit (Cho et al. 2014), one step, in torch.nn's form:

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)            reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)            update gate
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))  new memory content
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1},                    y_t = h_t

    The reset gate multiplies W_hn h_{t-1} + b_hn *after* the matrix product, as in cuDNN and
    torch.nn (the original paper applies it before: W_hn (r_t ⊙ h_{t-1})). Gate blocks are
    stacked r, z, n in `weight_ih` (3H, I), `weight_hh` (3H, H), `bias_ih`, `bias_hh` (3H),
    as in `torch.nn.GRUCell`. The state is h, a tensor (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = self._param(3 * hidden_size, input_size, **kw)
        self.weight_hh = self._param(3 * hidden_size, hidden_size, **kw)
        self.bias_ih = self._param(3 * hidden_size, **kw) if bias else None
        self.bias_hh = self._param(3 * hidden_size, **kw) if bias else None
        self.reset_parameters()

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        xr, xz, xn = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=1)
        hr, hz, hn = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h

    # -- the BPTT engine's view: xp = W_ih x_t + b_ih and rp = W_hh h_{t-1} + b_hh come precomputed --
    rec_weight, rec_bias, in_bias, saves_z = "weight_hh", "bias_hh", "bias_ih", True

    def step(self, xp: Tensor, rp: Tensor, h: Tensor, y: Tensor):
        """The gates are computed over xp's memory (r, z, n in its three blocks); W_hn h + b_hn is kept apart."""
        H = self.hidden_size
        rz = xp[:, : 2 * H].add_(rp[:, : 2 * H]).sigmoid_()  # reset and update gates in one pass
        r, z = rz[:, :H], rz[:, H:]
        hn = rp[:, 2 * H :].clone()  # not a view: the rest of rp can go
        n = tanh_via_sigmoid(xp[:, 2 * H :].addcmul_(r, hn), out=xp[:, 2 * H :])
        torch.lerp(n, h, z, out=y)  # h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
        return y, (rz, n, hn, h)

    def step_backward(self, saved, dh: Tensor, dy: Tensor, dxp: Tensor, drp: Tensor):
        """dn = d ⊙ (1 − z) ⊙ (1 − n²), dz = d ⊙ (h_{t-1} − n) ⊙ σ', direct ∂h_{t-1} = d ⊙ z; the reset gate
        multiplies W_hn h + b_hn, so its gradient is dn ⊙ (W_hn h + b_hn) ⊙ σ' and W_hn h receives dn ⊙ r.
        Writes ∂L/∂xp into `dxp` (the memory of the gates: each is read before it is overwritten) and
        ∂L/∂rp into `drp`."""
        rz, n, hn, h = saved
        H = self.hidden_size
        r, z = rz[:, :H], rz[:, H:]
        d = dh + dy
        direct = d * z
        dz = d * (h - n)
        dn = tanh_grad(d - direct, n)
        torch.mul(dn, r, out=drp[:, 2 * H :])
        sigmoid_grad(dn * hn, r, out=dxp[:, :H])
        sigmoid_grad(dz, z, out=dxp[:, H : 2 * H])
        dxp[:, 2 * H :].copy_(dn)
        drp[:, : 2 * H] = dxp[:, : 2 * H]
        return direct  # direct ∂L/∂h_{t-1}

    # -- the same two steps, T at a time, in C++ (engine/csrc/gated.cpp: gru_forward, gru_backward) --
    native = True

    def native_forward(self, ops, XP: Tensor, h: Tensor, Y: Tensor, rec, b_rec, lengths):
        """All T steps: r, z, n over XP, h_t into Y, W_hn h_{t-1} + b_hn into a (T, B, H) buffer."""
        HN = torch.empty_like(Y)
        ops.gru_forward(XP, h, rec.weight, rec.packed, b_rec, Y, HN, lengths)
        return last_steps(Y, lengths), (Y, HN, h)

    def native_backward(self, ops, saved, t0, t1, dY, dh, d_final, back, dxp, _, lengths, norms):
        """All T steps back (the engine gives this cell, which keeps its gates in xp, one chunk: 0..T): ∂L/∂xp
        over the gates, ∂L/∂(W_hn h + b_hn) ⊙ r over the saved W_hn h + b_hn."""
        Y, HN, h0 = saved
        return ops.gru_backward(dxp, HN, Y, h0, dY, dh, back.weight, back.packed, lengths, norms)

    def native_rec_blocks(self, saved, dxp: Tensor) -> list[Tensor]:
        """∂L/∂rp after `native_backward`, as column blocks: (∂r, ∂z) are ∂xp's first two, ∂n ⊙ r is where the
        C++ backward wrote it (no (T, B, 3H) buffer of its own)."""
        return [dxp[..., : 2 * self.hidden_size], saved[1]]
