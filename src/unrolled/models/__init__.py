"""Models built from layers: each has `loss(batch, state) -> (loss, state)` for the trainer."""

from .lm import LanguageModel

__all__ = ["LanguageModel"]
