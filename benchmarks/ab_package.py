"""Is a change to the package's Python faster? The whole working tree against another tree's, alternated step by step.

The companion of ab_native.py (two builds of the C++ loops) and ab_python.py (one module): here every module of an
older tree's `unrolled` is loaded beside the working tree's, as the package `unrolled_base`, and the training step
of `unrolled bench` is built from each (same seed, same data) and alternated; the medians are compared. Both use the
working tree's C++ ops, so the two csrc/ must be the same (for a change to the C++, ab_native.py). A control (a
tree at the same commit) read 1.001.

    git worktree add /tmp/base HEAD~1          # the code to compare against
    .venv/bin/python benchmarks/ab_package.py /tmp/base jordan small [rounds]
"""

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from unrolled.cli import keep_freed_memory
from unrolled.engine import native


def load_base(tree: Path):
    """The package under tree/src/unrolled, as `unrolled_base`, on the working tree's C++ ops (one build)."""
    native.ops()
    src = tree / "src" / "unrolled"
    spec = importlib.util.spec_from_file_location(
        "unrolled_base", src / "__init__.py", submodule_search_locations=[str(src)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["unrolled_base"] = package
    spec.loader.exec_module(package)
    importlib.import_module("unrolled_base.engine.native").ops = native.ops  # a second build could not register
    return importlib.import_module("unrolled_base.bench")


def main():
    tree, cell, size = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else (400 if size == "small" else 20)
    import unrolled.bench as new

    benches = {"base": load_base(tree), "new": new}
    keep_freed_memory()  # as `unrolled bench` runs
    s = new.SIZES[size]
    x = torch.randn(s["batch"], s["steps"], s["hidden"], requires_grad=True)
    y = torch.randint(0, new.CLASSES, (s["batch"], s["steps"]))
    steps = {}
    for name, bench in benches.items():
        torch.manual_seed(0)
        model = bench._Model(cell, "bptt", s["hidden"], s["layers"])
        steps[name] = bench._train_step(model, torch.optim.Adam(model.parameters(), 1e-3), x, y)
    times = {"base": [], "new": []}
    for i in range(2 * rounds):
        which = "base" if i % 2 == 0 else "new"
        steps[which]()  # untimed: the allocator and caches as this version leaves them
        t0 = time.perf_counter()
        steps[which]()
        times[which].append(time.perf_counter() - t0)
    base, new_ = (statistics.median(times[k]) for k in ("base", "new"))
    print(f"{cell} {size}: base {1e3 * base:.2f} ms, new {1e3 * new_:.2f} ms, new/base {new_ / base:.3f}")


if __name__ == "__main__":
    main()
