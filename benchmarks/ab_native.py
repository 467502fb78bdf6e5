"""Is a change to the engine's C++ loops faster? Both builds in one process, alternated step by step.

This machine's speed drifts by 10% and more between runs (docs/benchmarks.md), more than most changes are
worth; two processes run one after the other cannot tell 2% apart. Here the working tree's ops
(`torch.ops.unrolled`) and those of an older tree's csrc/, built under the namespace `unrolled_ab`, are both
loaded; the training step of `unrolled bench` alternates between them, and the medians are compared. The
Python side is the working tree's for both, so the two csrc/ must take the same op signatures. A control:
two trees with the same loops read 1.00 (±0.01).

    git worktree add /tmp/base HEAD~1          # the code to compare against
    .venv/bin/python benchmarks/ab_native.py gru small /tmp/base/src/unrolled/engine/csrc [rounds]
"""

import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils import cpp_extension

from unrolled import linear
from unrolled.bench import CLASSES, SIZES, _Model, _train_step
from unrolled.cli import keep_freed_memory
from unrolled.engine import native


def load_base(csrc: Path):
    """The C++ ops of `csrc`, built and loaded under the namespace unrolled_ab."""
    build = Path(tempfile.mkdtemp(prefix="ab_native_"))
    for source in csrc.iterdir():
        text = source.read_text().replace("TORCH_LIBRARY(unrolled,", "TORCH_LIBRARY(unrolled_ab,")
        (build / source.name).write_text(
            text.replace("TORCH_LIBRARY_FRAGMENT(unrolled,", "TORCH_LIBRARY_FRAGMENT(unrolled_ab,")
        )
    digest = hashlib.sha1(b"".join(p.read_bytes() for p in sorted(build.iterdir()))).hexdigest()[:10]
    cflags, ldflags = native._flags()
    sources = [str(build / p.name) for p in native.SOURCES]
    cpp_extension.load(
        name=f"unrolled_ab_{digest}",
        sources=sources,
        extra_cflags=cflags,
        extra_ldflags=ldflags,
        extra_include_paths=[str(build)],
        is_python_module=False,
    )
    shutil.rmtree(build)
    return torch.ops.unrolled_ab


def alternate(cell: str, size: str, rounds: int, use) -> None:
    """The training step of `unrolled bench` for `cell` at `size`, timed `rounds` times after use("base") and as many
    after use("new"), alternated step by step; prints the medians and their ratio."""
    keep_freed_memory()  # as `unrolled bench` runs
    s = SIZES[size]
    torch.manual_seed(0)
    x = torch.randn(s["batch"], s["steps"], s["hidden"], requires_grad=True)
    y = torch.randint(0, CLASSES, (s["batch"], s["steps"]))
    model = _Model(cell, "bptt", s["hidden"], s["layers"])
    step = _train_step(model, torch.optim.Adam(model.parameters(), 1e-3), x, y)
    times = {"base": [], "new": []}
    for i in range(2 * rounds):
        which = "base" if i % 2 == 0 else "new"
        use(which)
        step()  # untimed: the allocator and caches as this version leaves them
        t0 = time.perf_counter()
        step()
        times[which].append(time.perf_counter() - t0)
    base, new = (statistics.median(times[k]) for k in ("base", "new"))
    print(f"{cell} {size}: base {1e3 * base:.2f} ms, new {1e3 * new:.2f} ms, new/base {new / base:.3f}")


def main():
    cell, size, csrc = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else (40 if size == "small" else 10)
    ops = {"new": native.ops(), "base": load_base(csrc)}

    def use(which):
        native.ops = lambda: ops[which]  # what the engine and linear.py call for the ops
        linear._mm_op.cache_clear()

    alternate(cell, size, rounds, use)


if __name__ == "__main__":
    main()
