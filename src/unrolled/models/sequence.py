"""Many-to-one and many-to-many models: a recurrent layer and a linear read-out."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import RecurrentLayer


class ManyToOne(nn.Module):
    """Reads the last step's output: x (B, T, F) → prediction (B, out_features); loss: mean squared error."""

    def __init__(self, rnn: RecurrentLayer, out_features: int = 1, backend: str = "auto"):
        super().__init__()
        self.rnn, self.backend = rnn, backend
        self.head = nn.Linear(rnn.output_size * rnn.num_directions, out_features)

    def forward(self, x: Tensor) -> Tensor:
        ys, _ = self.rnn(x, backend=self.backend)  # (B, T, H)
        return self.head(ys[:, -1])  # (B, out)

    def loss(self, batch, state=None):
        x, y = batch
        return F.mse_loss(self(x).reshape(y.shape), y), None


class ManyToMany(nn.Module):
    """One class per step: x (B, T, F) → logits (B, T, classes); loss: mean cross-entropy over steps."""

    def __init__(self, rnn: RecurrentLayer, classes: int, backend: str = "auto"):
        super().__init__()
        self.rnn, self.backend = rnn, backend
        self.head = nn.Linear(rnn.output_size * rnn.num_directions, classes)

    def forward(self, x: Tensor) -> Tensor:
        ys, _ = self.rnn(x, backend=self.backend)
        return self.head(ys)

    def loss(self, batch, state=None):
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), None
