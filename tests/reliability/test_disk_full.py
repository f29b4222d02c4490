"""Issue #10, item 8: resource limits during a snapshot.

- The blob store runs out of space (a 64 MiB tmpfs, the job writes 80 MB; later a filler file
  takes the rest): that snapshot is ``Failure`` saying "no space left on storage", the job keeps
  running, no temporary file is left behind, and the next snapshot succeeds once there is space
  again (the tmpfs remounted bigger; the filler deleted).
- The hard size limit is proven by
  ``tests/server/test_snapshots.py::test_limits_and_minimum_interval``: a snapshot over the
  limit fails saying so, the job goes on (it prints ``alive`` at its end), the next snapshot
  succeeds.
"""

from __future__ import annotations

import errno
import io
import time
from pathlib import Path
from typing import Any

import pytest
import xxhash

from hpcsnap.blobstore import BlobError, LocalBackend, StorageFull, TransientBlobError
from tests.reliability.helpers import (
    counter_gaps,
    job_dir,
    mount,
    settled,
    timed,
    tmp_files,
    tmpfs,
    verify_snapshot,
)
from tests.services import MEASUREMENTS
from tests.support import Api, ServerProcess, wait_for

#: Counts (one line per step) until a ``stop`` file appears; writes 80 MB once ``go`` appears.
JOB = (
    "echo one > small.txt; i=0; "
    "while [ ! -e stop ]; do i=$((i+1)); echo $i >> counter.txt; "
    "if [ -e go ] && [ ! -e big.bin ]; then "
    "head -c 80000000 /dev/urandom > big.part && mv big.part big.bin; fi; "
    "sleep 0.1; done"
)


def snapshot(api: Api, uuid: str, label: str) -> tuple[dict, float]:
    snap_id = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": label})["id"]
    return timed(api.wait_snapshot, uuid, snap_id, 60)


def count(job: Path) -> int:
    return len((job / "counter.txt").read_text().split())


def test_disk_full_fails_the_snapshot_job_goes_on_next_one_works(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "full")
    blobs = srv.data_dir / "blobs"
    with tmpfs(blobs, "64m"):
        srv.start()
        try:
            api = srv.user("full")
            uuid = api.submit(JOB, resultBucket="full")
            api.wait(uuid, {"FullyExecuting"})
            job = job_dir(srv.data_dir, uuid)
            wait_for(lambda: (job / "counter.txt").exists(), bool, 60, "the job to count")
            first, _ = snapshot(api, uuid, "before")
            assert first["status"] == "Success", first

            # the job writes more than the store can hold
            (job / "go").write_text("")
            wait_for(lambda: (job / "big.bin").exists(), bool, 60, "the job to write big.bin")
            full, took = snapshot(api, uuid, "full")
            assert full["status"] == "Failure", full
            assert "no space left on storage" in full["error"], full["error"]
            MEASUREMENTS["disk full: snapshot Failure after"] = f"{took:.1f} s"
            assert tmp_files(blobs) == [], "the failed snapshot left temporary files"
            steps = count(job)
            wait_for(lambda: count(job), lambda n: n > steps + 5, 20, "the job to go on")

            # space is back: the next snapshot holds everything
            mount("-o", "remount,size=256m", str(blobs))
            after, _ = snapshot(api, uuid, "after")
            assert after["status"] == "Success", after
            keys = api.keys("full", after["directory"])
            assert after["directory"] + "big.bin" in keys

            # full again, this time because of another file on the store's file system
            filler = blobs / "filler"
            with open(filler, "wb") as out:
                try:
                    while True:
                        out.write(b"\0" * (1 << 20))
                        out.flush()
                except OSError:
                    pass
            time.sleep(0.5)  # the counter changes: the next snapshot has new content
            filled, _ = snapshot(api, uuid, "filled")
            assert filled["status"] == "Failure", filled
            assert "no space left on storage" in filled["error"], filled["error"]
            filler.unlink()
            freed, _ = snapshot(api, uuid, "freed")
            assert freed["status"] == "Success", freed
            assert tmp_files(blobs) == []

            (job / "stop").write_text("")
            task = api.wait(uuid, timeout=60)
            assert task["state"] == "Success", task
            backend = LocalBackend(blobs)
            verified = {
                s["label"]: verify_snapshot(api, backend, s)
                for s in settled(api, uuid)
                if s["status"] == "Success"
            }
            assert set(verified) == {"before", "after", "freed"}
            # the results are complete: the job's whole count, and big.bin as snapshotted
            assert counter_gaps(api.download("full", "counter.txt").decode()) == []
            big = api.download("full", "big.bin")
            assert xxhash.xxh3_128_hexdigest(big) == verified["after"]["big.bin"].digest
        finally:
            srv.cleanup()


def test_local_store_full_or_read_only_is_a_store_error(tmp_path: Path) -> None:
    """What the snapshot engine relies on: a full or read-only store raises a ``BlobError``
    naming the store (so the capture fails as a whole) and leaves nothing behind, while an
    error reading the source stays an ``OSError`` (that file alone is left out)."""
    with tmpfs(tmp_path / "store", "1m") as root:
        backend = LocalBackend(root)
        with pytest.raises(StorageFull, match=f"no space left on storage {root}"):
            backend.put("ns/aa/big", io.BytesIO(b"x" * (2 << 20)))
        assert tmp_files(root) == [] and list(backend.list("")) == []

        class Broken(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                raise OSError(errno.EIO, "source unreadable")

        with pytest.raises(OSError, match="source unreadable") as caught:
            backend.put("ns/aa/src", io.BufferedReader(Broken()))
        assert not isinstance(caught.value, BlobError)
        backend.put("ns/aa/small", io.BytesIO(b"small"))
        mount("-o", "remount,ro", str(root))
        with pytest.raises(TransientBlobError, match="read-only"):
            backend.put("ns/aa/other", io.BytesIO(b"other"))
        with pytest.raises(TransientBlobError, match="read-only"):
            backend.delete("ns/aa/small")
        mount("-o", "remount,rw", str(root))
        backend.put("ns/aa/other", io.BytesIO(b"other"))
        assert sorted(backend.list("")) == ["ns/aa/other", "ns/aa/small"]
