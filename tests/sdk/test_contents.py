"""Diffs and archives through the SDK, on a real finished task."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

import hpcsnap
from tests.server.test_contents import COMMAND, FIELD, FINAL


@pytest.fixture(scope="module")
def task(conn: hpcsnap.Connection) -> hpcsnap.Task:
    t = conn.create_task("sdk diff", "docker-batch")
    t.constants["DOCKER_CMD"] = COMMAND
    t.results = conn.create_bucket("sdk-diff")
    t.submit()
    assert t.wait(60) and t.state == "Success", t.stderr()
    return t


def test_diffs(task: hpcsnap.Task) -> None:
    first, second = task.snapshots()
    d = first.diff(second)
    assert isinstance(d, hpcsnap.SnapshotDiff) and (d.old, d.new) == (first.id, second.id)
    assert [c.path for c in d.added] == ["b.txt"] and d.added[0].old_size is None
    assert [(c.path, c.old_size) for c in d.removed] == [("out/field.bin", len(FIELD))]
    a, link = d.modified
    assert (a.path, a.old_size, a.new_size, a.kind) == ("a.txt", 4, 12, "file")
    assert a.old_hash and a.new_hash and a.old_hash != a.new_hash
    assert (link.kind, link.target) == ("symlink", "b.txt")
    assert d.mode_changed == (hpcsnap.ModeChange("same.txt", 0o644, 0o755),)
    assert (d.bytes_added, d.bytes_removed, d.bytes_modified_old, d.bytes_modified_new) == (
        3,
        len(FIELD),
        4,
        12,
    )
    assert d.unchanged == 1 and not d.is_empty and not d.truncated
    assert first.diff(second.id, limit=0).truncated

    to_results = second.diff("results")
    assert (to_results.old, to_results.new) == (second.id, "results")
    assert [c.path for c in to_results.added] == ["c.txt"] and to_results.unchanged == 3
    back = task.diff("results", "latest")
    assert [c.path for c in back.removed] == ["c.txt"] and back.new == second.id
    assert task.diff(second, second.id).is_empty
    with pytest.raises(hpcsnap.MissingSnapshotError):
        task.diff("results", "0" * 8 + "-0000-0000-0000-" + "0" * 12)


def test_archives(task: hpcsnap.Task, tmp_path: Path) -> None:
    first = task.snapshots()[0]
    seen: list[int] = []
    path = first.download_archive(
        tmp_path / "first.tar.gz", progress=lambda d, t, w: seen.append(d)
    )
    assert path == tmp_path / "first.tar.gz" and seen and seen[-1] == path.stat().st_size
    top = first.directory.rstrip("/").rsplit("/", 1)[1]
    with tarfile.open(path, "r:gz") as tar:
        assert tar.extractfile(f"{top}/out/field.bin").read() == FIELD  # type: ignore[union-attr]
        assert tar.getmember(f"{top}/link").linkname == "a.txt"
    assert [p.name for p in tmp_path.iterdir()] == ["first.tar.gz"]  # no temporary file left

    buffer = io.BytesIO()
    assert task.download_results_archive(buffer, format="zip") is None
    with zipfile.ZipFile(buffer) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == {
            f"sdk-diff-results/{p}": data for p, data in FINAL.items()
        }
    task.download_results_archive(tmp_path / "results.zip")
    assert zipfile.is_zipfile(tmp_path / "results.zip")
    with pytest.raises(ValueError, match=r"name it \.tar\.gz or \.zip"):
        task.download_results_archive(tmp_path / "results.rar")
