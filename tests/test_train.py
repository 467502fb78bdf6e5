"""Optimizers, schedules, clipping and early stopping of the training loop."""

import itertools
import math

import pytest
import torch

from unrolled.config import build
from unrolled.train import Trainer
from unrolled.train.config import OPTIMIZERS, TrainConfig
from unrolled.train.optim import clip_gradients, lr_factor, make_optimizer, make_scheduler


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_takes_a_step(name):
    w = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer([w], build(TrainConfig, {"optimizer": name, "lr": 0.1}))
    (w**2).sum().backward()
    opt.step()
    assert torch.all(w < 1)


def test_cosine_with_warmup():
    cfg = build(TrainConfig, {"schedule": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.1})
    f = [lr_factor(cfg, s, 110, 50) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55) and f[109] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(f[10:]))


def test_cosine_follows_the_clock_when_it_is_ahead_of_the_steps():
    cfg = build(TrainConfig, {"schedule": "cosine"})
    assert lr_factor(cfg, 0, 1000, 10, time_spent=0.5) == pytest.approx(0.5)
    assert lr_factor(cfg, 500, 1000, 10, time_spent=0.1) == pytest.approx(0.5)  # the steps are further along
    assert lr_factor(cfg, 10, 1000, 10, time_spent=1.0) == pytest.approx(0.0)


def test_step_decay_after_an_epoch_like_zaremba():
    cfg = build(TrainConfig, {"schedule": "step", "gamma": 0.5, "decay_start": 4})
    per_epoch = [lr_factor(cfg, e * 100, 10_000, 100) for e in range(7)]
    assert per_epoch == [1, 1, 1, 1, 0.5, 0.25, 0.125]


def test_plateau_schedule_decays_on_evaluations():
    w = torch.nn.Parameter(torch.ones(1))
    cfg = build(TrainConfig, {"schedule": "plateau", "patience": 0, "gamma": 0.5, "lr": 1.0})
    opt = make_optimizer([w], cfg)
    sched = make_scheduler(opt, cfg, 100, 10)
    for loss in (1.0, 1.0, 1.0):
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == 0.25


def test_clipping_by_norm_and_by_value():
    w = torch.nn.Parameter(torch.zeros(4))
    w.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    model = torch.nn.Module()
    model.w = w
    norm, clipped = clip_gradients(model, build(TrainConfig, {"clip_norm": 1.0}))
    assert norm == pytest.approx(5.0) and clipped and torch.linalg.vector_norm(w.grad) == pytest.approx(1.0)
    w.grad = torch.tensor([3.0, -4.0, 0.5, 0.0])
    clip_gradients(model, build(TrainConfig, {"clip_norm": None, "clip_value": 1.0}))
    assert torch.equal(w.grad, torch.tensor([1.0, -1.0, 0.5, 0.0]))


class _Data:
    def __len__(self):
        return 5

    def windows(self, start=0):
        for i in range(start, 5):
            yield i, torch.ones(2, 3), torch.zeros(2, 3)


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def loss(self, batch, state=None):
        return (self.w * batch[0]).pow(2).mean(), None


def test_early_stopping_after_evaluations_without_improvement(tmp_path):
    losses = iter([3.0, 2.0, 2.5, 2.6, 2.7, 1.0])
    cfg = build(TrainConfig, {"steps": 100, "eval_every": 2, "early_stop": 3, "optimizer": "sgd", "lr": 0.01})
    trainer = Trainer(_Model(), cfg, _Data(), lambda m: {"loss": next(losses)}, tmp_path, task="t",
                      task_config={}, carry_state=False, progress=False)  # fmt: skip
    summary = trainer.fit()
    assert summary["stopped"] == "early stopping" and summary["step"] == 10
    assert summary["best_valid"] == 2.0 and math.isfinite(summary["wall_seconds"])
    assert (tmp_path / "best").resolve().name == "ckpt-00000004"


class _Iterates:
    def __init__(self):
        self.ws = []

    def on_step(self, trainer, record):
        self.ws.append(trainer.model.w.detach().clone())

    def on_eval(self, trainer, record): ...

    def on_end(self, trainer): ...


def test_ntasgd_averages_the_iterates_once_validation_stalls(tmp_path):
    from unrolled.train import checkpoint

    losses = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])
    seen = []

    def evaluate(model):
        seen.append(model.w.item())
        return {"loss": next(losses)}

    cfg = build(TrainConfig, {"steps": 12, "eval_every": 2, "optimizer": "ntasgd", "nonmono": 1, "lr": 0.1})
    it = _Iterates()
    trainer = Trainer(_Model(), cfg, _Data(), evaluate, tmp_path, task="t", task_config={}, carry_state=False,
                      progress=False, callbacks=[it])  # fmt: skip
    trainer.fit()
    # evaluation 4 (step 8): 2.6 > min(3.0, 2.0): averaging starts after step 8
    mean = torch.stack(it.ws[8:]).mean(0)
    assert torch.allclose(trainer.averaged.module.w, mean, rtol=0, atol=1e-7)
    assert seen[-1] == pytest.approx(torch.stack(it.ws[8:]).mean().item())  # evaluated on the average
    ckpt = checkpoint.load(tmp_path, prefer="latest")
    assert ckpt.has_averaged and ckpt.state["n_averaged"] == 4
    resumed = Trainer(_Model(), cfg, _Data(), evaluate, tmp_path, task="t", task_config={}, carry_state=False,
                      progress=False)  # fmt: skip
    resumed.resume()
    assert torch.equal(resumed.averaged.module.w, trainer.averaged.module.w)
    assert int(resumed.averaged.n_averaged) == 4 and resumed.valid_history == trainer.valid_history


def test_time_budget_stops_evaluates_and_is_carried_by_resume(tmp_path):
    from unrolled.train import checkpoint

    cfg = build(TrainConfig, {"steps": 100, "time_budget": 1e-9, "eval_every": 0, "optimizer": "sgd", "lr": 0.1})
    trainer = Trainer(_Model(), cfg, _Data(), lambda m: {"loss": 1.0}, tmp_path, task="t", task_config={},
                      carry_state=False, progress=False)  # fmt: skip
    summary = trainer.fit()
    assert summary["step"] == 1 and summary["stopped"] == "time budget" and trainer.valid_history == [1.0]
    assert trainer.time_spent() > 1 and trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)
    seconds = checkpoint.load(tmp_path, prefer="latest").state["seconds"]
    assert 0 < seconds <= summary["wall_seconds"]
    cfg.time_budget = 1.0  # a resumed run may be given more time; the clock goes on from where it stopped
    resumed = Trainer(_Model(), cfg, _Data(), lambda m: {"loss": 1.0}, tmp_path, task="t", task_config={},
                      carry_state=False, progress=False)  # fmt: skip
    resumed.resume()
    assert resumed.elapsed() == seconds and 0 < resumed.time_spent() < 1e-3
