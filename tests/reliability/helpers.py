"""What the reliability suites share: verifying a snapshot against its manifest byte for byte,
settling every snapshot of a task, a file system of its own for the blob store (tmpfs, root
only), and an S3 server that can be stopped and started again on the same port and data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from hpcsnap.blobstore import Backend
from hpcsnap.snapshot.manifest import Manifest
from tests import services
from tests.support import Api, ServerProcess, wait_for

#: Snapshot states that are still open (no verdict yet).
OPEN = {"Triggered", "InProgress"}

#: Outage length of the storage fault tests, in seconds: short in ``make test``; the issue's
#: 30 s variant runs with ``HPCSNAP_TEST_OUTAGE=30``.
OUTAGE = float(os.environ.get("HPCSNAP_TEST_OUTAGE", "6"))


def user(srv: ServerProcess, name: str) -> Api:
    """A new user of ``srv``, created in the server's own database (PostgreSQL included)."""
    return srv.user(name)


def snapshots(api: Api, uuid: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", f"/tasks/{uuid}/snapshots"))


class Verifier:
    """Checks ``Success`` snapshots against their manifests, byte for byte (see :meth:`check`),
    reading blobs straight from the blob store ``backend``."""

    def __init__(self, api: Api, backend: Backend) -> None:
        self.api = api
        self.backend = backend
        self.namespace: str | None = None
        self._good: set[str] = set()

    def _key(self, digest: str) -> str:
        if self.namespace is None:  # the user's namespace: where the first manifest is
            found = [k for k in self.backend.list("") if k.endswith("/" + digest)]
            assert found, f"blob {digest} is missing from the blob store"
            self.namespace = found[0].split("/", 1)[0]
        return f"{self.namespace}/{digest[:2]}/{digest}"

    def blob(self, digest: str) -> bytes:
        with self.backend.open(self._key(digest)) as src:
            data = src.read()
        assert isinstance(data, bytes)
        return data

    def check(self, snap: dict[str, Any]) -> Manifest:
        """Every file of the manifest is a key under the snapshot's directory with the
        manifest's digest and size, the directory holds nothing else, and the blob store holds
        content that hashes to that digest, of that size."""
        assert snap["status"] == "Success", snap
        manifest = Manifest.from_bytes(self.blob(snap["manifestDigest"]))
        bucket, directory = snap["snapshotConfig"]["bucket"], snap["directory"]
        files = {e.path: e for e in manifest.values() if e.kind == "file"}
        listed = {
            o["key"][len(directory) :]: o
            for o in self.api.ok("GET", f"/buckets/{bucket}/files", params={"prefix": directory})
        }
        assert set(listed) == set(files), f"snapshot {snap['id']}: keys != its manifest"
        for path, entry in files.items():
            assert entry.digest is not None
            assert (listed[path]["hash"], listed[path]["size"]) == (entry.digest, entry.size)
            if entry.digest not in self._good:
                data = self.blob(entry.digest)
                assert len(data) == entry.size, f"{path}: stored size != manifest"
                assert xxhash.xxh3_128_hexdigest(data) == entry.digest, f"{path}: torn content"
                self._good.add(entry.digest)
        assert snap["filesTotal"] == len(manifest)
        return manifest


def verify_snapshot(api: Api, backend: Backend, snap: dict[str, Any]) -> Manifest:
    """:meth:`Verifier.check` of one snapshot."""
    return Verifier(api, backend).check(snap)


def settled(api: Api, uuid: str) -> list[dict[str, Any]]:
    """Every snapshot of a finished task; none may still be open."""
    snaps = snapshots(api, uuid)
    still_open = [s for s in snaps if s["status"] in OPEN]
    assert not still_open, f"snapshots still open after the task ended: {still_open}"
    return snaps


def job_dir(data_dir: Path, uuid: str) -> Path:
    """The task's ``/job`` as the host sees it (local executor)."""
    return data_dir / "work" / uuid / "job"


def counter_gaps(text: str) -> list[int]:
    """Numbers missing from a file of consecutive integers, one a line, from 1."""
    seen = [int(line) for line in text.split()]
    assert seen, "the counter file is empty"
    return sorted(set(range(1, seen[-1] + 1)) - set(seen))


# -- a file system of its own (root only) -------------------------------------------------


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {what}")


def mount(*argv: str) -> None:
    proc = subprocess.run(["mount", *argv], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"mount {' '.join(argv)}: {proc.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (created), always unmounted at the end."""
    need_root("mounting a tmpfs for the blob store")
    path.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "hpcsnap-test", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def tmp_files(blob_dir: Path) -> list[str]:
    """Temporary files the local blob store left behind."""
    tmp = blob_dir / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


# -- an S3 server that can go away and come back -----------------------------------------


class RestartableS3(services.S3Server):
    """``rclone serve s3`` on a fixed port, which :meth:`down` stops (``kill -9``) and
    :meth:`up` starts again on the same port and data directory."""

    def __init__(self) -> None:
        super().__init__()
        self.port = services.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        (self.root / "data").mkdir()

    def start(self) -> None:
        self.up()

    def up(self) -> None:
        log = self.root / "rclone.log"
        env = {**os.environ, "RCLONE_AUTH_KEY": f'"{self.access_key},{self.secret_key}"'}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.exe, "serve", "s3", "--config", "", "--addr", f"127.0.0.1:{self.port}",
                    "--dir-cache-time", "1s", str(self.root / "data"),
                ],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"rclone exited: {(self.root / 'rclone.log').read_text()}")
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            return False

        wait_for(lambda: listening(), bool, 20, f"rclone serve s3 on port {self.port}")

    def down(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def freeze(self) -> None:
        """The server stops answering (``SIGSTOP``): connections open, requests hang."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        self.down()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def restartable_s3() -> Iterator[RestartableS3]:
    try:
        s3 = RestartableS3()
    except services.Unavailable as exc:
        pytest.skip(f"S3 unavailable: {exc}")
    s3.up()
    try:
        yield s3
    finally:
        s3.stop()


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    """``fn(*args, **kw)`` and the seconds it took."""
    started = time.monotonic()
    out = fn(*args, **kw)
    return out, time.monotonic() - started
