"""Named presets: small dictionaries of config and training fields, overridden by CLI flags."""

CHAR_PRESETS = {
    # about a minute here; the README's demo
    "tiny": {
        "max_chars": 1_000_000, "cell": "lstm", "layers": 1, "hidden": 256, "emb": 64, "batch_size": 32,
        "seq_len": 64, "steps": 600, "lr": 3e-3, "eval_every": 200, "eval_windows": 20, "warmup_steps": 20,
    },
    # tiny Shakespeare, validation = last 10%: 1.3997 nats/char in 52 minutes on 2 CPU cores (docs/results.md)
    "shakespeare": {
        "data": "shakespeare", "cell": "lstm", "layers": 2, "hidden": 512, "emb": 128, "dropout": 0.4,
        "variational": True, "batch_size": 32, "seq_len": 100, "steps": 6300, "lr": 2e-3, "weight_decay": 0.1,
        "warmup_steps": 200,
        "min_lr_ratio": 0.05, "eval_every": 500, "clip_norm": 1.0,
    },
}  # fmt: skip

# Zaremba, Sutskever & Vinyals (2014), "Recurrent Neural Network Regularization", Table 1, with the
# hyper-parameters of their code: SGD on the loss summed over the window's time steps, lr 1.0,
# decayed per epoch after `decay_start` epochs, gradient norm clipped, uniform init.
_ZAREMBA = {"data": "ptb", "cell": "lstm", "layers": 2, "batch_size": 20, "optimizer": "sgd", "lr": 1.0,
            "schedule": "step", "eval_every": 0}  # fmt: skip
WORD_PRESETS = {
    "zaremba-small": {**_ZAREMBA, "hidden": 200, "seq_len": 20, "loss_scale": 20, "dropout": 0.0, "init_range": 0.1,
                      "gamma": 0.5, "decay_start": 4, "clip_norm": 5.0, "epochs": 13},
    "zaremba-medium": {**_ZAREMBA, "hidden": 650, "seq_len": 35, "loss_scale": 35, "dropout": 0.5,
                       "init_range": 0.05, "gamma": 0.8, "decay_start": 6, "clip_norm": 5.0, "epochs": 39},
    "zaremba-large": {**_ZAREMBA, "hidden": 1500, "seq_len": 35, "loss_scale": 35, "dropout": 0.65,
                      "init_range": 0.04, "gamma": 1 / 1.15, "decay_start": 14, "clip_norm": 10.0, "epochs": 55},
}  # fmt: skip
