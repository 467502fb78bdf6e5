"""The explicit BPTT engine: back-propagation through time as the lectures derive it."""

from .bptt import unroll_bptt

__all__ = ["unroll_bptt"]
