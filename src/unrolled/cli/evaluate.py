"""`unrolled eval CKPT`: loss of a trained model on a whole split, the state carried across it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UnrolledError
from ..tasks import load
from ..tasks.lm import LMTask
from ..train import checkpoint
from ..train.config import TrainConfig


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained model on a split")
    p.add_argument("checkpoint", type=Path, help="a checkpoint or run directory (its best checkpoint)")
    p.add_argument("--data", default=None, help="dataset name or file (default: the one it was trained on)")
    p.add_argument("--split", default="valid", choices=("valid", "test"), help="which split")
    p.add_argument("--batch-size", type=int, default=None,
                   help="parallel streams (default: 16 for characters, 1 for words: one stream over the whole split)")  # fmt: skip
    p.add_argument("--seq-len", type=int, default=100, help="window length; the state is carried across windows")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    task, model, vocab, cfg = load(checkpoint.load(args.checkpoint))
    if not isinstance(task, LMTask):  # the synthetic tasks: their held-out set
        _, _, test = task.prepare(cfg, TrainConfig())
        print(f"test: {task.describe(task.evaluate(model, test))} over {len(test) * test.batch_size:,} sequences")
        return 0
    found = task.evaluate_split(model, vocab, cfg, args.split, args.data, args.batch_size, args.seq_len)
    if found is None:
        raise UnrolledError(f"{args.data or cfg.data or 'the default corpus'} has no test split; use --split valid")
    m, tokens = found
    print(f"{args.split}: {task.describe(m)} over {tokens:,} tokens")
    return 0
