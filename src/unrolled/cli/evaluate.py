"""`unrolled eval CKPT`: loss of a trained model on a whole split."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import TBPTTStream, load_char_corpus
from ..errors import UnrolledError
from ..tasks.charlm import EVAL_BATCH, evaluate, model_from_checkpoint
from ..train import checkpoint


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained model on a split")
    p.add_argument("checkpoint", type=Path, help="a checkpoint or run directory (its best checkpoint)")
    p.add_argument("--data", default=None, help="dataset name or file (default: the one it was trained on)")
    p.add_argument("--split", default="valid", choices=("valid", "test"), help="which split")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH, help="parallel streams")
    p.add_argument("--seq-len", type=int, default=100, help="window length; the state is carried across windows")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ckpt = checkpoint.load(args.checkpoint)
    model, vocab, cfg = model_from_checkpoint(ckpt)
    data = args.data if args.data is not None else cfg.data
    _, valid, test = load_char_corpus(data, errors=cfg.errors, max_chars=cfg.max_chars if args.data is None else None)
    text = valid if args.split == "valid" else test
    if text is None:
        raise UnrolledError(f"{data or 'the default corpus'} has no test split; use --split valid")
    m = evaluate(model, TBPTTStream(vocab.encode(text, what=f"the {args.split} split"), args.batch_size, args.seq_len))
    print(f"{args.split}: {m['loss']:.4f} nats/char, {m['bpc']:.4f} bits/char ({len(text):,} characters)")
    return 0
