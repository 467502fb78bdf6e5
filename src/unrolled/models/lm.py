"""A recurrent language model: embedding → recurrent layer → linear head over the vocabulary."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnrolledError
from ..layers import RecurrentLayer


class LanguageModel(nn.Module):
    """Next-token model over a vocabulary; batch-first ids (B, T) → logits (B, T, V).

    Dropout (Zaremba et al. 2014) acts on the non-recurrent connections: the embeddings,
    between layers (inside `rnn`) and on the top layer's outputs. With `tie_weights` the
    head reuses the embedding matrix (Press & Wolf 2017, Inan et al. 2017).
    """

    def __init__(
        self,
        vocab_size: int,
        rnn: RecurrentLayer,
        dropout: float = 0.0,
        tie_weights: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, rnn.input_size)
        self.rnn = rnn
        self.drop = nn.Dropout(dropout)
        features = rnn.output_size * rnn.num_directions
        self.head = nn.Linear(features, vocab_size)
        if tie_weights:
            if features != rnn.input_size:
                raise UnrolledError(
                    f"tied weights need the embedding size ({rnn.input_size}) to equal the top layer's "
                    f"output size ({features})"
                )
            self.head.weight = self.embedding.weight
        self.backend = backend

    def forward(self, ids: Tensor, state=None) -> tuple[Tensor, object]:
        x = self.drop(self.embedding(ids))  # (B, T, E)
        ys, state = self.rnn(x, state, backend=self.backend)  # (B, T, H)
        return self.head(self.drop(ys)), state  # (B, T, V)

    def loss(self, batch: tuple[Tensor, Tensor], state=None) -> tuple[Tensor, object]:
        """Mean cross-entropy (nats per token) of predicting `y` from `x`, both (B, T)."""
        x, y = batch
        logits, state = self(x, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), state
