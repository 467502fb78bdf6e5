"""Cells against torch.nn with copied weights, and the Jordan cell against its equations."""

import pytest
import torch
from conftest import TOL, assert_close

import unrolled
from unrolled import ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState

B, I, H = 4, 5, 6


def torch_step(tcell, state, x):
    if isinstance(tcell, torch.nn.LSTMCell):
        h, c = tcell(x, tuple(state))
        return LSTMState(h, c), h
    h = tcell(x, state)
    return h, h


CASES = [
    (lambda: ElmanCell(I, H), lambda: torch.nn.RNNCell(I, H)),
    (lambda: ElmanCell(I, H, nonlinearity="relu"), lambda: torch.nn.RNNCell(I, H, nonlinearity="relu")),
    (lambda: ElmanCell(I, H, bias=False), lambda: torch.nn.RNNCell(I, H, bias=False)),
    (lambda: LSTMCell(I, H), lambda: torch.nn.LSTMCell(I, H)),
    (lambda: LSTMCell(I, H, bias=False), lambda: torch.nn.LSTMCell(I, H, bias=False)),
    (lambda: GRUCell(I, H), lambda: torch.nn.GRUCell(I, H)),
    (lambda: GRUCell(I, H, bias=False), lambda: torch.nn.GRUCell(I, H, bias=False)),
]


def leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "make", CASES, ids=["tanh", "relu", "elman-nobias", "lstm", "lstm-nobias", "gru", "gru-nobias"]
)
def test_cell_matches_torch(make, dtype):
    ours, theirs = make[0]().to(dtype), make[1]().to(dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(B, I, dtype=dtype, requires_grad=True)
    state = ours.init_state(B)
    state = type(state)(*(torch.randn_like(s) for s in state)) if isinstance(state, tuple) else torch.randn_like(state)
    for s in leaves(state):
        s.requires_grad_(True)
    outs = []
    for cell, step in ((ours, lambda s, x: ours(s, x)), (theirs, lambda s, x: torch_step(theirs, s, x))):
        new, y = step(state, x)
        weights = [torch.linspace(-1, 1, t.numel(), dtype=dtype).view_as(t) for t in [y, *leaves(new)]]
        loss = sum((w * t).sum() for w, t in zip(weights, [y, *leaves(new)]))
        grads = torch.autograd.grad(loss, [x, *leaves(state), *cell.parameters()])
        outs.append(([y, *leaves(new)], grads))
    for a, b in zip(outs[0][0] + list(outs[0][1]), outs[1][0] + list(outs[1][1])):
        assert_close(a, b, TOL[dtype])


def test_state_dict_moves_both_ways():
    ours, theirs = LSTMCell(I, H), torch.nn.LSTMCell(I, H)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(B, I)
    assert torch.equal(ours(ours.init_state(B), x)[1], theirs(x)[0])


def jordan_loop(cell, xs, y0, act_h, act_y):
    """The Jordan equations written out, independent of the cell code."""
    y, ys = y0, []
    for t in range(xs.shape[1]):
        h = act_h(xs[:, t] @ cell.weight_ih.T + y @ cell.weight_yh.T + cell.bias)
        y = act_y(h @ cell.weight_hy.T + cell.bias_y)
        ys.append(y)
    return torch.stack(ys, 1), y


@pytest.mark.parametrize(
    "hidden,output",
    [("tanh", "identity"), ("relu", "tanh"), ("sigmoid", "sigmoid"), ("tanh", "softmax"), ("identity", "identity")],
)
def test_jordan_cell_matches_its_equations(hidden, output):
    acts = {
        "tanh": torch.tanh,
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "identity": lambda v: v,
        "softmax": lambda v: torch.softmax(v, -1),
    }
    cell = JordanCell(I, H, output_size=3, hidden_activation=hidden, output_activation=output).double()
    xs = torch.randn(B, 7, I, dtype=torch.double)
    y0 = torch.randn(B, 3, dtype=torch.double)
    ys, y = unrolled.unroll(cell, xs, y0)
    ys_ref, y_ref = jordan_loop(cell, xs, y0, acts[hidden], acts[output])
    assert_close(ys, ys_ref, 1e-12)
    assert_close(y, y_ref, 1e-12)


def test_jordan_gradcheck():
    cell = JordanCell(3, 4, output_size=2, output_activation="tanh").double()
    xs = torch.randn(2, 4, 3, dtype=torch.double, requires_grad=True)
    y0 = torch.randn(2, 2, dtype=torch.double, requires_grad=True)
    params = list(cell.parameters())
    names = [n for n, _ in cell.named_parameters()]

    def f(xs, y0, *ps):
        bound = cell.bind(dict(zip(names, ps)))
        return unrolled.unroll(bound, xs, y0)

    assert torch.autograd.gradcheck(f, (xs, y0, *[p.detach().requires_grad_() for p in params]))


def test_init_state_shapes_and_types():
    assert isinstance(LSTMCell(I, H).init_state(3), LSTMState)
    assert LSTMCell(I, H).init_state(3).c.shape == (3, H)
    assert JordanCell(I, H, output_size=2).init_state(3).shape == (3, 2)
    assert ElmanCell(I, H).init_state(3, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    "make,msg",
    [
        (lambda: ElmanCell(I, H, nonlinearity="sigmoid"), "unknown nonlinearity 'sigmoid'"),
        (lambda: JordanCell(I, H, hidden_activation="gelu"), "unknown hidden activation 'gelu'"),
        (lambda: JordanCell(I, H, output_activation="relu6"), "unknown output activation 'relu6'"),
    ],
)
def test_unknown_activation(make, msg):
    with pytest.raises(unrolled.UnrolledError, match=msg):
        make()
