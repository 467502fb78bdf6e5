"""Language models, character- and word-level: Karpathy's char-rnn and Zaremba et al.'s PTB model.

Both train on a corpus cut into parallel streams (truncated BPTT, `TBPTTStream`), evaluate in
nats per token (bits per character, perplexity per word), and sample one token at a time,
feeding each back in. They differ only in the vocabulary, the corpus and the presets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import opt
from ..data import CharVocab, TBPTTStream, WordVocab, load_char_corpus, load_word_corpus
from ..errors import UnrolledError
from ..layers import LAYERS, build_layer
from ..models import LanguageModel
from ..regularizers import add_weight_drop
from .presets import CHAR_PRESETS, WORD_PRESETS


@dataclass
class LMConfig:
    data: str | None = opt(None, "dataset name or text file (default: this Python's standard-library source)")
    errors: str = opt("strict", "how to treat bytes that are not UTF-8", choices=("strict", "replace"))
    cell: str = opt("lstm", "recurrent cell", choices=tuple(LAYERS))
    nonlinearity: str = opt("tanh", "the elman cell's nonlinearity", choices=("tanh", "relu"))
    layers: int = opt(2, "stacked recurrent layers")
    hidden: int = opt(256, "hidden units per layer")
    emb: int | None = opt(None, "embedding size (default: --hidden)")
    dropout: float = opt(0.0, "dropout on the top layer's outputs (and, unless set apart, on the others)")
    dropout_emb: float | None = opt(None, "dropout on the embeddings (default: --dropout)")
    dropout_between: float | None = opt(None, "dropout between recurrent layers (default: --dropout)")
    variational: bool = opt(False, "one dropout mask per sequence, shared by all time steps (locked dropout)")
    word_dropout: float = opt(0.0, "drop whole rows of the embedding matrix (embedding dropout)")
    weight_drop: float = opt(0.0, "DropConnect on the recurrent weights W_hh (AWD-LSTM's weight drop)")
    ar: float = opt(0.0, "activation regularisation: alpha · mean(h²) of the top layer's dropped outputs")
    tar: float = opt(0.0, "temporal activation regularisation: beta · mean((h_t − h_{t−1})²)")
    tie_weights: bool = opt(False, "share the embedding matrix with the output layer (needs --emb = --hidden)")
    init_range: float | None = opt(None, "initialise every weight uniformly in ±this (default: torch's init)")
    backend: str = opt("auto", "layer backend: auto, fused, reference")
    adaptive_softmax: str | None = opt(
        None, "cutoffs of an adaptive softmax head, e.g. 2000,10000: faster for large vocabularies"
    )


@dataclass
class CharLMConfig(LMConfig):
    max_chars: int | None = opt(None, "use at most this many characters of the default corpus")


@dataclass
class WordLMConfig(LMConfig):
    data: str | None = opt("ptb", "dataset name (ptb, wikitext2) or a text file, one sentence per line")


def parse_cutoffs(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise UnrolledError(
            f"--adaptive-softmax takes comma-separated word counts such as 2000,10000, got {text!r}"
        ) from None


def build_model(cfg: LMConfig, vocab_size: int) -> LanguageModel:
    between = cfg.dropout if cfg.dropout_between is None else cfg.dropout_between
    rnn = build_layer(
        cfg.cell, cfg.emb or cfg.hidden, cfg.hidden, nonlinearity=cfg.nonlinearity, num_layers=cfg.layers,
        dropout=between, variational=cfg.variational,
    )  # fmt: skip
    model = LanguageModel(
        vocab_size, rnn, dropout=cfg.dropout, tie_weights=cfg.tie_weights, backend=cfg.backend,
        dropout_emb=cfg.dropout if cfg.dropout_emb is None else cfg.dropout_emb, word_dropout=cfg.word_dropout,
        variational=cfg.variational, ar=cfg.ar, tar=cfg.tar, adaptive_cutoffs=parse_cutoffs(cfg.adaptive_softmax),
    )  # fmt: skip
    if cfg.init_range:
        for p in model.parameters():
            nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
    if cfg.weight_drop:
        add_weight_drop(model.rnn, cfg.weight_drop)
    return model


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
    if len(prime) == 0:
        raise UnrolledError("the prime text is empty; give at least one token")
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


@dataclass(frozen=True)
class LMTask:
    """What `unrolled train/sample/eval` need to know about one kind of language model."""

    name: str
    unit: str  # "char" or "word"
    config_class: type
    presets: dict
    eval_batch: int  # parallel streams when evaluating during training

    @property
    def __doc__(self) -> str:  # the CLI's help line
        return f"{self.unit}-level language model"

    def corpus(self, cfg: LMConfig, data: str | None = None):
        """(train, valid, test or None) as texts (char) or lists of lines (word)."""
        if self.unit == "char":
            limit = cfg.max_chars if data is None else None
            return load_char_corpus(cfg.data if data is None else data, errors=cfg.errors, max_chars=limit)
        return load_word_corpus(cfg.data if data is None else data, errors=cfg.errors)

    def build_vocab(self, train, valid):
        if self.unit == "char":
            return CharVocab.build(train + valid)
        return WordVocab.build(train)  # words only from training, like the reference setups

    def load_vocab(self, data: dict):
        return CharVocab.from_json(data) if self.unit == "char" else WordVocab.from_json(data)

    def encode(self, vocab, corpus, what: str) -> Tensor:
        """A split's token ids; unseen words become <unk> (word level), unseen characters are an error."""
        if self.unit == "char":
            return vocab.encode(corpus, what=what)
        return vocab.encode_lines(corpus, unknown="unk", what=what)

    def encode_prime(self, vocab, text: str | None) -> Tensor:
        if self.unit == "char":
            return vocab.encode(text if text is not None else "\n", what="the prime text")
        if text is None:
            return torch.tensor([vocab.stoi[vocab.eos]])
        return vocab.encode_lines([text], unknown="unk", what="the prime text")[:-1]  # no <eos> after it

    def render(self, vocab, token: int) -> str:
        piece = vocab.decode([token])
        return piece if self.unit == "char" or piece == "\n" else piece + " "

    carry_state = True  # truncated BPTT: the state flows from window to window

    @property
    def loss_label(self) -> str:
        return f"nats per {self.unit}"

    def prepare(self, cfg: LMConfig, tcfg):
        train, valid, _ = self.corpus(cfg)
        vocab = self.build_vocab(train, valid)
        train_stream = TBPTTStream(self.encode(vocab, train, "the training split"), tcfg.batch_size, tcfg.seq_len)
        valid_stream = TBPTTStream(self.encode(vocab, valid, "the validation split"), self.eval_batch, tcfg.seq_len)
        return vocab, train_stream, valid_stream

    def figures(self, split: str, nats: float) -> list[tuple[str, str, float]]:
        """A loss as a results table quotes it: in nats and in the usual unit."""
        usual = ("bits_per_char", nats / math.log(2)) if self.unit == "char" else ("perplexity", math.exp(nats))
        return [(split, f"nats_per_{self.unit}", nats), (split, *usual)]

    def result_metrics(self, summary: dict) -> list[tuple[str, str, float]]:
        """The best validation loss of a run."""
        return self.figures("valid", summary["best_valid"])

    def evaluate_split(self, model, vocab, cfg, split: str, data=None, batch: int | None = None, seq_len: int = 100):
        """(metrics, tokens) over a whole split, the state carried across windows; None if the corpus lacks it.

        Words are read as one stream (batch 1), the usual way to quote a test perplexity.
        """
        _, valid, test = self.corpus(cfg, data)
        corpus = valid if split == "valid" else test
        if corpus is None:
            return None
        ids = self.encode(vocab, corpus, f"the {split} split")
        batch = batch or (self.eval_batch if self.unit == "char" else 1)
        return evaluate(model, TBPTTStream(ids, batch, seq_len)), len(ids)

    def default_dataset(self, cfg) -> str:
        return "python-stdlib-source"

    def describe(self, m: dict) -> str:
        """A metrics line in the unit people quote: bits per character, perplexity per word."""
        if not m:
            return "not evaluated"
        if self.unit == "char":
            return f"{m['loss']:.4f} nats/char ({m['bpc']:.4f} bits/char)"
        return f"{m['loss']:.4f} nats/word (perplexity {m['ppl']:.2f})"

    def build_model(self, cfg: LMConfig, vocab) -> LanguageModel:
        return build_model(cfg, len(vocab))

    evaluate = staticmethod(evaluate)


CHAR = LMTask("charlm", "char", CharLMConfig, CHAR_PRESETS, eval_batch=16)
WORD = LMTask("wordlm", "word", WordLMConfig, WORD_PRESETS, eval_batch=10)
TASKS = {t.name: t for t in (CHAR, WORD)}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
