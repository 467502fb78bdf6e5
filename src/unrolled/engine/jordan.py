"""Jordan's pass on the C++ loops (csrc/jordan.cpp), in one `autograd.Function` of its own.

The same equations and the same three C++ ops as bptt.py's general pass would run, with none of its general
bookkeeping around them: the forward is the input projection then `jordan_forward`; the backward, two chunks of
steps (`JordanCell.chunk_steps`), each `jordan_backward` (the steps) then `jordan_sums` (their products over time,
∂X included), then W_yh's gradient finished. Measured against the general pass, training steps alternated in one
process: docs/benchmarks.md. The cell's Python steps (softmax output, other devices) go through bptt.py.

Without the outputs kept (identity output: y_{t-1} = W_hy h_{t-1} + b_y), W_yh's gradient is
(Σ_{t≥1} ∂a_tᵀ h_{t-1}) W_hyᵀ + (Σ_{t≥1} ∂a_t) b_yᵀ + ∂a_0ᵀ y_0, from the h_t the backward keeps anyway.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.base import last_steps
from ..cells.jordan import JordanCell
from ..linear import PackedLinear, onednn_for_grads


def _forward(ops, cell: JordanCell, X: Tensor, y0: Tensor, w: tuple, lengths):
    """(h_t for every step (T, B, H), the outputs Y (T, B, O), the outputs behind y_0 (T + 1, B, O) where the
    backward reads them, else None; W_hy prepared for products x W_hyᵀ)."""
    w_ih, b, w_yh, w_hy, b_y = w
    T, B = X.shape[:2]
    O = w_hy.shape[0]
    rec, out = PackedLinear(w_yh, B, T), PackedLinear(w_hy, B, T)
    hs = PackedLinear(w_ih, B, T).over_steps(X, b)  # a_t = x_t W_ihᵀ + b, then h_t over it
    if cell.backward_reads_outputs:
        prev = X.new_empty(T + 1, B, O)
        prev[0] = y0
        Y = prev[1:]
    else:  # written batch-first (seen time-major), as the layer returns it
        prev, Y = None, X.new_empty(B, T, O).transpose(0, 1)
    ops.jordan_forward(hs, y0, w_yh, rec.packed, w_hy, out.packed, b_y, *cell.act_codes, Y, lengths)
    return hs, Y, prev, out


class _JordanPass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ops, cell, lengths, record, xs, y0, w_ih, b, w_yh, w_hy, b_y):
        w = (w_ih, b, w_yh, w_hy, b_y)
        hs, Y, prev, ctx.out = _forward(ops, cell, xs.transpose(0, 1), y0, w, lengths)
        ctx.ops, ctx.cell, ctx.lengths, ctx.record, ctx.hs = ops, cell, lengths, record, hs
        ctx.save_for_backward(xs, y0, prev, *w)
        final = last_steps(Y, lengths)
        return Y.transpose(0, 1), final.clone() if final._base is not None else final

    @staticmethod
    @once_differentiable
    def backward(ctx, dys, d_final):
        ops, cell, lengths = ctx.ops, ctx.cell, ctx.lengths
        xs, y0, prev, *w = ctx.saved_tensors
        w_ih, _, w_yh, w_hy, b_y = w
        X = xs.transpose(0, 1)
        hs, ctx.hs = ctx.hs, None  # the backward writes over nothing of it, but a second one (retain_graph,
        if hs is None:  # gradcheck) finds it gone with the rest of the pass: it runs the forward again
            hs, _, prev, ctx.out = _forward(ops, cell, X, y0, w, lengths)
        T, B, H = hs.shape
        O, F = w_hy.shape[0], X.shape[2]
        need = dict(zip(("x", "y0", "w_ih", "b", "w_yh", "w_hy", "b_y"), ctx.needs_input_grad[4:]))
        dY = dys.transpose(0, 1)
        if dY.stride(-1) != 1:
            dY = dY.contiguous()
        d_final = torch.zeros_like(y0) if d_final is None else d_final
        K = cell.chunk_steps(B, T)
        da, dos = X.new_empty(min(K, T), B, H), X.new_empty(min(K, T), B, O)
        back, out_back = PackedLinear(w_yh.T, B, T), PackedLinear(w_hy.T, B, T)
        none = X.new_empty(0)
        dX, w_ih_t, blocks = none, none, None
        if need["x"]:  # ∂X = ∂A W_ih: batch-first where the micro-kernel writes it, as the layer's input lies
            dX_linear = PackedLinear(w_ih.T, B, T)
            w_ih_t, blocks = dX_linear.weight.T, dX_linear.packed
            dX = X.new_empty(B, T, F).transpose(0, 1) if dX_linear.blocked else X.new_empty(T, B, F)
        g_ih = X.new_zeros(H, F) if need["w_ih"] else none
        g_rec = X.new_zeros(H, H if prev is None else O) if need["w_yh"] else none  # Σ ∂a_tᵀ h_{t-1} without Y
        g_hy = X.new_zeros(O, H) if need["w_hy"] else none
        norms = None if ctx.record is None else X.new_empty(T)
        onednn = onednn_for_grads(T * B, O, H)
        codes, Y = cell.act_codes, None if prev is None else prev[1:]
        d, g_b, g_by = d_final, 0, 0
        for t0 in reversed(range(0, T, K)):
            t1 = min(t0 + K, T)
            d, s_a, s_o = ops.jordan_backward(
                da, dos, hs, Y, dY, d, d_final, back.weight, back.packed, out_back.weight, out_back.packed, *codes,
                t0, t1, lengths, norms,
            )  # fmt: skip
            ops.jordan_sums(da, dos, hs, prev, X, t0, t1, onednn, g_ih, g_rec, g_hy, dX, w_ih_t, blocks)
            g_b, g_by = s_a + g_b, s_o + g_by
        if norms is not None:
            ctx.record.append(norms)
        if need["w_yh"] and prev is None:  # Σ_{t≥1} ∂a_tᵀ y_{t-1} from Σ_{t≥1} ∂a_tᵀ h_{t-1}, then step 0's ∂a_0ᵀ y_0
            g_rec = ctx.out(g_rec)
            if b_y is not None:
                g_rec.addr_(g_b.view(-1) - da[0].sum(0), b_y)
            g_rec.addmm_(da[0].T, y0)
        grads = [g if need[n] else None for n, g in (("w_ih", g_ih), ("w_yh", g_rec), ("w_hy", g_hy))]
        g_b = g_b.view(-1) if need["b"] else None
        g_by = g_by.view(-1) if need["b_y"] else None
        dx = dX.transpose(0, 1) if need["x"] else None
        return None, None, None, None, dx, d if need["y0"] else None, grads[0], g_b, grads[1], grads[2], g_by


def jordan_pass(ops, cell: JordanCell, xs: Tensor, y0: Tensor, lengths, record) -> tuple[Tensor, Tensor]:
    """(ys (B, T, O), y_T) for a bound Jordan cell on the C++ loops; `record` as bptt.unroll_bptt's."""
    weights = (cell.weight_ih, cell.bias, cell.weight_yh, cell.weight_hy, cell.bias_y)
    return _JordanPass.apply(ops, cell, lengths, record, xs, y0, *weights)
