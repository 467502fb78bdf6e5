"""MKL (torch's default fp32 GEMM on CPU) against oneDNN, for the products the BPTT engine runs: per-step
recurrent products (batch × hidden × gates; oneDNN's linear with the weight packed once, and its batch-reduce
GEMM micro-kernel on column blocks of Wᵀ, which the engine uses where out_features is a multiple of 32) and
one-shot products over all steps. The thresholds in src/unrolled/linear.py come from this table; rerun it on
another processor (MKL is fast on Intel's) and move them if the crossover moves. The micro-kernel is called
here from Python (`blocked_linear`), a few µs a call that the C++ loops do not pay.

    .venv/bin/python benchmarks/gemm.py            # about 30 s
"""

import statistics
import time

import torch
import torch.nn.functional as F

from unrolled.engine import native
from unrolled.linear import PackedLinear

LP, REORDER = torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight


def median_us(fn, seconds=0.3):
    fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def row(label, shape, mkl_fn, dnn_fn, kernel_fn=None):
    mkl, dnn = median_us(mkl_fn), median_us(dnn_fn)
    kernel = f"{median_us(kernel_fn):.1f}" if kernel_fn else "–"
    print(f"| {label} | {' × '.join(map(str, shape))} | {mkl:.1f} | {dnn:.1f} | {kernel} | {mkl / dnn:.2f} |")


def per_step(b, i, o):
    x, w = torch.randn(b, i), torch.randn(o, i)
    packed, blocks = REORDER(w, b), PackedLinear(w, b, 8)
    row("per step, x Wᵀ (weight prepared once)", (b, i, o), lambda: F.linear(x, w),
        lambda: LP(x, packed, None, "none", [], ""), (lambda: blocks(x)) if blocks.blocked else None)  # fmt: skip


def all_steps(n, i, o):
    x, w, d = torch.randn(n, i), torch.randn(o, i), torch.randn(n, o)
    row("all steps, X Wᵀ (packed per call)", (n, i, o), lambda: F.linear(x, w),
        lambda: LP(x, REORDER(w, n), None, "none", [], ""))  # fmt: skip
    out = torch.empty(o, i)
    row("all steps, weight gradient Dᵀ X (the engine's mm)", (n, i, o), lambda: d.T @ x,
        lambda: native.ops().mm(d.T, x, out, False))  # fmt: skip


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| product | rows × in × out | MKL µs | oneDNN µs | micro-kernel µs | MKL / oneDNN |")
    print("|---|---|---:|---:|---:|---:|")
    for shape in [(1, 128, 512), (1, 512, 512), (1, 512, 2048), (64, 128, 128), (64, 128, 384), (64, 128, 512),
                  (20, 200, 800), (32, 512, 512), (32, 512, 2048)]:  # fmt: skip
        per_step(*shape)
    for shape in [(256, 64, 64), (256, 128, 128), (640, 128, 512), (3200, 128, 384), (3200, 128, 512), (3200, 512, 512),
                  (3200, 512, 2048)]:  # fmt: skip
        all_steps(*shape)


if __name__ == "__main__":
    main()
