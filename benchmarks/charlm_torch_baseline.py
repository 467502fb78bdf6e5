"""Plain-PyTorch baseline for the character model on tiny Shakespeare (issue 3's yardstick).

A torch.nn.LSTM 2×512 character model with AdamW, dropout and a cosine schedule, written
with nothing from `unrolled`, trained for a wall-clock budget on the same split the toolkit
uses (validation = last 10% of the characters), evaluating on the whole validation split.

    UNROLLED_DATA_DIR=../shared/data .venv/bin/python benchmarks/charlm_torch_baseline.py --minutes 60

Prints one JSON line per evaluation and a final summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        y, state = self.lstm(self.drop(self.emb(x)), state)
        return self.head(self.drop(y)), state


def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    n = (len(ids) - 1) // batch
    return ids[: n * batch + 1], n


def windows(ids: torch.Tensor, batch: int, seq: int):
    n = (len(ids) - 1) // batch
    x = ids[: n * batch].view(batch, n)
    y = ids[1 : n * batch + 1].view(batch, n)
    for i in range(0, n, seq):
        yield x[:, i : i + seq], y[:, i : i + seq]


@torch.no_grad()
def evaluate(model, ids, batch, seq):
    model.eval()
    state, total, count = None, 0.0, 0
    for x, y in windows(ids, batch, seq):
        logits, state = model(x, state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--steps", type=int, default=6000, help="cosine horizon: about what fits in 60 minutes here")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    path = Path(os.environ.get("UNROLLED_DATA_DIR", "../shared/data")) / "tinyshakespeare" / "input.txt"
    text = path.read_text(encoding="utf-8")
    cut = len(text) - len(text) // 10
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    train, valid = ids[:cut], ids[cut:]
    model = CharLSTM(len(chars), args.hidden, args.layers, args.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    t0, step, best = time.perf_counter(), 0, math.inf
    budget = args.minutes * 60
    while time.perf_counter() - t0 < budget and step < args.steps:
        state = None
        for x, y in windows(train, args.batch_size, args.seq_len):
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            over = time.perf_counter() - t0 >= budget or step >= args.steps
            if step % args.eval_every == 0 or over:
                v = evaluate(model, valid, 16, 100)
                best = min(best, v)
                print(json.dumps({"step": step, "minutes": (time.perf_counter() - t0) / 60, "train": loss.item(),
                                  "valid": v, "best": best}), flush=True)  # fmt: skip
            if over:
                break
    print(json.dumps({"final": True, "best_valid": best, "steps": step, "minutes": (time.perf_counter() - t0) / 60}))


if __name__ == "__main__":
    main()
