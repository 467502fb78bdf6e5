"""Jordan's pass on the C++ loops: one op, `jordan_pass` (csrc/jordan.cpp), whose autograd node is C++ too.

Forward: the input projection and the steps; backward: the steps back, then each product over time as one product
over all B T rows, W_yh's gradient taken from the h_t where the output is the identity (and W_hy's too, where that
is faster; csrc/jordan.cpp derives them). Every buffer is batch-first, as the layer's input and output lie (B, T, ·),
seen time-major by the steps: no transposing copy of X, ∂L/∂Y or ∂X. No Python runs between the forward and the
backward's end: measured against the same ops driven from a Python `autograd.Function`, docs/benchmarks.md. The
backward is not itself differentiable (create_graph=True is refused: second derivatives take backend="reference").
The cell's Python steps (softmax output, other devices) go through bptt.py.
"""

from __future__ import annotations

from torch import Tensor

from ..cells.jordan import JordanCell
from ..linear import block_sizes, onednn_for_grads

# With an identity output, W_hy's gradient comes from ∂L/∂Y and S = Σ_{t≥1} ∂a_tᵀ h_{t-1} (csrc/jordan.cpp) and no ∂o
# is kept, unless the product that costs, W_yhᵀ S (O H² multiply-adds), is the larger: where H > B T / KEEP_DO_ROWS,
# ∂o is kept (a (B, T, O) buffer) for one product over all steps. Training steps alternated in one process, keeping ∂o
# against not: 1.011× at the bench's small size (H 128, B T 3200), 0.982× at its charlm size (H 512).
KEEP_DO_ROWS = 16


def jordan_pass(ops, cell: JordanCell, xs: Tensor, y0: Tensor, lengths, record) -> tuple[Tensor, Tensor]:
    """(ys (B, T, O), y_T) for a bound Jordan cell on the C++ loops. `record` (a list) receives the (T,) norms
    ‖∂L/∂y_t‖ as bptt.unroll_bptt's: here the tensor is appended when the forward runs (NaN) and filled by the
    backward."""
    B, T, F = xs.shape
    H, O = cell.weight_ih.shape[0], cell.weight_hy.shape[0]
    nb = block_sizes([H, O, F], xs, T)  # the micro-kernel's blocks for weights of H, O and F rows
    norms = None
    if record is not None:
        norms = xs.new_full((T,), float("nan"))
        record.append(norms)
    weights = (cell.weight_ih, cell.bias, cell.weight_yh, cell.weight_hy, cell.bias_y)
    keep_do, onednn = H * KEEP_DO_ROWS > B * T, onednn_for_grads(B * T, O, H)
    return ops.jordan_pass(xs, y0, *weights, *cell.act_codes, nb, lengths, norms, keep_do, onednn)
