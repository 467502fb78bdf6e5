"""A linear map applied at every time step, with its weight packed once for oneDNN when that pays."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.cache
def _onednn() -> bool:
    """Whether this build has oneDNN's linear with a pre-packed weight (about 1.8× MKL's speed for the
    small per-step GEMMs on this project's CPU, PERF-NOTES.md)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
        return bool(torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "").sum() == 4)
    except (AttributeError, RuntimeError):
        return False


def _onednn_usable(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and _onednn()


# Packing pays only for weights this large, used this often: below them MKL's plain GEMM was as fast
# or faster here (docs/benchmarks.md: the `small` size, H = 128, and batch-1 generation).
PACK_MIN_NUMEL, PACK_MIN_USES = 2**17, 8


class PackedLinear:
    """x ↦ x Wᵀ + b, or x Wᵀ + acc, for one W used `uses` times (once per time step), packed for oneDNN
    once when that is available and pays."""

    def __init__(self, weight: Tensor, batch_size: int, uses: int):
        self.weight = weight
        worth = weight.numel() >= PACK_MIN_NUMEL and uses >= PACK_MIN_USES and _onednn_usable(weight)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch_size) if worth else None

    def __call__(self, x: Tensor, bias: Tensor | None = None, acc: Tensor | None = None) -> Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, bias) if acc is None else torch.addmm(acc, x, self.weight.T)
        if acc is None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(x, acc, self.packed, bias, "add")
