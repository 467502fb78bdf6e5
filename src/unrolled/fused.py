"""The `fused` backend: torch.nn's own multi-layer kernels (oneDNN on CPU, cuDNN on CUDA).

The layer's parameters are handed over in torch.nn's flat order, so the kernels compute
exactly what `torch.nn.RNN/LSTM/GRU` compute. Variable lengths go through packing, the only
way these kernels return each sequence's final state at its own last step.
"""

from __future__ import annotations

import torch
from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .regularizers import dropout

KERNELS = {
    "rnn_tanh": _VF.rnn_tanh,
    "rnn_relu": _VF.rnn_relu,
    "lstm": _VF.lstm,
    "gru": _VF.gru,
}


# the kernels' names for torch.backends.cudnn.rnn.get_cudnn_mode
CUDNN_MODES = {"rnn_relu": "RNN_RELU", "rnn_tanh": "RNN_TANH", "lstm": "LSTM", "gru": "GRU"}


def unsupported(layer) -> str | None:
    """Why the fused backend cannot run `layer`, or None when it can."""
    if layer.fused_kernel not in KERNELS:
        return f"torch.nn has no fused kernel for a {type(layer).__name__} layer like this one"
    return None


def run(layer, xs: Tensor, hx: list[Tensor], lengths: Tensor | None) -> tuple[Tensor, list[Tensor]]:
    """Run the whole stack; `hx` and the returned state are torch.nn's [h] or [h, c]."""
    if xs.is_cuda:
        layer.flatten_parameters()
    weights = layer.flat_weights()
    if not (layer.variational and layer.training and layer.dropout and layer.num_layers > 1):
        return _kernel(layer, xs, hx, weights, layer.num_layers, layer.dropout, lengths)
    # The kernels drop out element by element; a variational mask needs the layers one at a time.
    per_layer, D = len(weights) // layer.num_layers, layer.num_directions
    finals = []
    for k in range(layer.num_layers):
        hx_k = [h[k * D : (k + 1) * D] for h in hx]
        xs, state = _kernel(layer, xs, hx_k, weights[k * per_layer : (k + 1) * per_layer], 1, 0.0, lengths)
        finals.append(state)
        if k < layer.num_layers - 1:
            xs = dropout(xs, layer.dropout, True, variational=True)
    return xs, [torch.cat(parts) for parts in zip(*finals)]


def _kernel(layer, xs, hx, weights, num_layers, p, lengths):
    kernel = KERNELS[layer.fused_kernel]
    hx_arg = hx[0] if len(hx) == 1 else tuple(hx)
    args = (weights, layer.bias, num_layers, p, layer.training)
    if lengths is None:
        out = kernel(xs, hx_arg, *args, layer.bidirectional, True)
        return out[0], list(out[1:])
    packed = pack_padded_sequence(xs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    order, undo = packed.sorted_indices, packed.unsorted_indices
    hx_arg = hx[0].index_select(1, order) if len(hx) == 1 else tuple(h.index_select(1, order) for h in hx)
    out = kernel(packed.data, packed.batch_sizes, hx_arg, *args, layer.bidirectional)
    ys, _ = pad_packed_sequence(
        PackedSequence(out[0], packed.batch_sizes, order, undo), batch_first=True, total_length=xs.shape[1]
    )
    return ys, [h.index_select(1, undo) for h in out[1:]]
