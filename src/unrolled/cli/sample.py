"""`unrolled sample CKPT`: generate text one token at a time, printing as it goes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import UnrolledError
from ..tasks import load
from ..tasks.lm import LMTask, generate
from ..train import checkpoint


def register(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained language model")
    p.add_argument("checkpoint", type=Path, help="a checkpoint or run directory (its best checkpoint)")
    p.add_argument("--prime", default=None, help="text to start from (default: a new line)")
    p.add_argument("--length", type=int, default=500, help="how many tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    task, model, vocab, _ = load(checkpoint.load(args.checkpoint))
    if not isinstance(task, LMTask):
        raise UnrolledError(f"sample needs a language model; {args.checkpoint} holds a {task.name!r} model")
    ids = task.encode_prime(vocab, args.prime)
    gen = torch.Generator().manual_seed(args.seed)
    if args.prime is not None:
        sys.stdout.write(args.prime if task.unit == "char" else args.prime.rstrip() + " ")
    for token in generate(model, ids, args.length, args.temperature, args.top_k, gen):
        sys.stdout.write(task.render(vocab, token))
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
