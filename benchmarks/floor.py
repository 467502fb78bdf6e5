"""How fast can a bptt training step be here? The sum of the times of the matrix products it must run, each
timed alone with the primitive the engine uses for it (plus the loss and the optimizer step), against the time
a bar of issue 6 allows.

Back-propagation through time does the same products whoever runs it (the reference backend and torch.nn
too): per layer the input projection, T recurrent products forward and T back (Jordan: two each way), ∂X,
and a gradient per weight; then the model's head, its loss and the optimizer's step. Timed alone (the weight packed once, the operands in
cache: a best case), they give a floor under any implementation of the engine's step built on oneDNN's
products, before its pointwise work, allocation and Python. Where the floor is at or above the time a bar
allows (the comparator's step, measured here in the same process, divided by 3, or by 0.9 for torch.nn), the
bar cannot be met with these products on this machine; where it is just under, only an implementation
with no other cost at all would meet it.

    .venv/bin/python benchmarks/floor.py     # about 2 minutes
"""

import torch
import torch.nn.functional as F

from unrolled.bench import CLASSES, SIZES, _Model, bench_training, median_seconds
from unrolled.cli import keep_freed_memory
from unrolled.engine import native
from unrolled.layers import LAYERS
from unrolled.linear import PackedLinear

LP, REORDER = torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight
GATES = {"elman": 1, "jordan": 1, "gru": 3, "lstm": 4}
BARS = {"jordan": ("reference", 3.0), "gru": ("reference", 3.0), "lstm": ("torch", 0.9)}  # comparator, ratio


def median_s(fn) -> float:
    return median_seconds(fn, 9)


def product(rows: int, k: int, n: int) -> float:
    """A one-shot product (rows, k) · Wᵀ, W (n, k) packed for oneDNN's linear."""
    x, packed = torch.randn(rows, k), REORDER(torch.randn(n, k), rows)
    return median_s(lambda: LP(x, packed, None, "none", [], ""))


def step_products(rows: int, k: int, n: int, calls: int) -> float:
    """`calls` per-step products (rows, k) · Wᵀ, W (n, k) prepared once, as the engine makes them (linear.PackedLinear:
    oneDNN's micro-kernel on blocks of Wᵀ). Called from Python, each carries a few µs that the C++ loops do not:
    the overhead of the same call on a 1 × 32 × 32 product is taken off."""
    w, x, tiny = (
        PackedLinear(torch.randn(n, k), rows, calls),
        torch.randn(rows, k),
        PackedLinear(torch.randn(32, 32), 1, 8),
    )
    one = torch.randn(1, 32)
    return calls * max(0.0, median_s(lambda: w(x)) - median_s(lambda: tiny(one)))


def weight_grad(rows: int, g: int, f: int, chunk: int) -> float:
    """Σ_n d_nᵀ x_n over `rows` rows of d (·, g) and x (·, f), in products of `chunk` rows (the engine's op)."""
    ops = native.ops()
    d, x, out = torch.randn(chunk, g), torch.randn(chunk, f), torch.empty(g, f)
    return -(-rows // chunk) * median_s(lambda: ops.mm(d.T, x, out, True))


def head(rows: int, h: int) -> float:
    """The model's head (65 classes): forward, and the backward's two products, as nn.Linear runs them."""
    y, w = torch.randn(rows, h, requires_grad=True), torch.randn(CLASSES, h, requires_grad=True)
    g = torch.randn(rows, CLASSES)
    return median_s(lambda: torch.autograd.grad(F.linear(y, w), [y, w], g))


def loss_and_adam(cell: str, size: str) -> float:
    """Cross-entropy forward and backward over the logits, and Adam's step over the model's parameters."""
    s = SIZES[size]
    model = _Model(cell, "bptt", s["hidden"], s["layers"])
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits = torch.randn(s["batch"] * s["steps"], CLASSES, requires_grad=True)
    y = torch.randint(0, CLASSES, (s["batch"] * s["steps"],))
    return median_s(lambda: torch.autograd.grad(F.cross_entropy(logits, y), logits)) + median_s(opt.step)


def floor_ms(cell: str, size: str) -> dict[str, float]:
    s = SIZES[size]
    B, T, H, L = s["batch"], s["steps"], s["hidden"], s["layers"]
    G, N = GATES[cell] * H, T * B
    per_step = 2 if cell == "jordan" else 1  # products each way per step (Jordan: through W_yh and W_hy)
    layer_cell = LAYERS[cell](H, H).cell(0)
    chunk = N if layer_cell.saves_z else B * layer_cell.chunk_steps(B, T)  # the engine's sums over time
    parts = {
        "input projections": L * product(N, H, G),
        "recurrent products forward": L * per_step * step_products(B, H, G, T),
        "recurrent products back": L * per_step * step_products(B, G, H, T),
        "∂X": L * product(N, G, H),
        "weight gradients": L * (per_step + 1) * weight_grad(N, G, H, chunk),
        "head": head(N, H),
        "loss, Adam": loss_and_adam(cell, size),
    }
    return {k: 1000 * v for k, v in parts.items()}


def step_ms(cell: str, size: str, backends: list[str], rounds: int = 5) -> dict[str, float]:
    """Median training-step times of `backends`, as `unrolled bench` measures them (interleaved rounds)."""
    rows = bench_training(size, [cell], backends, rounds, torch.device("cpu"), log=lambda *_: None)
    return {r["backend"]: r["step_ms"] for r in rows}


def main():
    keep_freed_memory()  # as `unrolled bench` runs
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(
        "| cell | size | bar | comparator step ms | allowed step ms | floor ms | bptt step ms | floor within the bar? |"
    )
    print("|---|---|---|---:|---:|---:|---:|---|")
    details = []
    for cell, (comparator, ratio) in BARS.items():
        for size in SIZES:
            parts = floor_ms(cell, size)
            floor = sum(parts.values())
            measured = step_ms(cell, size, [comparator, "bptt"])
            allowed = measured[comparator] / ratio  # the step time at which bptt meets the bar
            bar = f"≥ {ratio}× {comparator}"
            fits = "yes" if floor < allowed else "**no**"
            print(
                f"| {cell} | {size} | {bar} | {measured[comparator]:.1f} | {allowed:.1f} | {floor:.1f} | {measured['bptt']:.1f} | {fits} |"
            )
            details.append((cell, size, parts))
    print("\nThe floor's parts (ms):\n")
    print("| cell | size | " + " | ".join(details[0][2]) + " |")
    print("|---|---|" + "---:|" * len(details[0][2]))
    for cell, size, parts in details:
        print(f"| {cell} | {size} | " + " | ".join(f"{v:.1f}" for v in parts.values()) + " |")


if __name__ == "__main__":
    main()
