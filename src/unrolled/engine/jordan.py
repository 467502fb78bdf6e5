"""Jordan's pass on the C++ loops (csrc/jordan.cpp), in one `autograd.Function` of its own.

Two C++ calls and nothing of bptt.py's general bookkeeping around them: the forward is the input projection then
`jordan_forward`'s steps; the backward, `jordan_backward`: the steps back, then each product over time as one product
over all B T rows, W_yh's taken from the h_t where the output is the identity (and W_hy's too, where that is faster;
csrc/jordan.cpp derives them). Every buffer is batch-first, as the layer's input and output lie (B, T, ·), seen time-major by the steps: no
transposing copy of X, ∂L/∂Y or ∂X. Measured against the general pass and against chunks of steps: docs/benchmarks.md.
The cell's Python steps (softmax output, other devices) go through bptt.py.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from ..cells.base import last_steps
from ..cells.jordan import JordanCell
from ..linear import PackedLinear, onednn_for_grads

# With an identity output, W_hy's gradient comes from ∂L/∂Y and S = Σ_{t≥1} ∂a_tᵀ h_{t-1} (csrc/jordan.cpp) and no ∂o
# is kept, unless the product that costs, W_yhᵀ S (O H² multiply-adds), is the larger: where H > B T / KEEP_DO_ROWS,
# ∂o is kept (a (B, T, O) buffer) for one product over all steps. Training steps alternated in one process, keeping ∂o
# against not: 1.011× at the bench's small size (H 128, B T 3200), 0.982× at its charlm size (H 512).
KEEP_DO_ROWS = 16


def _forward(ops, cell: JordanCell, xs: Tensor, y0: Tensor, w: tuple, lengths) -> tuple[Tensor, Tensor]:
    """(h_t, y_t) for every step, each (T, B, ·): batch-first tensors seen time-major."""
    w_ih, b, w_yh, w_hy, b_y = w
    B, T = xs.shape[:2]
    ih, rec, out = PackedLinear(w_ih, B, T), PackedLinear(w_yh, B, T), PackedLinear(w_hy, B, T)
    if ih.blocked:  # a_t = x_t W_ihᵀ + b, then h_t over it
        hs = ih.over_steps(xs.transpose(0, 1), b, out=xs.new_empty(B, T, w_ih.shape[0]).transpose(0, 1))
    else:
        hs = F.linear(xs, w_ih, b).transpose(0, 1)
    Y = xs.new_empty(B, T, w_hy.shape[0]).transpose(0, 1)
    ops.jordan_forward(hs, y0, w_yh, rec.packed, w_hy, out.packed, b_y, *cell.act_codes, Y, lengths)
    return hs, Y


class _JordanPass(Function):
    @staticmethod
    def forward(ctx, ops, cell, lengths, record, xs, y0, w_ih, b, w_yh, w_hy, b_y):
        xs = xs.contiguous()
        w = (w_ih, b, w_yh, w_hy, b_y)
        hs, Y = _forward(ops, cell, xs, y0, w, lengths)
        ctx.ops, ctx.cell, ctx.lengths, ctx.record, ctx.hs = ops, cell, lengths, record, hs
        # the outputs only where σ_y' reads them: with the identity they go when the caller drops them
        ctx.save_for_backward(xs, y0, Y if cell.backward_reads_outputs else None, *w)
        final = last_steps(Y, lengths)
        return Y.transpose(0, 1), final.clone() if final._base is not None else final

    @staticmethod
    @once_differentiable
    def backward(ctx, dys, d_final):
        ops, cell, lengths = ctx.ops, ctx.cell, ctx.lengths
        xs, y0, Y, *w = ctx.saved_tensors
        w_ih, _, w_yh, w_hy, b_y = w
        hs, ctx.hs = ctx.hs, None  # a second backward (retain_graph, gradcheck) finds it gone: the forward runs again
        if hs is None:
            hs, Y = _forward(ops, cell, xs, y0, w, lengths)
            Y = Y if cell.backward_reads_outputs else None
        B, T, H = xs.shape[0], xs.shape[1], w_ih.shape[0]
        need = ctx.needs_input_grad
        wanted = sum(1 << i for i, k in enumerate((4, 6, 8, 9, 5)) if need[k])  # ∂X, ∂W_ih, ∂W_yh, ∂W_hy, ∂y_0
        wanted |= (H * KEEP_DO_ROWS > B * T) << 5  # keep ∂o
        dX_linear = PackedLinear(w_ih.T, B, T) if need[4] else None
        back, out_back = PackedLinear(w_yh.T, B, T), PackedLinear(w_hy.T, B, T)
        norms = None if ctx.record is None else xs.new_empty(T)
        dX, dy0, g_ih, g_b, g_yh, g_hy, g_by = ops.jordan_backward(
            hs, Y, xs.transpose(0, 1), y0, dys.contiguous().transpose(0, 1), y0.new_zeros(()).expand_as(y0)
            if d_final is None else d_final, w_ih, dX_linear and dX_linear.packed, back.weight, back.packed,
            out_back.weight, out_back.packed, b_y, *cell.act_codes, wanted, onednn_for_grads(B * T, w_hy.shape[0], H),
            lengths, norms,
        )  # fmt: skip
        if norms is not None:
            ctx.record.append(norms)
        grads = [g if need[k] else None for k, g in ((4, dX), (5, dy0), (6, g_ih), (7, g_b), (8, g_yh), (9, g_hy))]
        return None, None, None, None, *grads, g_by if need[10] else None


def jordan_pass(ops, cell: JordanCell, xs: Tensor, y0: Tensor, lengths, record) -> tuple[Tensor, Tensor]:
    """(ys (B, T, O), y_T) for a bound Jordan cell on the C++ loops; `record` as bptt.unroll_bptt's."""
    weights = (cell.weight_ih, cell.bias, cell.weight_yh, cell.weight_hy, cell.bias_y)
    return _JordanPass.apply(ops, cell, lengths, record, xs, y0, *weights)
