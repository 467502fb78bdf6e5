"""Layers: stacked, optionally bidirectional recurrent networks built from cells and `unroll`.

    ys, state = layer(xs, state=None, lengths=None, backend="auto")

`xs` is batch-first (B, T, input_size); `ys` is (B, T, directions * output_size); `state`
has `.h` (and `.c` for LSTM) shaped (num_layers * directions, B, output_size) like torch.nn.
Parameters carry torch.nn's names (`weight_ih_l0`, `bias_hh_l1_reverse`, ...), so state dicts
move both ways between `unrolled.LSTM` and `torch.nn.LSTM(batch_first=True)`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import fused
from ._checks import check_lengths, check_sequence, check_state_like
from .cells import ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState, RNNState
from .cells.base import Cell
from .engine import native, unroll_bptt
from .errors import UnrolledError
from .regularizers import dropout
from .unroll import unroll


def _stacked(layer: RecurrentLayer, xs: Tensor, hx: list[Tensor], lengths: Tensor | None, run_cell):
    """The stack, one layer and direction at a time; `run_cell(k, cell, xs, state, lengths, reverse)`."""
    inputs, finals = xs, []
    for layer_idx in range(layer.num_layers):
        outs = []
        for d in range(layer.num_directions):
            k = layer_idx * layer.num_directions + d
            state0 = layer.cell_state([h[k] for h in hx])
            ys, state = run_cell(k, layer.cell(k), inputs, state0, lengths, d == 1)
            outs.append(ys)
            finals.append(state if isinstance(state, tuple) else (state,))
        inputs = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]  # (B, T, D*O)
        if layer_idx < layer.num_layers - 1:
            inputs = dropout(inputs, layer.dropout, layer.training, layer.variational)
    return inputs, [torch.stack(parts) for parts in zip(*finals)]


def _in_one_buffer(weights: list[Tensor]) -> bool:
    """Whether the weights are views of one buffer (cuDNN's layout, made by `flatten_parameters`)."""
    return len({p.untyped_storage().data_ptr() for p in weights}) == 1


def _reference(layer, xs, hx, lengths):
    """Autograd through `unroll`."""
    return _stacked(layer, xs, hx, lengths, lambda k, cell, x, s, n, rev: unroll(cell, x, s, lengths=n, reverse=rev))


def _bptt(layer, xs, hx, lengths):
    """The explicit engine; with `layer.record_grad_norms`, ‖∂L/∂h_t‖ lands in `layer.grad_norms[k]`."""
    record = layer.grad_norms if layer.record_grad_norms else None
    if record is not None:
        record.clear()

    def run(k, cell, x, s, n, rev):
        rec = None if record is None else record.setdefault(k, [])
        return unroll_bptt(cell, x, s, lengths=n, reverse=rev, record=rec, validated=True)

    return _stacked(layer, xs, hx, lengths, run)


def _no_reason(layer) -> None:
    return None


# name -> (why it cannot run this layer, or None; the function that runs it)
BACKENDS = {
    "reference": (_no_reason, _reference),
    "bptt": (_no_reason, _bptt),
    "fused": (fused.unsupported, fused.run),
}
AUTO_ORDER = ("fused", "bptt", "reference")


class RecurrentLayer(nn.Module):
    """A stack of `num_layers` recurrent layers, each one or two cells (bidirectional)."""

    cell_class: type[Cell]
    state_class: type = RNNState
    fused_kernel: str | None = None
    # what "auto" runs for a single time step on the CPU (sampling, decoders), where measured faster
    step_backend: str | None = None
    # when "auto" runs the bptt engine's C++ loops on the CPU (sequences of 2 steps or more) instead of
    # torch.nn's kernel, as measured by benchmarks/auto_choice.py: "always" for Elman and GRU (torch.nn's
    # CPU kernels for them are step loops), "padded" for the LSTM (oneDNN's fused LSTM is faster, but
    # torch.nn runs packed sequences without it)
    cpu_native: str | None = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        variational: bool = False,
        device=None,
        dtype=None,
        **cell_kwargs,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UnrolledError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise UnrolledError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.bias = bidirectional, float(dropout), bias
        self.variational = variational  # one dropout mask per sequence between layers, not per element
        self.num_directions = 2 if bidirectional else 1
        self.last_backend: str | None = None
        self.record_grad_norms = False  # bptt backend: keep ‖∂L/∂h_t‖ per step in grad_norms[k]
        self.grad_norms: dict[int, list[Tensor]] = {}
        cells, in_size = [], input_size
        for layer_idx in range(num_layers):
            for d in range(self.num_directions):
                cell = self.cell_class(in_size, hidden_size, bias=bias, device=device, dtype=dtype, **cell_kwargs)
                suffix = f"_l{layer_idx}" + ("_reverse" if d else "")
                names = [n for n, _ in cell.named_parameters(recurse=False)]
                for n in names:  # the layer owns the parameters, under torch.nn's names
                    self.register_parameter(n + suffix, cell._parameters.pop(n))
                cells.append((cell, [(n, n + suffix) for n in names]))
            in_size = self.num_directions * cell.output_size
        self.output_size = cell.output_size
        self._cells = tuple(cells)  # parameter-less templates, not submodules

    def cell(self, k: int) -> Cell:
        """The cell of layer k // directions, direction k % directions, bound to this layer's weights."""
        template, names = self._cells[k]
        return template.bind({short: getattr(self, full) for short, full in names})

    def flat_weights(self) -> list[Tensor]:
        """All weights in torch.nn's `_flat_weights` order (through any parametrization)."""
        return [getattr(self, full) for _, names in self._cells for _, full in names]

    def flatten_parameters(self) -> None:
        """On CUDA, lay the weights out in one buffer the way cuDNN wants them, as torch.nn does, so that the
        fused kernel does not copy them all at every call; the parameters stay the same objects. Nothing
        happens elsewhere, for weights already so laid out, or under a parametrization (weight-drop)."""
        w = self.flat_weights()
        mode = fused.CUDNN_MODES.get(self.fused_kernel)
        if (
            mode is None
            or not w[0].is_cuda
            or not torch.backends.cudnn.is_acceptable(w[0])
            or not torch._use_cudnn_rnn_flatten_weight()
            or any(type(p) is not nn.Parameter or p.dtype != w[0].dtype for p in w)
            or _in_one_buffer(w)
        ):
            return
        from torch.backends.cudnn import rnn

        with torch.cuda.device_of(w[0]), torch.no_grad():  # in place: each parameter becomes a view of the buffer
            torch._cudnn_rnn_flatten_weight(
                w, 4 if self.bias else 2, self.input_size, rnn.get_cudnn_mode(mode), self.hidden_size, 0,
                self.num_layers, True, self.bidirectional,
            )  # fmt: skip

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        w = self.flat_weights()
        if not keep_vars and len(w) > 1 and _in_one_buffer(w):
            # cuDNN's one buffer (flatten_parameters): hand out copies, which a checkpoint can store apart
            for name, _ in self.named_parameters(recurse=False):
                destination[prefix + name] = destination[prefix + name].clone()

    def cell_state(self, parts: list[Tensor]):
        """A cell's state from the per-field slices of the layer's state."""
        return parts[0] if self.state_class is RNNState else self.state_class(*parts)

    def init_state(self, batch_size: int, device=None, dtype=None):
        """The zero state, fields (num_layers * directions, B, output_size)."""
        ref = getattr(self, self._cells[0][1][0][1])  # the first weight
        size = (self.num_layers * self.num_directions, batch_size, self.output_size)
        fields = [
            torch.zeros(size, device=device or ref.device, dtype=dtype or ref.dtype) for _ in self.state_class._fields
        ]
        return self.state_class(*fields)

    def choose_backend(self, backend: str, cpu_step: bool = False, cpu_native: bool = False) -> str:
        """The backend that will run: `backend` itself, or for "auto" the first that supports this layer
        (for one time step on the CPU, `cpu_step`, the layer's `step_backend` if it has one; bptt where the
        engine's C++ loops would run the call and are measured faster, `cpu_native`)."""
        if backend == "auto":
            if cpu_step and self.step_backend:
                return self.step_backend
            if cpu_native:
                return "bptt"
            return next(b for b in AUTO_ORDER if BACKENDS[b][0](self) is None)
        if backend not in BACKENDS:
            raise UnrolledError(f"unknown backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
        reason = BACKENDS[backend][0](self)
        if reason is not None:
            raise UnrolledError(f"backend {backend!r} cannot run this layer: {reason}")
        return backend

    def backend_for(self, backend: str, device, dtype=torch.float32, steps: int = 2, padded: bool = False) -> str:
        """The backend `forward` runs for a batch of `steps`-step sequences on `device` (`padded`: with
        lengths): `backend` itself, or what "auto" picks for that call."""
        cpu = (device if isinstance(device, torch.device) else torch.device(device)).type == "cpu"
        wanted = self.cpu_native == "always" or (self.cpu_native == "padded" and padded)
        cpu_native = backend == "auto" and wanted and cpu and steps > 1 and dtype in (torch.float32, torch.float64)
        cpu_native = cpu_native and native.ops() is not None
        return self.choose_backend(backend, cpu_step=steps == 1 and cpu, cpu_native=cpu_native)

    def _coerce_state(self, state, batch: int, dtype) -> list[Tensor]:
        if self.state_class is RNNState and isinstance(state, Tensor):
            state = RNNState(state)
        elif self.state_class is LSTMState and type(state) is tuple and len(state) == 2:
            state = LSTMState(*state)  # torch.nn's (h, c)
        size = (self.num_layers * self.num_directions, batch, self.output_size)
        if not (isinstance(state, self.state_class) and all(isinstance(p, Tensor) and p.shape == size for p in state)):
            # the common case needs no template; anything else gets the full check and its one-line error
            check_state_like(state, self.init_state(batch, device="meta", dtype=dtype), "state")
        return list(state)

    def forward(self, xs: Tensor, state=None, lengths=None, backend: str = "auto"):
        """Run the stack over batch-first `xs` (B, T, input_size).

        Returns `ys` (B, T, directions * output_size) and the final state, whose fields are
        (num_layers * directions, B, output_size). With `lengths`, each sequence's state is
        taken at its own last step and its outputs past it are zero.
        """
        B, T = check_sequence(xs, self.input_size)
        lengths = check_lengths(lengths, B, T, xs.device)
        name = self.backend_for(backend, xs.device, xs.dtype, T, padded=lengths is not None)
        hx = list(self.init_state(B, xs.device, xs.dtype)) if state is None else self._coerce_state(state, B, xs.dtype)
        self.last_backend = name
        ys, hx = BACKENDS[name][1](self, xs, hx, lengths)
        return ys, self.state_class(*hx)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s


class RNN(RecurrentLayer):
    """Stacked Elman network; parameters and numbers as `torch.nn.RNN(batch_first=True)`.

    `nonlinearity` is "tanh" or "relu".
    """

    cell_class = ElmanCell
    cpu_native = "always"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        variational: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bidirectional,
            dropout,
            bias,
            variational=variational,
            device=device,
            dtype=dtype,
            nonlinearity=nonlinearity,
        )
        self.nonlinearity = nonlinearity
        self.fused_kernel = f"rnn_{nonlinearity}"


class LSTM(RecurrentLayer):
    """Stacked LSTM; parameters and numbers as `torch.nn.LSTM(batch_first=True)`. State: `LSTMState(h, c)`."""

    cell_class = LSTMCell
    state_class = LSTMState
    fused_kernel = "lstm"
    cpu_native = "padded"
    # torch.nn.LSTM's fused kernel costs 2.5x the reference's time for a single step here (the
    # `generate` rows of docs/benchmarks.md); for Elman and GRU the fused kernel stays faster
    step_backend = "reference"


class GRU(RecurrentLayer):
    """Stacked GRU; parameters and numbers as `torch.nn.GRU(batch_first=True)`."""

    cell_class = GRUCell
    fused_kernel = "gru"
    cpu_native = "always"


class Jordan(RecurrentLayer):
    """Stacked Jordan network (see `JordanCell`); no vendor kernel exists for it.

    Each layer's output, of size `output_size` (default `hidden_size`), is its fed-back
    state and the next layer's input. Parameters: `weight_ih_l0`, `weight_yh_l0`, `bias_l0`,
    `weight_hy_l0`, `bias_y_l0` (and `_reverse` for the backward direction).
    """

    cell_class = JordanCell
    # single CPU steps (sampling): the reference ran 1.5x the engine's speed (`generate` rows, docs/benchmarks.md)
    step_backend = "reference"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        output_size: int | None = None,
        hidden_activation: str = "tanh",
        output_activation: str = "identity",
        *,
        variational: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bidirectional,
            dropout,
            bias,
            variational=variational,
            device=device,
            dtype=dtype,
            output_size=output_size,
            hidden_activation=hidden_activation,
            output_activation=output_activation,
        )


# Cell names at the CLI edge → layer classes (DESIGN rule 8: no string checks inside models).
LAYERS: dict[str, type[RecurrentLayer]] = {"elman": RNN, "jordan": Jordan, "lstm": LSTM, "gru": GRU}


def build_layer(cell: str, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh", **kw) -> RecurrentLayer:
    """A layer from its CLI name; `nonlinearity` ("tanh" or "relu") is the Elman cell's."""
    if nonlinearity != "tanh":
        if cell != "elman":
            raise UnrolledError(f"--nonlinearity {nonlinearity} is for the elman cell; {cell} has its own")
        kw["nonlinearity"] = nonlinearity
    return LAYERS[cell](input_size, hidden_size, **kw)
