"""ContentStore: addressing, deduplication, and no torn copy under a key."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import BinaryIO

import pytest
import xxhash

from hpcsnap.blobstore import (
    BlobNotFound,
    ContentChanged,
    ContentStore,
    LocalBackend,
    Stored,
    hash_file,
)
from hpcsnap.blobstore.content import CHUNK, _Prefixed, tap
from hpcsnap.blobstore.local import _Staged


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(LocalBackend(tmp_path / "store"), "user-1")


def xxh(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_hash_file(tmp_path: Path) -> None:
    data = b"x" * (3 * 1024 * 1024 + 5)
    assert hash_file(write(tmp_path / "f", data)) == (xxh(data), len(data))
    assert hash_file(write(tmp_path / "e", b"")) == (xxh(b""), 0)


def test_key_layout(store: ContentStore) -> None:
    digest = xxh(b"abc")
    assert store.key(digest) == f"user-1/{digest[:2]}/{digest}"


@pytest.mark.parametrize("namespace", ["", ".", "..", "a/b", "a b", "-x", "x" * 129, "é"])
def test_invalid_namespace(tmp_path: Path, namespace: str) -> None:
    with pytest.raises(ValueError, match="invalid namespace"):
        ContentStore(LocalBackend(tmp_path), namespace)


@pytest.mark.parametrize("digest", ["", "../" + "0" * 30, "A" * 32, "0" * 31, "0" * 33, "g" * 32])
def test_invalid_digest(store: ContentStore, digest: str) -> None:
    with pytest.raises(ValueError, match="invalid content digest"):
        store.has(digest)
    with pytest.raises(ValueError, match="invalid content digest"):
        store.open(digest)


def test_put_file_round_trip(store: ContentStore, tmp_path: Path) -> None:
    data = b"simulation output\n" * 100_000
    stored = store.put_file(write(tmp_path / "U", data))
    assert stored == Stored(xxh(data), len(data), written=True)
    assert store.has(stored.digest)
    with store.open(stored.digest) as f:
        assert f.read() == data
    assert list(store.digests()) == [stored.digest]
    (blob,) = store.blobs()
    assert (blob.digest, blob.size) == (stored.digest, len(data)) and blob.modified > 0


def test_same_content_is_written_once(store: ContentStore, tmp_path: Path) -> None:
    first = store.put_file(write(tmp_path / "a", b"same bytes"))
    second = store.put_file(write(tmp_path / "b", b"same bytes"))
    assert first.written and not second.written
    assert second == Stored(first.digest, len(b"same bytes"), written=False)
    assert list(store.backend.list()) == [store.key(first.digest)]


def test_known_digest_skips_reading(store: ContentStore, tmp_path: Path) -> None:
    path = write(tmp_path / "a", b"content")
    digest = store.put_file(path).digest
    opened: list[bytes] = []

    def opener(p: bytes) -> BinaryIO:
        opened.append(p)
        return open(p, "rb")

    assert store.put_file(path, digest=digest, opener=opener).written is False
    assert opened == []


class ChangingFile:
    """An opener whose file holds ``versions[i]`` at its i-th opening: a file that a running
    job rewrites between the hashing pass and the upload pass."""

    def __init__(self, *versions: bytes) -> None:
        self.versions = list(versions)
        self.opened = 0

    def __call__(self, path: bytes) -> BinaryIO:
        data = self.versions[min(self.opened, len(self.versions) - 1)]
        self.opened += 1
        return io.BytesIO(data)


class Unstaged:
    """A backend without the staging capability (as S3): the content store reads twice."""

    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> object:
        if name == "stage":
            raise AttributeError(name)
        return getattr(self._backend, name)


@pytest.fixture
def two_pass(tmp_path: Path) -> ContentStore:
    return ContentStore(Unstaged(LocalBackend(tmp_path / "store2")), "user-1")  # type: ignore[arg-type]


def test_one_read_on_a_staging_backend(store: ContentStore) -> None:
    opener = ChangingFile(b"step 1 results", b"step 2 results, longer")
    stored = store.put_file("job/log", opener=opener)
    assert opener.opened == 1
    assert stored == Stored(xxh(b"step 1 results"), 14, True)
    assert [stored.digest] == list(store.digests())


class Counting(LocalBackend):
    """A local backend that counts the temporary copies it writes."""

    staged = 0

    def stage(self, src: BinaryIO) -> _Staged:
        self.staged += 1
        return super().stage(src)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK])
def test_small_content_already_stored_is_not_written_again(tmp_path: Path, size: int) -> None:
    backend = Counting(tmp_path / "store")
    store = ContentStore(backend, "user-1")
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    first = store.put_file(write(tmp_path / "a", data))
    assert first == Stored(xxh(data), size, written=True) and backend.staged == 1
    again = store.put_file(write(tmp_path / "b", data))
    # hashed before anything is written: no temporary copy to write, then delete
    assert again == Stored(first.digest, size, written=False) and backend.staged == 1
    assert list(backend.list()) == [store.key(first.digest)]
    assert os.listdir(tmp_path / "store" / "tmp") == []


@pytest.mark.parametrize("size", [CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 4097, 5 * CHUNK + 3])
def test_large_content_is_staged_whole_in_one_read(tmp_path: Path, size: int) -> None:
    backend = Counting(tmp_path / "store")
    store = ContentStore(backend, "user-1")
    data = os.urandom(size)
    reads: list[int] = []

    def opener(p: bytes) -> BinaryIO:
        return tap(open(p, "rb", buffering=0), lambda chunk: reads.append(len(chunk)))

    stored = store.put_file(write(tmp_path / "big", data), opener=opener)
    assert stored == Stored(xxh(data), size, written=True)
    assert sum(reads) == size  # each byte read once
    with store.open(stored.digest) as f:
        assert f.read() == data
    assert store.put_file(tmp_path / "big").written is False
    assert backend.staged == 2 and os.listdir(tmp_path / "store" / "tmp") == []


def test_prefixed_reader_gives_its_chunks_then_the_rest() -> None:
    reader = _Prefixed((b"abc", b"de"), io.BytesIO(b"fgh"))
    assert [reader.read(2), reader.read(2), reader.read(5), reader.read(5), reader.read(1)] == [
        b"ab",
        b"c",
        b"de",
        b"fgh",
        b"",
    ]
    whole = _Prefixed((b"ab", b"c"), io.BytesIO(b"de"))
    assert whole.read() == b"abcde"
    buf = bytearray(4)
    assert _Prefixed((b"xyz",), io.BytesIO(b"")).readinto(buf) == 3 and buf[:3] == b"xyz"


def test_content_changed_between_passes_stores_nothing(two_pass: ContentStore) -> None:
    store = two_pass
    opener = ChangingFile(b"step 1 results", b"step 2 results, longer")
    with pytest.raises(ContentChanged):
        store.put_file("job/log", opener=opener)
    assert opener.opened == 2
    assert list(store.backend.list()) == []
    assert list(store.digests()) == []


def test_same_size_change_is_detected(two_pass: ContentStore) -> None:
    store = two_pass
    with pytest.raises(ContentChanged):
        store.put_file("f", opener=ChangingFile(b"aaaa", b"abaa"))
    assert list(store.backend.list()) == []


def test_wrong_given_digest_is_refused(store: ContentStore, tmp_path: Path) -> None:
    path = write(tmp_path / "f", b"real content")
    with pytest.raises(ContentChanged):
        store.put_file(path, digest=xxh(b"something else"))
    assert list(store.backend.list()) == []


def test_put_stream(store: ContentStore, tmp_path: Path) -> None:
    data = b"uploaded body" * 200_000
    spool = tmp_path / "spool"
    spool.mkdir()
    stored = store.put_stream(io.BytesIO(data), tmpdir=spool)
    assert stored == Stored(xxh(data), len(data), True, hashlib.md5(data).hexdigest())
    again = store.put_stream(io.BytesIO(data), tmpdir=spool)
    assert again == Stored(stored.digest, len(data), False, stored.md5)
    assert list(spool.iterdir()) == []
    with store.open(stored.digest) as f:
        assert f.read() == data


def test_delete_and_digests(store: ContentStore, tmp_path: Path) -> None:
    digests = {store.put_file(write(tmp_path / str(i), bytes([i]) * i)).digest for i in range(5)}
    other = ContentStore(store.backend, "user-2")
    other.put_stream(io.BytesIO(b"someone else's"))
    store.backend.put("user-1/zz/not-a-digest", io.BytesIO(b""))
    assert set(store.digests()) == digests
    victim = sorted(digests)[0]
    store.delete(victim)
    store.delete(victim)
    assert set(store.digests()) == digests - {victim}
    with pytest.raises(BlobNotFound):
        store.open(victim)
    store.flush()


def test_tap_sees_every_byte_and_the_end_once() -> None:
    seen: list[bytes] = []
    ends: list[int] = []
    src = io.BytesIO(b"abcdefgh")
    with tap(src, seen.append, lambda: ends.append(len(seen))) as reader:
        assert reader.read(3) == b"abc"
        buffer = bytearray(2)
        assert reader.readinto(buffer) == 2 and buffer == b"de"  # type: ignore[attr-defined]
        assert reader.read() == b"fgh"
        assert reader.read(5) == b""
    assert seen == [b"abc", b"de", b"fgh"]
    assert ends == [3], "on_eof runs once, when the end is reached"
    assert src.closed


class Watched(Unstaged):
    """As :class:`Unstaged`, described as a store of ``kind``; records the threads that stat."""

    def __init__(self, backend: LocalBackend, kind: str) -> None:
        super().__init__(backend)
        self.kind = kind
        self.threads: set[int] = set()

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind}

    def stat(self, key: str) -> int | None:
        self.threads.add(threading.get_ident())
        return self._backend.stat(key)


@pytest.mark.parametrize("count", [3, 100])
def test_stored_names_exactly_the_digests_present(tmp_path: Path, count: int) -> None:
    backend = LocalBackend(tmp_path / "store")
    present = [
        ContentStore(backend, "u").put_file(write(tmp_path / f"f{i}", b"%d" % i)).digest
        for i in range(count)
    ]
    absent = [xxh(b"never stored %d" % i) for i in range(count)]
    asked = [d for pair in zip(absent, present, strict=True) for d in pair]
    local, remote = Watched(backend, "local"), Watched(backend, "s3")
    for watched in (local, remote):
        assert ContentStore(watched, "u").stored(asked) == set(present)  # type: ignore[arg-type]
    # a local store is asked in the calling thread; a remote one from others when there are many
    here = threading.get_ident()
    assert local.threads == {here}
    assert remote.threads == {here} if count <= 16 else here not in remote.threads
