"""The character-model task end to end: CLI, checkpoints, resume, sampling, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unrolled.cli import main
from unrolled.models import LanguageModel
from unrolled.tasks import load as model_from_checkpoint
from unrolled.tasks.lm import generate
from unrolled.train import checkpoint

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400))
SMALL = ["--cell", "gru", "--layers", "1", "--hidden", "24", "--emb", "8", "--batch-size", "4", "--seq-len", "16",
         "--dropout", "0.1", "--quiet", "--threads", "1"]  # fmt: skip


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def train(corpus, out, *extra):
    return main(["train", "charlm", "--data", str(corpus), "--out", str(out), *SMALL, *extra])


def test_cli_end_to_end(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    torch.set_flush_denormal(False)
    assert train(corpus, out, "--steps", "30", "--eval-every", "10", "--results", str(tmp_path / "r.json")) == 0
    assert (torch.tensor([1e-39]) * 0.5).item() == 0.0, "training flushes subnormal floats to zero"
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["metric"] for r in rows] == ["nats_per_char", "bits_per_char"]
    assert rows[0]["command"].startswith("unrolled train charlm --data") and rows[0]["split"] == "valid"
    assert (out / "best").exists() and (out / "latest").exists() and (out / "loss.png").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "valid"] == [10, 20, 30]
    assert abs(min(r["loss"] for r in records if r["split"] == "valid") - rows[0]["value"]) < 1e-6
    assert all("bpc" in r for r in records if r["split"] == "valid")
    capsys.readouterr()
    assert main(["sample", str(out), "--prime", "line", "--length", "40", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("line") and len(first) == len("line") + 40 + 1
    assert main(["sample", str(out), "--prime", "line", "--length", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first, "sampling with a fixed seed must be reproducible"
    assert main(["eval", str(out)]) == 0
    assert "nats/char" in capsys.readouterr().out


def test_temperature_zero_is_greedy_and_small_temperature_agrees():
    torch.manual_seed(0)
    from unrolled.layers import LSTM

    model = LanguageModel(10, LSTM(8, 16)).eval()
    prime = torch.tensor([1, 2, 3])
    greedy = list(generate(model, prime, 20, temperature=0))
    # the argmax chain, computed by hand
    ids, state, want = prime, None, []
    logits, state = model(ids[None], None)
    for _ in range(20):
        token = int(logits[0, -1].argmax())
        want.append(token)
        logits, state = model(torch.tensor([[token]]), state)
    assert greedy == want
    cold = list(generate(model, prime, 20, temperature=1e-6, generator=torch.Generator().manual_seed(1)))
    assert cold == greedy


def test_checkpoint_round_trip(corpus, tmp_path):
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "5", "--eval-every", "5") == 0
    _, model, vocab, cfg = model_from_checkpoint(checkpoint.load(out))
    saved = load_file(str(checkpoint.resolve(out) / "model.safetensors"))
    assert set(saved) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k])
    assert cfg.cell == "gru" and cfg.hidden == 24 and vocab.decode(vocab.encode("fox")) == "fox"


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "unrolled", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


def _latest_step(out: Path) -> int:
    try:
        return json.loads((out / "latest" / "state.json").read_text())["step"]
    except (OSError, ValueError):
        return -1


def _wait_for_step(proc, out, step, timeout=180):
    t0 = time.time()
    while _latest_step(out) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def test_resume_after_sigkill_is_bit_identical(corpus, tmp_path):
    args = ["train", "charlm", "--data", str(corpus), *SMALL, "--steps", "60", "--eval-every", "20",
            "--ckpt-every", "3"]  # fmt: skip
    straight = _cli(*args, "--out", str(tmp_path / "a"))
    killed = _cli(*args, "--out", str(tmp_path / "b"))
    _wait_for_step(killed, tmp_path / "b", 20)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _latest_step(tmp_path / "b") < 60
    resumed = _cli(*args, "--out", str(tmp_path / "b"), "--resume")
    for p in (straight, resumed):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    a = load_file(str(tmp_path / "a" / "latest" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "latest" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "valid"]  # fmt: skip
    assert steps == [20, 40, 60], "a resumed run's log has each evaluation once"


def test_ctrl_c_saves_and_exits_cleanly(corpus, tmp_path):
    out = tmp_path / "run"
    proc = _cli("train", "charlm", "--data", str(corpus), *SMALL, "--steps", "100000", "--ckpt-every", "2",
                "--out", str(out))  # fmt: skip
    _wait_for_step(proc, out, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    assert 2 <= _latest_step(out) < 100000


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    real_loss, calls = LanguageModel.loss, {"n": 0}

    def loss(self, batch, state=None):
        calls["n"] += 1
        value, state = real_loss(self, batch, state)
        return (value * float("nan") if calls["n"] == 7 else value), state

    monkeypatch.setattr(LanguageModel, "loss", loss)
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "20", "--ckpt-every", "2", "--eval-every", "100") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "loss became nan at step 7" in err.splitlines()[-1]
    assert _latest_step(out) == 6
    checkpoint.load(out, prefer="latest").training_state()  # intact


def _error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("unrolled: error: "), err
    return err.splitlines()[-1]


def test_bad_corpora(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert "is empty" in _error(capsys, "train", "charlm", "--data", str(empty), "--out", str(tmp_path / "r"))
    short = tmp_path / "short.txt"
    short.write_text("hello world, " * 10)
    err = _error(capsys, "train", "charlm", "--data", str(short), "--out", str(tmp_path / "r"), *SMALL)
    assert "fewer than one batch window" in err
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"abc" * 100 + b"\xff\xfe" + b"abc" * 100)
    assert "offset 300" in _error(capsys, "train", "charlm", "--data", str(binary), "--out", str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_bad_checkpoints_and_prime(corpus, tmp_path, capsys):
    assert "no checkpoint at" in _error(capsys, "sample", str(tmp_path / "nowhere"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model": "gpt"}')
    assert "not an unrolled checkpoint" in _error(capsys, "sample", str(foreign))
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "4", "--eval-every", "4") == 0
    capsys.readouterr()
    assert "not in the model's vocabulary" in _error(capsys, "sample", str(out), "--prime", "Zürich")
    ckpt = checkpoint.resolve(out)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert "damaged" in _error(capsys, "sample", str(out))


def test_resume_refuses_another_config_and_never_overwrites(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "4", "--eval-every", "4") == 0
    capsys.readouterr()
    before = (out / "latest" / "model.safetensors").read_bytes()
    assert "already holds a run" in _error(capsys, "train", "charlm", "--data", str(corpus), "--out", str(out), *SMALL)
    err = _error(capsys, "train", "charlm", "--data", str(corpus), "--out", str(out), *SMALL, "--hidden", "32",
                 "--resume")  # fmt: skip
    assert "another configuration" in err and "hidden: 24 → 32" in err
    assert (out / "latest" / "model.safetensors").read_bytes() == before
