"""The Jordan recurrent cell: the network's previous *output* is fed back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..linear import PackedLinear, onednn_for_grads, row_sum, weight_grads
from .base import ACT_CODES, Cell, activation, activation_into, last_steps, sigmoid_grad, tanh_grad

HIDDEN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
OUTPUT_ACTIVATIONS = ("identity", "tanh", "sigmoid", "softmax")


class JordanCell(Cell):
    r"""Jordan's network (1986), one step: the state carried in time is the previous output.

        h_t = σ_h(W_ih x_t + W_yh y_{t-1} + b)
        y_t = σ_y(W_hy h_t + b_y)

    Parameters: `weight_ih` (H, I), `weight_yh` (H, O), `bias` (H), `weight_hy` (O, H),
    `bias_y` (O). The state is y_{t-1}, a tensor (B, O), zero at the start.
    `output_size` defaults to `hidden_size` so that Jordan cells stack like the others.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        hidden_activation: str = "tanh",
        output_activation: str = "identity",
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.hidden_act = activation(hidden_activation, HIDDEN_ACTIVATIONS, "hidden activation")
        self.output_act = activation(output_activation, OUTPUT_ACTIVATIONS, "output activation")
        self.hidden_activation, self.output_activation = hidden_activation, output_activation
        output_size = hidden_size if output_size is None else output_size
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = self._param(hidden_size, input_size, **kw)
        self.weight_yh = self._param(hidden_size, output_size, **kw)
        self.bias = self._param(hidden_size, **kw) if bias else None
        self.weight_hy = self._param(output_size, hidden_size, **kw)
        self.bias_y = self._param(output_size, **kw) if bias else None
        self.reset_parameters()

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.output_size, device, dtype)

    def forward(self, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.hidden_act(F.linear(x, self.weight_ih, self.bias) + F.linear(y, self.weight_yh))
        y = self.output_act(F.linear(h, self.weight_hy, self.bias_y))
        return y, y

    # -- the BPTT engine's view: a = W_ih x_t + b + W_yh y_{t-1} comes precomputed --
    rec_weight, rec_bias, in_bias, additive = "weight_yh", None, "bias", True

    @property
    def backward_reads_outputs(self) -> bool:
        """With an identity output, y_{t-1} = W_hy h_{t-1} + b_y: W_yh's gradient is taken from the h_t the backward
        keeps anyway (`rec_input_grads`), and the outputs need not be kept for it."""
        return self.output_activation != "identity"

    def chunk_steps(self, batch_size: int, steps: int) -> int:
        """Without the outputs kept, the sums go in two halves (or the usual chunks, if longer): the two chunk
        buffers, ∂L/∂a and ∂L/∂o, then take about the memory the outputs would have held. Measured, training
        steps alternated in one process: 0.89× the time of 768-row chunks at the bench's small size, 0.88× at its
        charlm size; 0.95–0.97× and 0.96× that of three chunks (docs/benchmarks.md)."""
        usual = super().chunk_steps(batch_size, steps)
        return usual if self.backward_reads_outputs else max(usual, -(-steps // 2))

    def engine_setup(self, batch_size: int, steps: int) -> None:
        """Per pass: the output weights packed for the steps, each step's h_t, and (made by the first step back)
        a buffer of ∂L/∂o_t (o_t the output pre-activation) for one chunk of steps, from which the engine takes
        the output weights' gradients a chunk at a time (`extra_grads`). The engine runs the steps t = 0..T-1,
        then their backwards t = T-1..0: `self.t` counts the backwards still to come. (The C++ steps take the
        same products in `jordan_sums`, `native_backward`.)"""
        self.out = PackedLinear(self.weight_hy, batch_size, steps)
        self.out_back = PackedLinear(self.weight_hy.T, batch_size, steps)
        self.chunk = self.chunk_steps(batch_size, steps)
        self.onednn = onednn_for_grads(steps * batch_size, self.output_size, self.hidden_size)  # for the whole sum
        self.hs: list[Tensor | None] = []
        self.dos: Tensor | None = None
        self.dos_shape = (min(self.chunk, steps), batch_size, self.output_size)
        self.t = steps

    def _dos(self) -> Tensor:
        """The chunk buffer of ∂L/∂o, made when the backward first needs it (not held through the forward)."""
        if self.dos is None:
            self.dos = self.weight_hy.new_empty(self.dos_shape)
        return self.dos

    def step(self, a: Tensor, y_prev: Tensor, y: Tensor):
        h = activation_into(self.hidden_activation, a, torch.empty_like(a))  # a's memory is ∂L/∂a's later
        self.hs.append(h)
        activation_into(self.output_activation, self.out(h, self.bias_y), y)
        return y, (h, None if self.output_activation == "identity" else y)  # y only where σ_y' needs it

    def step_backward(self, saved, dstate: Tensor, dy: Tensor, da: Tensor):
        """∂L/∂y_t → through σ_y to the output pre-activation o, through W_hy to h, through σ_h to a.
        The fed-back y_{t-1} reaches the step only through W_yh, so there is no direct term."""
        h, y = saved
        self.t -= 1
        do = self._dos()[self.t % self.chunk]
        do.copy_(_act_backward(self.output_activation, dstate + dy, y))
        da.copy_(_act_backward(self.hidden_activation, self.out_back(do), h))
        return None

    # -- the same two steps, T at a time, in C++ (engine/csrc/jordan.cpp: jordan_forward, jordan_backward) --
    @property
    def native(self) -> bool:
        return self.output_activation in ACT_CODES  # not softmax: that one runs in Python

    @property
    def _codes(self) -> tuple[int, int]:
        return ACT_CODES[self.hidden_activation], ACT_CODES[self.output_activation]

    def native_forward(self, ops, XP: Tensor, y: Tensor, Y: Tensor, rec, b_rec, lengths):
        """All T steps: h_t over XP (kept as `hs`, a (T, B, H) tensor), y_t into Y."""
        out = self.out
        ops.jordan_forward(XP, y, rec.weight, rec.packed, out.weight, out.packed, self.bias_y, *self._codes, Y, lengths)
        self.hs = XP
        return last_steps(Y, lengths), Y if self.backward_reads_outputs else None

    def native_backward(self, ops, Y, t0, t1, dY, dy, d_final, back, da, _, lengths, norms):
        """Steps t1-1..t0 back, writing ∂L/∂a into `da` and ∂L/∂o into this pass's chunk buffer `dos`, then their
        products over time (`native_sums`): two C++ calls a chunk. Y: the outputs, or None where σ_y is the
        identity (its derivative needs none)."""
        ob, dos = self.out_back, self._dos()[: t1 - t0]
        buffers = (da, dos, self.hs, Y, dY, dy, d_final)
        weights = (back.weight, back.packed, ob.weight, ob.packed)
        d_prev, s_a, s_o = ops.jordan_backward(*buffers, *weights, *self._codes, t0, t1, lengths, norms)
        X, prev, dX, w_ih, blocks, onednn = self.sums_in
        ops.jordan_sums(da, dos, self.hs, prev, X, t0, t1, onednn, *self.g, dX, w_ih, blocks)
        if self.g_b is None:
            self.g_b, self.g_by = s_a, s_o
        else:
            self.g_b.add_(s_a)
            self.g_by.add_(s_o)
        if t0 == 0:
            self.da0 = da[0]  # ∂L/∂a_0: `sums_result` reads it
        return d_prev, s_a

    # the C++ backward takes the products over time too (engine/bptt.py calls these two instead of its own sums)
    @property
    def native_sums(self) -> bool:
        return self.native

    def sums_setup(self, X: Tensor, prev: Tensor | None, needed: dict, dX: Tensor | None, dX_linear, onednn: bool):
        """Per backward pass: what the chunks' products read, and their sums (zero; empty where not wanted).
        Without the outputs (identity output), W_yh's sum is Σ_t ∂a_tᵀ h_{t-1} over t ≥ 1 until `sums_result`."""
        H, O, none = self.hidden_size, self.output_size, X.new_empty(0)
        w_ih, blocks = (dX_linear.weight.T, dX_linear.packed) if dX_linear else (none, None)  # ∂X = ∂A W_ih
        self.sums_in = (X, prev, none if dX is None else dX, w_ih, blocks, onednn)
        self.g = (
            X.new_zeros(H, X.shape[2]) if needed["weight_ih"] else none,
            X.new_zeros(H, H if prev is None else O) if needed["weight_yh"] else none,
            X.new_zeros(O, H) if needed["weight_hy"] else none,
        )
        self.g_b = self.g_by = None

    def sums_result(self, y0: Tensor) -> dict[str, Tensor]:
        """The pass's weight gradients once every chunk is done. W_yh's, without the outputs kept: (Σ_{t≥1} ∂a_tᵀ
        h_{t-1}) W_hyᵀ + (Σ_{t≥1} ∂a_t) b_yᵀ + ∂a_0ᵀ y_0, as y_{t-1} = W_hy h_{t-1} + b_y (`rec_input_grads`)."""
        (g_ih, g_rec, g_hy), prev, da0 = self.g, self.sums_in[1], self.da0
        self.sums_in = self.g = self.da0 = None  # the cell outlives the pass: what it read goes now
        grads = {name: g for name, g in (("weight_ih", g_ih), ("weight_hy", g_hy)) if g.numel()}
        if self.bias is not None:
            grads["bias"] = self.g_b.view(-1)
        if self.bias_y is not None:
            grads["bias_y"] = self.g_by.view(-1)
        if g_rec.numel() and prev is not None:
            grads["weight_yh"] = g_rec
        elif g_rec.numel():
            grads["weight_yh"] = self._through_output(g_rec, lambda: self.g_b.view(-1) - da0.sum(0)).addmm_(da0.T, y0)
        return grads

    def _hidden(self, s0: int, s1: int) -> Tensor:
        """h_s for steps s0..s1-1, (s1 - s0, B, H): a slice of the C++ steps' tensor, or the Python steps' stacked."""
        return self.hs[s0:s1] if isinstance(self.hs, Tensor) else torch.stack(self.hs[s0:s1])

    def rec_input_grads(self, d: Tensor, s0: int, s1: int, onednn: bool) -> Tensor:
        """Σ_i d_iᵀ y_{s0+i} with y_s = h_s W_hyᵀ + b_y (identity output): (Σ_i d_iᵀ h_{s0+i}) W_hyᵀ + (Σ_i d_i) b_yᵀ,
        one GEMM over the h_s as large as the one over the y_s it replaces. (A padded row's y_s is 0 past its end,
        its h_s W_hyᵀ + b_y not; but there d_{s+1} = 0.)"""
        if s1 == s0:
            return d.new_zeros(d.shape[-1], self.output_size)
        return self._through_output(weight_grads(d, self._hidden(s0, s1), onednn=onednn)[0], lambda: row_sum(d))

    def _through_output(self, s: Tensor, d_sum) -> Tensor:
        """Σ_i d_iᵀ y_i from s = Σ_i d_iᵀ h_i, y = h W_hyᵀ + b_y: s W_hyᵀ (through the steps' prepared W_hy) + (Σ_i d_i)
        b_yᵀ, d_sum() giving Σ_i d_i where there is a b_y."""
        g = self.out(s)
        return g if self.bias_y is None else g.addr_(d_sum(), self.bias_y)

    def extra_grads(self, t0: int, t1: int) -> dict[str, Tensor]:
        """The output weights' gradients from steps t0..t1-1, one GEMM: Σ_t do_tᵀ h_t and Σ_t do_t."""
        do = self.dos[: t1 - t0]  # (n, B, O): the chunk's rows, t0 being a multiple of the chunk
        h = self._hidden(t0, t1)
        if not isinstance(self.hs, Tensor):  # the Python steps': gone, as the steps' own saved tensors are
            self.hs[t0:t1] = [None] * (t1 - t0)
        grads = {"weight_hy": weight_grads(do, h, onednn=self.onednn)[0]}
        if self.bias_y is not None:
            grads["bias_y"] = row_sum(do)
        return grads

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, {self.output_size}, "
            f"hidden_activation={self.hidden_activation!r}, output_activation={self.output_activation!r}"
        )


def _act_backward(name: str, d: Tensor, out: Tensor) -> Tensor:
    """Vector–Jacobian product of an activation, from its output alone (for ReLU, out > 0 iff its input > 0)."""
    if name == "identity":
        return d
    if name == "tanh":
        return tanh_grad(d, out)
    if name == "sigmoid":
        return sigmoid_grad(d, out)
    if name == "relu":
        return d * (out > 0)
    return out * (d - (d * out).sum(-1, keepdim=True))  # softmax
