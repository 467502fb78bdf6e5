"""The training loop. It knows nothing of the model: it sees `loss, state = model.loss(batch, state)`.

Truncated BPTT is a data-and-detach policy here: the data yields consecutive windows, the
state returned for one window is detached and passed to the next, and reset at each epoch.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ..errors import UnrolledError
from . import checkpoint
from .callbacks import Callback
from .config import TrainConfig
from .optim import clip_gradients, make_optimizer, make_scheduler

# Fields of TrainConfig that a resumed run may change; any other difference is refused.
RESUMABLE = {"steps", "time_budget", "epochs", "eval_every", "eval_windows", "ckpt_every", "early_stop", "device",
             "threads"}  # fmt: skip


class TrainingDiverged(UnrolledError):
    """The loss became NaN or infinite."""


def detach(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(*(detach(s) for s in state))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnrolledError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


class Trainer:
    """Runs `model.loss` over `train_data.windows(start)`; evaluates, logs and checkpoints.

    `train_data` must have `len()` (windows per epoch) and `windows(start)` yielding
    `(index, *batch)`; `evaluate(model) -> dict` returns at least {"loss": float}.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        train_data,
        evaluate: Callable[[nn.Module], dict[str, float]],
        run_dir: Path,
        *,
        task: str,
        task_config: dict[str, Any],
        vocab: dict | None = None,
        callbacks: list[Callback] = (),
        carry_state: bool = True,
        tokens_per_batch: Callable[[tuple], int] | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.cfg, self.data, self.evaluate = model, cfg, train_data, evaluate
        self.run_dir, self.task, self.task_config, self.vocab = Path(run_dir), task, task_config, vocab
        self.callbacks, self.carry_state, self.progress = list(callbacks), carry_state, progress
        self.tokens_per_batch = tokens_per_batch or (lambda batch: batch[0].shape[0] * batch[0].shape[1])  # B·T
        self.device = pick_device(cfg.device)
        self.model.to(self.device)
        self.steps_per_epoch = len(train_data)
        self.total_steps = cfg.steps or cfg.epochs * self.steps_per_epoch
        self.optimizer = make_optimizer(model.parameters(), cfg)
        self.seconds = 0.0  # training time before this process (a resumed run), evaluations included
        self._clock: float | None = None  # perf_counter() when this process started training
        self.scheduler = make_scheduler(self.optimizer, cfg, self.total_steps, self.steps_per_epoch, self.time_spent)
        self.step = self.epoch = self.window = 0
        self.best_valid, self.evals_since_best = math.inf, 0
        self.carry = None
        self.averaged: AveragedModel | None = None  # NT-ASGD's running average, once triggered
        self.valid_history: list[float] = []
        self.last_metrics: dict[str, float] = {}
        self._interrupted = False

    # -- checkpoints -------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {"task": self.task_config, "train": asdict(self.cfg)}

    def save(self, best: bool = False) -> Path:
        carry = [] if self.carry is None else [t.detach().cpu() for t in self.carry]
        state = {
            "step": self.step, "epoch": self.epoch, "window": self.window, "best_valid": self.best_valid,
            "evals_since_best": self.evals_since_best, "metrics": self.last_metrics,
            "carry_type": None if self.carry is None else type(self.carry).__name__,
            "valid_history": self.valid_history, "seconds": self.elapsed(),
            "n_averaged": None if self.averaged is None else int(self.averaged.n_averaged),
        }  # fmt: skip
        training = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "carry": carry,
        }
        return checkpoint.save(
            self.run_dir, model=self.model, task=self.task, config=self.config_dict(), vocab=self.vocab,
            state=state, training=training, best=best,
            averaged=None if self.averaged is None else self.averaged.module,
        )  # fmt: skip

    def resume(self) -> None:
        """Continue from RUN/latest; refuse when the model, data or optimisation settings differ."""
        ckpt = checkpoint.load(self.run_dir, prefer="latest")
        old, new = ckpt.config, self.config_dict()
        # a field the old run did not have yet took its default then, so it is not compared
        diffs = [
            f"{k}: {old[part][k]!r} → {v!r}"
            for part in ("task", "train")
            for k, v in new[part].items()
            if k in old[part] and old[part][k] != v and not (part == "train" and k in RESUMABLE)
        ]
        if ckpt.task != self.task or diffs:
            raise UnrolledError(f"--resume: the run in {self.run_dir} has another configuration ({'; '.join(diffs)})")
        ckpt.load_weights(self.model)
        training = ckpt.training_state()
        self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        torch.set_rng_state(training["rng"])
        s = ckpt.state
        self.step, self.epoch, self.window = s["step"], s["epoch"], s["window"]
        self.best_valid, self.evals_since_best = s["best_valid"], s["evals_since_best"]
        self.last_metrics = s["metrics"]
        self.valid_history = s.get("valid_history", [])
        self.seconds = s.get("seconds", 0.0)
        if s.get("n_averaged") is not None:
            self._start_averaging()
            ckpt.load_weights(self.averaged.module, "averaged")
            self.averaged.n_averaged.fill_(s["n_averaged"])
        if training["carry"]:
            fields = [t.to(self.device) for t in training["carry"]]
            self.carry = self.model.rnn.state_class(*fields)

    # -- the loop -----------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds of training so far, across resumptions."""
        return self.seconds + (0.0 if self._clock is None else time.perf_counter() - self._clock)

    def time_spent(self) -> float:
        """The fraction of --time-budget used (0 without a budget)."""
        return self.elapsed() / (60 * self.cfg.time_budget) if self.cfg.time_budget else 0.0

    def _start_averaging(self) -> None:
        """NT-ASGD (Merity et al. 2018): from now on evaluate and keep the average of the iterates."""
        self.averaged = AveragedModel(self.model)

    def _on_sigint(self, signum, frame) -> None:
        if self._interrupted:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._interrupted = True

    def _train_step(self, batch) -> dict[str, float]:
        self.model.train()
        batch = tuple(b.to(self.device) for b in batch)
        loss, state = self.model.loss(batch, self.carry)
        if not torch.isfinite(loss):
            where = f"the last good checkpoint is {self.run_dir / 'latest'}" if (self.run_dir / "latest").exists() \
                else "no checkpoint had been written yet"  # fmt: skip
            raise TrainingDiverged(f"the training loss became {loss.item()} at step {self.step + 1}; stopped ({where})")
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self.cfg.loss_scale if self.cfg.loss_scale != 1 else loss).backward()
        norm, clipped = clip_gradients(self.model, self.cfg)
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        self.carry = detach(state) if self.carry_state else None
        return {"loss": loss.item(), "grad_norm": norm, "clipped": int(clipped)}

    def _evaluate(self) -> tuple[bool, bool]:
        """Evaluate, track the best, step a plateau schedule; return (improved, early stopping says stop)."""
        model = self.model if self.averaged is None else self.averaged.module
        model.eval()
        with torch.no_grad():
            metrics = self.evaluate(model)
        self.model.train()
        self.last_metrics = metrics
        self.valid_history.append(metrics["loss"])
        n = self.cfg.nonmono
        if self.cfg.optimizer == "ntasgd" and self.averaged is None and len(self.valid_history) > n + 1 \
                and metrics["loss"] > min(self.valid_history[: -n - 1]):  # fmt: skip
            self._start_averaging()  # non-monotonically triggered: the loss has stopped improving
        improved = metrics["loss"] < self.best_valid
        if improved:
            self.best_valid, self.evals_since_best = metrics["loss"], 0
        else:
            self.evals_since_best += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metrics["loss"])
        record = {"step": self.step, "split": "valid", **metrics, "best": self.best_valid, "time": time.time()}
        for cb in self.callbacks:
            cb.on_eval(self, record)
        return improved, bool(self.cfg.early_stop) and self.evals_since_best >= self.cfg.early_stop

    def fit(self) -> dict[str, Any]:
        """Train until the step or time budget, early stopping or Ctrl-C; return a summary."""
        cfg, stop_reason = self.cfg, None
        ckpt_every = cfg.ckpt_every or cfg.eval_every or self.steps_per_epoch
        old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True, mininterval=1.0,
                   disable=not self.progress)  # fmt: skip
        t0, tokens, start_step = time.perf_counter(), 0, self.step
        self._clock = t0
        try:
            while self.step < self.total_steps and stop_reason is None:
                if self.window == 0:
                    self.carry = None  # the hidden state starts afresh each epoch
                for index, *batch in self.data.windows(self.window):
                    rec = self._train_step(batch)
                    self.step, self.window = self.step + 1, index + 1
                    tokens += self.tokens_per_batch(batch)
                    elapsed = time.perf_counter() - t0
                    rec.update(step=self.step, split="train", epoch=self.epoch, lr=self.optimizer.param_groups[0]["lr"],
                               tokens_per_s=tokens / elapsed, time=time.time())  # fmt: skip
                    for cb in self.callbacks:
                        cb.on_step(self, rec)
                    if cfg.time_budget:  # the bar's end is where the clock will stop the run
                        bar.total = min(self.total_steps, max(self.step, round(self.step / self.time_spent())))
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s']:,.0f}",
                                    valid=f"{self.best_valid:.3f}")  # fmt: skip
                    improved, done = False, self.step >= self.total_steps
                    if self.time_spent() >= 1:
                        done, stop_reason = True, "time budget"
                    epoch_end = self.window == self.steps_per_epoch
                    if (self.step % cfg.eval_every == 0 if cfg.eval_every else epoch_end) or done:
                        improved, stop = self._evaluate()
                        stop_reason = "early stopping" if stop else stop_reason
                    if self._interrupted:
                        stop_reason = "interrupted"
                    if self.step % ckpt_every == 0 or done or stop_reason or improved:
                        self.save(best=improved)
                    if done or stop_reason:
                        break
                else:
                    self.epoch, self.window = self.epoch + 1, 0
        finally:
            bar.close()
            signal.signal(signal.SIGINT, old_handler)
            for cb in self.callbacks:
                cb.on_end(self)
        wall = time.perf_counter() - t0
        self.seconds, self._clock = self.elapsed(), None
        return {
            "step": self.step, "stopped": stop_reason or "done", "best_valid": self.best_valid,
            "metrics": self.last_metrics, "wall_seconds": self.seconds, "valid_history": self.valid_history,
            "tokens_per_s": tokens / wall if wall else 0.0, "steps_this_run": self.step - start_step,
        }  # fmt: skip
