"""The engine's time loops in C++ (csrc/), compiled once per machine on first use by torch's extension
builder (about 20 s here) and cached under ~/.cache/torch_extensions (or $TORCH_EXTENSIONS_DIR).

Where no compiler is found (or `UNROLLED_NATIVE=0`), the engine runs the cells' Python steps instead: the
same equations, tested equal, slower by the per-step overhead of Python.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

CSRC = Path(__file__).with_name("csrc")
SOURCES = [CSRC / "simple.cpp", CSRC / "gated.cpp", CSRC / "jordan.cpp"]


def _flags() -> tuple[list[str], list[str]]:
    cflags, ldflags = ["-O3", "-fopenmp", "-fno-math-errno"], ["-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64") and platform.libc_ver()[0] == "glibc":
        cflags.append("-march=native")
        ldflags.append("-lmvec")  # glibc's vector exp, which the loops call
    return cflags, ldflags


def _name() -> str:
    """The extension's name, tied to this processor's instruction sets (a build for one, -march=native, must
    not be loaded on another that shares the cache: a home directory on a cluster) and to the sources,
    header included (torch's builder watches only the .cpp files)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.machine() + platform.processor()
    digest = hashlib.sha1(flags.encode())
    for path in sorted([*CSRC.glob("*.h"), *CSRC.glob("*.cpp")]):
        digest.update(path.read_bytes())
    return "unrolled_native_" + digest.hexdigest()[:10]


@functools.cache
def ops():
    """`torch.ops.unrolled` once built, else None (with a warning saying why)."""
    if os.environ.get("UNROLLED_NATIVE", "1") == "0":
        return None
    from torch.utils import cpp_extension

    name, (cflags, ldflags) = _name(), _flags()
    try:
        if not Path(cpp_extension._get_build_directory(name, False), f"{name}.so").exists():
            # through tqdm: a training run's progress bar is redrawn below the line, not over it
            tqdm.write("unrolled: building the BPTT engine's C++ loops (once on this machine, ~20 s)", file=sys.stderr)
    except Exception:  # a private helper of torch's: only the message depends on it
        pass
    try:
        cpp_extension.load(
            name=name,
            sources=[str(p) for p in SOURCES],
            extra_cflags=cflags,
            extra_ldflags=ldflags,
            extra_include_paths=[str(CSRC)],
            is_python_module=False,
        )
    except Exception as e:  # no compiler, no ninja, a broken toolchain: the Python steps do the same
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(
            f"unrolled: the engine's C++ loops could not be built ({first}); using its Python steps", stacklevel=2
        )
        return None
    return torch.ops.unrolled
