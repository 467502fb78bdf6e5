"""unrolled: recurrent neural networks on PyTorch, from the lectures' equations to fast kernels."""

from .cells import Cell, ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState, RNNState
from .errors import UnrolledError
from .layers import GRU, LSTM, RNN, Jordan, RecurrentLayer
from .unroll import unroll

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Cell",
    "ElmanCell",
    "GRUCell",
    "Jordan",
    "JordanCell",
    "LSTMCell",
    "LSTMState",
    "RNNState",
    "RecurrentLayer",
    "UnrolledError",
    "__version__",
    "unroll",
]
