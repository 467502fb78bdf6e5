"""`unroll` against a hand loop, and padded batches against sequences run one by one."""

import pytest
import torch
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import unrolled
from unrolled import ElmanCell, GRUCell, JordanCell, LSTMCell


def test_unroll_equals_hand_loop():
    cell = ElmanCell(3, 4).double()
    xs = torch.randn(2, 5, 3, dtype=torch.double)
    h = torch.zeros(2, 4, dtype=torch.double)
    ys_ref = []
    for t in range(5):
        h = torch.tanh(xs[:, t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh)
        ys_ref.append(h)
    ys, hT = unrolled.unroll(cell, xs)
    assert_close(ys, torch.stack(ys_ref, 1), 1e-12)
    assert_close(hT, h, 1e-12)


def test_reverse_without_lengths_is_flip():
    cell = GRUCell(3, 4).double()
    xs = torch.randn(2, 5, 3, dtype=torch.double)
    ys, h = unrolled.unroll(cell, xs, reverse=True)
    ys_ref, h_ref = unrolled.unroll(cell, xs.flip(1))
    assert_close(ys, ys_ref.flip(1), 1e-12)
    assert_close(h, h_ref, 1e-12)


def _leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


MAKERS = {
    "elman": lambda: ElmanCell(3, 4),
    "lstm": lambda: LSTMCell(3, 4),
    "gru": lambda: GRUCell(3, 4),
    "jordan": lambda: JordanCell(3, 4, output_size=2, output_activation="tanh"),
}


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(sorted(MAKERS)),
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    reverse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_padded_batch_equals_sequences_one_by_one(kind, lengths, reverse, seed):
    torch.manual_seed(seed)
    cell = MAKERS[kind]().double()
    B, T = len(lengths), max(lengths) + 1  # always some padding at the end
    xs = torch.randn(B, T, 3, dtype=torch.double)
    state0 = cell.init_state(B)
    state0 = (
        type(state0)(*(torch.randn_like(s) for s in state0)) if isinstance(state0, tuple) else torch.randn_like(state0)
    )
    ys, state = unrolled.unroll(cell, xs, state0, lengths=torch.tensor(lengths), reverse=reverse)
    for b, n in enumerate(lengths):
        s0 = type(state0)(*(s[b : b + 1] for s in state0)) if isinstance(state0, tuple) else state0[b : b + 1]
        ys_b, state_b = unrolled.unroll(cell, xs[b : b + 1, :n], s0, reverse=reverse)
        assert_close(ys[b, :n], ys_b[0], 1e-12, "outputs")
        assert torch.all(ys[b, n:] == 0), "outputs past the length must be zero"
        for got, want in zip(_leaves(state), _leaves(state_b)):
            assert_close(got[b], want[0], 1e-12, "final state")


def test_lengths_as_list_of_ints():
    cell = ElmanCell(3, 4).double()
    xs = torch.randn(2, 5, 3, dtype=torch.double)
    a = unrolled.unroll(cell, xs, lengths=[5, 2])[0]
    b = unrolled.unroll(cell, xs, lengths=torch.tensor([5, 2]))[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "call,msg",
    [
        (lambda c: unrolled.unroll(c, torch.randn(2, 3)), "xs must be a 3-D tensor"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 3, 9)), "xs has 9 features per step but the input size is 3"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 0, 3)), "at least one step"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 4, 3), lengths=[1, 5]), r"lengths must lie in \[1, 4\]"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 4, 3), lengths=[0, 4]), r"lengths must lie in \[1, 4\]"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 4, 3), lengths=[1, 2, 3]), r"lengths must have shape \(2,\)"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 4, 3), lengths=torch.ones(2)), "lengths must hold integers"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 4, 3), torch.zeros(3, 4)), r"state must have shape \(2, 4\)"),
        (lambda c: unrolled.unroll(c, torch.randn(2, 4, 3), (torch.zeros(2, 4),)), "state must be a tensor"),
    ],
)
def test_unroll_validation(call, msg):
    with pytest.raises(unrolled.UnrolledError, match=msg):
        call(ElmanCell(3, 4))


def test_lstm_state_type_is_checked():
    with pytest.raises(unrolled.UnrolledError, match=r"state must be a LSTMState\(h, c\)"):
        unrolled.unroll(LSTMCell(3, 4), torch.randn(2, 4, 3), torch.zeros(2, 4))
