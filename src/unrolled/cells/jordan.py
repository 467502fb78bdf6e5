"""The Jordan recurrent cell: the network's previous *output* is fed back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..linear import PackedLinear, onednn_for_grads, row_sum, weight_grads
from .base import ACT_CODES, Cell, activation, activation_into, sigmoid_grad, tanh_grad

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
        """The Python steps' sums (the C++ pass takes each over all steps at once): without the outputs kept, in two
        halves (or the usual chunks, if longer), whose two chunk buffers, ∂L/∂a and ∂L/∂o, then take about the memory
        the outputs would have held. Measured on the C++ steps when they took their sums in chunks too, training steps
        alternated in one process: 0.89× the time of 768-row chunks at the bench's small size, 0.88× at its charlm
        size; 0.95–0.97× and 0.96× that of three chunks (docs/benchmarks.md)."""
        usual = super().chunk_steps(batch_size, steps)
        return usual if self.backward_reads_outputs else max(usual, -(-steps // 2))

    def engine_setup(self, batch_size: int, steps: int) -> None:
        """Per pass: the output weights packed for the steps, each step's h_t, and (made by the first step back)
        a buffer of ∂L/∂o_t (o_t the output pre-activation) for one chunk of steps, from which the engine takes
        the output weights' gradients a chunk at a time (`extra_grads`). The engine runs the steps t = 0..T-1,
        then their backwards t = T-1..0: `self.t` counts the backwards still to come. (On the C++ loops,
        engine/jordan.py takes the same products, each over all steps at once.)"""
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

    # -- the same two steps, T at a time, in C++ (engine/csrc/jordan.cpp), run by the engine's own Jordan pass
    # (engine/jordan.py) --
    @property
    def native(self) -> bool:
        return self.output_activation in ACT_CODES  # not softmax: that one runs in Python

    @property
    def act_codes(self) -> tuple[int, int]:
        return ACT_CODES[self.hidden_activation], ACT_CODES[self.output_activation]

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
