"""Multipart uploads, kept on disk until completed or aborted (they survive a restart).

``<root>/<upload id>/upload.json`` says whose upload it is (user, bucket, key, metadata);
each part is a file ``<part number>`` (replaced atomically when a part is sent again) with a
``<part number>.json`` beside it (its MD5 and size). Parts may arrive in any order and in
parallel. Completing reads the chosen parts in order to compute the content hash, then streams
them into the blob store as one object.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import xxhash

from hpcsnap.server.s3.errors import S3Error, no_such_upload

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAX_PARTS = 10_000
EXPIRY_SECONDS = 7 * 24 * 3600
"""Uploads neither completed nor aborted are removed after this long (as a lifecycle rule)."""
CHUNK = 1 << 20
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Upload:
    upload_id: str
    owner: int
    bucket: str
    key: str
    meta: dict[str, str]
    initiated_ns: int
    directory: Path


@dataclass(frozen=True)
class Part:
    number: int
    md5: str
    size: int
    mtime_ns: int
    path: Path


@dataclass(frozen=True)
class Assembled:
    """The object that completing an upload makes."""

    paths: list[Path]
    size: int
    digest: str
    md5: str
    etag: str


def check_part_number(raw: str | None) -> int:
    try:
        number = int(raw or "")
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PARTS:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=str(raw),
        )
    return number


class Uploads:
    """The multipart uploads in progress, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, owner: int, bucket: str, key: str, meta: dict[str, str]) -> Upload:
        self.expire()
        upload_id = secrets.token_hex(16)
        directory = self.root / upload_id
        directory.mkdir(parents=True, mode=0o700)
        upload = Upload(upload_id, owner, bucket, key, meta, time.time_ns(), directory)
        record = {
            "owner": owner,
            "bucket": bucket,
            "key": key,
            "meta": meta,
            "initiated_ns": upload.initiated_ns,
        }
        _write_json(directory / "upload.json", record)
        return upload

    def _load(self, upload_id: str) -> Upload | None:
        if not _UPLOAD_ID.fullmatch(upload_id):
            return None
        directory = self.root / upload_id
        try:
            record = json.loads((directory / "upload.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return Upload(
            upload_id,
            int(record["owner"]),
            str(record["bucket"]),
            str(record["key"]),
            dict(record.get("meta") or {}),
            int(record["initiated_ns"]),
            directory,
        )

    def get(self, upload_id: str, owner: int, bucket: str, key: str) -> Upload:
        """The upload, if it is this user's upload of this key (else ``NoSuchUpload``)."""
        upload = self._load(upload_id)
        if upload is None or (upload.owner, upload.bucket, upload.key) != (owner, bucket, key):
            raise no_such_upload(upload_id)
        return upload

    def add_part(self, upload: Upload, number: int, received: Path, md5: str, size: int) -> None:
        """Make the file ``received`` part ``number`` (replacing an earlier one)."""
        target = upload.directory / f"{number:05d}"
        try:
            os.replace(received, target)
        except FileNotFoundError:
            raise no_such_upload(upload.upload_id) from None
        with contextlib.suppress(FileNotFoundError):
            _write_json(upload.directory / f"{number:05d}.json", {"md5": md5, "size": size})

    def parts(self, upload: Upload) -> list[Part]:
        """The parts received so far, by part number."""
        out = []
        try:
            names = sorted(os.listdir(upload.directory))
        except FileNotFoundError:
            raise no_such_upload(upload.upload_id) from None
        for name in names:
            if not (len(name) == 5 and name.isdigit()):
                continue
            path = upload.directory / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            try:
                info = json.loads((upload.directory / f"{name}.json").read_text())
            except (FileNotFoundError, ValueError):
                info = {}
            md5 = info.get("md5") if info.get("size") == st.st_size else None
            out.append(Part(int(name), md5 or _md5_file(path), st.st_size, st.st_mtime_ns, path))
        return out

    def assemble(self, upload: Upload, wanted: Sequence[tuple[int, str]]) -> Assembled:
        """Check the parts a CompleteMultipartUpload lists and hash the object they make."""
        if not wanted:
            raise S3Error(
                "MalformedXML", "You must specify at least one part to complete an upload."
            )
        numbers = [n for n, _ in wanted]
        if numbers != sorted(set(numbers)):
            raise S3Error(
                "InvalidPartOrder",
                "The list of parts was not in ascending order. The parts list must be "
                "specified in order by part number.",
            )
        have = {p.number: p for p in self.parts(upload)}
        chosen = []
        for number, etag in wanted:
            part = have.get(number)
            if part is None or etag.strip().strip('"') != part.md5:
                raise S3Error(
                    "InvalidPart",
                    f"Part {number} was not uploaded, or its ETag {etag} does not match "
                    "what was received.",
                )
            chosen.append(part)
        xxh, md5, size = xxhash.xxh3_128(), hashlib.md5(usedforsecurity=False), 0
        for part in chosen:
            with open(part.path, "rb") as f:
                while chunk := f.read(CHUNK):
                    xxh.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
        md5s = b"".join(bytes.fromhex(p.md5) for p in chosen)
        etag = hashlib.md5(md5s, usedforsecurity=False).hexdigest() + f"-{len(chosen)}"
        return Assembled([p.path for p in chosen], size, xxh.hexdigest(), md5.hexdigest(), etag)

    def remove(self, upload: Upload) -> None:
        shutil.rmtree(upload.directory, ignore_errors=True)

    def of_bucket(self, owner: int, bucket: str) -> list[Upload]:
        """This user's uploads into ``bucket``, by key then initiation time."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.root):
                upload = self._load(name)
                if upload is not None and (upload.owner, upload.bucket) == (owner, bucket):
                    found.append(upload)
        return sorted(found, key=lambda u: (u.key, u.initiated_ns))

    def expire(self, max_age: float = EXPIRY_SECONDS) -> None:
        """Remove uploads started more than ``max_age`` seconds ago."""
        limit = time.time_ns() - int(max_age * 1e9)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.root):
                upload = self._load(name)
                if upload is not None and upload.initiated_ns < limit:
                    self.remove(upload)


class ConcatReader(io.RawIOBase):
    """The files of ``paths``, one after the other, as one stream."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._current: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._current is None:
                if not self._paths:
                    return 0
                self._current = open(self._paths.pop(0), "rb")  # noqa: SIM115
            n: int = self._current.readinto(view)
            if n:
                return n
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


def concat(paths: Sequence[Path]) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(ConcatReader(paths), CHUNK))


def _md5_file(path: Path) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
    return md5.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
