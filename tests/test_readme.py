"""The Python examples in README.md and docs/*.md run, and print what their comments say."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from unrolled.engine import native

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [(p, b) for p in DOCS for b in re.findall(r"```python\n(.*?)```", p.read_text(), flags=re.S)]


def test_there_are_examples():
    assert {p.name for p, _ in EXAMPLES} >= {"README.md", "engine.md"}


@pytest.mark.parametrize("path, code", EXAMPLES, ids=[f"{p.name}-{i}" for i, (p, _) in enumerate(EXAMPLES)])
def test_example_runs_and_prints_what_its_comments_say(path, code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(path), "exec"), {})
    # each print(...) line's trailing comment starts with the value it prints, quoted or bare
    said = [m.group(1).strip('"') for m in re.finditer(r"^print\(.*?\)\s+#\s*(\S+?)[:\s]", code + "\n", flags=re.M)]
    if native.ops() is not None:  # the comments describe a machine where the C++ loops are built
        assert out.getvalue().split() == said
