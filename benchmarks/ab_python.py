"""Is a change to the engine's Python faster? The working tree's module against another tree's, alternated step by step.

The companion of ab_native.py (which compares two builds of the C++ loops): this machine drifts by 10% and more
between runs, so two processes cannot tell 2% apart. Here a module of the working tree (e.g. unrolled.engine.bptt)
and the same file of an older tree, loaded beside it under another name, are both in the process; every name
another `unrolled` module took from it (`from .engine import unroll_bptt`) is switched between the two before each
training step of `unrolled bench`, and the medians are compared. The modules it imports are the working tree's for
both, so the old file must work with them; and a class is switched only where it is looked up at each step (a
model built before keeps the working tree's cells). A control (a tree with the same file) reads 1.00 (±0.01).

    git worktree add /tmp/base HEAD~1          # the code to compare against
    .venv/bin/python benchmarks/ab_python.py gru small /tmp/base/src unrolled.engine.bptt [rounds]
"""

import importlib
import importlib.util
import sys
from pathlib import Path

from ab_native import alternate  # the timing loop both A/B scripts share (benchmarks/ is the script's path)


def old_module(src: Path, name: str):
    """The file of module `name` under the tree `src`, loaded as a module of its own (in the same package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_ab", src / (name.replace(".", "/") + ".py"))
    module = importlib.util.module_from_spec(spec)
    module.__package__ = name.rpartition(".")[0]
    spec.loader.exec_module(module)
    return module


def switches(name: str, old) -> list[tuple[object, str, object, object]]:
    """(holder, attribute, the working tree's value, the old tree's) for every `unrolled` module attribute that is
    the module `name` itself or a function or class defined there."""
    new = importlib.import_module(name)
    found = []
    for holder in [m for n, m in sys.modules.items() if n.startswith("unrolled") and m is not new]:
        for attr, value in vars(holder).items():
            if value is new:
                found.append((holder, attr, new, old))
            elif callable(value) and getattr(value, "__module__", None) == name and hasattr(old, attr):
                found.append((holder, attr, value, getattr(old, attr)))
    return found


def main():
    cell, size, src, name = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else (40 if size == "small" else 10)
    found = switches(name, old_module(src, name))
    print("switched:", ", ".join(sorted(f"{h.__name__}.{a}" for h, a, _, _ in found)))

    def use(which):
        for holder, attr, new, old in found:
            setattr(holder, attr, new if which == "new" else old)

    alternate(cell, size, rounds, use)


if __name__ == "__main__":
    main()
