"""`unrolled diagnose`: how the gradient travels back through time, on a checkpoint or a fresh layer."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import TBPTTStream
from ..diagnostics import diagnose, random_readout_losses
from ..layers import LAYERS, build_layer
from ..tasks import load
from ..tasks.lm import LMTask
from ..tasks.synthetic import SyntheticStream, adding_batch, init_recurrent
from ..train import checkpoint


def register(sub) -> None:
    p = sub.add_parser("diagnose", help="gradient norms through time, W_hh spectra and a verdict (JSON + PNG)")
    p.add_argument("checkpoint", type=Path, nargs="?", help="a trained model (default: a fresh layer, see --cell)")
    p.add_argument("--data", default=None, help="with a checkpoint: dataset or file to take a batch from")
    p.add_argument("--cell", default="elman", choices=tuple(LAYERS), help="fresh layer: the cell")
    p.add_argument("--nonlinearity", default="tanh", choices=("tanh", "relu"), help="fresh elman layer: σ")
    p.add_argument("--hidden", type=int, default=128, help="fresh layer: hidden units")
    p.add_argument("--layers", type=int, default=1, help="fresh layer: stacked layers")
    p.add_argument("--init-scale", type=float, default=None, help="fresh layer: W_hh := orthogonal × this")
    p.add_argument("--length", type=int, default=100, help="time steps T")
    p.add_argument("--batch-size", type=int, default=16, help="sequences in the probe batch")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", type=Path, default=Path("runs/diagnose"), help="where to write diagnose.json and PNGs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    if args.checkpoint is None:
        layer = build_layer(args.cell, 2, args.hidden, nonlinearity=args.nonlinearity, num_layers=args.layers)
        if args.init_scale is not None:
            init_recurrent(layer, args.init_scale)
        xs, _ = adding_batch(torch.Generator().manual_seed(args.seed), args.batch_size, args.length)
        last, summed = random_readout_losses(layer.output_size * layer.num_directions, args.seed)
        scale = "torch's init" if args.init_scale is None else f"W_hh = {args.init_scale} × orthogonal"
        cell = args.cell if args.nonlinearity == "tanh" else f"{args.cell} ({args.nonlinearity})"
        title = f"{cell}, H={args.hidden}, {scale}, untrained"
    else:
        task, model, vocab, cfg = load(checkpoint.load(args.checkpoint))
        layer = model.rnn
        if isinstance(task, LMTask):
            xs, last, summed = _lm_batch(task, model, vocab, cfg, args)
        else:
            xs, last, summed = _synthetic_batch(task, model, cfg, args)
        title = f"{cfg.cell} {cfg.layers}×{cfg.hidden}, trained ({args.checkpoint})"
    layer.eval()
    report = diagnose(layer, xs, last, summed, args.out, title)
    print(f"{title}: {report['verdict']}. σ_max(W_hh) = "
          + ", ".join(f"{k}: {v:.3g}" for k, v in report["sigma_max"].items())
          + f". Written to {args.out}/diagnose.json and PNGs.")  # fmt: skip
    return 0


def _lm_batch(task, model, vocab, cfg, args):
    """Embedded validation text; the losses: next-token cross-entropy at the last step / at every step."""
    _, valid, _ = task.corpus(cfg, args.data)
    ids = task.encode(vocab, valid, "the validation split")
    _, x, y = next(TBPTTStream(ids, args.batch_size, args.length).windows(0))
    return (model.embedding(x).detach(), *_per_step_losses(model.head, y))


def _per_step_losses(head, y):
    """Cross-entropy of the classes y (B, T) at the last step, and summed over every step."""

    def last(ys):
        return F.cross_entropy(head(ys[:, -1]), y[:, -1], reduction="sum")

    def summed(ys):
        logits = head(ys)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")

    return last, summed


def _synthetic_batch(task, model, cfg, args):
    """A batch of the task's test set; the losses: the task's own, at the last step / at every step."""
    stream = SyntheticStream(task.make, args.batch_size, args.batch_size, cfg.length, cfg.data_seed + 7919)
    _, xs, y = next(stream.windows(0))
    if task.name == "adding":  # one answer, at the last step

        def last(ys):
            return F.mse_loss(model.head(ys[:, -1]).squeeze(-1), y, reduction="sum")

        return xs, last, last
    return (xs, *_per_step_losses(model.head, y))
