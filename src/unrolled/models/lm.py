"""A recurrent language model: embedding → recurrent layer → linear head over the vocabulary."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnrolledError
from ..layers import RecurrentLayer
from ..regularizers import activation_penalty, dropout, embedding_dropout, temporal_penalty


class LanguageModel(nn.Module):
    """Next-token model over a vocabulary; batch-first ids (B, T) → logits (B, T, V).

    Dropout acts on the non-recurrent connections (Zaremba et al. 2014): on the embeddings
    (`dropout_emb`), between layers (inside `rnn`) and on the top layer's outputs (`dropout`),
    per element or, with `variational`, one mask per sequence (Gal & Ghahramani 2016).
    `word_dropout` drops whole embedding rows; `ar`/`tar` add AWD-LSTM's activation penalties
    to the training loss. With `tie_weights` the head reuses the embedding matrix.
    """

    def __init__(
        self,
        vocab_size: int,
        rnn: RecurrentLayer,
        dropout: float = 0.0,
        tie_weights: bool = False,
        backend: str = "auto",
        *,
        dropout_emb: float | None = None,
        word_dropout: float = 0.0,
        variational: bool = False,
        ar: float = 0.0,
        tar: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, rnn.input_size)
        self.rnn = rnn
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
        self.dropout, self.dropout_emb = dropout, dropout if dropout_emb is None else dropout_emb
        self.word_dropout, self.variational, self.ar, self.tar = word_dropout, variational, ar, tar

    def _run(self, ids: Tensor, state):
        x = embedding_dropout(self.embedding, ids, self.word_dropout)  # (B, T, E)
        x = dropout(x, self.dropout_emb, self.training, self.variational)
        ys, state = self.rnn(x, state, backend=self.backend)  # (B, T, H)
        out = dropout(ys, self.dropout, self.training, self.variational)
        return self.head(out), state, ys, out  # logits (B, T, V)

    def forward(self, ids: Tensor, state=None) -> tuple[Tensor, object]:
        logits, state, _, _ = self._run(ids, state)
        return logits, state

    def loss(self, batch: tuple[Tensor, Tensor], state=None) -> tuple[Tensor, object]:
        """Mean cross-entropy (nats per token) of predicting `y` from `x`, both (B, T), plus AR/TAR in training."""
        x, y = batch
        logits, state, ys, out = self._run(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if self.training and self.ar:
            loss = loss + activation_penalty(out, self.ar)
        if self.training and self.tar:
            loss = loss + temporal_penalty(ys, self.tar)
        return loss, state
