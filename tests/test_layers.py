"""Layers against torch.nn with copied weights, on every backend, with and without lengths."""

import itertools

import pytest
import torch
from conftest import TOL, assert_close
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import unrolled
from unrolled import LSTMState

B, T, I, H = 3, 5, 4, 3
KINDS = {
    "tanh": (lambda **kw: unrolled.RNN(I, H, **kw), lambda **kw: torch.nn.RNN(I, H, batch_first=True, **kw)),
    "relu": (
        lambda **kw: unrolled.RNN(I, H, nonlinearity="relu", **kw),
        lambda **kw: torch.nn.RNN(I, H, nonlinearity="relu", batch_first=True, **kw),
    ),
    "lstm": (lambda **kw: unrolled.LSTM(I, H, **kw), lambda **kw: torch.nn.LSTM(I, H, batch_first=True, **kw)),
    "gru": (lambda **kw: unrolled.GRU(I, H, **kw), lambda **kw: torch.nn.GRU(I, H, batch_first=True, **kw)),
}


def run_torch(module, xs, hx, lengths):
    hx = tuple(hx) if len(hx) == 2 else hx[0]
    if lengths is None:
        ys, state = module(xs, hx)
    else:
        packed = pack_padded_sequence(xs, lengths, batch_first=True, enforce_sorted=False)
        ys, state = module(packed, hx)
        ys, _ = pad_packed_sequence(ys, batch_first=True, total_length=xs.shape[1])
    return ys, list(state) if isinstance(state, tuple) else [state]


def weighted_sum(tensors):
    return sum((torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t) * t).sum() for t in tensors)


@pytest.mark.parametrize("backend", ["reference", "bptt", "fused"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("num_layers,bidirectional", list(itertools.product([1, 2, 3], [False, True])))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_matches_torch(kind, num_layers, bidirectional, use_lengths, dtype, backend):
    kw = {"num_layers": num_layers, "bidirectional": bidirectional}
    ours, theirs = KINDS[kind][0](**kw).to(dtype), KINDS[kind][1](**kw).to(dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    xs = torch.randn(B, T, I, dtype=dtype, requires_grad=True)
    n_fields = 2 if kind == "lstm" else 1
    hx = [
        torch.randn(num_layers * (2 if bidirectional else 1), B, H, dtype=dtype, requires_grad=True)
        for _ in range(n_fields)
    ]
    lengths = torch.tensor([T, 2, 4]) if use_lengths else None

    ys, state = ours(xs, ours.state_class(*hx), lengths=lengths, backend=backend)
    assert ours.last_backend == backend
    ys_ref, state_ref = run_torch(theirs, xs, hx, lengths)
    assert_close(ys, ys_ref, TOL[dtype], "outputs")
    for got, want in zip(state, state_ref):
        assert_close(got, want, TOL[dtype], "final state")

    inputs = [xs, *hx]
    g = torch.autograd.grad(weighted_sum([ys, *state]), inputs + list(ours.parameters()))
    g_ref = torch.autograd.grad(weighted_sum([ys_ref, *state_ref]), inputs + list(theirs.parameters()))
    names = ["xs", *[f"state{i}" for i in range(n_fields)]] + [n for n, _ in ours.named_parameters()]
    for name, a, b in zip(names, g, g_ref):
        assert_close(a, b, TOL[dtype], f"grad {name}")


def test_state_dict_to_torch_and_back():
    ours = unrolled.LSTM(I, H, num_layers=2, bidirectional=True)
    theirs = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
    theirs.load_state_dict(ours.state_dict())
    xs = torch.randn(B, T, I)
    ys, (h, c) = theirs(xs)
    ys2, state = ours(xs)
    assert torch.equal(ys, ys2) and torch.equal(h, state.h) and torch.equal(c, state.c)


def test_torch_style_states_are_accepted():
    lstm = unrolled.LSTM(I, H).double()
    xs = torch.randn(B, T, I, dtype=torch.double)
    h0, c0 = torch.randn(1, B, H, dtype=torch.double), torch.randn(1, B, H, dtype=torch.double)
    a = lstm(xs, (h0, c0))[0]
    b = lstm(xs, LSTMState(h0, c0))[0]
    assert torch.equal(a, b)
    gru = unrolled.GRU(I, H).double()
    assert torch.equal(gru(xs, h0)[0], gru(xs, unrolled.RNNState(h0))[0])


def test_jordan_layer_is_cells_composed_by_unroll():
    layer = unrolled.Jordan(I, H, num_layers=2, bidirectional=True, output_size=2).double()
    xs = torch.randn(B, T, I, dtype=torch.double)
    lengths = torch.tensor([T, 2, 4])
    ys, state = layer(xs, lengths=lengths)
    assert layer.last_backend == "bptt"
    inputs, finals = xs, []
    for layer_idx in range(2):
        outs = []
        for d in range(2):
            cell = unrolled.JordanCell(inputs.shape[2], H, output_size=2).double()
            suffix = f"_l{layer_idx}" + ("_reverse" if d else "")
            cell.load_state_dict({n: getattr(layer, n + suffix) for n, _ in cell.named_parameters()})
            y, s = unrolled.unroll(cell, inputs, lengths=lengths, reverse=d == 1)
            outs.append(y)
            finals.append(s)
        inputs = torch.cat(outs, 2)
    assert_close(ys, inputs, 1e-12)
    assert_close(state.h, torch.stack(finals), 1e-12)
    assert state.h.shape == (4, B, 2) and ys.shape == (B, T, 4)


def test_auto_picks_the_measured_fastest_backend():
    """On the CPU (benchmarks/auto_choice.py): the engine's C++ loops for Elman and GRU sequences and for padded
    LSTM batches, torch.nn's fused LSTM for the others, bptt for Jordan; fused where the C++ loops are not
    built (UNROLLED_NATIVE=0)."""
    from unrolled.engine import native

    xs = torch.randn(B, T, I)
    cpp = "bptt" if native.ops() is not None else "fused"
    for layer, want, padded in [
        (unrolled.RNN(I, H), cpp, cpp),
        (unrolled.GRU(I, H), cpp, cpp),
        (unrolled.LSTM(I, H), "fused", cpp),
    ]:
        layer(xs)
        assert layer.last_backend == want, layer
        layer(xs, lengths=[T] * B)
        assert layer.last_backend == padded, layer
    jordan = unrolled.Jordan(I, H)
    jordan(xs)
    assert jordan.last_backend == "bptt"


def test_auto_runs_single_lstm_and_jordan_steps_on_the_reference_backend_with_the_same_numbers():
    lstm = unrolled.LSTM(I, H, num_layers=2).double()
    x, state = torch.randn(B, 1, I, dtype=torch.float64), lstm.init_state(B, dtype=torch.float64)
    y, s = lstm(x, state)
    assert lstm.last_backend == "reference"
    y_fused, s_fused = lstm(x, state, backend="fused")
    assert_close(y, y_fused, 1e-10)
    assert_close(s.c, s_fused.c, 1e-10)
    lstm(torch.randn(B, 2, I, dtype=torch.float64))
    assert lstm.last_backend == "fused"
    gru = unrolled.GRU(I, H)
    gru(torch.randn(B, 1, I))
    assert gru.last_backend == "fused"
    jordan = unrolled.Jordan(I, H).double()
    y, s = jordan(x)
    assert jordan.last_backend == "reference"
    y_bptt, s_bptt = jordan(x, backend="bptt")
    assert_close(y, y_bptt, 1e-10)
    assert_close(s.h, s_bptt.h, 1e-10)


def test_dropout_between_layers_only():
    layer = unrolled.LSTM(I, H, num_layers=2, dropout=0.5).double()
    xs = torch.randn(B, T, I, dtype=torch.double)
    layer.eval()
    ys_eval = layer(xs, backend="reference")[0]
    assert_close(layer(xs, backend="fused")[0], ys_eval, 1e-12, "no dropout in evaluation")
    layer.train()
    torch.manual_seed(0)
    ys_train = layer(xs, backend="reference")[0]
    assert not torch.allclose(ys_train, ys_eval)
    # the same computation written out: layer 0, dropout on its outputs, layer 1
    torch.manual_seed(0)
    h1 = unrolled.unroll(layer.cell(0), xs)[0]
    h1 = torch.nn.functional.dropout(h1, 0.5, training=True)
    assert_close(ys_train, unrolled.unroll(layer.cell(1), h1)[0], 1e-12)


def test_layer_moves_dtype_and_sees_parametrizations():
    layer = unrolled.GRU(I, H).double()
    assert layer.cell(0).weight_hh.dtype == torch.float64
    xs = torch.randn(B, T, I, dtype=torch.double)

    class Zero(torch.nn.Module):
        def forward(self, w):
            return torch.zeros_like(w)

    torch.nn.utils.parametrize.register_parametrization(layer, "weight_hh_l0", Zero())
    for backend in ("reference", "fused"):
        ys, _ = layer(xs, backend=backend)
        plain = unrolled.GRU(I, H).double()
        plain.load_state_dict(
            {k.replace("parametrizations.", "").replace(".original", ""): v for k, v in layer.state_dict().items()}
        )
        with torch.no_grad():
            plain.weight_hh_l0.zero_()
        assert_close(ys, plain(xs, backend=backend)[0], 1e-12)


BAD = [
    (lambda m: m(torch.randn(B, I)), "xs must be a 3-D tensor"),
    (lambda m: m(torch.randn(B, T, I + 1)), f"xs has {I + 1} features per step but the input size is {I}"),
    (lambda m: m(torch.randn(B, T, I), torch.zeros(1, B + 1, H)), rf"state.h must have shape \(1, {B}, {H}\)"),
    (lambda m: m(torch.randn(B, T, I), torch.zeros(2, B, H)), rf"state.h must have shape \(1, {B}, {H}\)"),
    (lambda m: m(torch.randn(B, T, I), [torch.zeros(1, B, H)]), r"state must be a RNNState\(h\)"),
    (lambda m: m(torch.randn(B, T, I), lengths=[T] * (B + 1)), rf"lengths must have shape \({B},\)"),
    (lambda m: m(torch.randn(B, T, I), lengths=[T + 1] + [1] * (B - 1)), rf"lengths must lie in \[1, {T}\]"),
    (lambda m: m(torch.randn(B, T, I), lengths=[0] * B), rf"lengths must lie in \[1, {T}\]"),
    (lambda m: m(torch.randn(B, T, I), backend="cudnn"), "unknown backend 'cudnn'"),
]


@pytest.mark.parametrize("call,msg", BAD)
def test_layer_validation(call, msg):
    with pytest.raises(unrolled.UnrolledError, match=msg):
        call(unrolled.GRU(I, H))


@pytest.mark.parametrize(
    "call,msg",
    [
        (lambda: unrolled.Jordan(I, H)(torch.randn(B, T, I), backend="fused"), "backend 'fused' cannot run"),
        (lambda: unrolled.LSTM(I, H)(torch.randn(B, T, I), torch.zeros(1, B, H)), r"state must be a LSTMState"),
        (lambda: unrolled.RNN(I, H, nonlinearity="gelu"), "unknown nonlinearity 'gelu'"),
        (lambda: unrolled.LSTM(I, H, num_layers=0), "num_layers must be a positive integer"),
        (lambda: unrolled.LSTM(I, H, dropout=1.5), r"dropout must lie in \[0, 1\)"),
    ],
)
def test_more_validation(call, msg):
    with pytest.raises(unrolled.UnrolledError, match=msg):
        call()


def test_build_layer_takes_elman_nonlinearity_and_refuses_it_elsewhere():
    from unrolled.errors import UnrolledError
    from unrolled.layers import build_layer

    assert build_layer("elman", 3, 4, nonlinearity="relu").nonlinearity == "relu"
    assert build_layer("elman", 3, 4).nonlinearity == "tanh"
    with pytest.raises(UnrolledError, match="elman"):
        build_layer("gru", 3, 4, nonlinearity="relu")


def test_weights_in_one_buffer_still_save_to_safetensors(tmp_path):
    """On CUDA the fused backend puts all weights into one buffer (cuDNN's layout); a checkpoint must still save
    them. Here the same layout is made by hand on the CPU."""
    from safetensors.torch import load_model, save_model

    torch.manual_seed(0)
    layer = unrolled.LSTM(3, 4, num_layers=2)
    params = list(layer.parameters())
    buffer = torch.cat([p.detach().flatten() for p in params])
    with torch.no_grad():
        offset = 0
        for p in params:
            p.set_(buffer.untyped_storage(), offset, p.shape)
            offset += p.numel()
    assert len({p.untyped_storage().data_ptr() for p in layer.parameters()}) == 1
    save_model(layer, str(tmp_path / "w.safetensors"))
    other = unrolled.LSTM(3, 4, num_layers=2)
    load_model(other, str(tmp_path / "w.safetensors"))
    for a, b in zip(layer.parameters(), other.parameters()):
        assert torch.equal(a, b)


def test_backend_for_says_what_forward_will_run():
    """What the CLI prints before training: the backend `forward` then runs, for each kind of call."""
    from unrolled.engine import native

    cpp = "bptt" if native.ops() is not None else "fused"
    gru, lstm = unrolled.GRU(I, H), unrolled.LSTM(I, H)
    assert gru.backend_for("auto", "cpu") == cpp
    assert gru.backend_for("auto", "cuda") == "fused"  # cuDNN
    assert gru.backend_for("auto", "cpu", torch.float16) == "fused"
    assert lstm.backend_for("auto", "cpu") == "fused"
    assert lstm.backend_for("auto", "cpu", padded=True) == cpp
    assert lstm.backend_for("auto", "cpu", steps=1) == "reference"
    assert lstm.backend_for("reference", "cpu") == "reference"
    for layer, kwargs in [(gru, {}), (lstm, {}), (lstm, {"lengths": [T] * B}), (lstm, {"steps": 1})]:
        steps = kwargs.pop("steps", T)
        layer(torch.randn(B, steps, I), **kwargs)
        assert layer.last_backend == layer.backend_for("auto", "cpu", steps=steps, padded="lengths" in kwargs)
