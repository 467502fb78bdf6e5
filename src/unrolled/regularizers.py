"""Regularisers for recurrent networks (Zaremba et al. 2014; Gal & Ghahramani 2016; Merity et al. 2018).

Each is off in evaluation: they act only when the module they belong to is in training mode.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def dropout(x: Tensor, p: float, training: bool, variational: bool) -> Tensor:
    """Dropout on a batch-first sequence x (B, T, F).

    variational=False: a fresh mask for every element (Zaremba et al.). variational=True
    ("locked" dropout, Gal & Ghahramani): one mask per sequence, the same at every time step.
    """
    if not training or p == 0:
        return x
    if not variational:
        return F.dropout(x, p, training=True)
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p).div_(1 - p)  # (B, 1, F)
    return x * mask


def embedding_dropout(embedding: nn.Embedding, ids: Tensor, p: float) -> Tensor:
    """Word dropout (Gal & Ghahramani): drop whole rows of the embedding matrix, i.e. every
    occurrence of a word in the batch at once, scaling the kept rows by 1/(1-p)."""
    if not embedding.training or p == 0:
        return embedding(ids)
    w = embedding.weight
    mask = w.new_empty(w.shape[0], 1).bernoulli_(1 - p).div_(1 - p)
    return F.embedding(ids, w * mask, embedding.padding_idx)


class WeightDrop(nn.Module):
    """DropConnect on a weight matrix (Wan et al. 2013), as a `torch.nn.utils.parametrize` parametrization.

    Registered on a layer's `weight_hh_l<k>` it drops recurrent connections with one mask per
    forward pass, the same mask at every time step, as AWD-LSTM does.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, w: Tensor) -> Tensor:
        return F.dropout(w, self.p, training=self.training)


def add_weight_drop(layer: nn.Module, p: float) -> None:
    """Put `WeightDrop(p)` on every recurrent weight matrix (`weight_hh_*`) of a layer."""
    from torch.nn.utils import parametrize

    names = [n for n, _ in layer.named_parameters(recurse=False) if n.startswith("weight_hh")]
    for name in names:
        parametrize.register_parametrization(layer, name, WeightDrop(p))


def activation_penalty(ys: Tensor, alpha: float) -> Tensor:
    """AR: alpha · mean(h_t²) on the (dropped-out) top-layer outputs ys (B, T, H)."""
    return alpha * ys.pow(2).mean()


def temporal_penalty(ys: Tensor, beta: float) -> Tensor:
    """TAR: beta · mean((h_t − h_{t−1})²) on the top-layer outputs ys (B, T, H), before dropout."""
    return beta * (ys[:, 1:] - ys[:, :-1]).pow(2).mean()
