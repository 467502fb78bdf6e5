"""Back-propagation through time, written out: one `autograd.Function` for every cell.

Forward: the input projection of all T steps at once, XP = X W_ihᵀ + b; then for each step
the recurrent product rp_t = r_{t-1} W_recᵀ (+ b_rec) and the cell's pointwise `step`, saving only
what its `step_backward` needs, and writing y_t into one time-major buffer Y. For an additive
cell (Elman, Jordan, LSTM: the step sees only xp + rp) b_rec is folded into XP and the per-step
product is added into xp_t in place; large products go through oneDNN (linear.py). Backward walks
from t = T to 1: the cell's local backward turns ∂L/∂state_t (from step t+1) plus ∂L/∂y_t (from the
loss) into ∂L/∂xp_t, ∂L/∂rp_t and the direct part of ∂L/∂state_{t-1}, to which ∂L/∂rp_t W_rec is
added. The weight gradients are GEMMs over many steps at once, ∂W_ih = Σ_t ∂xp_tᵀ x_t and
∂W_rec = Σ_t ∂rp_tᵀ r_{t-1} (r_{t-1} = y_{t-1}, or h_0 at t = 0, all read where they lie: Y is made
behind a row of h_0; padded Python steps stack them apart), with ∂X = ∂XP W_ih; none is computed
when nobody needs it. On the CPU they go through oneDNN's matmul (linear.matmul_into, weight_grads),
which reads ∂XPᵀ in place and accumulates chunk after chunk into the sum. On oneDNN's micro-kernel
(float32), the projection reads the layer's batch-first input and ∂X is written into a batch-first
tensor, where they lie (PackedLinear.over_steps): no transposing copies.

Memory: a cell that keeps its gates in z (`saves_z`: LSTM, GRU) has them in XP, and the backward writes
∂L/∂z over them once read, so the pass holds one (T, B, G) buffer, not three; for the others (Elman,
Jordan) the products over time are taken a chunk at a time during the backward, from a buffer of one
chunk. The outputs Y are kept for the backward only where it reads them (`backward_reads_outputs`: not Jordan's
with an identity output, whose W_yh gradient comes from its h_t). Each step's saved tensors are freed as
the backward passes it. That uses the forward's results up: a second backward through the same pass
(`retain_graph=True`, gradcheck) runs the forward again. The backward is not itself differentiable
(second derivatives: the reference backend).

The time loops: each cell's `step`/`step_backward` in Python, or, on the CPU (where they are built,
native.py), the same equations T steps at a time in C++ (engine/csrc/, the cell's `native_forward`/
`native_backward`), each step's pointwise work one pass over memory, padded batches and recorded norms
included. Jordan's pass on the C++ loops is an op of its own, its autograd node in C++ too (engine/jordan.py), not
this Function; other devices and a cell without C++ loops (Jordan with a softmax output) run the Python steps.

Cells supply `step`, `step_backward` (writing into slices of one (T, B, G) buffer: no per-step
gradient is concatenated or stacked), `additive`, `saves_z`, and the names `rec_weight`, `rec_bias`,
`in_bias` (see cells/base.py for the contract and cells/*.py, where each local backward stands
beside its forward). With `record`, the norm of
∂L/∂h_t (all of it: through the output and through the future) is kept for every step, at no
extra cost, as a (T,) tensor appended to the list given.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.base import Cell
from ..cells.jordan import JordanCell
from ..linear import PackedLinear, matmul_into, onednn_for_grads, row_sum, weight_grads
from ..unroll import prepare, reverse_padded, step_masks, where_state
from . import native
from .jordan import jordan_pass


def _parts(state) -> list[Tensor]:
    return [state] if isinstance(state, Tensor) else list(state)


def _rebuild(template, parts):
    return parts[0] if isinstance(template, Tensor) else type(template)(*parts)


def _rec_input(state) -> Tensor:
    """What W_rec multiplies: h (the first field) of the previous state."""
    return state if isinstance(state, Tensor) else state[0]


def _native_ops(c: Cell, X: Tensor):
    """The C++ time loops (native.py) when they serve this pass: the cell has them, on the CPU, float32 or
    float64; else None."""
    if not c.native:
        return None
    if X.device.type != "cpu" or X.dtype not in (torch.float32, torch.float64):
        return None
    return native.ops()


def _forward(c: Cell, X: Tensor, state0, masks, w: dict, ops=None, lengths=None):
    """The forward pass over time: (XP, Y, the outputs behind h_0 or None, what the steps saved, the stacked
    r_{t-1} or None, the final state).

    XP = X W_ihᵀ + b is computed for all steps at once; an additive cell's z_t = xp_t + r_{t-1} W_recᵀ is then
    written over xp_t, so that XP holds the steps' z (and the gates a cell saves there) with no second (T, B, G)
    buffer.
    With `ops` (the C++ loops) the cell's `native_forward` runs all T steps at once."""
    b_in, b_rec = w.get(c.in_bias), w.get(c.rec_bias) if c.rec_bias else None
    if c.additive and b_rec is not None:  # the cell sees only xp + rp: add b_rec once, not T times
        b_in, b_rec = (b_rec if b_in is None else b_in + b_rec), None
    T, B = X.shape[:2]
    c.engine_setup(B, T)
    XP = PackedLinear(w["weight_ih"], B, T).over_steps(X, b_in)  # (T, B, G), all steps at once
    rec = PackedLinear(w[c.rec_weight], B, T)
    # each step writes y_t into Y[t]; where the backward does not read Y, the C++ loops write it batch-first
    # (seen time-major), as the layer returns it: a head reads it where it lies, with no copy (small Jordan:
    # 0.96–1.00× the step, alternated in one process; peak 5.67 → 5.40 MB)
    if ops is not None and not c.backward_reads_outputs:
        Y, prev = X.new_empty(B, T, c.output_size).transpose(0, 1), None
    else:  # Y behind a row of h_0, prev[t] = y_{t-1} for t = 0..T-1: W_rec's gradient reads every r_{t-1} there,
        # the first step's with the others, in one product (no second one for h_0; the same speed, within ±1.5%)
        prev = X.new_empty(T + 1, B, c.output_size)
        prev[0] = _rec_input(state0)
        Y = prev[1:]
    if ops is not None:  # a padded row's r_{t-1} differs from y_{t-1} only where ∂L/∂z_t = 0: R is not needed
        state, saved = c.native_forward(ops, XP, state0, Y, rec, b_rec, lengths)
        return XP, Y, prev, saved, None, state
    state, saved, rec_inputs = state0, [], []
    r_is_y = masks is None  # then r_t = y_{t-1} (a view of Y): W_rec's gradient needs no copy of them
    for t in range(T):
        r, y = _rec_input(state), Y[t]
        if c.additive:
            new, s = c.step(rec.add_into(r, XP[t]), state, y)
        else:
            new, s = c.step(XP[t], rec(r, b_rec), state, y)
        r_is_y = r_is_y and _rec_input(new) is y
        if masks is not None:
            m = masks[t]
            new = where_state(m, new, state)
            y.masked_fill_(~m, 0.0)
        rec_inputs.append(r)
        saved.append(s)
        state = new
    return XP, Y, prev, saved, None if r_is_y else torch.stack(rec_inputs), state


class _BPTT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cell, names, lengths, record, state_type, xs, *tensors):
        # state_type: None for a tensor state, else its NamedTuple class, whose fields come first in `tensors`
        n_state = 1 if state_type is None else len(state_type._fields)
        state0 = tensors[0] if state_type is None else state_type(*tensors[:n_state])
        w = dict(zip(names, tensors[n_state:]))
        c = cell.bind(w)
        X = xs.transpose(0, 1)  # (T, B, F): time-major inside
        masks, ops = step_masks(lengths, X.shape[0]), _native_ops(c, X)  # masks: for the Python steps
        XP, Y, prev, saved, R, state = _forward(c, X, state0, masks, w, ops, lengths)
        ctx.c, ctx.names, ctx.masks, ctx.lengths, ctx.record = c, names, masks, lengths, record
        ctx.n_state, ctx.ops = n_state, ops
        ctx.state0, ctx.steps = state0, (XP if c.saves_z else None, saved)
        ctx.save_for_backward(X, prev if c.backward_reads_outputs else None, R, *tensors[n_state:])
        final = [p if p._base is None else p.clone() for p in _parts(state)]  # not views of whole buffers
        return (Y, *final)  # (T, B, O) time-major, final state

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiated: a second order says so
    def backward(ctx, dY, *d_final):
        c, masks = ctx.c, ctx.masks
        X, prev, R, *weights = ctx.saved_tensors
        w = dict(zip(ctx.names, weights))
        # The backward uses up what the forward saved: it frees each step's tensors once past them and
        # writes ∂L/∂z over z. A second backward through the same pass (gradcheck, retain_graph=True)
        # runs the forward again first, from the saved inputs.
        if ctx.steps is None:
            XP, _, _, saved_steps, _, _ = _forward(c, X, ctx.state0, masks, w, ctx.ops, ctx.lengths)
        else:
            (XP, saved_steps), ctx.steps = ctx.steps, None
        W_rec = w[c.rec_weight]
        T, B = X.shape[:2]
        G, K = W_rec.shape[0], c.chunk_steps(B, T)
        d_state = d_last = _rebuild(
            ctx.state0, [torch.zeros_like(p) if g is None else g for p, g in zip(_parts(ctx.state0), d_final)]
        )
        # ∂L/∂xp_t (and ∂L/∂rp_t) by step. Where the cell saved its gates in z (LSTM, GRU), ∂L/∂z_t goes over
        # z_t itself, read by then (the contract in cells/base.py), and the products over time are taken after
        # the loop, once the saved steps are freed. Otherwise (Elman, Jordan) they are taken a chunk of K steps
        # at a time, as soon as the backward has done them, from a buffer of K steps reused chunk after chunk.
        # (Measured at the charlm size: chunks cost the LSTM 14 MB, the GRU 5% of its time; they save Jordan
        # 8 MB and the small Elman 1 MB.)
        dXP = XP if c.saves_z else X.new_empty(min(K, T), B, G)
        rec_blocks = c.native_rec_blocks(saved_steps, dXP) if ctx.ops and c.native_rec_blocks else None
        # additive cells: ∂L/∂xp = ∂L/∂rp; a cell with rec_blocks keeps ∂L/∂rp in blocks of its own (GRU, C++)
        dRP = dXP if c.additive else None if rec_blocks else torch.empty_like(dXP)
        back = PackedLinear(W_rec.T, B, T)  # ∂L/∂r_{t-1} = ∂L/∂rp_t W_rec
        sums = _ChunkSums(ctx, c, X, prev, R, w)
        norms = torch.empty(T, dtype=X.dtype, device=X.device) if ctx.record is not None else None
        if ctx.ops is not None and dY.stride(-1) != 1:
            dY = dY.contiguous()  # the C++ loops read contiguous rows, time-major or batch-first
        chunks = [(0, T)] if c.saves_z else [(t0, min(t0 + K, T)) for t0 in range(0, T, K)]
        for t0, t1 in reversed(chunks):
            rows = slice(t0, t1) if c.saves_z else slice(0, t1 - t0)
            dxp, drp = dXP[rows], None if dRP is None else dRP[rows]
            if ctx.ops is not None:  # all of the chunk's steps in C++, which also sum ∂xp (∂rp) for the biases
                d_state, bias_sums = c.native_backward(
                    ctx.ops, saved_steps, t0, t1, dY, d_state, d_last, back, dxp, drp, ctx.lengths, norms
                )
            else:
                d_state = _steps_backward(c, saved_steps, t0, t1, dY, d_state, back, dxp, drp, masks, norms)
                bias_sums = None
            sums.add(t0, t1, dxp, rec_blocks or drp, bias_sums)
        if norms is not None:
            ctx.record.append(norms)
        grads, dxs = sums.result()
        return (None, None, None, None, None, dxs, *_parts(d_state), *[grads.get(n) for n in ctx.names])


def _steps_backward(c: Cell, saved_steps, t0, t1, dY, d_state, back, dXP, dRP, masks, norms):
    """The steps t1-1 down to t0 in Python: each cell's `step_backward`, then ∂L/∂rp_t W_rec into ∂L/∂r_{t-1}.
    Writes ∂L/∂xp_t (∂L/∂rp_t) into dXP[t - t0] (dRP[t - t0]); returns ∂L/∂state_{t0-1}."""
    for t in range(t1 - 1, t0 - 1, -1):
        dy, d_in = dY[t], d_state
        if masks is not None:
            m = masks[t]
            dy = torch.where(m, dy, 0.0)
            d_in = where_state(m, d_state, _rebuild(d_state, [torch.zeros_like(p) for p in _parts(d_state)]))
        if norms is not None:
            norms[t] = torch.linalg.vector_norm(_rec_input(d_in) + dy)
        dxp, drp = dXP[t - t0], dRP[t - t0]
        if c.additive:
            direct = c.step_backward(saved_steps[t], d_in, dy, dxp)
        else:
            direct = c.step_backward(saved_steps[t], d_in, dy, dxp, drp)
        saved_steps[t] = None  # as autograd does: what step t saved goes once its backward has run
        if isinstance(d_state, Tensor):
            d_prev = back(drp, acc=direct)
        else:  # the recurrent weights see only h; the other fields pass on directly (or not at all)
            dh = back(drp, acc=direct[0])
            d_prev = type(d_state)(dh, *[torch.zeros_like(dh) if p is None else p for p in direct[1:]])
        d_state = d_prev if masks is None else where_state(masks[t], d_prev, d_state)
    return d_state


class _ChunkSums:
    """The products over time, taken a chunk of K steps at a time as the backward completes them:
    ∂W_ih = Σ_t ∂xp_tᵀ x_t, ∂W_rec = Σ_t ∂rp_tᵀ r_{t-1}, the biases, the cell's extra weights, and
    ∂X = ∂XP W_ih. Each chunk is one GEMM of about GRAD_CHUNK_ROWS rows per weight, on data the step
    backwards just wrote; only a chunk of ∂L/∂xp need be kept (unless the cell keeps its gates there)."""

    def __init__(self, ctx, c: Cell, X: Tensor, prev: Tensor | None, R: Tensor | None, w: dict):
        T, B, G = X.shape[0], X.shape[1], w[c.rec_weight].shape[0]
        needed = dict(zip(ctx.names, ctx.needs_input_grad[6 + ctx.n_state :]))  # frozen weights: no GEMM
        self.c, self.X, self.prev, self.R, self.w = c, X, prev, R, w
        self.h0 = _rec_input(ctx.state0)
        self.ih, self.rec = needed["weight_ih"], needed[c.rec_weight]
        self.onednn = onednn_for_grads(T * B, G, X.shape[2])  # decided for the whole sum, not a chunk
        self.grads: dict[str, Tensor] = {}
        self.want_dX, self.dX = ctx.needs_input_grad[5], None  # (T, B, F), made at the first chunk

    def _acc(self, name: str, g: Tensor) -> None:
        self.grads[name] = g if name not in self.grads else self.grads[name].add_(g)

    def add(self, t0: int, t1: int, dxp: Tensor, drp, bias_sums: Tensor | None = None) -> None:
        """Steps t0..t1-1, with their ∂L/∂xp and ∂L/∂rp (each (t1 - t0, B, G); ∂L/∂rp may come as a list of
        column blocks, for a whole pass), and Σ ∂xp (Σ ∂rp) when the C++ steps took them."""
        c = self.c
        if self.ih:
            self._acc("weight_ih", weight_grads(dxp, self.X[t0:t1], onednn=self.onednn)[0])
        if self.rec:
            self._acc(c.rec_weight, self._rec_grad(dxp if c.additive else drp, t0, t1))
        if c.in_bias in self.w:
            self._acc(c.in_bias, row_sum(dxp) if bias_sums is None else bias_sums[0])
        if not c.additive and c.rec_bias in self.w:
            self._acc(c.rec_bias, row_sum(drp) if bias_sums is None else bias_sums[1])
        for name, g in c.extra_grads(t0, t1).items():
            self._acc(name, g)
        if self.want_dX:  # ∂X = ∂XP W_ih, written where it goes
            if self.dX is None:
                self._make_dX()
            self.dX_linear.over_steps(dxp, out=self.dX[t0:t1])

    def _make_dX(self) -> None:
        """W_ih prepared for ∂X = ∂XP W_ih, and where ∂X goes, (T, B, F) time-major: a batch-first tensor seen
        time-major (what the layer returns: no copy follows, not even autograd's into the input's own layout) where
        the product can write one, else a time-major one."""
        T, B, F = self.X.shape
        self.dX_linear = PackedLinear(self.w["weight_ih"].T, B, T)
        self.dX = self.X.new_empty(B, T, F).transpose(0, 1) if self.dX_linear.blocked else self.X.new_empty(T, B, F)

    def _rec_grad(self, d, t0: int, t1: int) -> Tensor:
        """Σ_t ∂rp_tᵀ r_{t-1} over steps t0..t1-1 (d: their ∂L/∂rp, or its column blocks). r_{t-1} is y_{t-1}, read
        where it lies in `prev` (the outputs behind h_0), or, where the cell kept no outputs, computed with it from
        what it kept, with step 0's product (it multiplied h_0) added on its own."""
        if self.R is not None:  # the Python steps on padded rows: r_{t-1} stacked in the forward
            return weight_grads(d, self.R[t0:t1], onednn=self.onednn)[0]
        if self.prev is not None:
            return weight_grads(d, self.prev[t0:t1], onednn=self.onednn)[0]
        first = 1 if t0 == 0 else 0  # rows of d whose r_{t-1} is an output
        g = self.c.rec_input_grads(d[first:], t0 + first - 1, t1 - 1, self.onednn)
        return g if t0 > 0 else matmul_into(d[0].T, self.h0, g, accumulate=True, onednn=self.onednn)

    def result(self) -> tuple[dict[str, Tensor], Tensor | None]:
        c = self.c
        if c.additive and c.rec_bias and c.rec_bias in self.w:  # b_rec entered where b_in did
            self.grads[c.rec_bias] = self.grads[c.in_bias].clone()
        return self.grads, None if self.dX is None else self.dX.transpose(0, 1)  # (B, T, F)


def unroll_bptt(
    cell: Cell,
    xs: Tensor,
    state=None,
    *,
    lengths=None,
    reverse: bool = False,
    record: list | None = None,
    validated: bool = False,
):
    """`unroll` with the explicit engine: same arguments, same numbers, hand-written backward.

    `record`, a list, receives the (T,) norms ‖∂L/∂h_t‖ (over the batch) when the backward pass runs,
    indexed by processing step (for `reverse`, step 0 is each sequence's last element); Jordan's C++ pass
    appends its tensor at the forward, NaN until the backward fills it. `validated`: the caller
    (a layer) has checked xs, the state and the lengths (a tensor) already.
    """
    xs, state, lengths, _ = prepare(cell, xs, state, lengths, reverse, validated)
    if isinstance(cell, JordanCell) and (ops := _native_ops(cell, xs)) is not None:  # Jordan's own C++ pass
        ys, final = jordan_pass(ops, cell, xs, state, lengths, record)
        return (reverse_padded(ys, lengths) if reverse else ys), final
    names = [
        n for n in ("weight_ih", cell.in_bias, cell.rec_weight, cell.rec_bias) if n and getattr(cell, n) is not None
    ]
    names += [n for n in ("weight_hy", "bias_y") if getattr(cell, n, None) is not None]
    state_type = None if isinstance(state, Tensor) else type(state)
    weights = [getattr(cell, n) for n in names]
    out = _BPTT.apply(cell, names, lengths, record, state_type, xs, *_parts(state), *weights)
    ys, final = out[0].transpose(0, 1), _rebuild(state, list(out[1:]))
    if reverse:
        ys = reverse_padded(ys, lengths)
    return ys, final
