"""What `auto` should run for Elman, GRU and LSTM layers on the CPU: the bptt engine's C++ loops against
torch.nn's fused kernels (for Elman and GRU on the CPU, step loops in ATen; for the LSTM oneDNN's fused
kernel, except for packed sequences), for a training step of the layer alone (forward + backward), the same
with padded sequences (lengths), and a forward without gradients. The `cpu_native` settings of the layers in
src/unrolled/layers.py come from this table.

    .venv/bin/python benchmarks/auto_choice.py     # about a minute
"""

import torch

from unrolled.bench import median_seconds
from unrolled.cli import keep_freed_memory
from unrolled.layers import LAYERS

SIZES = [(32, 100, 512, 2), (64, 50, 128, 1), (8, 30, 64, 1)]  # B, T, H, layers: charlm, small, tiny


def speedups(name: str, B: int, T: int, H: int, L: int) -> list[float]:
    """bptt's speed over fused's for a training step, a padded one, and a forward without gradients."""
    torch.manual_seed(0)
    layer = LAYERS[name](H, H, num_layers=L)
    x = torch.randn(B, T, H, requires_grad=True)
    lengths = torch.randint(T // 2, T + 1, (B,))
    lengths[0] = T

    def train(backend, lens=None):
        layer.zero_grad(set_to_none=True)
        layer(x, lengths=lens, backend=backend)[0].square().sum().backward()

    def forward(backend):
        with torch.no_grad():
            layer(x, backend=backend)

    cases = [lambda b: train(b), lambda b: train(b, lengths), forward]
    return [
        median_seconds(lambda c=case: c("fused"), 7) / median_seconds(lambda c=case: c("bptt"), 7) for case in cases
    ]


def main():
    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| cell | B | T | H | layers | training step | training step, padded | forward, no grad |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("elman", "gru", "lstm"):
        for B, T, H, L in SIZES:
            cells = " | ".join(f"{r:.2f}x" for r in speedups(name, B, T, H, L))
            print(f"| {name} | {B} | {T} | {H} | {L} | {cells} |")
    print("(bptt's speed over fused's: above 1, bptt is faster)")


if __name__ == "__main__":
    main()
