"""Matrix products through oneDNN where that pays: a linear map applied at every time step, with its weight
prepared once (column blocks for oneDNN's GEMM micro-kernel, or packed for its linear); the engine's large
one-shot GEMMs over all time steps; and the weight gradients, through oneDNN's matmul.

Why: on this project's AMD processor MKL's fp32 GEMM runs at about half the speed of oneDNN's (MKL takes
its slower code path on non-Intel processors), and torch.nn's fused LSTM kernel is oneDNN throughout.
The thresholds below come from `benchmarks/gemm.py` (docs/benchmarks.md).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.cache
def _onednn() -> bool:
    """Whether this build has oneDNN's linear with a pre-packed weight."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
        return bool(torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "").sum() == 4)
    except (AttributeError, RuntimeError):
        return False


def _onednn_usable(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and _onednn()


# Packing for oneDNN's linear pays from about this many multiply-adds per product (batch × weight elements) and
# this many uses up; below, MKL's plain GEMM was as fast or faster here (e.g. batch 64 × 128 × 128, and batch 1).
# Blocks for oneDNN's micro-kernel (below) beat both at every size measured, from the same number of uses.
PACK_MIN_MACS, PACK_MIN_USES = 2**21, 8
BLOCK_SIZES = (64, 32)  # columns per block of Wᵀ for the micro-kernel: the first that divides out_features


def native_ops():
    """The engine's C++ ops (engine/native.py), or None; imported where first needed: the engine imports this module."""
    from .engine import native

    return native.ops()


def _contiguous(w: Tensor) -> Tensor:
    """w, contiguous. A transposed weight (Wᵀ, for the backward's products ∂z W) goes through the engine's tiled
    transpose where it is built: torch's strided copy of a (2048, 512) one took 2.5× as long here."""
    if w.dim() == 2 and not w.is_contiguous() and w.T.is_contiguous():
        ops = native_ops()  # the engine's packing is the only caller, and builds the ops anyway
        if ops is not None:
            return ops.transposed(w.T)
    return w.contiguous()


def blocks(w: Tensor, nb: int) -> Tensor:
    """Wᵀ cut into column blocks of nb for the micro-kernel: (N / nb, K, nb), [j, k, i] = W[j nb + i, k], from W (N, K),
    a parameter or the transposed view of one, read where it lies (the engine's `blocks` op: one pass over W, 2.5–6 µs
    for 128 × 128 against 5–8 for torch's strided copies, 42 against 103 for 512 × 512)."""
    return native_ops().blocks(w, nb)


def block_sizes(rows: list[int], like: Tensor, uses: int = PACK_MIN_USES) -> list[int]:
    """The micro-kernel's block size for weights of these numbers of rows (out_features) on tensors like `like`, used
    `uses` times: float32 on the CPU, rows a multiple of a block size, the C++ ops built with the kernel, from
    PACK_MIN_USES uses; else 0 (no blocks)."""
    ops = native_ops() if uses >= PACK_MIN_USES and _onednn_usable(like) else None
    if ops is None or not ops.micro_kernel():
        return [0] * len(rows)
    return [next((b for b in BLOCK_SIZES if n % b == 0), 0) for n in rows]


class PackedLinear:
    """x ↦ x Wᵀ + b, or x Wᵀ + acc, for one W used `uses` times (once per time step), prepared once: on the CPU in
    float32, as column blocks of Wᵀ for oneDNN's batch-reduce GEMM micro-kernel (the engine's C++ loops call it
    with no dispatch between steps; out_features a multiple of 32), else packed for oneDNN's linear where that
    pays, else as it is."""

    def __init__(self, weight: Tensor, batch_size: int, uses: int):
        self.weight, self.packed, self._kernel = weight, None, None  # _kernel: the engine's ops, for blocks
        if uses < PACK_MIN_USES or not _onednn_usable(weight):
            return
        (nb,) = block_sizes([weight.shape[0]], weight, uses)
        if nb:
            self.packed, self._kernel = blocks(weight, nb), native_ops()
        elif batch_size * weight.numel() >= PACK_MIN_MACS:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(_contiguous(weight), batch_size)

    @property
    def blocked(self) -> bool:
        """Whether W is prepared as blocks for the micro-kernel."""
        return self._kernel is not None

    def over_steps(self, x: Tensor, bias: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """out[t] = x[t] Wᵀ (+ b) for every step of x (T, B, F), at once. On the micro-kernel, x and out may be
        batch-first tensors seen time-major (rows contiguous): read and written where they lie, with no transposing
        copy and no packing for oneDNN's linear. Else one GEMM over x's rows (into a contiguous `out` where it lies).
        Returns out (by default a new (T, B, N))."""
        T, B = x.shape[:2]
        if self.blocked and x.stride(-1) == 1 and x.dtype == self.weight.dtype and (out is None or out.stride(-1) == 1):
            out = x.new_empty(T, B, self.weight.shape[0]) if out is None else out
            self._kernel.steps_linear(x, self.packed, bias, out)
            return out
        rows = x.reshape(T * B, -1)
        if out is None or not out.is_contiguous():
            y = linear(rows, self.weight, bias).view(T, B, -1)
            return y if out is None else out.copy_(y)
        matmul_into(rows, self.weight.T, out.view(T * B, -1))
        return out if bias is None else out.add_(bias)

    def add_into(self, x: Tensor, out: Tensor) -> Tensor:
        """out += x Wᵀ, in place; returns out."""
        return out.addmm_(x, self.weight.T) if self.packed is None else out.add_(self(x))

    def __call__(self, x: Tensor, bias: Tensor | None = None, acc: Tensor | None = None) -> Tensor:
        if self._kernel is not None:
            return self._kernel.blocked_linear(x, self.packed, bias, acc)
        if self.packed is None:
            return F.linear(x, self.weight, bias) if acc is None else torch.addmm(acc, x, self.weight.T)
        if acc is None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(x, acc, self.packed, bias, "add")


# one-shot products: oneDNN pays from about this many multiply-adds up (benchmarks/gemm.py); for a weight
# gradient (oneDNN's matmul, reading the operands where they lie), from GRAD_MIN_MACS: a (256 × 128)ᵀ (256 × 128)
# took 46 µs against `@`'s 49 here, (512 × 64)ᵀ (512 × 64) 34 against 30. The engine takes Elman's and Jordan's
# products over time a chunk of at most about GRAD_CHUNK_ROWS rows at a time (from a buffer of one chunk: memory;
# 768 against 512, alternated step by step: Elman up to 3% faster, its peak under the reference backend's, 5.1
# against 5.5 MB at the bench's small size; 1100 rows took it to 5.55; Jordan, which keeps no outputs, takes
# two halves instead: cells/jordan.py);
# `weight_grads` itself copies operands whose rows are not contiguous GRAD_COPY_ROWS rows at a time, and
# otherwise makes one product: over 3200 rows, 0.74 ms against 0.96 in chunks of 512 for the small GRU's W_ih.
BIG_MIN_MACS, GRAD_MIN_MACS, GRAD_CHUNK_ROWS, GRAD_COPY_ROWS = 2**25, 2**22, 768, 4096


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x Wᵀ + b for a 2-D x of many rows (all time steps at once), one GEMM."""
    if x.shape[0] * weight.numel() >= BIG_MIN_MACS and _onednn_usable(x):
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, x.shape[0])
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return F.linear(x, weight, bias)


def onednn_for_grads(rows: int, out_features: int, in_features: int) -> bool:
    """Whether weight gradients Σ_n d_nᵀ x_n of this total size go through oneDNN (float32 on the CPU)."""
    return rows * out_features * in_features >= GRAD_MIN_MACS and _onednn()


def chunk_steps(batch_size: int, steps: int) -> int:
    """Time steps per chunk of the weight-gradient sums over `steps`: at most about GRAD_CHUNK_ROWS rows, as many
    chunks as that takes, of equal size (no thin last chunk: 50 steps of 64 rows go 10 at a time, not 12)."""
    most = max(1, GRAD_CHUNK_ROWS // batch_size)
    return -(-steps // -(-steps // most)) if steps > 0 else most


@functools.cache
def _mm_op():
    """The engine's `mm` (oneDNN's matmul, engine/csrc/simple.cpp) once it has been seen to work here, else None
    (no oneDNN, no C++ loops, or a build of torch whose matmul refuses float32)."""
    if not _onednn():
        return None
    ops = native_ops()
    if ops is None:
        return None
    a, b, out = torch.ones(2, 3), torch.arange(12.0).view(3, 4), torch.empty(2, 4)
    try:
        ops.mm(a, b, out, False)
        ops.mm(a.T.contiguous().T, b, out, True)
    except RuntimeError:
        return None
    return ops if torch.equal(out, 2 * a @ b) else None


def _plain(t: Tensor) -> Tensor:
    """t, or a copy of it that is contiguous or the transpose of a contiguous matrix (what oneDNN reads in place),
    copied along its contiguous rows or columns."""
    if t.is_contiguous() or t.T.is_contiguous():
        return t
    return t.T.contiguous().T if t.stride(0) == 1 else t.contiguous()


def matmul_into(a: Tensor, b: Tensor, out: Tensor, accumulate: bool = False, onednn: bool = True) -> Tensor:
    """out = a b (out += a b with `accumulate`), 2-D, written in place: through oneDNN's matmul on float32 CPU
    tensors unless `onednn` is False (a transposed operand read where it lies), else torch's."""
    ops = _mm_op() if onednn and _onednn_usable(a) else None
    if ops is None:
        return out.addmm_(a, b) if accumulate else torch.mm(a, b, out=out)
    ops.mm(_plain(a), _plain(b), out, accumulate)
    return out


def row_sum(d: Tensor) -> Tensor:
    """Σ over the rows of d (…, G): a bias's gradient. On CUDA as a product with a vector of ones (a reduction over
    this many rows keeps its partial sums in a buffer about as large as d: 25 MB of the LSTM's 119 MB peak at the
    charlm size, on an H100; a matrix–vector product keeps none); on the CPU a plain sum, which keeps no such
    buffer and skips MKL's matrix–vector product (its slow path on this AMD processor: the small Jordan's step
    0.98–0.99× the time, alternated in one process)."""
    rows = d.reshape(-1, d.shape[-1])
    if rows.device.type == "cpu":
        return rows.sum(0)
    return rows.new_ones(rows.shape[0]) @ rows


def weight_grads(d: Tensor | list[Tensor], *xs: Tensor, onednn: bool | None = None) -> list[Tensor]:
    """[dᵀ x for x in xs]: Σ_n d_nᵀ x_n, the gradient of W in y = x Wᵀ from the rows of d = ∂L/∂y and x.

    d and each x are (N, ·) rows, or (S, B, ·) steps of B rows each (time-major sequences, which need not be
    contiguous); d may also be a list of such blocks, its columns side by side (a gradient kept in pieces).
    Large products (`onednn` decides it for a caller that sums in parts) go through oneDNN's matmul, which reads
    dᵀ in place and adds each chunk's product into the sum as it goes; the others through torch's `@`. The rows
    run in chunks of about GRAD_COPY_ROWS along the first dimension, so that an operand whose rows are not
    contiguous is copied a chunk at a time."""
    blocks = d if isinstance(d, list) else [d]
    first, width = blocks[0], sum(b.shape[-1] for b in blocks)
    if not xs:
        return []
    if first.numel() == 0:  # no rows: nothing to sum
        return [first.new_zeros(width, x.shape[-1]) for x in xs]
    rows = first.numel() // first.shape[-1]
    if onednn is None:
        onednn = onednn_for_grads(rows, width, xs[0].shape[-1])
    rows_per = rows // first.shape[0]  # rows under one index of the first dimension
    per = max(1, GRAD_COPY_ROWS // rows_per)
    per = -(-first.shape[0] // -(-first.shape[0] // per))  # chunks of equal size: no thin last one
    sums = [first.new_empty(width, x.shape[-1]) for x in xs]
    for i in range(0, first.shape[0], per):
        pieces = [b[i : i + per].reshape(-1, b.shape[-1]) for b in blocks]
        for x, total in zip(xs, sums):
            xc = x[i : i + per].reshape(-1, x.shape[-1])
            for p, out in zip(pieces, total.split([p.shape[1] for p in pieces])):  # a block's rows of the sum
                matmul_into(p.T, xc, out, accumulate=i > 0, onednn=onednn)
    return sums
