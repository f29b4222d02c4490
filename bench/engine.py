"""P1–P3: the snapshot engine (what the agent runs) against cp, rsync and find, same run."""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.timing import RECENTLY_DELETED_S, Sample, compare, measure, run, settle
from bench.tree import GiB, TreeSpec, churn, du, make_tree
from hpcsnap.agent.snapshots import ManifestStore
from hpcsnap.blobstore import ContentStore, LocalBackend
from hpcsnap.snapshot.capture import CaptureResult, capture
from hpcsnap.snapshot.filters import PathFilter
from hpcsnap.snapshot.manifest import Manifest


def snapshot(
    src: Path, store: ContentStore, parent: Manifest | None, manifests: ManifestStore | None = None
) -> CaptureResult:
    """What the agent does for one snapshot, minus HTTP: capture, store its manifest, flush."""
    result = capture(src, store, path_filter=PathFilter(), parent=parent)
    (manifests or ManifestStore(store)).save(result.manifest)
    store.flush()
    return result


@dataclass
class Row:
    id: str
    measure: str
    ours: str
    theirs: str
    ratio: float | None
    target: str
    ok: bool | None


def _size(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / (1 << 20):.1f} MiB"


def ratio(a: Sample, b: Sample) -> float:
    return a.median / b.median if b.median else float("inf")


def cp_then_sync(src: Path, dst: Path) -> None:
    run(["cp", "-a", str(src), str(dst)])
    run(["sync"])


def check_p1_space(work: Path, spec: TreeSpec, runs: int, *, tree_made: bool = False) -> None:
    """Exit with a clear message unless P1 has room under ``work``: 3 sides × ``runs`` copies
    kept until the end, plus the tree itself unless ``tree_made``. Checked once more before P1
    starts, and first of all by :mod:`bench.run`, so a bench short of space stops at once
    instead of after the measures before P1."""
    need = (3 * runs + (0 if tree_made else 1)) * spec.total_bytes * 1.1
    if shutil.disk_usage(work).free < need:
        raise SystemExit(
            f"P1 needs {need / GiB:.0f} GiB free under {work} (3 sides × {runs} runs kept "
            "until the end): use --work-dir elsewhere, fewer --runs or a smaller --gib"
        )


def p1_first_snapshot(
    work: Path, spec: TreeSpec, runs: int, cold: bool, settle_s: float = RECENTLY_DELETED_S
) -> list[Row]:
    """Each run of each side writes a new directory, and all are deleted only at the end: a
    run creating 20,000 files right after another run deleted as many would pay for ext4
    skipping the recently deleted inodes (see :func:`settle`), which is no part of either."""
    src = work / "p1-src"
    make_tree(src, spec)
    out = work / "p1-out"
    check_p1_space(work, spec, runs, tree_made=True)
    out.mkdir()
    settle(settle_s)
    written: dict[str, list[int]] = {}
    samples = compare(
        {
            "cp": lambda i: run(["cp", "-a", str(src), str(out / f"cp-{i}")]),
            "cp_sync": lambda i: cp_then_sync(src, out / f"cps-{i}"),
            "ours": lambda i: snapshot(
                src, ContentStore(LocalBackend(out / f"store-{i}"), "u1"), None
            ),
        },
        runs=runs,
        cold=cold,
        written=written,
        device_of=out,
    )
    shutil.rmtree(out)
    shutil.rmtree(src)
    settle(settle_s)
    ours, cp, cp_sync = samples["ours"], samples["cp"], samples["cp_sync"]
    mode = "cold" if cold else "warm"
    size = f"{spec.total_bytes / GiB:.1f} GiB / {spec.files:,} files"
    extra = []
    if set(written) == set(samples):
        # cp -a leaves its copy in the page cache: the disk write comes after its timing
        on_disk = {name: _size(statistics.median(w)) for name, w in written.items()}
        extra.append(
            Row(
                "P1w",
                f"written to the disk during each timed run ({mode}, median): "
                "`cp -a` / `cp -a; sync`",
                on_disk["ours"],
                f"{on_disk['cp']} / {on_disk['cp_sync']}",
                None,
                "(info)",
                None,
            )
        )
    return [
        Row(
            "P1",
            f"first snapshot, {size}, {mode} (incl. syncfs) vs `cp -a`",
            str(ours),
            str(cp),
            ratio(ours, cp),
            "≤ 1.1× cp",
            ratio(ours, cp) <= 1.1,
        ),
        Row(
            "P1s",
            f"same vs `cp -a; sync` (both durable), {mode}",
            str(ours),
            str(cp_sync),
            ratio(ours, cp_sync),
            "(info)",
            None,
        ),
        *extra,
    ]


def p2_unchanged(work: Path, spec: TreeSpec, runs: int, cold: bool) -> list[Row]:
    src, prev, new = work / "p2-src", work / "p2-prev", work / "p2-new"
    make_tree(src, spec)
    run(["cp", "-a", str(src), str(prev)])
    store = ContentStore(LocalBackend(work / "p2-store"), "u1")
    manifests = ManifestStore(store)
    parent = snapshot(src, store, None, manifests).manifest
    rows: list[Row] = []
    mode = "cold" if cold else "warm"
    sides: dict[str, Callable[[int], object]] = {
        "ours": lambda i: snapshot(src, store, parent, manifests),
        "find": lambda i: subprocess.run(
            ["find", str(src), "-printf", "%s %T@\n"], check=True, stdout=subprocess.DEVNULL
        ),
    }
    if shutil.which("rsync"):
        # each run a new complete directory of hard links, as rsnapshot makes
        new.mkdir()
        sides["rsync"] = lambda i: run(
            ["rsync", "-a", f"--link-dest={prev}", f"{src}/", f"{new}/{i}/"]
        )
    samples = compare(sides, runs=runs, cold=cold)
    ours, find = samples["ours"], samples["find"]
    if "rsync" in samples:
        rsync = samples["rsync"]
        rows.append(
            Row(
                "P2",
                f"unchanged snapshot ({spec.files:,} files, {mode}) vs `rsync -a --link-dest`",
                str(ours),
                str(rsync),
                ratio(ours, rsync),
                "≤ 0.25× rsync",
                ratio(ours, rsync) <= 0.25,
            )
        )
    else:
        rows.append(
            Row(
                "P2",
                "vs rsync: rsync not installed (bench/setup.sh installs it)",
                str(ours),
                "-",
                None,
                "≤ 0.25× rsync",
                None,
            )
        )
    rows.append(
        Row(
            "P2f",
            f"unchanged snapshot vs bare `find -printf` walk, {mode}",
            str(ours),
            str(find),
            ratio(ours, find),
            "≤ 2× find",
            ratio(ours, find) <= 2,
        )
    )
    for p in (src, prev, new, work / "p2-store"):
        shutil.rmtree(p, ignore_errors=True)
    return rows


def p3_storage(work: Path, spec: TreeSpec, snapshots: int, churn_fraction: float) -> list[Row]:
    src = work / "p3-src"
    paths = make_tree(src, spec)
    store_dir = work / "p3-store"
    store = ContentStore(LocalBackend(store_dir), "u1")
    manifests = ManifestStore(store)
    rng = random.Random(7)
    parent = None
    for i in range(snapshots):
        if i:
            churn(paths, churn_fraction, rng)
        parent = snapshot(src, store, parent, manifests).manifest
    stored = du(store_dir)
    full = du(src) * snapshots
    shutil.rmtree(src)
    shutil.rmtree(store_dir)
    limit = 1.25 * spec.total_bytes
    return [
        Row(
            "P3",
            f"bytes on disk, {snapshots} snapshots of {spec.total_bytes / GiB:.2f} GiB, "
            f"{churn_fraction:.0%} of files changing",
            f"{stored / GiB:.3f} GiB",
            f"{full / GiB:.2f} GiB (full copies)",
            stored / full,
            f"≤ {limit / GiB:.2f} GiB",
            stored <= limit,
        )
    ]


def restic_rows(work: Path, spec: TreeSpec, runs: int) -> list[Row]:
    """restic backup of the same tree: first and unchanged runs (information only)."""
    if not shutil.which("restic"):
        return [
            Row(
                "R",
                "restic: not installed (bench/setup.sh installs it)",
                "-",
                "-",
                None,
                "(info)",
                None,
            )
        ]
    src, repo = work / "r-src", work / "r-repo"
    make_tree(src, spec)
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo), "PATH": "/usr/bin:/bin"}

    def restic(*args: str) -> None:
        subprocess.run(
            ["restic", *args],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def fresh_repo() -> None:
        shutil.rmtree(repo, ignore_errors=True)
        restic("init")

    store_dir = work / "r-store"
    first = measure(lambda: restic("backup", str(src)), runs=runs, before=fresh_repo)
    ours_first = measure(
        lambda: snapshot(src, ContentStore(LocalBackend(store_dir), "u1"), None),
        runs=runs,
        before=lambda: shutil.rmtree(store_dir, ignore_errors=True),
    )
    again = measure(lambda: restic("backup", str(src)), runs=runs)
    store = ContentStore(LocalBackend(store_dir), "u1")
    manifests = ManifestStore(store)
    parent = snapshot(src, store, None, manifests).manifest
    ours_again = measure(lambda: snapshot(src, store, parent, manifests), runs=runs)
    shutil.rmtree(src)
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(store_dir, ignore_errors=True)
    return [
        Row(
            "R1",
            "first backup vs `restic backup` (warm)",
            str(ours_first),
            str(first),
            ratio(ours_first, first),
            "(info)",
            None,
        ),
        Row(
            "R2",
            "unchanged backup vs `restic backup` (warm)",
            str(ours_again),
            str(again),
            ratio(ours_again, again),
            "(info)",
            None,
        ),
    ]
