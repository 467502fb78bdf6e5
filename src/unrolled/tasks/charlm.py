"""Character-level language model: Karpathy's char-rnn as a toolkit task.

Train on a corpus cut into parallel streams (truncated BPTT), evaluate in nats and bits per
character, sample one character at a time feeding each back in.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import opt
from ..data import CharVocab, TBPTTStream, load_char_corpus
from ..errors import UnrolledError
from ..layers import LAYERS
from ..models import LanguageModel

TASK = "charlm"
EVAL_BATCH = 16  # parallel streams when evaluating: fewer streams, less context lost at stream starts


@dataclass
class CharLMConfig:
    data: str | None = opt(None, "dataset name or text file (default: this Python's standard-library source)")
    errors: str = opt("strict", "how to treat bytes that are not UTF-8", choices=("strict", "replace"))
    max_chars: int | None = opt(None, "use at most this many characters of the corpus")
    cell: str = opt("lstm", "recurrent cell", choices=tuple(LAYERS))
    layers: int = opt(2, "stacked recurrent layers")
    hidden: int = opt(256, "hidden units per layer")
    emb: int | None = opt(None, "embedding size (default: --hidden)")
    dropout: float = opt(0.0, "dropout on embeddings, between layers and on outputs")
    tie_weights: bool = opt(False, "share the embedding matrix with the output layer")
    backend: str = opt("auto", "layer backend: auto, fused, reference")


PRESETS = {
    "tiny": {
        "max_chars": 1_000_000, "cell": "lstm", "layers": 1, "hidden": 256, "emb": 64, "batch_size": 32,
        "seq_len": 64, "steps": 600, "lr": 3e-3, "eval_every": 200, "eval_windows": 20, "warmup_steps": 20,
    },
    "shakespeare": {
        "data": "shakespeare", "cell": "lstm", "layers": 2, "hidden": 512, "emb": 128, "dropout": 0.4,
        "batch_size": 32, "seq_len": 100, "steps": 7500, "lr": 2e-3, "weight_decay": 0.1, "warmup_steps": 200,
        "min_lr_ratio": 0.05, "eval_every": 500, "clip_norm": 1.0,
    },
}  # fmt: skip


def build_model(cfg: CharLMConfig, vocab_size: int) -> LanguageModel:
    rnn = LAYERS[cfg.cell](cfg.emb or cfg.hidden, cfg.hidden, num_layers=cfg.layers, dropout=cfg.dropout)
    return LanguageModel(vocab_size, rnn, dropout=cfg.dropout, tie_weights=cfg.tie_weights, backend=cfg.backend)


def nats_metrics(nats: float) -> dict[str, float]:
    return {"loss": nats, "bpc": nats / math.log(2), "ppl": math.exp(min(nats, 700.0))}


@torch.no_grad()
def evaluate(model: LanguageModel, stream: TBPTTStream, max_windows: int | None = None) -> dict[str, float]:
    """Mean nats per token over a stream, the state carried from window to window."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    for index, x, y in stream.windows(0):
        if max_windows is not None and index >= max_windows:
            break
        logits, state = model(x.to(device), state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return nats_metrics(total / count)


@torch.no_grad()
def generate(
    model: LanguageModel,
    prime: Tensor,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Feed `prime` (T,) ids, then sample `length` ids one at a time, each fed back in.

    temperature 0 takes the most likely token (greedy); top_k keeps the k most likely.
    """
    if temperature < 0:
        raise UnrolledError(f"--temperature must be ≥ 0, got {temperature}")
    model.eval()
    device = next(model.parameters()).device
    logits, state = model(prime.to(device)[None], None)  # (1, T, V)
    last = logits[0, -1]
    for _ in range(length):
        if temperature == 0:
            token = int(last.argmax())
        else:
            scores = last.double() / temperature
            if top_k:
                kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
                scores = scores.masked_fill(scores < kth, -math.inf)
            token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
        yield token
        logits, state = model(torch.tensor([[token]], device=device), state)
        last = logits[0, -1]


class CharLMTask:
    """Everything `unrolled train/sample/eval` needs for the character model."""

    name = TASK
    config_class = CharLMConfig
    presets = PRESETS

    @staticmethod
    def prepare(cfg: CharLMConfig, batch_size: int, seq_len: int):
        train_text, valid_text, _ = load_char_corpus(cfg.data, errors=cfg.errors, max_chars=cfg.max_chars)
        vocab = CharVocab.build(train_text + valid_text)
        train = TBPTTStream(vocab.encode(train_text), batch_size, seq_len)
        valid = TBPTTStream(vocab.encode(valid_text), EVAL_BATCH, seq_len)
        return vocab, train, valid

    @staticmethod
    def config_json(cfg: CharLMConfig) -> dict:
        return asdict(cfg)


def model_from_checkpoint(ckpt) -> tuple[LanguageModel, CharVocab, CharLMConfig]:
    from ..config import from_json

    if ckpt.task != TASK:
        raise UnrolledError(f"{ckpt.path} holds a {ckpt.task!r} model, not a {TASK!r} one")
    cfg = from_json(CharLMConfig, ckpt.config["task"], f"checkpoint {ckpt.path}")
    vocab = CharVocab.from_json(ckpt.vocab)
    model = build_model(cfg, len(vocab))
    ckpt.load_weights(model)
    model.eval()
    return model, vocab, cfg


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
