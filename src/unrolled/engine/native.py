"""The engine's time loops in C++ (native.cpp), compiled once on first use with torch's extension builder.

Where no compiler is found (or `UNROLLED_NATIVE=0`), the engine runs the cells' Python steps instead: the
same equations, tested equal, slower by the per-step overhead of Python.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("native.cpp")


def _flags() -> tuple[list[str], list[str]]:
    cflags, ldflags = ["-O3", "-fopenmp", "-fno-math-errno"], ["-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64") and platform.libc_ver()[0] == "glibc":
        cflags.append("-march=native")
        ldflags.append("-lmvec")  # glibc's vector exp, which the loops call
    return cflags, ldflags


@functools.cache
def ops():
    """`torch.ops.unrolled` once built (about a minute, the first time on a machine), else None."""
    if os.environ.get("UNROLLED_NATIVE", "1") == "0":
        return None
    from torch.utils.cpp_extension import load

    cflags, ldflags = _flags()
    try:
        load(
            name="unrolled_native",
            sources=[str(SOURCE)],
            extra_cflags=cflags,
            extra_ldflags=ldflags,
            is_python_module=False,
        )
    except Exception as e:  # no compiler, no ninja, a broken toolchain: the Python steps do the same
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(
            f"unrolled: the engine's C++ loops could not be built ({first}); using its Python steps", stacklevel=2
        )
        return None
    return torch.ops.unrolled
