"""The explicit BPTT engine against autograd through `unroll`, gradcheck, and its per-step norms."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import assert_close

import unrolled
from unrolled import ElmanCell, GRUCell, JordanCell, LSTMCell
from unrolled.bench import peak_memory_mb
from unrolled.engine import native, unroll_bptt
from unrolled.layers import LAYERS
from unrolled.unroll import where_state

CELLS = {
    "tanh": lambda: ElmanCell(3, 4),
    "relu": lambda: ElmanCell(3, 4, nonlinearity="relu"),
    "linear": lambda: ElmanCell(3, 4, nonlinearity="identity"),
    "lstm": lambda: LSTMCell(3, 4),
    "gru": lambda: GRUCell(3, 4),
    "gru-nobias": lambda: GRUCell(3, 4, bias=False),
    "jordan": lambda: JordanCell(3, 4, output_size=2, output_activation="tanh"),
    "jordan-softmax": lambda: JordanCell(3, 4, output_size=3, hidden_activation="relu", output_activation="softmax"),
    "jordan-sigmoid": lambda: JordanCell(3, 3, hidden_activation="sigmoid", output_activation="sigmoid", bias=False),
    "jordan-identity": lambda: JordanCell(3, 4, output_size=5, hidden_activation="identity"),
}


@pytest.fixture(params=["python", "c++"])
def steps(request, monkeypatch):
    """Where the engine runs its steps: the cells' Python `step`/`step_backward`, or the C++ loops
    (engine/csrc/), which serve every pass on the CPU. `UNROLLED_NATIVE=0` skips the C++ half; otherwise
    a build that fails is a failure here, not a skip."""
    if request.param == "python":
        monkeypatch.setattr(native, "ops", lambda: None)
    elif os.environ.get("UNROLLED_NATIVE") == "0":
        pytest.skip("UNROLLED_NATIVE=0")
    else:
        assert native.ops() is not None, "the engine's C++ loops did not build"
    return request.param


def leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


def random_state(cell, B):
    s = cell.init_state(B)
    if isinstance(s, tuple):
        return type(s)(*(torch.randn_like(p).requires_grad_() for p in s))
    return torch.randn_like(s).requires_grad_()


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_engine_equals_autograd(kind, use_lengths, reverse, steps):
    cell = CELLS[kind]().double()
    xs = torch.randn(3, 6, 3, dtype=torch.double, requires_grad=True)
    s0 = random_state(cell, 3)
    lengths = torch.tensor([6, 2, 4]) if use_lengths else None
    results = []
    for fn in (unrolled.unroll, unroll_bptt):
        ys, state = fn(cell, xs, s0, lengths=lengths, reverse=reverse)
        outs = [ys, *leaves(state)]
        loss = sum((torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o) * o).sum() for o in outs)
        grads = torch.autograd.grad(loss, [xs, *leaves(s0), *cell.parameters()])
        results.append(outs + list(grads))
    for a, b in zip(*results):
        assert_close(b, a, 1e-10)


@pytest.mark.parametrize("keep_do", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
@pytest.mark.parametrize("output_activation", ["identity", "tanh"])
def test_jordan_cpp_pass_takes_w_hy_gradient_either_way(output_activation, use_lengths, keep_do, monkeypatch):
    """Jordan's C++ backward takes W_hy's gradient with an identity output from ∂L/∂Y and Σ ∂a_tᵀ h_{t-1} (keeping no
    ∂o) or, where that costs more, from ∂o kept (engine/jordan.py's KEEP_DO_ROWS): both equal autograd's, as do the
    other gradients, with padded rows (whose h_t the forward zeroes) and a state that takes a gradient; so does a pass
    with W_hy frozen, or the inputs."""
    from unrolled.engine import jordan

    if native.ops() is None:
        pytest.skip("no C++ loops")
    monkeypatch.setattr(jordan, "KEEP_DO_ROWS", 10**9 if keep_do else 0)
    torch.manual_seed(0)
    cell = JordanCell(3, 5, output_size=4, output_activation=output_activation).double()
    xs = torch.randn(4, 6, 3, dtype=torch.double, requires_grad=True)
    y0 = torch.randn(4, 4, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([6, 2, 4, 1]) if use_lengths else None
    for frozen in ("", "weight_hy", "xs"):
        cell.weight_hy.requires_grad_(frozen != "weight_hy")
        xs.requires_grad_(frozen != "xs")
        wrt = [t for t in (xs, y0, *cell.parameters()) if t.requires_grad]
        results = []
        for fn in (unrolled.unroll, unroll_bptt):
            ys, y_last = fn(cell, xs, y0, lengths=lengths)
            loss = (torch.linspace(-1, 1, ys.numel(), dtype=ys.dtype).view_as(ys) * ys).sum() + y_last.cos().sum()
            results.append([ys, y_last, *torch.autograd.grad(loss, wrt)])
        for a, b in zip(*results):
            assert_close(b, a, 1e-10)


@pytest.mark.parametrize("kind", ["tanh", "lstm", "gru", "jordan", "jordan-softmax", "jordan-identity"])
def test_engine_gradcheck(kind, steps):
    cell = CELLS[kind]().double()
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    xs = torch.randn(2, 4, 3, dtype=torch.double, requires_grad=True)
    s0 = random_state(cell, 2)
    n = len(leaves(s0))

    def f(xs, *rest):
        state = type(s0)(*rest[:n]) if isinstance(s0, tuple) else rest[0]
        ys, final = unroll_bptt(cell.bind(dict(zip(names, rest[n:]))), xs, state, lengths=[4, 3])
        return ys, *leaves(final)

    assert torch.autograd.gradcheck(f, (xs, *leaves(s0), *params))


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("kind", ["tanh", "lstm", "gru", "jordan"])
def test_recorded_norms_equal_autograd(kind, padded, steps):
    """‖∂L/∂h_t‖ of each step's own h_t (before a padded row's mask: a row past its end contributes 0)."""
    cell = CELLS[kind]().double()
    xs = torch.randn(3, 7, 3, dtype=torch.double)
    lengths = torch.tensor([7, 3, 5]) if padded else None
    # autograd: keep every h_t and ask for its gradient (the loop `unroll` runs, masks included)
    state, hs, ys = cell.init_state(3), [], []
    for t in range(7):
        new, y = cell(state, xs[:, t])
        y.retain_grad()
        hs.append(y)
        if padded:
            m = (t < lengths)[:, None]
            new, y = where_state(m, new, state), torch.where(m, y, 0.0)
        state = new
        ys.append(y)
    w = torch.linspace(-1, 1, 7 * 3 * cell.output_size, dtype=torch.double).view(3, 7, -1)
    (w * torch.stack(ys, 1)).sum().backward()
    want = torch.stack([torch.linalg.vector_norm(h.grad) for h in hs])
    record = []
    ys, _ = unroll_bptt(cell, xs, lengths=lengths, record=record)
    (w * ys).sum().backward()
    assert len(record) == 1
    assert_close(record[0], want, 1e-12)


def test_layer_records_norms_per_layer_and_direction():
    layer = unrolled.GRU(3, 4, num_layers=2, bidirectional=True).double()
    layer.record_grad_norms = True
    ys, _ = layer(torch.randn(2, 5, 3, dtype=torch.double), backend="bptt")
    ys[:, -1].sum().backward()
    assert sorted(layer.grad_norms) == [0, 1, 2, 3]
    forward_top = layer.grad_norms[2][0]
    # a loss at the last step only: the top forward layer's gradient is largest at the end
    assert forward_top.shape == (5,) and forward_top[-1] > 0


@pytest.mark.parametrize("batch, features, inputs_grad", [(32, 16, False), (8, 64, True)])
@pytest.mark.parametrize("name", ["elman", "jordan", "lstm", "gru"])
def test_bptt_peak_memory_is_not_more_than_reference(name, batch, features, inputs_grad):
    """The high-water mark of tensor memory over forward + backward, read as `unrolled bench` reads it; with
    inputs that take a gradient too, as the bench's do (Jordan's C++ sums once kept their pass's input and a
    chunk buffer after the backward, while the layer below ran its own: 0.875 MB here, the reference 0.687)."""
    torch.manual_seed(0)
    layer = LAYERS[name](features, 64, num_layers=2)
    xs = torch.randn(batch, 50, features, requires_grad=inputs_grad)

    def step(backend):
        layer.zero_grad(set_to_none=True)
        xs.grad = None
        layer(xs, backend=backend)[0].square().sum().backward()

    peak = {b: peak_memory_mb(lambda b=b: step(b), torch.device("cpu")) for b in ("reference", "bptt")}
    assert peak["bptt"] <= peak["reference"], peak


@pytest.mark.parametrize("output_activation, keeps", [("identity", False), ("tanh", True)])
def test_jordan_keeps_its_outputs_for_the_backward_only_where_it_reads_them(output_activation, keeps, steps):
    """With an identity output, W_yh's gradient comes from the h_t (Σ ∂a_tᵀ y_{t-1} = (Σ ∂a_tᵀ h_{t-1}) W_hyᵀ + ...):
    the engine saves nothing that shares the outputs' memory, so the outputs go when the caller drops them. The C++
    loops write them batch-first, where a head reads them with no copy."""
    cell = JordanCell(3, 4, output_activation=output_activation)
    saved = []  # the storages of whatever autograd saves for the backward (the C++ pass's node included)
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.untyped_storage().data_ptr()) or t, lambda t: t
    ):
        ys, _ = unroll_bptt(cell, torch.randn(2, 5, 3, requires_grad=True))
    assert ys.is_contiguous() == (steps == "c++")
    assert (ys.untyped_storage().data_ptr() in saved) == keeps


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("steps_per_chunk", [2, 3])
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_engine_equals_autograd_with_the_sums_taken_in_chunks(kind, steps_per_chunk, padded, monkeypatch, steps):
    """The weight gradients and ∂X, taken a chunk of steps at a time during the backward (a buffer of one
    chunk reused), equal autograd's: 7 steps in chunks of 2 or 3, with and without padding."""
    from unrolled import linear

    monkeypatch.setattr(linear, "GRAD_CHUNK_ROWS", 3 * steps_per_chunk)
    cell = CELLS[kind]().double()
    xs = torch.randn(3, 7, 3, dtype=torch.double, requires_grad=True)
    s0 = random_state(cell, 3)
    results = []
    for fn in (unrolled.unroll, unroll_bptt):
        ys, state = fn(cell, xs, s0, lengths=torch.tensor([7, 2, 5]) if padded else None)
        loss = (ys * torch.linspace(-1, 1, ys.numel(), dtype=ys.dtype).view_as(ys)).sum() + leaves(state)[0].sum()
        results.append([ys, *torch.autograd.grad(loss, [xs, *leaves(s0), *cell.parameters()])])
    for a, b in zip(*results):
        assert_close(b, a, 1e-10)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_engine_equals_autograd_for_a_single_step(kind, steps):
    """T = 1: no recurrent product in the weight gradients, only step 0's."""
    cell = CELLS[kind]().double()
    xs = torch.randn(3, 1, 3, dtype=torch.double, requires_grad=True)
    s0 = random_state(cell, 3)
    results = []
    for fn in (unrolled.unroll, unroll_bptt):
        ys, state = fn(cell, xs, s0)
        loss = (ys * torch.linspace(-1, 1, ys.numel(), dtype=ys.dtype).view_as(ys)).sum() + leaves(state)[0].sum()
        results.append([ys, *torch.autograd.grad(loss, [xs, *leaves(s0), *cell.parameters()])])
    for a, b in zip(*results):
        assert_close(b, a, 1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "jordan", "jordan-identity"])
def test_a_second_backward_through_the_same_pass_gives_the_same_gradients(kind, steps):
    """The backward uses up what the forward saved; going back again (retain_graph=True) recomputes it."""
    cell = CELLS[kind]().double()
    xs = torch.randn(3, 6, 3, dtype=torch.double, requires_grad=True)
    ys, _ = unroll_bptt(cell, xs, lengths=torch.tensor([6, 2, 4]))
    loss = (torch.linspace(-1, 1, ys.numel(), dtype=ys.dtype).view_as(ys) * ys).sum()
    first = torch.autograd.grad(loss, [xs, *cell.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [xs, *cell.parameters()])
    for a, b in zip(first, second):
        assert_close(b, a, 1e-12)


@pytest.mark.parametrize("kind", ["tanh", "lstm", "gru", "jordan"])
def test_reference_backend_has_second_derivatives(kind):
    """Where bptt refuses a second order, the reference backend (autograd through `unroll`) gives it: gradgradcheck."""
    cell = CELLS[kind]().double()
    xs = torch.randn(2, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: unrolled.unroll(cell, x)[0], (xs,))


def test_gradients_with_create_graph_are_right_and_a_second_order_is_refused_clearly(steps):
    """The hand-written backward is not itself differentiated: first-order gradients under create_graph=True
    equal the reference's, and going through them again raises instead of giving a wrong number."""
    cell = CELLS["gru"]().double()
    xs = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    grads = [
        torch.autograd.grad(fn(cell, xs)[0].square().sum(), xs, create_graph=True)[0]
        for fn in (unrolled.unroll, unroll_bptt)
    ]
    assert_close(grads[1], grads[0], 1e-10)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grads[1].sum().backward()


def test_jordan_cpp_pass_refuses_create_graph_clearly():
    """Jordan's C++ pass has its autograd node in C++: a backward under create_graph=True (the road to a second
    derivative) raises and names the backend that gives one."""
    if native.ops() is None:
        pytest.skip("no C++ loops")
    cell = CELLS["jordan"]().double()
    xs = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"not itself differentiable.*backend='reference'"):
        torch.autograd.grad(unroll_bptt(cell, xs)[0].square().sum(), xs, create_graph=True)


@pytest.mark.parametrize("name", ["jordan", "lstm", "gru"])
def test_engine_skips_gradients_nobody_needs_and_the_others_are_unchanged(name, steps):
    """Inputs without requires_grad and frozen weights get no GEMM; every other gradient is as before."""
    torch.manual_seed(0)
    layer = LAYERS[name](3, 5, num_layers=2, dtype=torch.double)
    layer.weight_ih_l0.requires_grad_(False)
    xs = torch.randn(2, 6, 3, dtype=torch.double)
    grads = {}
    for backend in ("reference", "bptt"):
        layer.zero_grad(set_to_none=True)
        (torch.linspace(-1, 1, 60, dtype=torch.double).view(2, 6, 5) * layer(xs, backend=backend)[0]).sum().backward()
        grads[backend] = {n: p.grad for n, p in layer.named_parameters() if p.requires_grad}
    assert layer.weight_ih_l0.grad is None and len(grads["bptt"]) == len(list(layer.parameters())) - 1
    for n, g in grads["reference"].items():
        assert_close(grads["bptt"][n], g, 1e-10, n)


@pytest.mark.parametrize("name", ["elman", "jordan", "lstm", "gru"])
def test_engine_on_onednn_packed_weights_matches_reference_in_float32(name, monkeypatch, steps):
    """oneDNN's GEMMs run only for large products; force them on a small layer and compare."""
    from unrolled import linear

    if not linear._onednn():
        pytest.skip("this torch build has no oneDNN linear")
    monkeypatch.setattr(linear, "PACK_MIN_MACS", 0)
    monkeypatch.setattr(linear, "PACK_MIN_USES", 1)
    monkeypatch.setattr(linear, "BIG_MIN_MACS", 0)  # and the one-shot GEMMs over all steps
    monkeypatch.setattr(linear, "GRAD_MIN_MACS", 0)
    assert linear.PackedLinear(torch.ones(3, 2), 4, 1).packed is not None
    torch.manual_seed(0)
    layer = LAYERS[name](3, 8, num_layers=2, bidirectional=True)
    _assert_bptt_matches_reference_in_float32(layer, 7, [7, 5, 2, 1], lambda state: state[0], list)


def test_onednn_one_shot_products_match_float64(monkeypatch):
    """`linear` and `weight_grads` on oneDNN (forced) against the float64 products, transposed views included."""
    from unrolled import linear

    if not linear._onednn():
        pytest.skip("this torch build has no oneDNN linear")
    monkeypatch.setattr(linear, "BIG_MIN_MACS", 0)
    monkeypatch.setattr(linear, "GRAD_MIN_MACS", 0)
    monkeypatch.setattr(linear, "GRAD_COPY_ROWS", 7)  # the sums over chunks too
    torch.manual_seed(0)
    x, w, b, d = torch.randn(50, 7), torch.randn(9, 7), torch.randn(9), torch.randn(50, 9)
    x64, w64, d64 = x.double(), w.double(), d.double()
    assert_close(linear.linear(x, w, b).double(), x64 @ w64.T + b.double(), 1e-5, "x Wᵀ + b")
    assert_close(linear.linear(d, w.T).double(), d64 @ w64, 1e-5, "d W (a transposed weight)")
    g_x, g_d = linear.weight_grads(d, x, d[:, ::2])
    assert_close(g_x.double(), d64.T @ x64, 1e-5, "dᵀ x")
    assert_close(g_d.double(), d64.T @ d64[:, ::2], 1e-5, "dᵀ d[:, ::2] (a strided x)")
    (g_b,) = linear.weight_grads([d[:, :4], d[:, 4:]], x)
    assert_close(g_b.double(), d64.T @ x64, 1e-5, "d in two blocks of columns")
    steps = x.view(5, 10, 7).transpose(0, 1)  # (S, B, F) = (10, 5, 7), not contiguous
    (g_s,) = linear.weight_grads(d.view(5, 10, 9).transpose(0, 1), steps)
    assert_close(g_s.double(), d64.T @ x64, 1e-5, "steps of rows")


@pytest.mark.parametrize(
    "kind", ["tanh", "relu", "lstm", "gru", "gru-nobias", "jordan", "jordan-sigmoid", "jordan-identity"]
)
def test_engine_runs_the_cpp_loops_where_it_can_and_the_python_steps_elsewhere(kind, monkeypatch):
    """A spy on the C++ ops: a pass runs the cell's two C++ loops, padded or not, recording norms or not (Jordan's
    backward takes its products over time too; and Jordan with a softmax output never: that one is Python only)."""
    real = native.ops()
    if real is None:
        pytest.skip("UNROLLED_NATIVE=0") if os.environ.get("UNROLLED_NATIVE") == "0" else pytest.fail("no C++ loops")
    calls = []

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(native, "ops", Spy)
    cell = CELLS[kind]().double()
    xs = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    family = type(cell).__name__.removesuffix("Cell").lower()
    loops = ["jordan_pass"] if family == "jordan" else [f"{family}_forward", f"{family}_backward"]
    for kwargs, want in [({}, loops), ({"lengths": [5, 3]}, loops), ({"record": []}, loops)]:
        calls.clear()
        unroll_bptt(cell, xs, **kwargs)[0].sum().backward()
        assert calls == want, kwargs


@pytest.mark.parametrize("name", ["elman", "jordan", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.double, torch.float])
def test_cpp_loops_split_between_threads_give_the_same_numbers(name, dtype):
    """The C++ loops split the batch's rows between threads: in float32 (the micro-kernel) each thread runs every
    step for its own 150 rows; in float64 each step's rows are split when the step is large. 2 threads = 1 thread."""
    if native.ops() is None:
        pytest.skip("no C++ loops")
    layer = LAYERS[name](5, 64, dtype=dtype)
    layer.record_grad_norms = True  # the norms' per-thread sums too
    xs = torch.randn(300, 3, 5, dtype=dtype, requires_grad=True)
    results, before = [], torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            layer.zero_grad(set_to_none=True)
            xs.grad = None
            ys, _ = layer(xs, backend="bptt")
            (torch.linspace(-1, 1, ys.numel(), dtype=ys.dtype).view_as(ys) * ys).sum().backward()
            results.append([ys, xs.grad, *[p.grad for p in layer.parameters()], layer.grad_norms[0][0]])
        finally:
            torch.set_num_threads(before)
    # float32: the biases' per-thread sums are kept in double (they were 1.6e-4 apart); the weight gradients' GEMMs
    # over 900 rows may sum in another order on another thread count (1.7e-6 and 2.1e-6 of the largest entry for
    # the LSTM and GRU on the GPU machine's 16 CPU cores with torch 2.11, 2026-11-28), hence 1e-5 there
    for a, b in zip(*results):
        assert_close(b, a, (1e-12 if dtype == torch.double else 1e-5) * max(1.0, a.abs().max().item()))


def test_cpp_transpose_equals_torch():
    """The tiled transpose that packs Wᵀ for the backward's products (linear.PackedLinear)."""
    if native.ops() is None:
        pytest.skip("no C++ loops")
    for shape in [(1, 1), (17, 33), (64, 16), (300, 129)]:
        for dtype in (torch.float32, torch.float64):
            w = torch.randn(shape, dtype=dtype)
            assert torch.equal(native.ops().transposed(w), w.T)


def test_engine_falls_back_to_the_python_steps_where_the_cpp_loops_cannot_be_built(tmp_path):
    """No working compiler: one warning, and the Python steps give the gradients."""
    code = (
        "import torch, unrolled\n"
        "from unrolled.engine import native, unroll_bptt\n"
        "cell = unrolled.LSTMCell(3, 4)\n"
        "unroll_bptt(cell, torch.randn(2, 5, 3))[0].sum().backward()\n"
        "assert native.ops() is None and cell.weight_hh.grad.abs().sum() > 0\n"
    )
    env = {**os.environ, "CXX": "/bin/false", "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    env.pop("UNROLLED_NATIVE", None)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("could not be built") == 1, run.stderr


def test_cpp_ops_refuse_buffers_that_do_not_fit():
    """The ops read raw memory: a wrong dtype, width, weight or step range is an error, not a wrong read."""
    ops = native.ops()
    if ops is None:
        pytest.skip("no C++ loops")
    T, B, H = 3, 2, 4
    XP, Y, C, h = torch.zeros(T, B, 4 * H), torch.zeros(T, B, H), torch.zeros(T, B, H), torch.zeros(B, H)
    W = torch.zeros(4 * H, H)
    ops.lstm_forward(XP.clone(), h, h, W, None, Y, C, None)  # fits
    ops.lstm_forward(XP.clone(), h, h, W, None, Y, C, torch.tensor([3, 1]))  # fits, padded
    bad = [
        lambda: ops.lstm_forward(XP, h.double(), h, W, None, Y, C, None),  # dtype
        lambda: ops.lstm_forward(XP[..., :H].contiguous(), h, h, W, None, Y, C, None),  # width
        lambda: ops.lstm_forward(XP, h, h, W[:H], None, Y, C, None),  # weight
        lambda: ops.lstm_forward(XP, h, h, W, None, Y, C, torch.tensor([4, 1])),  # a length past T
        lambda: ops.lstm_forward(XP, h, h, W, None, Y, C, torch.tensor([3])),  # lengths for another batch
        lambda: ops.elman_backward(Y.clone(), Y, Y, h, h, W[:H], None, 1, 1, T + 1, None, None),  # steps
        lambda: ops.elman_backward(Y.clone(), Y, Y[:, :1], h, h, W[:H], None, 1, 0, T, None, None),  # ∂L/∂Y
        lambda: ops.elman_backward(Y.clone(), Y, Y, h, h, W[:H], None, 1, 0, T, None, torch.zeros(T + 1)),  # norms
    ]
    for call in bad:
        with pytest.raises(RuntimeError, match="unrolled native engine"):
            call()


def test_weight_blocks_and_the_micro_kernel_product_match_torch():
    """Wᵀ cut into column blocks (from a weight or a transposed view of one), and x Wᵀ (+ b) (+ acc) through the
    micro-kernel in tiles of 64 rows × a block, against torch: 1, 64 and 130 rows, an odd K, both block sizes, a K
    above the copy's tile of 16 columns and not a multiple of it; float64 blocks too; a loop given blocks of another
    weight refuses them, and the op refuses a weight whose rows nb does not divide."""
    from unrolled.linear import blocks as make_blocks

    ops = native.ops()
    if ops is None:
        pytest.skip("no C++ loops")
    torch.manual_seed(0)
    for N, K, nb in [(96, 7, 32), (128, 64, 64), (64, 96, 32), (64, 300, 32)]:
        W = torch.randn(N, K)
        for w in (W, W.T.contiguous().T):  # a parameter, and the layout of a transposed view
            blocks = make_blocks(w, nb)
            assert torch.equal(blocks, torch.stack([w[j * nb : (j + 1) * nb].T for j in range(N // nb)]))
        w64 = W.double()[:, 1:]  # float64, and rows not contiguous
        assert torch.equal(ops.blocks(w64, nb), torch.stack([w64[j * nb : (j + 1) * nb].T for j in range(N // nb)]))
        for M in (1, 64, 130):
            x, b, acc = torch.randn(M, K), torch.randn(N), torch.randn(M, N)
            want = x.double() @ W.double().T
            assert_close(ops.blocked_linear(x, blocks, None, None).double(), want, 5e-5)
            assert_close(ops.blocked_linear(x, blocks, b, acc).double(), want + b.double() + acc.double(), 5e-5)
    XP, Y, C, h = torch.zeros(3, 2, 128), torch.zeros(3, 2, 32), torch.zeros(3, 2, 32), torch.zeros(2, 32)
    W = torch.zeros(128, 32)
    ops.lstm_forward(XP.clone(), h, h, W, make_blocks(W, 32), Y, C, None)  # fits
    with pytest.raises(RuntimeError, match="unrolled native engine"):  # blocks of another weight
        ops.lstm_forward(XP, h, h, W, make_blocks(torch.zeros(128, 16), 32), Y, C, None)
    with pytest.raises(RuntimeError, match="blocks: "):
        ops.blocks(torch.zeros(48, 8), 32)


def test_steps_linear_reads_and_writes_batch_first_steps_where_they_lie():
    """out[t] = x[t] Wᵀ (+ b) on the micro-kernel, x and out batch-first tensors seen time-major (and contiguous
    ones), 3, 64 and 70 rows a step, against torch; the op refuses what does not fit; PackedLinear.over_steps
    gives the same where the kernel does not serve (a weight of 40 rows)."""
    from unrolled.linear import PackedLinear
    from unrolled.linear import blocks as make_blocks

    ops = native.ops()
    if ops is None or not ops.micro_kernel():
        pytest.skip("no micro-kernel")
    torch.manual_seed(0)
    for B in (3, 64, 70):
        x_bf, W, b = torch.randn(B, 5, 48), torch.randn(128, 48), torch.randn(128)
        x = x_bf.transpose(0, 1)  # (T, B, K), rows 5 × 48 apart
        want = torch.einsum("tbk,nk->tbn", x.double(), W.double())
        for bias in (None, b):
            out_bf = torch.full((B, 5, 128), float("nan"))
            ops.steps_linear(x, make_blocks(W, 32), bias, out_bf.transpose(0, 1))
            assert_close(out_bf.transpose(0, 1).double(), want + (0 if bias is None else b.double()), 5e-5)
        out = torch.empty(5, B, 128)
        ops.steps_linear(x.contiguous(), make_blocks(W, 64), b, out)
        assert_close(out.double(), want + b.double(), 5e-5)
        for w in (W, torch.randn(40, 48)):
            assert_close(PackedLinear(w, B, 5).over_steps(x, None).double(), x.double() @ w.double().T, 5e-5)
    bad = [
        lambda: ops.steps_linear(x.double(), make_blocks(W, 32), None, out),  # dtype
        lambda: ops.steps_linear(x, make_blocks(W[:64], 32), None, out),  # blocks of another width
        lambda: ops.steps_linear(x, make_blocks(W, 32), b[:3], out),  # bias
        lambda: ops.steps_linear(x[..., ::2], make_blocks(W[:, :24], 32), None, out),  # rows not contiguous
    ]
    for call in bad:
        with pytest.raises(RuntimeError, match="steps_linear"):
            call()


@pytest.mark.parametrize("kernel", [True, False])
@pytest.mark.parametrize("name", ["elman", "jordan", "lstm", "gru"])
def test_engine_on_the_micro_kernel_matches_reference_in_float32(name, kernel, steps, monkeypatch):
    """Hidden size 32: every recurrent weight (and Jordan's output weight) goes to the micro-kernel as blocks, both
    ways; a stacked bidirectional layer on padded sequences against the reference backend, in float32. And the same
    where torch has no float32 micro-kernel (older builds): oneDNN's packed linear instead."""
    from unrolled import linear
    from unrolled.linear import PackedLinear

    real = native.ops()
    if not kernel and real is not None:

        class NoKernel:
            def __getattr__(self, name):
                return (lambda: False) if name == "micro_kernel" else getattr(real, name)

        monkeypatch.setattr(native, "ops", NoKernel)
        monkeypatch.setattr(linear, "PACK_MIN_MACS", 0)  # small as they are, these weights get oneDNN's packing
    if steps == "c++":
        made = [PackedLinear(torch.randn(96, 32), 4, 9), PackedLinear(torch.randn(96, 32).T, 4, 9)]
        assert all(p.blocked == kernel and p.packed is not None for p in made)
    monkeypatch.setattr(linear, "GRAD_CHUNK_ROWS", 12)  # Elman's and Jordan's sums (and ∂X) in chunks of 3 steps
    torch.manual_seed(0)

    def final(state):
        return state if isinstance(state, torch.Tensor) else state[0]

    # input 3: ∂X through oneDNN's matmul; the second layer's input 64: on the micro-kernel, into a batch-first ∂X
    layer = LAYERS[name](3, 32, num_layers=2, bidirectional=True)
    _assert_bptt_matches_reference_in_float32(layer, 9, [9, 5, 2, 1], final, lambda state: [final(state)])
    # Jordan with input = output: X's chunks copied into ∂L/∂o's buffer (the first layer's fit too, the second's not)
    if name == "jordan":
        _assert_bptt_matches_reference_in_float32(LAYERS[name](32, 32), 9, [9, 5, 2, 1], final, lambda s: [final(s)])
    if kernel and steps == "c++":  # 20 padded rows on 2 threads: each runs all the steps of its 10 rows
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            _assert_bptt_matches_reference_in_float32(layer, 9, [9, 5, 2, 1] * 5, final, lambda s: [final(s)])
        finally:
            torch.set_num_threads(before)


def _assert_bptt_matches_reference_in_float32(layer, steps, lengths, final, kept):
    """A batch of padded sequences (one per length) through `layer` on both backends; the loss weighs the outputs by a ramp and
    adds the squares of `final(state)`. The outputs, `kept(state)`, ∂X and every weight's gradient agree to 1e-5."""
    xs = torch.randn(len(lengths), steps, layer.input_size, requires_grad=True)
    results = {}
    for backend in ("reference", "bptt"):
        layer.zero_grad(set_to_none=True)
        xs.grad = None
        ys, state = layer(xs, lengths=lengths, backend=backend)
        w = torch.linspace(-1, 1, ys.numel()).view_as(ys)
        ((w * ys).sum() + final(state).square().sum()).backward()
        results[backend] = [ys, *kept(state), xs.grad, *[p.grad for p in layer.parameters()]]
    for i, (got, want) in enumerate(zip(results["bptt"], results["reference"])):
        assert_close(got, want, 1e-5, f"tensor {i}")
