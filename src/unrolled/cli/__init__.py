"""`unrolled <verb>`: one small function per subcommand."""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

from .. import __version__
from ..errors import UnrolledError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unrolled", description="Recurrent neural networks, unrolled.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _commands():
        module.register(sub)
    return parser


def _commands():
    """Each subcommand module has `register(subparsers)`, which sets `func` on its parser."""
    from . import bench, data, diagnose, evaluate, sample, train

    return (train, sample, evaluate, diagnose, data, bench)


# glibc's mallopt parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for the next allocation instead of handing it back to the
    system (and to serve blocks below 1 GiB from that pool, not from fresh pages). A training step frees and
    allocates the same large buffers every time; fresh pages must be faulted in and zeroed: torch.nn's fused
    LSTM step at the character model's size took 37,500 page faults and 17% longer without this
    (docs/benchmarks.md). The price: memory is returned to the system only at exit. Returns whether it took
    effect; UNROLLED_MALLOC=default, or a C library other than glibc, leaves malloc as it is."""
    if os.environ.get("UNROLLED_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    keep_freed_memory()
    try:
        return args.func(args) or 0
    except UnrolledError as e:
        print(f"unrolled: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
