"""`unrolled data list` and `unrolled data verify [NAME]`: which datasets are known, where they are, and are they intact."""

from __future__ import annotations

import argparse

from ..data import registry


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="list and verify the named datasets", description=__doc__)
    p.set_defaults(func=lambda args: _help(p))
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    ls = sub.add_parser("list", help="the registered datasets and where each is found (mirror, cache or missing)")
    ls.set_defaults(func=cmd_list)
    ver = sub.add_parser("verify", help="hash the local files against the registry's sha256")
    ver.add_argument("name", nargs="?", help="one dataset (default: all); then a missing file also fails")
    ver.set_defaults(func=cmd_verify)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "FILES", "WHERE", "DESCRIPTION")]
    for name in registry.names():
        spec = registry.get(name)
        where = {key: registry.find_local(name, key)[0] for key in spec.files}
        found = set(where.values())
        # One word when every file is in the same place, else per file.
        summary = found.pop() if len(found) == 1 else ", ".join(f"{k}: {w}" for k, w in where.items())
        rows.append((name, spec.kind, ", ".join(spec.files), summary, spec.description))
    print(_table(rows))
    mirror = registry.mirror_dir()
    print(f"\nmirror: {mirror if mirror else '(UNROLLED_DATA_DIR not set)'}   cache: {registry.cache_dir()}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    results = registry.verify(args.name)
    label = {"ok": "ok", "missing": "missing", "mismatch": "MISMATCH"}
    rows = [(label[r.status], f"{r.dataset}/{r.key}", str(r.path or "")) for r in results]
    print(_table(rows))
    counts = {s: sum(r.status == s for r in results) for s in label}
    print(f"{counts['ok']} ok, {counts['mismatch']} mismatched, {counts['missing']} missing")
    # Naming a dataset asks "is it all here and intact?"; the full sweep only fails on corruption.
    failed = counts["mismatch"] > 0 or (args.name is not None and counts["missing"] > 0)
    return 1 if failed else 0
