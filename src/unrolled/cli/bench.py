"""`unrolled bench`: training and generation throughput of every cell × backend, against torch.nn."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import bench


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure training and generation speed of every cell and backend")
    p.add_argument(
        "--quick",
        action="store_true",
        help="3 rounds instead of 10 (4× that at the small size; under 3 min on 2 cores)",
    )
    p.add_argument("--json", type=Path, help="also write the rows as a JSON list to this file")
    p.add_argument("--markdown", type=Path, help="also write a markdown table to this file")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--cells", nargs="+", default=list(bench.CELLS), choices=bench.CELLS)
    p.add_argument("--backends", nargs="+", default=list(bench.BACKENDS), choices=bench.BACKENDS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = bench.run_all(args.quick, args.device, args.cells, args.backends, log=lambda m: print(m, file=sys.stderr))
    table = bench.markdown(result)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result["rows"], indent=1))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0
