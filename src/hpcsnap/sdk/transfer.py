"""Streaming uploads and downloads of bucket keys, verified, with progress.

Nothing is held whole in memory: files go up and come down in 1 MiB chunks. An upload is
checked against the MD5 the server computed; a download is written to a temporary file next to
its destination, checked (size, and MD5 when the server knows it), then renamed: a file that is
there is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hpcsnap.sdk import _http
from hpcsnap.sdk.errors import HpcsnapError, TransferError
from hpcsnap.sdk.progress import ProgressHook, report

CHUNK = 1 << 20


@dataclass
class Meter:
    """Adds up bytes of several transfers into one progress hook."""

    hook: ProgressHook | None
    total: int | None
    done: int = 0

    def add(self, amount: int, description: str) -> None:
        self.done += amount
        report(self.hook, self.done, self.total, description)


def local_path(root: Path, relative: str) -> Path:
    """``root / relative`` for a bucket key, refusing anything that would land outside root."""
    parts = relative.split("/")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # "dir/": a directory key
    if any(p in ("", ".", "..") or "\x00" in p for p in parts):
        raise TransferError(f"refusing to write key {relative!r}: not a plain relative path")
    return root.joinpath(*parts)


def upload(
    http: _http.Http, bucket: str, key: str, source: Path, meter: Meter
) -> dict[str, object]:
    """Stream ``source`` to ``bucket/key``; return the server's record of it."""
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        f = source.open("rb")
    except OSError as exc:
        raise TransferError(f"cannot read {source}: {exc.strerror}") from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        sent = 0

        def chunks() -> Iterator[bytes]:
            nonlocal sent
            while sent < size:
                chunk = f.read(min(CHUNK, size - sent))
                if not chunk:
                    break
                md5.update(chunk)
                sent += len(chunk)
                meter.add(len(chunk), key)
                yield chunk

        try:
            record = http.json(
                "PUT",
                _http.path("buckets", bucket, "files", key),
                content=chunks(),
                headers={
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                },
            )
        except (httpx.HTTPError, HpcsnapError, OSError) as exc:
            if sent < size:
                raise TransferError(
                    f"upload of {source} to {bucket}/{key} stopped after {sent} of {size} "
                    f"bytes (did the file shrink while it was read?): {exc}"
                ) from exc
            if isinstance(exc, HpcsnapError):
                raise
            raise TransferError(f"upload of {source} to {bucket}/{key} failed: {exc}") from exc
    record = dict(record or {})
    if record.get("size") != size or (record.get("md5") and record["md5"] != md5.hexdigest()):
        raise TransferError(
            f"upload of {source} to {bucket}/{key} arrived altered (sent {size} bytes, md5 "
            f"{md5.hexdigest()}; the server stored {record.get('size')} bytes, md5 "
            f"{record.get('md5')}): upload it again"
        )
    return record


def download(
    http: _http.Http,
    bucket: str,
    key: str,
    dest: Path,
    meter: Meter,
    *,
    md5: str | None = None,
    mtime: float | None = None,
) -> Path:
    """Stream ``bucket/key`` into ``dest`` (atomically: a temporary file renamed at the end)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:64]}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    got = 0
    try:
        with (
            os.fdopen(fd, "wb") as out,
            http.stream(_http.path("buckets", bucket, "files", key)) as resp,
        ):
            expected = resp.headers.get("Content-Length")
            for chunk in resp.iter_bytes():
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                meter.add(len(chunk), key)
        if expected is not None and int(expected) != got:
            raise TransferError(f"download of {bucket}/{key}: got {got} of {expected} bytes")
        if md5 and digest.hexdigest() != md5:
            raise TransferError(
                f"download of {bucket}/{key} is corrupted (md5 {digest.hexdigest()}, expected "
                f"{md5}): download it again"
            )
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def copy(source: Path, dest: Path, *, mtime: float | None = None) -> Path:
    """A local copy of an already downloaded file (same content elsewhere in the bucket)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:64]}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(source, tmp)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
