"""Typed configuration: dataclasses whose fields carry their help text, presets, and CLI flags.

A field `hidden_size: int = field(default=256, metadata={"help": "..."})` becomes the flag
`--hidden-size N`. Precedence: dataclass default < preset < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from .errors import UnrolledError


def opt(default: Any, help: str, **kw) -> Any:
    """A dataclass field with its help text (and optional `choices`)."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _base_type(tp) -> type:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of dataclass `cls`; unset flags stay out of the namespace."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        kw = {"default": argparse.SUPPRESS, "help": f"{f.metadata.get('help', '')} (default: {f.default})"}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if tp is bool:
            kw.update(type=_parse_bool, nargs="?", const=True, metavar="BOOL")
        else:
            kw.update(type=tp, metavar=f.name.split("_")[-1].upper())
        group.add_argument("--" + f.name.replace("_", "-"), **kw)


def build(cls: type, *layers: dict[str, Any]):
    """An instance of `cls` from the defaults overridden by each dict in turn (unknown keys ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        values.update({k: v for k, v in layer.items() if k in names})
    return cls(**values)


def from_json(cls: type, data: dict[str, Any], what: str):
    """Rebuild a config saved with `dataclasses.asdict`, refusing unknown fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UnrolledError(f"{what} has fields this version does not know: {', '.join(unknown)}")
    return cls(**data)


def preset(presets: dict[str, dict[str, Any]], name: str | None, task: str) -> dict[str, Any]:
    if name is None:
        return {}
    if name not in presets:
        raise UnrolledError(f"unknown preset {name!r} for {task}; choose one of {', '.join(presets)}")
    return presets[name]
