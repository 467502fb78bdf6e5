"""`unrolled bench`: training and generation speed of every cell × backend, against torch.nn.

A training step is what a language model does: dense inputs (B, T, H) standing for embeddings
(so they take a gradient too) → recurrent layer → linear head over 65 classes → cross-entropy → backward → Adam step.
Every configuration of one size is built first; then rounds run each configuration's step
twice, in a new shuffled order each round, and time the second: slow drifts of a shared machine hit
all of them alike, and each timed step finds the allocator in the state its own configuration left
it, as in training (timed right after another configuration, torch.nn's fused LSTM step took up to
30% longer here). The median of the rounds is reported, and ratios are taken between medians of the
same run.

Peak memory is the high-water mark of tensor memory during one training step, above what was held
before it, from the PyTorch profiler's raw allocation events (on CUDA: `torch.cuda.max_memory_allocated`).
"""

from __future__ import annotations

import platform
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LAYERS
from .train.loop import pick_device

SIZES = {
    "charlm": {"batch": 32, "steps": 100, "hidden": 512, "layers": 2},
    "small": {"batch": 64, "steps": 50, "hidden": 128, "layers": 1},
}
# rounds per size, as multiples of the run's: the small size's steps are 10–50× shorter than the charlm size's, and
# its medians over 10 rounds moved by ±3% between runs of the same code (LSTM `auto` against torch.nn, the same
# kernel behind both: 0.97–1.02); 40 rounds cost the full run ~15 s more
ROUNDS_FACTOR = {"charlm": 1, "small": 4}
CELLS = ("elman", "jordan", "lstm", "gru")
BACKENDS = ("torch", "auto", "fused", "bptt", "reference")
TORCH_LAYERS = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CLASSES = 65


class _Model(nn.Module):
    def __init__(self, cell: str, backend: str, hidden: int, layers: int):
        super().__init__()
        if backend == "torch":
            self.rnn = TORCH_LAYERS[cell](hidden, hidden, layers, batch_first=True)
        else:
            self.rnn = LAYERS[cell](hidden, hidden, num_layers=layers)
        self.backend = backend
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x, state=None):
        if self.backend == "torch":
            ys, state = self.rnn(x, state)
        else:
            ys, state = self.rnn(x, state, backend=self.backend)
        return self.head(ys), state


def available(cell: str, backend: str) -> bool:
    if backend == "torch":
        return cell in TORCH_LAYERS
    if backend == "fused":
        return cell != "jordan"
    return True


def _train_step(model: _Model, opt, x, y) -> Callable[[], None]:
    def step():
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, CLASSES), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        x.grad = None
        loss.backward()
        opt.step()

    return step


def peak_memory_mb(fn: Callable[[], None], device: torch.device) -> float:
    """The high-water mark of tensor memory during `fn`, above what was held when it began."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile, record_function

    # Every allocation and free, with its time, from the profiler's raw events. It knows the size of a
    # block only if it saw it allocated: so `fn` runs twice, and the second run is the one measured.
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
        with record_function("measured"):
            fn()
    events = prof.profiler.kineto_results.events()
    start = next(e.start_ns() for e in events if e.name() == "measured")
    current = base = peak = 0
    for t, nbytes in sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"):
        if t < start:
            base = peak = current = current + nbytes
        else:
            current += nbytes
            peak = max(peak, current)
    return (peak - base) / 2**20


def median_seconds(fn: Callable[[], object], rounds: int) -> float:
    """The median wall time of `rounds` calls of `fn`, after one untimed call (the benchmark scripts' timer)."""
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(size: str, cells, backends, rounds: int, device, log=print) -> list[dict]:
    s = SIZES[size]
    B, T, H = s["batch"], s["steps"], s["hidden"]
    x = torch.randn(B, T, H, device=device, requires_grad=True)  # as embeddings do, the inputs take a gradient
    y = torch.randint(0, CLASSES, (B, T), device=device)
    runs = {}
    for cell in cells:
        for backend in backends:
            if available(cell, backend):
                torch.manual_seed(0)
                model = _Model(cell, backend, H, s["layers"]).to(device)
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                runs[cell, backend] = step = _train_step(model, opt, x, y)
                step()  # warm-up: kernels, optimizer state
    mem = {key: peak_memory_mb(step, device) for key, step in runs.items()}
    times = {key: [] for key in runs}
    order = list(runs)
    for r in range(rounds):
        random.Random(r).shuffle(order)  # no configuration always runs right after the same other one
        for key in order:
            step = runs[key]
            step()  # untimed: the timed step then finds memory as this configuration left it, as in training
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[key].append(time.perf_counter() - t0)
        log(f"  {size}: round {r + 1}/{rounds}")
    rows = []
    for (cell, backend), ts in times.items():
        med = statistics.median(ts)
        rows.append({"cell": cell, "backend": backend, "size": size, "tokens_per_s": B * T / med,
                     "step_ms": 1000 * med, "peak_mem_mb": mem[cell, backend]})  # fmt: skip
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict]) -> None:
    by = {(r["cell"], r["backend"], r["size"]): r for r in rows}
    for r in rows:
        for ref in ("torch", "reference"):
            other = by.get((r["cell"], ref, r["size"]))
            r[f"vs_{ref}"] = r["tokens_per_s"] / other["tokens_per_s"] if other else None


@torch.no_grad()
def bench_generation(
    cells, backends, tokens: int, rounds: int, device, hidden: int = 512, layers: int = 2
) -> list[dict]:
    """Batch-1 generation: one step at a time, each output fed back (the sampling loop's cost)."""
    rows = []
    for cell in cells:
        for backend in backends:
            if not available(cell, backend):
                continue
            torch.manual_seed(0)
            model = _Model(cell, backend, hidden, layers).to(device).eval()
            emb = torch.randn(CLASSES, hidden, device=device)

            def run(model=model, emb=emb):
                state, token = None, 0
                for _ in range(tokens):
                    logits, state = model(emb[token].view(1, 1, -1), state)
                    token = int(logits[0, -1].argmax())

            run()
            ts = []
            for _ in range(rounds):
                _sync(device)
                t0 = time.perf_counter()
                run()
                _sync(device)
                ts.append(time.perf_counter() - t0)
            rows.append({"cell": cell, "backend": backend, "size": "generate", "tokens_per_s": tokens / statistics.median(ts),
                         "step_ms": 1000 * statistics.median(ts) / tokens, "peak_mem_mb": None})  # fmt: skip
    _add_ratios(rows)
    return rows


def run_all(quick: bool, device: str = "auto", cells=CELLS, backends=BACKENDS, log=print) -> dict:
    dev = pick_device(device)
    rounds = 3 if quick else 10
    rows = []
    for size in SIZES:
        log(f"training step, size {size} ({SIZES[size]})")
        rows += bench_training(size, cells, backends, rounds * ROUNDS_FACTOR[size], dev, log)
    log("generation at batch 1")
    rows += bench_generation(cells, backends, 50 if quick else 200, rounds, dev)
    return {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {dev}",
        "torch": torch.__version__,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [f"torch {result['torch']}; {result['machine']}", "",
             "| size | cell | backend | tokens/s | step ms | peak MB | × torch.nn | × reference |",
             "|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip

    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    for r in result["rows"]:
        lines.append(f"| {r['size']} | {r['cell']} | {r['backend']} | {r['tokens_per_s']:,.0f} | {r['step_ms']:.2f} | "
                     f"{f(r['peak_mem_mb'], '.1f')} | {f(r['vs_torch'], '.2f')} | {f(r['vs_reference'], '.2f')} |")  # fmt: skip
    return "\n".join(lines)
