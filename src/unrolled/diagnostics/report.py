"""`diagnose`: gradient norms through time, spectra and step Jacobians of a layer, as JSON and PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..layers import RecurrentLayer
from .gradients import GradientProbe, decay_verdict, spectrum, step_jacobian_norms


def _label(layer: RecurrentLayer, k: int) -> str:
    D = layer.num_directions
    return f"layer {k // D}" + (" (reverse)" if k % D else "")


def diagnose(layer: RecurrentLayer, xs, loss_last, loss_all, out_dir: Path, title: str = "") -> dict:
    """Probe `layer` on inputs xs (B, T, F) with a loss at the last step and one summed over steps.

    Writes diagnose.json, grad_norms.png, spectrum.png and jacobians.png into `out_dir`;
    returns the report (its "verdict" is one plain sentence).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    probe = GradientProbe(layer)
    last = probe.run(xs, loss_last)
    summed = probe.run(xs, loss_all)
    spectra = {}
    for k in range(layer.num_layers * layer.num_directions):
        cell = layer.cell(k)
        w = getattr(cell, cell.rec_weight)  # W_hh (gates × H, H), or Jordan's W_yh
        spectra[_label(layer, k)] = spectrum(w, w.shape[0] // w.shape[1] if cell.rec_weight == "weight_hh" else 1)
    jac = step_jacobian_norms(layer.cell(0), xs.detach())
    verdict = decay_verdict(last[0])
    report = {
        "title": title,
        "steps": xs.shape[1],
        "grad_norm_last_step_loss": {_label(layer, k): v.tolist() for k, v in last.items()},
        "grad_norm_summed_loss": {_label(layer, k): v.tolist() for k, v in summed.items()},
        "singular_values": spectra,
        "sigma_max": {k: v["all"][0] for k, v in spectra.items()},
        "step_jacobian_sigma_max_layer0": jac.tolist(),
        **verdict,
    }
    (out_dir / "diagnose.json").write_text(json.dumps(report, indent=1))
    _plots(layer, last, summed, spectra, jac, out_dir, title)
    return report


def _plots(layer, last, summed, spectra, jac, out_dir: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, norms, what in ((axes[0], last, "loss at the last step"), (axes[1], summed, "loss summed over steps")):
        for k, v in norms.items():
            T = len(v)
            shown = torch.where(v > 0, v, float("nan"))  # zeros (underflow) have no place on a log axis
            ax.semilogy(range(T - 1, -1, -1), shown.tolist(), label=_label(layer, k))
        ax.set_xlabel("distance from the last step (steps back in time)")
        ax.set_ylabel("‖∂L/∂h_t‖")
        ax.set_title(what)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_dir / "grad_norms.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, sv in spectra.items():
        ax.plot(sv["all"], label=name)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value of W_hh")
    ax.set_yscale("log")
    ax.set_title(f"spectrum of the recurrent weights {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "spectrum.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(jac.tolist())
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("step t")
    ax.set_ylabel("σ_max(∂s_t/∂s_{t−1}), layer 0")
    ax.set_title(f"step Jacobians along the trajectory {title}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "jacobians.png", dpi=100)
    plt.close(fig)


def random_readout_losses(width: int, seed: int = 0):
    """L = w·y_T and L = Σ_t w·y_t for a fixed random unit vector w: losses for an untrained layer."""
    w = torch.randn(width, generator=torch.Generator().manual_seed(seed))
    w = w / w.norm()

    def last(ys):
        return (ys[:, -1] @ w.to(ys)).sum()

    def summed(ys):
        return (ys @ w.to(ys)).sum()

    return last, summed
