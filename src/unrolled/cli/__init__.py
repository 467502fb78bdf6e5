"""`unrolled <verb>`: one small function per subcommand."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import UnrolledError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unrolled", description="Recurrent neural networks, unrolled.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
