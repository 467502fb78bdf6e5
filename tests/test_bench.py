"""`unrolled bench`: what it writes. (Its speeds are measured and recorded in docs/benchmarks.md, never asserted.)"""

import json

from unrolled import bench
from unrolled.cli import main

TINY = {
    "charlm": {"batch": 3, "steps": 4, "hidden": 8, "layers": 2},
    "small": {"batch": 2, "steps": 3, "hidden": 8, "layers": 1},
}


def test_bench_quick_json_is_a_list_of_rows_with_the_issue_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "SIZES", TINY)  # the real sizes take minutes
    json_path, md_path = tmp_path / "bench.json", tmp_path / "bench.md"
    args = ["bench", "--quick", "--json", str(json_path), "--markdown", str(md_path), "--cells", "elman", "jordan"]
    assert main([*args, "--device", "cpu"]) == 0
    rows = json.loads(json_path.read_text())
    assert isinstance(rows, list)
    for r in rows:
        assert {"cell", "backend", "size", "tokens_per_s", "peak_mem_mb", "vs_torch", "vs_reference"} <= r.keys()
        assert r["tokens_per_s"] > 0
        assert (r["peak_mem_mb"] is None) == (r["size"] == "generate")
    got = {(r["cell"], r["backend"], r["size"]) for r in rows}
    for size in ("charlm", "small", "generate"):
        assert {("elman", b, size) for b in bench.BACKENDS} <= got
        assert {("jordan", b, size) for b in ("auto", "bptt", "reference")} <= got
        assert ("jordan", "torch", size) not in got  # torch.nn has no Jordan network
    for r in rows:  # ratios between rows of the same run
        mine = {(o["cell"], o["backend"], o["size"]): o for o in rows}
        ref = mine[r["cell"], "reference", r["size"]]
        assert abs(r["vs_reference"] - r["tokens_per_s"] / ref["tokens_per_s"]) < 1e-9
        assert (r["vs_torch"] is None) == (r["cell"] == "jordan")
    table = md_path.read_text()
    assert table.startswith("torch ") and "| size | cell | backend |" in table
    assert table.strip() in capsys.readouterr().out  # the same table on stdout
