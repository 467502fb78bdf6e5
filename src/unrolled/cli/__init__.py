"""`unrolled <verb>`: one small function per subcommand."""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except UnrolledError as e:
        print(f"unrolled: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
