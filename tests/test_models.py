"""Every model overfits one tiny batch, for every cell."""

import pytest
import torch

from unrolled.layers import LAYERS
from unrolled.models import LanguageModel


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_language_model_overfits_one_batch(cell):
    torch.manual_seed(0)
    V, B, T = 12, 4, 16
    x = torch.randint(0, V, (B, T + 1))
    batch = (x[:, :-1], x[:, 1:])
    model = LanguageModel(V, LAYERS[cell](16, 48, num_layers=2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(250):
        loss, _ = model.loss(batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.0  # about ln 12 at the start
    assert loss.item() < 0.05, f"{cell}: loss {loss.item():.3f} after 250 steps on one batch"


def test_tied_weights_share_one_matrix():
    model = LanguageModel(10, LAYERS["lstm"](8, 8), tie_weights=True)
    assert model.head.weight is model.embedding.weight
