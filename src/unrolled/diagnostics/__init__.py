"""Vanishing and exploding gradients made visible: gradient norms through time, spectra, verdicts."""

from .gradients import GradientProbe, decay_verdict, spectrum, step_jacobian_norms
from .report import diagnose, random_readout_losses

__all__ = ["GradientProbe", "decay_verdict", "diagnose", "random_readout_losses", "spectrum", "step_jacobian_norms"]
