"""Gradients through time: the probe against autograd, the a^(T−t) law, the long-range tasks, diagnose."""

import json

import pytest
import torch
from conftest import assert_close

import unrolled
from unrolled.cli import main
from unrolled.diagnostics import GradientProbe, decay_verdict, step_jacobian_norms
from unrolled.layers import LAYERS
from unrolled.models import ManyToMany, ManyToOne
from unrolled.tasks.synthetic import MEMORIZE, SYMBOLS, adding_batch, copy_batch


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_probe_equals_retain_grad_by_hand(cell):
    layer = LAYERS[cell](3, 6).double()
    xs = torch.randn(4, 9, 3, dtype=torch.double)
    w = torch.randn(layer.output_size, dtype=torch.double)
    norms = GradientProbe(layer).run(xs, lambda ys: (ys[:, -1] @ w).sum())[0]
    c, state, hs = layer.cell(0), None, []
    state = c.init_state(4)
    for t in range(9):
        state, y = c(state, xs[:, t])
        y.retain_grad()
        hs.append(y)
    (hs[-1] @ w).sum().backward()
    want = torch.stack([torch.linalg.vector_norm(h.grad) if h.grad is not None else torch.zeros(()) for h in hs])
    assert_close(norms, want.double(), 1e-12)


@pytest.mark.parametrize("a", [0.8, 1.0, 1.25])
def test_linear_elman_gradient_scales_as_a_to_the_distance(a):
    T, H = 20, 8
    layer = unrolled.RNN(2, H, nonlinearity="identity").double()
    q, _ = torch.linalg.qr(torch.randn(H, H, dtype=torch.double))
    with torch.no_grad():
        layer.weight_hh_l0.copy_(a * q)
    w = torch.randn(H, dtype=torch.double)
    norms = GradientProbe(layer).run(torch.randn(3, T, 2, dtype=torch.double), lambda ys: (ys[:, -1] @ w).sum())[0]
    want = torch.tensor([a ** (T - 1 - t) for t in range(T)], dtype=torch.double) * w.norm() * 3**0.5
    assert_close(norms, want, 1e-9 * want.max().item())
    verdict = decay_verdict(norms)["verdict"]
    assert ("vanishing" in verdict) == (a < 1) and ("exploding" in verdict) == (a > 1)


def test_step_jacobians_of_linear_elman_are_a():
    layer = unrolled.RNN(2, 5, nonlinearity="identity").double()
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.double))
    with torch.no_grad():
        layer.weight_hh_l0.copy_(0.7 * q)
    norms = step_jacobian_norms(layer.cell(0), torch.randn(2, 6, 2, dtype=torch.double))
    assert_close(norms, torch.full((6,), 0.7, dtype=torch.double), 1e-12)


def test_adding_target_is_the_sum_of_the_two_marked_numbers():
    x, y = adding_batch(torch.Generator().manual_seed(0), 64, 30)
    assert x.shape == (64, 30, 2) and y.shape == (64,)
    marks = x[..., 1]
    assert torch.all(marks.sum(1) == 2)
    assert torch.all(marks[:, :15].sum(1) == 1) and torch.all(marks[:, 15:].sum(1) == 1)
    assert torch.equal(y, (x[..., 0] * marks).sum(1))
    baseline = ((y - 1.0) ** 2).mean()
    assert 0.12 < baseline < 0.22  # about 1/6 when always answering 1.0


def test_copy_batch_asks_for_the_first_symbols_after_the_delimiter():
    x, y = copy_batch(torch.Generator().manual_seed(0), 8, 15)
    ids = x.argmax(-1)
    assert x.shape == (8, 15 + 2 * MEMORIZE, SYMBOLS + 2)
    assert torch.equal(y[:, -MEMORIZE:], ids[:, :MEMORIZE])
    assert torch.all(ids[:, MEMORIZE + 15 - 1] == SYMBOLS + 1) and torch.all(y[:, :-MEMORIZE] == 0)


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_sequence_models_overfit_one_batch(cell):
    torch.manual_seed(0)
    x, y = adding_batch(torch.Generator().manual_seed(1), 8, 6)
    xc, yc = copy_batch(torch.Generator().manual_seed(1), 2, 3)
    for model, batch in ((ManyToOne(LAYERS[cell](2, 32)), (x, y)), (ManyToMany(LAYERS[cell](10, 32), 10), (xc, yc))):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(500):
            loss, _ = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < 0.05, f"{cell} {type(model).__name__}: {loss.item():.4f}"


def test_diagnose_end_to_end(tmp_path, capsys):
    out = tmp_path / "fresh"
    assert main(["diagnose", "--cell", "elman", "--hidden", "16", "--length", "30", "--init-scale", "0.5",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "vanishing" in capsys.readouterr().out
    report = json.loads((out / "diagnose.json").read_text())
    assert len(report["grad_norm_last_step_loss"]["layer 0"]) == 30
    assert abs(report["sigma_max"]["layer 0"] - 0.5) < 1e-5
    assert all((out / f).exists() for f in ("grad_norms.png", "spectrum.png", "jacobians.png"))
    assert main(["diagnose", "--cell", "elman", "--hidden", "16", "--length", "30", "--init-scale", "3",
                 "--out", str(tmp_path / "big")]) == 0  # fmt: skip
    assert "exploding" in capsys.readouterr().out
    assert main(["diagnose", "--cell", "elman", "--nonlinearity", "relu", "--hidden", "16", "--length", "30",
                 "--init-scale", "3", "--out", str(tmp_path / "relu")]) == 0  # fmt: skip
    out_text = capsys.readouterr().out
    assert "elman (relu)" in out_text and "exploding" in out_text
    assert main(["diagnose", "--cell", "gru", "--nonlinearity", "relu", "--out", str(tmp_path / "no")]) == 2
    assert "is for the elman cell" in capsys.readouterr().err
    run = tmp_path / "run"
    args = ["train", "adding", "--length", "12", "--hidden", "8", "--steps", "20", "--eval-every", "10",
            "--train-sequences", "640", "--test-sequences", "500", "--out", str(run), "--quiet", "--clip-norm", "0.01"]  # fmt: skip
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train and all(r["clip_rate"] == 1.0 for r in train), "a tiny clip norm clips every step"
    assert main(["diagnose", str(run), "--out", str(tmp_path / "ckpt"), "--length", "12"]) == 0
    assert "trained" in capsys.readouterr().out


def test_verdict_ignores_underflowed_zeros():
    norms = torch.cat([torch.zeros(5), 10.0 ** -torch.arange(20, 0, -1, dtype=torch.double) * 1e3]).float()
    v = decay_verdict(norms)
    assert abs(v["steps_per_decade"] - 1.0) < 1e-3 and "underflows to exactly zero 20 steps back" in v["verdict"]
