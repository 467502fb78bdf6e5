"""Models built from layers: each has `loss(batch, state) -> (loss, state)` for the trainer."""

from .lm import LanguageModel
from .sequence import ManyToMany, ManyToOne

__all__ = ["LanguageModel", "ManyToMany", "ManyToOne"]
