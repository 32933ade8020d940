"""`make bench-pythons`' side-by-side table: the figures a benchmark's JSON holds, outside
its settings and per-round detail, of two runs, with the second over the first."""

from __future__ import annotations

import json
from pathlib import Path

from bench.compare_pythons import side_by_side


def write(folder: Path, name: str, document: object) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(document))


def test_two_runs_side_by_side(tmp_path: Path) -> None:
    old, new = tmp_path / "python3.11", tmp_path / "python3.13"
    write(old, "batch", {"settings": {"batch": 50}, "median_ratio": 3.0, "rounds": [{"r": 1}]})
    write(new, "batch", {"settings": {"batch": 50}, "median_ratio": 3.6, "rounds": [{"r": 2}]})
    write(old, "delivery", {"engine": {"per_second": 100, "ok": True}, "runs": [4, 0]})
    write(new, "delivery", {"engine": {"per_second": 90, "ok": True}, "runs": [5, 1]})
    write(old, "memory", {"peak_mib": 80})
    write(new, "payroll", {"seconds": 30})

    lines = side_by_side(old, new)

    assert [line.split() for line in lines if line] == [
        ["figure", "python3.11", "python3.13", "ratio"],
        ["==", "batch"],
        ["median_ratio", "3", "3.6", "1.20"],
        ["==", "delivery"],
        ["engine.per_second", "100", "90", "0.90"],
        ["runs[0]", "4", "5", "1.25"],
        ["runs[1]", "0", "1", "nan"],
        ["memory:", "not", "in", str(new)],
        ["payroll:", "not", "in", str(old)],
    ]
