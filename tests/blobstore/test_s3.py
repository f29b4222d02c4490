"""What the S3 backend does beyond the conformance suite, against a real S3 server (rclone):
parallel multipart uploads in bounded memory, torn sources never stored, retries of transient
errors, resumed reads, and no request at all for files unchanged since the last snapshot."""

from __future__ import annotations

import io
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, ResponseStreamingError

from hpcsnap.blobstore import (
    BlobError,
    ContentChanged,
    ContentStore,
    RetryingBackend,
    TransientBlobError,
    hash_file,
    open_backend,
)
from hpcsnap.blobstore.s3 import MiB, S3Backend
from hpcsnap.snapshot.capture import capture
from hpcsnap.snapshot.filters import PathFilter
from tests.blobstore.test_conformance import Boom, PatternReader, pattern
from tests.services import MEASUREMENTS, S3Server


def make(server: S3Server, **kw: Any) -> S3Backend:
    desc = server.description(server.new_bucket())
    backend = S3Backend(
        bucket=desc["bucket"],
        endpoint=desc["endpoint"],
        access_key=desc["access_key"],
        secret_key=desc["secret_key"],
        **kw,
    )
    backend.ensure_bucket()
    return backend


def count_requests(backend: S3Backend) -> list[str]:
    """Names of the S3 operations ``backend`` sends from now on (each HTTP attempt)."""
    sent: list[str] = []

    def hook(request: Any, **_: Any) -> None:
        sent.append(f"{request.method} {request.url.split('?')[0].rsplit('/', 1)[-1]}")

    backend.client.meta.events.register("before-send.s3", hook)
    return sent


class ZeroReader(io.RawIOBase):
    """``size`` zero bytes, read straight into the caller's buffer (no copy of its own)."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._zero = open("/dev/zero", "rb", buffering=0)  # noqa: SIM115

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left)
        got = self._zero.readinto(memoryview(buffer)[:n]) if n else 0
        self._left -= got or 0
        return got or 0

    def close(self) -> None:
        self._zero.close()
        super().close()


@pytest.fixture()
def s3(s3_server: S3Server) -> Iterator[S3Backend]:
    yield make(s3_server)


def test_multipart_upload_runs_parts_in_parallel_in_bounded_memory(s3_server: S3Server) -> None:
    backend = make(s3_server, part_size=5 * MiB, concurrency=3)
    in_flight, peak, lock = [0], [0], threading.Lock()
    upload_part: Callable[..., Any] = backend.client.upload_part

    def counting(**kw: Any) -> Any:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            time.sleep(0.05)  # hold the slot long enough for parts to overlap
            return upload_part(**kw)
        finally:
            with lock:
                in_flight[0] -= 1

    backend.client.upload_part = counting
    size = 60 * MiB + 123
    tracemalloc.start()
    try:
        started = time.monotonic()
        with ZeroReader(size) as src:
            backend.put("big", src)  # type: ignore[arg-type]
        elapsed = time.monotonic() - started
        _, peak_memory = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    MEASUREMENTS["S3 multipart put of 60 MiB (5 MiB parts, 3 at a time)"] = f"{elapsed:.2f} s"
    assert backend.stat("big") == size
    assert 2 <= peak[0] <= 3
    # at most concurrency + 2 parts (25 MiB) in memory, never the whole 60 MiB
    assert peak_memory < 28 * MiB, f"{peak_memory / MiB:.1f} MiB"


def test_large_objects_round_trip_in_parts(s3_server: S3Server) -> None:
    backend = make(s3_server, part_size=5 * MiB, concurrency=2)
    size = 17 * MiB + 3
    backend.put("big", io.BufferedReader(PatternReader(size), 64 * 1024))
    with backend.open("big") as f:
        pos = 0
        while chunk := f.read(7 * MiB):
            assert chunk == pattern(pos, len(chunk))
            pos += len(chunk)
    assert pos == size


def test_a_source_failing_mid_upload_stores_nothing(s3_server: S3Server) -> None:
    backend = make(s3_server, part_size=5 * MiB, concurrency=2)

    class Failing(PatternReader):
        def readinto(self, buffer: Any) -> int:
            if self._pos > 12 * MiB:
                raise Boom("disk error")
            return super().readinto(buffer)

    with pytest.raises(Boom):
        backend.put("k", io.BufferedReader(Failing(40 * MiB)))
    assert backend.stat("k") is None
    assert backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("size", [100, 12 * MiB], ids=["single-put", "multipart"])
def test_a_file_changed_while_stored_is_never_stored(
    s3_server: S3Server, tmp_path: Path, size: int
) -> None:
    store = ContentStore(make(s3_server, part_size=5 * MiB), "user-1")
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    stale = tmp_path / "stale"
    stale.write_bytes(os.urandom(size))
    stale_digest, _ = hash_file(stale)  # the digest the scan saw, before the file changed
    with pytest.raises(ContentChanged):
        store.put_file(path, digest=stale_digest)
    assert not store.has(stale_digest)
    assert list(store.digests()) == []


def test_unchanged_files_cost_no_request(s3: S3Backend, tmp_path: Path) -> None:
    store = ContentStore(s3, "user-1")
    root = tmp_path / "job"
    root.mkdir()
    for i in range(20):
        (root / f"step-{i}.dat").write_bytes(os.urandom(1000 + i))
    every = PathFilter(None, None)
    first = capture(root, store, path_filter=every)
    assert first.files_read == 20
    sent = count_requests(s3)
    again = capture(root, store, path_filter=every, parent=first.manifest)
    assert again.files_reused == 20 and sent == []
    (root / "step-3.dat").write_bytes(b"changed")
    third = capture(root, store, path_filter=every, parent=again.manifest)
    assert third.files_reused == 19 and third.files_read == 1
    digest = third.manifest["step-3.dat"].digest
    assert sorted(sent) == [f"HEAD {digest}", f"PUT {digest}"]


def test_transient_errors_are_retried_with_backoff(s3_server: S3Server) -> None:
    desc = s3_server.description(s3_server.new_bucket())
    inner = S3Backend.from_description(desc)
    inner.ensure_bucket()
    inner.put("k", io.BytesIO(b"v"))
    inner = S3Backend(
        bucket=desc["bucket"],
        endpoint=desc["endpoint"],
        access_key=desc["access_key"],
        secret_key=desc["secret_key"],
        max_attempts=2,
    )
    failures = [3]

    def fail(request: Any, **_: Any) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise EndpointConnectionError(endpoint_url=request.url)

    inner.client.meta.events.register("before-send.s3", fail)
    # botocore tries twice and gives up: a transient error...
    with pytest.raises(TransientBlobError, match="Could not connect"):
        inner.stat("k")
    # ...which the wrapper retries, with backoff, until it passes
    failures[0] = 3
    backend = RetryingBackend(inner, base_delay=0.05)
    assert backend.stat("k") == 1
    assert failures[0] == 0


def test_a_broken_read_resumes_where_it_stopped(s3: S3Backend) -> None:
    data = os.urandom(3 * MiB + 5)
    s3.put("k", io.BytesIO(data))
    sent = count_requests(s3)
    with s3.open("k") as f:
        head = f.read(MiB)
        raw: Any = f.raw  # type: ignore[attr-defined]

        class Broken:
            def read(self, n: int) -> bytes:
                raise ResponseStreamingError(error="connection reset")

            def close(self) -> None:
                pass

        raw._body = Broken()
        rest = f.read()
    assert head + rest == data
    assert sent == ["GET k", "GET k"]  # the first read, then one ranged read


def test_bad_credentials_are_refused_with_a_hint(s3_server: S3Server) -> None:
    desc = {**s3_server.description(s3_server.new_bucket()), "secret_key": "wrong"}
    backend = open_backend(desc)
    with pytest.raises(BlobError, match=r"403.*check the S3 credentials") as info:
        backend.stat("k")
    assert not isinstance(info.value, TransientBlobError)
    with pytest.raises(BlobError, match=r"SignatureDoesNotMatch.*\(check HPCSNAP_S3_SECRET_KEY"):
        backend.open("k")
    assert "wrong" not in repr(backend)
