"""A hostile /job through a real task (issue #10, item 6): 100,000 small files, symlinks to
/etc and /, a symlink loop, a FIFO, a socket, non-UTF-8 and 255-byte names, and a file that
grows without pause. The snapshot finishes in bounded time, stores nothing from outside /job,
and the growing file is either flagged unstable or stored as it was at one instant.

The engine-level cases (devices, truncation and deletion mid-scan, paths over PATH_MAX...) are
in tests/snapshot/test_capture_hostile.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support import ServerProcess, wait_for

FILES = 100_000
GENERATOR = f"""\
import os, socket, sys, time
for i in range({FILES} // 1000):
    os.mkdir(f"many/{{i:03d}}") if os.path.isdir("many") else os.makedirs(f"many/{{i:03d}}")
    for j in range(1000):
        with open(f"many/{{i:03d}}/{{j}}", "w") as f:
            f.write(str(j))
for link, target in [("passwd", "/etc/passwd"), ("shadow", "/etc/shadow"), ("etc", "/etc"),
                     ("slash", "/"), ("loop", "loop"), ("up", "..")]:
    os.symlink(target, link)
os.mkfifo("fifo")
sock = socket.socket(socket.AF_UNIX)
sock.bind("sock")
with open(b"odd-\\xff\\xfe", "w") as f:
    f.write("odd")
with open("n" * 255, "w") as f:
    f.write("long")
with open("growing.log", "a") as f:
    n = 0
    while True:
        f.write(f"line {{n}}\\n")
        f.flush()
        n += 1
        if n == 1:
            print("ready", flush=True)  # every file is there, growing.log with a line
        if n % 200 == 0:
            time.sleep(0.001)
"""


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_hostile_job_is_snapshotted_safely_in_bounded_time(server: ServerProcess) -> None:
    api = server.user("hostile-job")
    api.ok("POST", "/buckets", json={"name": "gen"})
    api.upload("gen", "gen.py", GENERATOR.encode())
    uuid = api.submit(
        "python3 gen.py",
        advancedResourceBuckets=[{"bucketName": "gen"}],
        resultBucket="hostile-out",
    )
    wait_for(lambda: api.get(f"/tasks/{uuid}/stdout").text, lambda t: "ready" in t, 180, "the tree")
    start = time.monotonic()
    sid = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "hostile"})["id"]
    snap = api.wait_snapshot(uuid, sid, timeout=240)
    took = time.monotonic() - start
    api.ok("POST", f"/tasks/{uuid}/abort")
    assert snap["status"] == "Success", snap
    d = snap["directory"]
    unstable = any("growing.log" in w and "unstable" in w for w in snap["warnings"])
    # the manifest has every regular file and the 6 symlinks (recorded, not followed); only
    # regular files become keys; the FIFO and the socket are left out; gen.py is an input
    assert snap["filesTotal"] == FILES + 2 + 6 + (0 if unstable else 1), snap
    assert len(api.keys("hostile-out", d + "many/042/")) == 1000
    top = {k[len(d) :] for k in api.keys("hostile-out", d) if "/" not in k[len(d) :]}
    expected = {"odd-\\xff\\xfe", "n" * 255} | (set() if unstable else {"growing.log"})
    assert top == expected
    assert api.download("hostile-out", d + "n" * 255) == b"long"
    if not unstable:  # as the file was at one instant: whole lines, in order, from the first
        content = api.download("hostile-out", d + "growing.log").decode()
        lines = content.splitlines()
        assert content.endswith("\n") and lines == [f"line {i}" for i in range(len(lines))]
    # nothing from outside /job was stored, under any key or in the blob store
    passwd = Path("/etc/passwd").read_bytes()
    for blob in (server.data_dir / "blobs").rglob("*"):
        if blob.is_file() and blob.stat().st_size == len(passwd):
            assert blob.read_bytes() != passwd
    assert not any(re.match(r"root:.*:0:0:", line) for line in _small_blobs(server))
    print(f"hostile /job: {snap['filesTotal']} files snapshotted in {took:.1f} s")


def _small_blobs(server: ServerProcess) -> list[str]:
    lines: list[str] = []
    for blob in (server.data_dir / "blobs").rglob("*"):
        if blob.is_file() and blob.stat().st_size < 64 << 10:
            lines += blob.read_bytes().decode("utf-8", "replace").splitlines()[:5]
    return lines
