"""A quick smoke run of the benchmark scripts (tiny sizes; timings are not checked here)."""

from __future__ import annotations

from pathlib import Path

from bench.timing import disk_written

from bench import run


def test_bench_engine_measures_run(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report.md"
    code = run.main(
        ["--quick", "--only", "P1,P2,P3", "--work-dir", str(tmp_path), "--report", str(report)]
    )
    assert code == 0
    text = report.read_text()
    rows = ["| P1 |", "| P2f |", "| P3 |"]
    if disk_written(tmp_path) is not None:
        rows.append("| P1w |")  # bytes each side wrote to the disk while it was timed
    for row in rows:
        assert row in text
    assert "| P3 |" in capsys.readouterr().out
