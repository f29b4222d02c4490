"""Diffs and archives over the API, on snapshots and results of real tasks."""

from __future__ import annotations

import io
import sqlite3
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.support import Api, ServerProcess

#: What the task writes, step by step (kept in step with COMMAND).
FIELD = "".join(f"{i}\n" for i in range(1, 2001)).encode()
COMMAND = (
    "mkdir -p out && printf 'one\\n' > a.txt && printf keep > same.txt && chmod 644 same.txt"
    " && seq 1 2000 > out/field.bin && ln -s a.txt link"
    " && hpcsnap job snapshot --label first > /dev/null"
    " && printf 'two, longer\\n' > a.txt && rm out/field.bin && printf new > b.txt"
    " && chmod 755 same.txt && ln -sfn b.txt link"
    " && hpcsnap job snapshot --label second > /dev/null"
    " && printf final > c.txt"
)
FINAL = {"a.txt": b"two, longer\n", "same.txt": b"keep", "b.txt": b"new", "c.txt": b"final"}


@pytest.fixture(scope="module")
def user(server: ServerProcess) -> Api:
    return server.user("differ")


@pytest.fixture(scope="module")
def done(user: Api) -> dict[str, Any]:
    """A finished task with two snapshots (``first``, ``second``) and results."""
    uuid = user.submit(COMMAND, name="Diff me", resultBucket="diff-results")
    task = user.wait(uuid)
    assert task["state"] == "Success", user.get(f"/tasks/{uuid}/stderr").text
    snaps = {s["label"]: s for s in user.ok("GET", f"/tasks/{uuid}/snapshots")}
    assert {s["status"] for s in snaps.values()} == {"Success"}
    return {"uuid": uuid, "first": snaps["first"]["id"], "second": snaps["second"]["id"]}


def paths(changes: list[dict[str, Any]]) -> list[str]:
    return [c["path"] for c in changes]


def test_diff_between_two_snapshots(user: Api, done: dict[str, Any]) -> None:
    uuid, first, second = done["uuid"], done["first"], done["second"]
    d = user.ok("GET", f"/tasks/{uuid}/snapshots/{second}/diff", params={"against": first})
    assert (d["from"], d["to"]) == (first, second)
    assert paths(d["added"]) == ["b.txt"]
    assert paths(d["removed"]) == ["out/field.bin"]
    assert paths(d["modified"]) == ["a.txt", "link"]
    a, link = d["modified"]
    assert (a["oldSize"], a["newSize"], a["kind"]) == (4, 12, "file")
    assert (link["kind"], link["target"]) == ("symlink", "b.txt")
    # a permission change alone is reported apart, not as a modification
    assert d["modeChanged"] == [{"path": "same.txt", "oldMode": 0o644, "newMode": 0o755}]
    assert d["unchanged"] == 1
    assert d["totals"] == {
        "added": 1,
        "removed": 1,
        "modified": 2,
        "modeChanged": 1,
        "unchanged": 1,
        "bytesAdded": 3,
        "bytesRemoved": len(FIELD),
        "bytesModifiedOld": 4,
        "bytesModifiedNew": 12,
    }
    # by default, against the previous successful snapshot; the first has none: all added
    assert user.ok("GET", f"/tasks/{uuid}/snapshots/{second}/diff") == d
    d = user.ok("GET", f"/tasks/{uuid}/snapshots/{first}/diff")
    assert d["from"] is None
    assert paths(d["added"]) == ["a.txt", "link", "out/field.bin", "same.txt"]
    assert d["totals"]["bytesAdded"] == 4 + 4 + len(FIELD)
    # the lists can be cut; the totals never are
    d = user.ok("GET", f"/tasks/{uuid}/snapshots/{first}/diff", params={"limit": 1})
    assert len(d["added"]) == 1 and d["truncated"] and d["totals"]["added"] == 4


def test_diff_between_a_snapshot_and_the_results(user: Api, done: dict[str, Any]) -> None:
    uuid, second = done["uuid"], done["second"]
    d = user.ok("GET", f"/tasks/{uuid}/results/diff", params={"against": second})
    assert (d["from"], d["to"]) == (second, "results")
    # results are bucket keys: the symlink is left out of the comparison, not "removed"
    assert paths(d["added"]) == ["c.txt"]
    assert d["removed"] == [] and d["modified"] == [] and d["modeChanged"] == []
    assert d["unchanged"] == 3 and d["totals"]["bytesAdded"] == 5
    back = user.ok("GET", f"/tasks/{uuid}/snapshots/{second}/diff", params={"against": "results"})
    assert (back["from"], back["to"]) == ("results", second)
    assert paths(back["removed"]) == ["c.txt"] and back["added"] == []
    assert back["totals"]["bytesRemoved"] == 5


def test_archives_hold_what_the_task_wrote(user: Api, done: dict[str, Any]) -> None:
    uuid, first = done["uuid"], done["first"]
    snap = user.ok("GET", f"/tasks/{uuid}/snapshot/{first}")
    top = snap["directory"].rstrip("/").rsplit("/", 1)[1]
    assert top.endswith("_first")
    expected = {"a.txt": b"one\n", "same.txt": b"keep", "out/field.bin": FIELD}

    resp = user.get(f"/tasks/{uuid}/snapshots/{first}/archive")  # tar.gz by default
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/gzip"
    assert f'filename="diff-me-{top}.tar.gz"' in resp.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
        files = {m.name: m for m in tar.getmembers()}
        assert sorted(files) == sorted(f"{top}/{p}" for p in [*expected, "link"])
        for path, data in expected.items():
            assert tar.extractfile(f"{top}/{path}").read() == data  # type: ignore[union-attr]
        assert files[f"{top}/link"].issym() and files[f"{top}/link"].linkname == "a.txt"
        assert files[f"{top}/same.txt"].mode == 0o644

    resp = user.get(f"/tasks/{uuid}/snapshots/{first}/archive", params={"format": "zip"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    assert f'filename="diff-me-{top}.zip"' in resp.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert zf.testzip() is None
        for path, data in expected.items():
            assert zf.read(f"{top}/{path}") == data
        assert zf.read(f"{top}/link") == b"a.txt"

    for fmt in ("tar.gz", "zip"):
        resp = user.get(f"/tasks/{uuid}/results/archive", params={"format": fmt})
        assert resp.status_code == 200
        assert f'filename="diff-me-results.{fmt}"' in resp.headers["content-disposition"]
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
                got = {n: zf.read(n) for n in zf.namelist()}
        else:
            with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
                got = {n: tar.extractfile(n).read() for n in tar.getnames()}  # type: ignore[union-attr]
        assert got == {f"diff-me-results/{p}": data for p, data in FINAL.items()}


def test_refusals(user: Api, server: ServerProcess, done: dict[str, Any]) -> None:
    uuid, first, second = done["uuid"], done["first"], done["second"]
    base = f"/tasks/{uuid}"
    # another user sees nothing: 404 as for a missing task
    other = server.user("not-the-differ")
    for url in (
        f"{base}/snapshots/{second}/diff",
        f"{base}/results/diff?against={first}",
        f"{base}/snapshots/{second}/archive",
        f"{base}/results/archive?format=zip",
    ):
        resp = other.get(url)
        assert resp.status_code == 404 and "not found" in resp.json()["message"], url
        assert user.get(url).status_code == 200, url
    assert user.get(f"{base}/snapshots/nope/diff").status_code == 404
    assert user.get(f"{base}/snapshots/{second}/diff?against=nope").status_code == 404
    resp = user.get(f"{base}/snapshots/{second}/archive", params={"format": "rar"})
    assert resp.status_code == 400 and "tar.gz" in resp.json()["message"]

    # a snapshot of another task of the same user: 400, of someone else's: 404
    mine = user.submit("echo x > x && hpcsnap job snapshot > /dev/null", resultBucket="diff-other")
    assert user.wait(mine)["state"] == "Success"
    [snap] = user.ok("GET", f"/tasks/{mine}/snapshots")
    resp = user.get(f"{base}/snapshots/{second}/diff", params={"against": snap["id"]})
    assert resp.status_code == 400 and f"task {mine}" in resp.json()["message"]
    assert user.get(f"{base}/snapshots/{snap['id']}/archive").status_code == 404
    theirs = other.submit("echo y > y && hpcsnap job snapshot > /dev/null")
    assert other.wait(theirs)["state"] == "Success"
    [snap] = other.ok("GET", f"/tasks/{theirs}/snapshots")
    resp = user.get(f"{base}/snapshots/{second}/diff", params={"against": snap["id"]})
    assert resp.status_code == 404

    # failed or deleted snapshots hold no files: 400 saying so
    with sqlite3.connect(Path(server.data_dir) / "hpcsnap.db") as db:
        db.execute("UPDATE snapshots SET status = 'Failure' WHERE task_uuid = ?", (mine,))
        [mine_snap] = [
            r[0] for r in db.execute("SELECT id FROM snapshots WHERE task_uuid = ?", (mine,))
        ]
    resp = user.get(f"/tasks/{mine}/snapshots/{mine_snap}/archive")
    assert resp.status_code == 400 and "Failure" in resp.json()["message"]
    with sqlite3.connect(Path(server.data_dir) / "hpcsnap.db") as db:
        db.execute(
            "UPDATE snapshots SET status = 'Success', deleted_at = '2026-01-02 03:04:05' "
            "WHERE id = ?",
            (mine_snap,),
        )
    resp = user.get(f"/tasks/{mine}/snapshots/{mine_snap}/diff")
    assert resp.status_code == 400 and "deleted" in resp.json()["message"]

    # results exist once the task has ended
    running = user.submit("sleep 60")
    user.wait(running, {"FullyExecuting"})
    try:
        resp = user.get(f"/tasks/{running}/results/archive")
        assert resp.status_code == 409 and "FullyExecuting" in resp.json()["message"]
    finally:
        user.ok("POST", f"/tasks/{running}/abort")


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_archive_memory_stays_bounded(user: Api, server: ServerProcess, tmp_path: Path) -> None:
    size = 96 << 20
    uuid = user.submit(
        f"head -c {size} /dev/urandom > big.bin", name="diff big", resultBucket="diff-big"
    )
    assert user.wait(uuid)["state"] == "Success"
    [big] = [f for f in user.ok("GET", "/buckets/diff-big/files") if f["key"] == "big.bin"]
    assert server.proc is not None
    before = _peak_rss(server.proc.pid)
    out = tmp_path / "results.zip"
    with user.stream("GET", f"/tasks/{uuid}/results/archive", params={"format": "zip"}) as resp:
        assert resp.status_code == 200
        with out.open("wb") as f:
            for chunk in resp.iter_bytes():
                f.write(chunk)
    growth = _peak_rss(server.proc.pid) - before
    assert growth < size // 4, f"the server's peak RSS grew by {growth >> 20} MiB"
    with zipfile.ZipFile(out) as zf, zf.open("diff-big-results/big.bin") as member:
        h = xxhash.xxh3_128()
        while chunk := member.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == big["hash"]
