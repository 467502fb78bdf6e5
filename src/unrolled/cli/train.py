"""`unrolled train TASK`: train a model from a preset and flags, with resumable checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path

import torch

from ..config import add_arguments, build, preset
from ..errors import UnrolledError
from ..tasks import TASKS, load
from ..tasks.lm import LMTask, count_params
from ..train import callbacks as cb
from ..train import checkpoint
from ..train.config import TrainConfig
from ..train.loop import Trainer

META = {"func", "command", "task", "preset", "out", "resume", "quiet", "results", "argv"}


def register(sub) -> None:
    parser = sub.add_parser("train", help="train a model", description="Train a model; see `unrolled train TASK -h`.")
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, task in TASKS.items():
        p = tasks.add_parser(name, help=task.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--preset", help=f"named settings: {', '.join(task.presets)}")
        p.add_argument("--out", type=Path, help=f"run directory (default: runs/{name})")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument(
            "--results", type=Path, help="append the run's best figures to this JSON list (docs/results.json)"
        )
        add_arguments(p, task.config_class)
        add_arguments(p, TrainConfig)
        p.set_defaults(func=partial(run, task))


def run(task, args: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(args).items() if k not in META}
    chosen = preset(task.presets, args.preset, task.name)
    cfg, tcfg = build(task.config_class, chosen, flags), build(TrainConfig, chosen, flags)
    out = args.out or Path("runs") / task.name
    if not args.resume and (out / "latest").exists():
        raise UnrolledError(f"{out} already holds a run; pass --resume to continue it or --out for a new one")
    if args.resume and not (out / "latest").exists():
        raise UnrolledError(f"--resume: {out} holds no checkpoint to continue from")
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    # Vanishing gradients become subnormal floats, which x86 CPUs process far more slowly: an LSTM on the
    # adding problem at T = 200 slowed from 0.09 to 0.9 s a step as training went on. Flush them to 0.
    torch.set_flush_denormal(True)
    torch.manual_seed(tcfg.seed)
    vocab, train, valid = task.prepare(cfg, tcfg)
    model = task.build_model(cfg, vocab)
    trainer = Trainer(
        model, tcfg, train, partial(task.evaluate, stream=valid, max_windows=tcfg.eval_windows), out,
        task=task.name, task_config=dataclasses.asdict(cfg), vocab=vocab.to_json() if vocab else None,
        carry_state=task.carry_state, progress=not args.quiet,
    )  # fmt: skip
    if args.resume:
        trainer.resume()
        print(f"resuming {out} at step {trainer.step}", file=sys.stderr)
    trainer.callbacks = [cb.GradientStats(), cb.MetricsLog(out, trainer.step), cb.LossPlot(out, task.loss_label)]
    print(
        f"{task.name}: {count_params(model):,} parameters, {len(train)} batches per epoch, {trainer.total_steps} steps, "
        f"device {trainer.device}, backend {model.rnn.backend_for(cfg.backend, trainer.device)}",
        file=sys.stderr,
    )
    summary = trainer.fit()
    m = summary["metrics"]
    print(
        f"step {summary['step']}: {task.describe(m)} (best loss {summary['best_valid']:.4f}); "
        f"{summary['wall_seconds']:.0f} s, {summary['tokens_per_s']:,.0f} tokens/s; checkpoints in {out}"
    )
    if summary["stopped"] == "interrupted":
        print(f"interrupted: checkpoint saved; continue with --resume --out {out}", file=sys.stderr)
        return 130
    figures = task.result_metrics(summary) + test_figures(task, out)
    if args.results:
        record_results(args.results, task, cfg, args, summary, figures)
    return 0


def test_figures(task, out: Path) -> list[tuple[str, str, float]]:
    """A language model's best checkpoint on the whole test split, when the corpus has one; printed."""
    if not isinstance(task, LMTask):
        return []
    _, model, vocab, cfg = load(checkpoint.load(out))
    found = task.evaluate_split(model, vocab, cfg, "test")
    if found is None:
        return []
    metrics, tokens = found
    print(f"test (best checkpoint): {task.describe(metrics)} over {tokens:,} tokens")
    return task.figures("test", metrics["loss"])


def record_results(path: Path, task, cfg, args: argparse.Namespace, summary: dict, figures: list) -> None:
    """Append this run's figures to a JSON list, with the command and the validation curve behind them."""
    import datetime
    import json

    rows = json.loads(path.read_text()) if path.exists() else []
    for split, metric, value in figures:
        rows.append({
            "task": task.name, "dataset": getattr(cfg, "data", None) or task.default_dataset(cfg),
            "preset": args.preset, "split": split, "metric": metric, "value": round(value, 6),
            "command": "unrolled " + " ".join(args.argv), "wall_seconds": round(summary["wall_seconds"], 1),
            "steps": summary["step"], "date": datetime.date.today().isoformat(),
            "valid_loss_curve": [round(v, 4) for v in summary["valid_history"]],
        })  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")
