"""``python -m bench.run``: every measure of bench/README.md, printed as one table."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from bench import e2e, engine
from bench.engine import Row
from bench.timing import RECENTLY_DELETED_S, can_drop_caches
from bench.tree import GiB, MiB, TreeSpec


def machine() -> str:
    disk = shutil.disk_usage("/")
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"disk {disk.total / GiB:.0f} GiB ({disk.free / GiB:.0f} GiB free)"
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| id | measure | hpcsnap | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}×"
        met = {True: "yes", False: "**no**", None: "-"}[r.ok]
        lines.append(
            f"| {r.id} | {r.measure} | {r.ours} | {r.theirs} | {ratio} | {r.target} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and 1 run: a smoke test, numbers mean nothing",
    )
    parser.add_argument(
        "--only",
        default="P1,P2,P3,P4,P5,P8,R",
        help="comma-separated measures to run; also P4N (P4 without snapshots on either side)",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where trees are generated (same disk as the store)",
    )
    parser.add_argument("--gib", type=float, default=2.0, help="P1/P2 tree size")
    parser.add_argument("--files", type=int, default=20_000, help="P1/P2 file count")
    parser.add_argument("--p3-gib", type=float, default=1.0)
    parser.add_argument("--p4-mib", type=int, default=1024)
    parser.add_argument("--p4-work", type=int, default=900_000_000, help="about 30 s of work")
    parser.add_argument("--p8-files", type=int, default=100_000)
    parser.add_argument(
        "--p4-trace",
        type=Path,
        default=None,
        help="add each P4 run's CPU by second of its timed part to this file (JSON lines)",
    )
    parser.add_argument("--report", type=Path, default=Path("test-artifacts/bench-report.md"))
    args = parser.parse_args(argv)
    only = set(args.only.upper().split(","))
    if args.quick:
        args.runs, args.gib, args.files, args.p3_gib = 1, 0.01, 300, 0.005
        args.p4_mib, args.p4_work, args.p8_files = 8, 200_000, 500
    large = 2 if args.gib >= 1 else 1
    big = TreeSpec(
        int(args.gib * GiB),
        args.files,
        large_files=large,
        large_size=256 * MiB if args.gib >= 1 else int(args.gib * GiB) // 4,
    )
    mid = TreeSpec(
        int(args.p3_gib * GiB),
        max(200, args.files // 2),
        large_files=1,
        large_size=256 * MiB if args.p3_gib >= 1 else int(args.p3_gib * GiB) // 4,
    )
    modes = [False, True] if can_drop_caches() and not args.quick else [False]
    base = args.work_dir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    served: list[Row] = []  # measured first, shown after the engine's
    with tempfile.TemporaryDirectory(prefix="hpcsnap-bench-", dir=base) as tmp:
        work = Path(tmp)
        if "P1" in only:
            engine.check_p1_space(work, big, args.runs)
        if only & {"P4", "P4N", "P5", "P8"}:
            from tests.support import ServerProcess

            # first, before any measure deletes files, and ended tasks' working directories
            # are kept until the end: see bench/README.md, P4
            server = ServerProcess(work / "server", HPCSNAP_KEEP_WORKDIRS="1")
            server.start()
            try:
                api = server.user("bench")
                if "P5" in only:
                    served.append(e2e.p5_manual_latency(api, 20 if not args.quick else 3))
                if "P8" in only:
                    served.append(e2e.p8_agent_memory(api, args.p8_files))
                # P4N (no snapshots on either side) is P4's own noise: its row after P4's
                for name, interval in (("P4N", 0), ("P4", 5)):
                    if name in only:
                        served[:0] = e2e.p4_job_slowdown(
                            server,
                            api,
                            args.runs,
                            args.p4_mib,
                            args.p4_work,
                            settle_s=0 if args.quick else RECENTLY_DELETED_S,
                            interval=interval,
                            trace=args.p4_trace,
                        )
            finally:
                server.cleanup()
                # P4 keeps every task's working directory: gigabytes that P1 needs
                shutil.rmtree(work / "server", ignore_errors=True)
        if "P1" in only:
            for cold in modes:
                rows += engine.p1_first_snapshot(
                    work, big, args.runs, cold, settle_s=0 if args.quick else RECENTLY_DELETED_S
                )
        if "P2" in only:
            for cold in modes:
                rows += engine.p2_unchanged(work, big, args.runs, cold)
        if "P3" in only:
            rows += engine.p3_storage(work, mid, 20 if not args.quick else 3, 0.01)
        if "R" in only:
            rows += engine.restic_rows(work, mid, args.runs)
    rows += served
    report = (
        f"# hpcsnap benchmarks\n\nMachine: {machine()}\n"
        f"Runs per measure: {args.runs}; medians with (min–max).\n\n{table(rows)}\n"
    )
    print(report)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report)
    return 0 if all(r.ok is not False for r in rows) or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
