"""A quick smoke run of the benchmark scripts (tiny sizes; timings are not checked here)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from bench.e2e import Timeline
from bench.timing import disk_written

from bench import engine, run


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


def test_bench_short_of_space_for_p1_stops_before_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P1 keeps 15 copies of its tree until the end: a bench without room for them says so at
    once, before building any tree or running the measures that come before P1 (P4 takes
    about 20 minutes)."""
    full = shutil.disk_usage(tmp_path)._replace(free=0)
    monkeypatch.setattr(engine.shutil, "disk_usage", lambda path: full)

    def no_tree(*args: object) -> None:
        raise AssertionError("a tree was built before the space was checked")

    monkeypatch.setattr(engine, "make_tree", no_tree)
    monkeypatch.setattr(run, "e2e", None)  # any served measure started would fail on this
    with pytest.raises(SystemExit, match=r"P1 needs \d+ GiB free"):
        run.main(["--only", "P1,P4", "--work-dir", str(tmp_path), "--runs", "1"])


def test_bench_served_measures_run(tmp_path: Path) -> None:
    """P4, P4n, P5 and P8 through a real server and agents, at tiny sizes: each prints its row,
    and P4 says how much CPU the job itself used (its work is fixed: the machine's speed), and
    what ran during the job's timed part, second by second with ``--p4-trace``."""
    report, trace = tmp_path / "report.md", tmp_path / "trace.jsonl"
    only = "P4,P4N,P5,P8"
    args = ["--quick", "--only", only, "--work-dir", str(tmp_path), "--report", str(report)]
    code = run.main([*args, "--p4-trace", str(trace)])
    assert code == 0
    text = report.read_text()
    for row in ("| P4 |", "| P4c |", "| P4n |", "| P5 |", "| P8 |"):
        assert row in text
    took = re.search(r"the job's own work took ([\d.]+) CPU-s, against ([\d.]+)\)", text)
    assert took is not None, text
    assert float(took[1]) > 0 and float(took[2]) > 0, "the job reports the CPU of its work"
    assert re.search(r"of which [\d.]+ \+ [\d.]+ against [\d.]+ \+ [\d.]+ in the job's timed", text)
    # one line per run: P4N's two sides, then P4's
    runs = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["side"] for r in runs] == ["none", "none", "none", "snapshots"]
    for r in runs:
        assert len(r["seconds"]) == math.ceil(r["elapsed"])
        # the job computes in its timed part: the machine was busy then (a start on another
        # clock than the samples' would fall outside them, and count nothing)
        machine = r["columns"].index("machine")
        assert r["timed"]["machine"] > 0
        assert sum(s[machine] for s in r["seconds"]) == pytest.approx(
            r["timed"]["machine"], abs=0.01
        )


def test_p4_timeline_counts_what_ran_during_the_timed_part() -> None:
    """CPU between two samples is spread evenly over them; before the first and after the
    last sample nothing is counted; the seconds of the timed part add up to all of it."""
    line = Timeline(
        samples=[(100.0, 0.0, 5.0, 0, 0), (101.0, 1.0, 5.0, 0, 0), (102.0, 3.0, 6.0, 0, 0)],
        start=100.5,
        elapsed=2.0,
        snapshots=[(100.0, 101.25, 42)],
    )
    assert line.at("agent", 100.5) == pytest.approx(0.5)
    assert line.at("agent", 101.5) == pytest.approx(2.0)
    assert line.at("agent", 99.0) == 0.0 and line.at("agent", 103.0) == 3.0
    assert line.timed("agent") == pytest.approx(2.5)  # 100.5 → 102.5: 0.5 + 2.0, then none
    assert line.timed("server") == pytest.approx(1.0)
    report = line.report("snapshots")
    assert report["seconds"] == [[1.5, 0.5, 0, 0], [1.0, 0.5, 0, 0]]
    assert report["snapshots"] == [[-0.5, 0.75, 42]]  # from the timed start; files read
    assert Timeline().timed("agent") is None
