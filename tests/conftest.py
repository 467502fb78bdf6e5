import os
from pathlib import Path

import pytest
import torch

# Tests read real data from the shared mirror unless told otherwise.
os.environ.setdefault("UNROLLED_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

# `make test` runs two workers on two cores: one thread each, or OpenMP threads spin against each other.
torch.set_num_threads(1)

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def assert_close(actual, expected, atol, what=""):
    """Absolute tolerance only (rtol=0), as DESIGN.md rule 4 asks."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol:g}"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
