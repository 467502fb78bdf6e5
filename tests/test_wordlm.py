"""Word-level language models: perplexity, evaluation in windows, regularisers, presets."""

import math

import pytest
import torch
import torch.nn.functional as F

from unrolled.cli import main
from unrolled.config import build
from unrolled.data import TBPTTStream
from unrolled.layers import LSTM
from unrolled.models import LanguageModel
from unrolled.tasks.lm import TASKS, WordLMConfig, build_model, evaluate
from unrolled.train.config import TrainConfig
from unrolled.train.optim import make_optimizer


def test_uniform_model_perplexity_is_the_vocabulary_size():
    V = 37
    model = LanguageModel(V, LSTM(8, 8)).double()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    m = evaluate(model, TBPTTStream(torch.randint(0, V, (500,)), 2, 9))
    assert abs(m["ppl"] - V) < 1e-9 * V
    assert abs(m["loss"] - math.log(V)) < 1e-12


def test_windows_with_state_carried_equal_one_long_unroll():
    torch.manual_seed(0)
    V = 11
    model = LanguageModel(V, LSTM(6, 10, num_layers=2)).double().eval()
    ids = torch.randint(0, V, (301,))
    windowed = evaluate(model, TBPTTStream(ids, 1, 7))["loss"]
    logits, _ = model(ids[None, :-1])
    whole = torch.nn.functional.cross_entropy(logits[0], ids[1:]).item()
    assert abs(windowed - whole) < 1e-10


REGULARISERS = {
    "dropout": {"dropout": 0.5},
    "dropout_emb": {"dropout_emb": 0.5},
    "dropout_between": {"dropout_between": 0.5},
    "variational": {"dropout": 0.5, "variational": True},
    "word_dropout": {"word_dropout": 0.5},
    "weight_drop": {"weight_drop": 0.5},
    "ar": {"ar": 2.0},
    "tar": {"tar": 2.0},
}


@pytest.mark.parametrize("name", sorted(REGULARISERS))
def test_each_regulariser_acts_in_training_only(name):
    base = {"data": "x", "hidden": 16, "emb": 16, "layers": 2}
    torch.manual_seed(0)
    plain = build_model(build(WordLMConfig, base), 20).double()
    torch.manual_seed(0)
    reg = build_model(build(WordLMConfig, base, REGULARISERS[name]), 20).double()
    reg.load_state_dict(plain.state_dict(), strict=False) if name != "weight_drop" else None
    x = torch.randint(0, 20, (4, 12))
    batch = (x[:, :-1], x[:, 1:])
    plain.eval(), reg.eval()
    assert torch.equal(plain.loss(batch)[0], reg.loss(batch)[0]), "evaluation must be deterministic and unregularised"
    assert torch.equal(reg.loss(batch)[0], reg.loss(batch)[0])
    reg.train()
    plain.train()
    torch.manual_seed(1)
    a = reg.loss(batch)[0]
    torch.manual_seed(1)
    b = plain.loss(batch)[0]
    assert not torch.allclose(a, b), f"{name} changes nothing in training"


def test_variational_dropout_same_numbers_on_both_backends():
    layer = LSTM(5, 7, num_layers=3, dropout=0.5, variational=True).double()
    xs = torch.randn(3, 6, 5, dtype=torch.double)
    torch.manual_seed(3)
    a, sa = layer(xs, backend="reference")
    torch.manual_seed(3)
    b, sb = layer(xs, backend="fused")
    assert (a - b).abs().max() < 1e-10 and (sa.c - sb.c).abs().max() < 1e-10


@pytest.mark.parametrize("task,name", [(t, p) for t in TASKS.values() for p in t.presets])
def test_every_preset_builds_and_runs_one_step(task, name):
    preset = task.presets[name]
    cfg, tcfg = build(task.config_class, preset), build(TrainConfig, preset)
    V = 10_000 if task.unit == "word" else 65
    model = build_model(cfg, V)
    opt = make_optimizer(model.parameters(), tcfg)
    x = torch.randint(0, V, (2, min(tcfg.seq_len, 8) + 1))
    loss, _ = model.loss((x[:, :-1], x[:, 1:]))
    (loss * tcfg.loss_scale).backward()
    opt.step()
    assert math.isfinite(loss.item()) and abs(loss.item() - math.log(V)) < 1.0


def test_wordlm_cli_end_to_end(tmp_path, capsys):
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "the",
        "mat",
        "while",
        "a",
        "dog",
        "ran",
        "after",
        "the",
        "ball",
        "in",
        "the",
        "park",
        "<unk>",
    ]
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(words[int(i)] for i in torch.randint(0, len(words), (12,), generator=g)) for _ in range(300)]
    corpus = tmp_path / "words.txt"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["train", "wordlm", "--data", str(corpus), "--out", str(out), "--hidden", "16", "--layers", "1",
            "--batch-size", "4", "--seq-len", "10", "--steps", "20", "--eval-every", "10", "--quiet",
            "--tie-weights", "--dropout", "0.2", "--variational", "--weight-drop", "0.2"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "valid"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["sample", str(out), "--prime", "the zebra", "--length", "12", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("the zebra ") and len(text.split()) >= 3


def test_locked_dropout_uses_one_mask_for_all_steps():
    from unrolled.regularizers import dropout

    x = torch.ones(4, 9, 6)
    y = dropout(x, 0.5, training=True, variational=True)
    assert torch.equal(y, y[:, :1].expand_as(y)), "the same units must be dropped at every time step"
    assert (y == 0).any() and (y == 2).any()
    assert torch.equal(dropout(x, 0.5, training=False, variational=True), x)


def test_train_reports_the_best_checkpoint_on_the_test_split(tmp_path, capsys):
    import json

    out, results = tmp_path / "run", tmp_path / "results.json"
    args = ["train", "wordlm", "--data", "ptb", "--out", str(out), "--hidden", "8", "--layers", "1",
            "--batch-size", "20", "--seq-len", "20", "--steps", "4", "--eval-every", "2", "--eval-windows", "3",
            "--quiet", "--results", str(results)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert main(["eval", str(out), "--split", "test"]) == 0
    test_line = capsys.readouterr().out.strip()  # "test: … over 82,430 tokens"
    assert test_line.replace("test:", "test (best checkpoint):") in printed
    rows = {(r["split"], r["metric"]): r for r in json.loads(results.read_text())}
    assert set(rows) == {(s, m) for s in ("valid", "test") for m in ("nats_per_word", "perplexity")}
    assert f"(perplexity {rows['test', 'perplexity']['value']:.2f})" in test_line
    assert len(rows["test", "perplexity"]["valid_loss_curve"]) == 2


def test_adaptive_softmax_is_a_normalised_distribution_and_its_loss_matches():
    from unrolled.errors import UnrolledError
    from unrolled.tasks.lm import generate

    V = 50
    model = LanguageModel(V, LSTM(8, 64), adaptive_cutoffs=[5, 20]).double().eval()  # tails: 16 and 4 dims
    x, y = torch.randint(0, V, (3, 7)), torch.randint(0, V, (3, 7))
    with torch.no_grad():
        scores, _ = model(x)
        loss, _ = model.loss((x, y))
    assert (scores.exp().sum(-1) - 1).abs().max() < 1e-12
    assert abs(loss.item() - F.cross_entropy(scores.flatten(0, 1), y.reshape(-1)).item()) < 1e-12
    m = evaluate(model, TBPTTStream(torch.cat([x.reshape(-1), y[0]]), 1, 5))  # evaluation goes through forward
    assert math.isfinite(m["loss"]) and len(list(generate(model, x[0], 5))) == 5
    # it learns: one tiny batch, overfitted
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        model.loss((x, y))[0].backward()
        opt.step()
    assert model.loss((x, y))[0].item() < 0.1
    with pytest.raises(UnrolledError, match="no single output matrix to tie"):
        LanguageModel(V, LSTM(16, 16), tie_weights=True, adaptive_cutoffs=[5])
    with pytest.raises(UnrolledError, match=r"must increase strictly within 1\.\.48"):
        LanguageModel(V, LSTM(8, 16), adaptive_cutoffs=[20, 5])
    with pytest.raises(UnrolledError, match="comma-separated word counts"):
        build_model(build(WordLMConfig, {"adaptive_softmax": "2000;10000"}), V)
