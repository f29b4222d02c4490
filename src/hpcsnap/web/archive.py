"""A snapshot as a ``.tar.gz``, produced while it is sent: nothing is built in memory or on disk.

Each member is a tar header, the blob's bytes read in 1 MiB chunks and padding, all going through
one gzip compressor whose output is yielded as soon as there is some.
"""

from __future__ import annotations

import logging
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)
BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One file of the archive: its name in it, and where its content is."""

    name: str
    digest: str
    size: int
    mtime_ns: int


def tar_gz(members: Iterable[Member], open_blob: Callable[[str], BinaryIO]) -> Iterator[bytes]:
    """The bytes of a gzip'd POSIX (pax) tar of ``members``, in pieces."""
    gz = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    written = 0

    def put(data: bytes) -> Iterator[bytes]:
        nonlocal written
        written += len(data)
        out = gz.compress(data)
        if out:
            yield out

    for m in members:
        info = tarfile.TarInfo(m.name)
        info.size = m.size
        info.mtime = m.mtime_ns // 1_000_000_000
        info.mode = 0o644
        info.type = tarfile.REGTYPE
        yield from put(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        left = m.size
        with open_blob(m.digest) as src:
            while left > 0:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    # The stored blob is shorter than its index says: keep the archive readable.
                    log.error("blob %s of %s is %d bytes short", m.digest, m.name, left)
                    chunk = bytes(min(CHUNK, left))
                left -= len(chunk)
                yield from put(chunk)
        if m.size % BLOCK:
            yield from put(bytes(BLOCK - m.size % BLOCK))
    yield from put(bytes(2 * BLOCK))
    if written % tarfile.RECORDSIZE:
        yield from put(bytes(tarfile.RECORDSIZE - written % tarfile.RECORDSIZE))
    yield gz.flush()
