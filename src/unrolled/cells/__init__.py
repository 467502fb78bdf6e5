"""Cells: the lectures' equations for one time step, one file per family."""

from .base import Cell, LSTMState, RNNState
from .elman import ElmanCell
from .gru import GRUCell
from .jordan import JordanCell
from .lstm import LSTMCell

__all__ = ["Cell", "ElmanCell", "GRUCell", "JordanCell", "LSTMCell", "LSTMState", "RNNState"]
