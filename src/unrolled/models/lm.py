"""A recurrent language model: embedding → recurrent layer → linear head over the vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

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

    `adaptive_cutoffs` replaces the linear head by an adaptive softmax (Grave et al. 2017,
    `torch.nn.AdaptiveLogSoftmaxWithLoss`): the ids below the first cutoff (the most frequent
    words, as `WordVocab` orders them) are scored in full, rarer ones through smaller clusters —
    several times cheaper for a large vocabulary, still an exact, normalised distribution.
    `forward` then returns log-probabilities in place of logits (the same softmax).
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
        adaptive_cutoffs: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, rnn.input_size)
        self.rnn = rnn
        features = rnn.output_size * rnn.num_directions
        if adaptive_cutoffs:
            if tie_weights:
                raise UnrolledError("an adaptive softmax has no single output matrix to tie: drop --tie-weights")
            cutoffs = list(adaptive_cutoffs)
            if cutoffs != sorted(set(cutoffs)) or cutoffs[0] <= 0 or cutoffs[-1] >= vocab_size - 1:
                raise UnrolledError(
                    f"adaptive softmax cutoffs must increase strictly within 1..{vocab_size - 2} "
                    f"(the vocabulary has {vocab_size} words), got {cutoffs}"
                )
            self.head = nn.AdaptiveLogSoftmaxWithLoss(features, vocab_size, cutoffs, div_value=4.0)
        else:
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

    @property
    def adaptive(self) -> bool:
        return isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss)

    def _features(self, ids: Tensor, state):
        x = embedding_dropout(self.embedding, ids, self.word_dropout)  # (B, T, E)
        x = dropout(x, self.dropout_emb, self.training, self.variational)
        ys, state = self.rnn(x, state, backend=self.backend)  # (B, T, H)
        out = dropout(ys, self.dropout, self.training, self.variational)
        return state, ys, out

    def forward(self, ids: Tensor, state=None) -> tuple[Tensor, object]:
        """Ids (B, T) → scores (B, T, V) whose softmax is the next-token distribution, and the state."""
        state, _, out = self._features(ids, state)
        if self.adaptive:
            return self.head.log_prob(out.reshape(-1, out.shape[-1])).view(*out.shape[:-1], -1), state
        return self.head(out), state

    def loss(self, batch: tuple[Tensor, Tensor], state=None) -> tuple[Tensor, object]:
        """Mean cross-entropy (nats per token) of predicting `y` from `x`, both (B, T), plus AR/TAR in training."""
        x, y = batch
        state, ys, out = self._features(x, state)
        if self.adaptive:  # scores only the clusters each target needs
            loss = self.head(out.reshape(-1, out.shape[-1]), y.reshape(-1)).loss
        else:
            loss = F.cross_entropy(self.head(out).flatten(0, 1), y.reshape(-1))
        if self.training and self.ar:
            loss = loss + activation_penalty(out, self.ar)
        if self.training and self.tar:
            loss = loss + temporal_penalty(ys, self.tar)
        return loss, state
