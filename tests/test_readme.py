"""The README's Python example runs, and says what it prints."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_and_its_comment_on_the_backend_holds():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "no Python example in README.md"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    from unrolled.engine import native

    want = "bptt" if native.ops() is not None else "fused"
    assert out.getvalue().strip() == want
