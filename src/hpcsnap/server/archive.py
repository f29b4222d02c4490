"""A snapshot or a task's results as a ``.tar.gz`` or a ``.zip``, produced while it is sent:
nothing is built in memory or on disk.

Each member's content is read from its blob in 1 MiB chunks and its compressed bytes are
yielded as soon as there are some; memory stays bounded whatever the size of the files (what
grows with the number of members is the zip's central directory: about 100 bytes a file).

Symlinks: a tar holds them as symlinks; a zip holds them the Info-ZIP way (an entry whose
content is the target, marked as a symlink in its Unix mode), so ``unzip`` recreates the link
and tools that ignore Unix modes extract a small file holding the target.
"""

from __future__ import annotations

import datetime as dt
import logging
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)
BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 20
#: Archive formats: name -> (file name extension, media type).
FORMATS = {"tar.gz": (".tar.gz", "application/gzip"), "zip": (".zip", "application/zip")}
#: zlib's level: a balance of speed and size (about 50 MiB/s of incompressible data per core).
LEVEL = 6

Opener = Callable[[str], BinaryIO]


@dataclass(frozen=True)
class Member:
    """One file (or symlink: ``target`` set) of the archive: its name in it, where its content
    is, and its metadata."""

    name: str
    digest: str | None
    size: int
    mtime_ns: int
    mode: int = 0o644
    target: str | None = None


def _content(m: Member, open_blob: Opener) -> Iterator[bytes]:
    """The member's ``size`` bytes, in chunks of at most :data:`CHUNK`."""
    if m.size <= 0:
        return
    if m.digest is None:
        raise ValueError(f"{m.name}: a file without content digest")
    left = m.size
    with open_blob(m.digest) as src:
        while left > 0:
            chunk = src.read(min(CHUNK, left))
            if not chunk:
                # The stored blob is shorter than its index says: keep the archive readable.
                log.error("blob %s of %s is %d bytes short", m.digest, m.name, left)
                chunk = bytes(min(CHUNK, left))
            left -= len(chunk)
            yield chunk


def tar_gz(members: Iterable[Member], open_blob: Opener, *, level: int = LEVEL) -> Iterator[bytes]:
    """The bytes of a gzip'd POSIX (pax) tar of ``members``, in pieces."""
    gz = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    written = 0

    def put(data: bytes) -> Iterator[bytes]:
        nonlocal written
        written += len(data)
        out = gz.compress(data)
        if out:
            yield out

    for m in members:
        info = tarfile.TarInfo(m.name)
        info.mtime = m.mtime_ns // 1_000_000_000
        info.mode = m.mode & 0o7777
        if m.target is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = m.target
            info.size = 0
        else:
            info.type = tarfile.REGTYPE
            info.size = m.size
        yield from put(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if m.target is not None:
            continue
        for chunk in _content(m, open_blob):
            yield from put(chunk)
        if m.size % BLOCK:
            yield from put(bytes(BLOCK - m.size % BLOCK))
    yield from put(bytes(2 * BLOCK))
    if written % tarfile.RECORDSIZE:
        yield from put(bytes(tarfile.RECORDSIZE - written % tarfile.RECORDSIZE))
    yield gz.flush()


class _Pipe:
    """A write-only, non-seekable file whose content is taken out as it comes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _date_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    """A zip's date (local time as the archive has no zone: UTC), 1980 at the earliest."""
    when = dt.datetime.fromtimestamp(max(mtime_ns // 1_000_000_000, 315532800), dt.UTC)
    return (when.year, when.month, when.day, when.hour, when.minute, when.second)


def zip_stream(
    members: Iterable[Member], open_blob: Opener, *, level: int = LEVEL
) -> Iterator[bytes]:
    """The bytes of a zip (Zip64 entries, deflated; sizes after each entry's data, as a zip
    written to a stream must) of ``members``, in pieces."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for m in members:
            info = zipfile.ZipInfo(m.name, _date_time(m.mtime_ns))
            info.create_system = 3  # Unix: the mode below is meaningful
            if m.target is not None:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, m.target.encode("utf-8", "surrogateescape"))
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                info._compresslevel = level  # type: ignore[attr-defined]  # 3.11's name of it
                info.external_attr = (stat.S_IFREG | (m.mode & 0o7777)) << 16
                with zf.open(info, "w", force_zip64=True) as out:
                    for chunk in _content(m, open_blob):
                        out.write(chunk)
                        if data := pipe.take():
                            yield data
            if data := pipe.take():
                yield data
    yield pipe.take()
