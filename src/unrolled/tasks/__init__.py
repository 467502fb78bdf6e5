"""Applications: each wires data, a model and the trainer together behind a typed config.

A task has `name`, `config_class`, `presets`, `prepare(cfg, train_cfg) -> (vocab, train, valid)`,
`build_model(cfg, vocab)`, `evaluate(model, data, max_windows)`, `describe(metrics)`,
`carry_state` and `loss_label`; the CLI needs nothing else.
"""

from __future__ import annotations

from ..config import from_json
from ..errors import UnrolledError
from .lm import TASKS as LM_TASKS
from .synthetic import ADDING, COPY

TASKS = {**LM_TASKS, ADDING.name: ADDING, COPY.name: COPY}


def load(ckpt):
    """(task, model in eval mode, vocabulary or None, config) rebuilt from a checkpoint."""
    if ckpt.task not in TASKS:
        raise UnrolledError(f"{ckpt.path} holds a {ckpt.task!r} model, which this version does not know")
    task = TASKS[ckpt.task]
    cfg = from_json(task.config_class, ckpt.config["task"], f"checkpoint {ckpt.path}")
    vocab = task.load_vocab(ckpt.vocab) if ckpt.vocab is not None else None
    model = task.build_model(cfg, vocab)
    ckpt.load_weights(model, "averaged" if ckpt.has_averaged else "model")  # NT-ASGD's average is the model
    model.eval()
    return task, model, vocab, cfg
