"""How far back does the gradient reach? ‖∂L/∂h_t‖ at every step, σ_max(W_hh), step Jacobians.

Back-propagated through k steps, the gradient is multiplied by k step Jacobians
∂h_t/∂h_{t−1} = diag(σ'(a_t)) W_hh; when their norms stay below 1 it vanishes geometrically,
above 1 it explodes (Bengio et al. 1994; Pascanu et al. 2013). The probe measures both sides
of that statement on a real batch: the gradient norms themselves, and the matrices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..cells.base import Cell
from ..layers import RecurrentLayer, _stacked
from ..unroll import unroll


class _Tap(nn.Module):
    """A cell that behaves exactly like `cell` and keeps every state it produces, retaining its grad."""

    def __init__(self, cell: Cell, store: list[Tensor]):
        super().__init__()
        self.cell, self.store = cell, store
        self.input_size, self.output_size = cell.input_size, cell.output_size

    def init_state(self, *a, **kw):
        return self.cell.init_state(*a, **kw)

    def forward(self, state, x):
        state, y = self.cell(state, x)
        h = state if isinstance(state, Tensor) else state[0]
        if h.requires_grad:
            h.retain_grad()
        self.store.append(h)
        return state, y


class GradientProbe:
    """‖∂L/∂h_t‖ for every step t, layer and direction of a `RecurrentLayer`, by autograd.

    Runs the layer's reference computation (every backend gives the same numbers) with each
    step's state kept, so the norms are exact: `norms[k][t]` for layer k // D, direction k % D,
    over the whole batch. The bptt backend records the same norms during training for free
    (`layer.record_grad_norms`); tests check that both agree.
    """

    def __init__(self, layer: RecurrentLayer):
        self.layer = layer

    def run(self, xs: Tensor, loss_fn, state=None, lengths=None) -> dict[int, Tensor]:
        """`loss_fn(ys)` (ys (B, T, D*O)) → scalar. Returns {k: (T,) norms}, time in input order."""
        layer, stores = self.layer, {}
        hx = list(layer.init_state(xs.shape[0], xs.device, xs.dtype)) if state is None else list(state)

        def run_cell(k, cell, x, s, n, rev):
            stores[k] = []
            return unroll(_Tap(cell, stores[k]), x, s, lengths=n, reverse=rev)

        xs = xs.detach().requires_grad_()  # so that every state needs a gradient
        ys, _ = _stacked(layer, xs, hx, lengths, run_cell)
        loss_fn(ys).backward()
        D = layer.num_directions
        out = {}
        for k, hs in stores.items():
            norms = torch.stack(
                [torch.linalg.vector_norm(h.grad) if h.grad is not None else h.new_zeros(()) for h in hs]
            )
            out[k] = norms.flip(0) if k % D == 1 else norms  # the reverse direction ran backwards in time
        return out


def spectrum(weight: Tensor, blocks: int = 1) -> dict[str, list[float]]:
    """Singular values of a recurrent weight matrix, whole and per gate block (LSTM: 4, GRU: 3)."""
    w = weight.detach().double()
    out = {"all": torch.linalg.svdvals(w).tolist()}
    if blocks > 1:
        for i, part in enumerate(w.chunk(blocks, 0)):
            out[f"block{i}"] = torch.linalg.svdvals(part).tolist()
    return out


def step_jacobian_norms(cell: Cell, xs: Tensor, state=None, sample: int = 0) -> Tensor:
    """σ_max(∂s_t/∂s_{t−1}) along the trajectory of sequence `sample` of xs (B, T, F): (T,).

    s is the whole state (h, and c for an LSTM), so the Jacobian is square.
    """
    x = xs[sample : sample + 1].detach()
    s = cell.init_state(1, device=xs.device, dtype=xs.dtype) if state is None else state
    flat = torch.cat([p.reshape(-1) for p in ([s] if isinstance(s, Tensor) else s)])
    sizes = [s.numel()] if isinstance(s, Tensor) else [p.numel() for p in s]
    template = s

    def unflat(v):
        parts = [p.view(1, -1) for p in v.split(sizes)]
        return parts[0] if isinstance(template, Tensor) else type(template)(*parts)

    def step(v, xt):
        new, _ = cell(unflat(v), xt)
        return torch.cat([p.reshape(-1) for p in ([new] if isinstance(new, Tensor) else new)])

    norms = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            jac = torch.func.jacrev(step)(flat, x[:, t])
            norms.append(torch.linalg.matrix_norm(jac, ord=2))
            flat = step(flat, x[:, t])
    return torch.stack(norms)


def decay_verdict(norms: Tensor, loss_at_last_step: bool = True) -> dict:
    """Fit log10 ‖∂L/∂h_t‖ against the distance from the last step and say what it means.

    Returns the slope (decades per step), the steps per factor of ten, and one plain sentence.
    """
    g = norms.detach().double()
    T = len(g)
    dist = torch.arange(T - 1, -1, -1, dtype=torch.double)  # distance from the last step
    keep = g > 0  # a gradient that underflowed to zero says "vanished", but has no logarithm to fit
    d, y = dist[keep], torch.log10(g[keep])
    slope = float(((d - d.mean()) * (y - y.mean())).sum() / ((d - d.mean()) ** 2).sum().clamp_min(1e-12))
    span = float(10 ** (slope * (T - 1)))
    if slope < -0.01:
        every = -1 / slope
        verdict = f"the gradient shrinks ×10 every {every:.1f} steps back in time: vanishing"
    elif slope > 0.01:
        every = 1 / slope
        verdict = f"the gradient grows ×10 every {every:.1f} steps back in time: exploding"
    else:
        every = math.inf
        verdict = f"the gradient keeps its size over {T} steps (×{span:.2g} end to end): stable"
    if not bool(keep.all()):
        verdict += f"; it underflows to exactly zero {int(dist[~keep].min())} steps back"
    if not loss_at_last_step:
        verdict += " (loss summed over all steps: nearby steps keep each gradient alive)"
    return {"slope_decades_per_step": slope, "steps_per_decade": every, "end_to_end_factor": span, "verdict": verdict}
