"""Publishing keys into a bucket's index, on SQLite and PostgreSQL (the same statements)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import FileEntry
from hpcsnap.blobstore import ContentStore, LocalBackend
from hpcsnap.server import blobrefs
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.db import Bucket, Object, User
from hpcsnap.server.db.session import Database


def entry(path: str, digest: str, size: int = 1) -> FileEntry:
    return FileEntry(path=path, digest=digest, size=size, mtime_ns=7)


def user_and_bucket(session: Session, name: str = "u") -> tuple[User, Bucket]:
    user = User(name=name, email=f"{name}@example.org")
    session.add(user)
    session.flush()
    bucket = Bucket(owner_id=user.id, name="bucket")
    session.add(bucket)
    session.flush()
    return user, bucket


def test_publish_inserts_then_overwrites_in_place(db: Database) -> None:
    with db.session() as session:
        user, bucket = user_and_bucket(session)
        other = Bucket(owner_id=user.id, name="other")
        session.add(other)
        session.flush()
        bx.publish(session, other, "", [entry("a", "0" * 32)])
        bx.publish(session, bucket, "", [entry("a", "1" * 32), entry("d/b", "2" * 32)])
        session.commit()
        # A user's upload carried S3 metadata: overwriting the key drops it with the content.
        row = session.scalars(
            select(Object).where(Object.key == "a", Object.bucket_id == bucket.id)
        ).one()
        row.meta = {"content-type": "text/plain"}
        row.etag = "x-1"
        session.commit()
        n = bx.publish(
            session,
            bucket,
            "",
            [entry("a", "3" * 32, 5), entry("d/c", "4" * 32)],
            snapshot_id="s1",
        )
        session.commit()
        assert n == 2
    with db.session() as session:
        rows = sorted(
            (o.key, o.digest, o.size, o.snapshot_id, o.etag, o.meta)
            for o in session.scalars(select(Object).where(Object.bucket_id == bucket.id))
        )
        assert rows == [
            ("a", "3" * 32, 5, "s1", None, None),
            ("d/b", "2" * 32, 1, None, None, None),
            ("d/c", "4" * 32, 1, "s1", None, None),
        ]
        # The same key in another bucket is untouched.
        assert session.scalars(select(Object.digest).where(Object.bucket_id == other.id)).all() == [
            "0" * 32
        ]


def test_publish_refuses_unsafe_keys_before_writing(db: Database) -> None:
    with db.session() as session:
        _, bucket = user_and_bucket(session, "v")
        with pytest.raises(Exception, match="key"):
            bx.publish(session, bucket, "snap/", [entry("ok", "1" * 32), entry("../x", "2" * 32)])
        assert session.scalars(select(Object)).all() == []


class RemoteLike(ContentStore):
    """A store whose blobs are proven by the owner's keys first, as on a remote store, where
    each ``stat`` is a round trip (here a local directory, holding none of the blobs)."""

    @property
    def stats_cheaply(self) -> bool:
        return False


def test_a_commit_may_prove_its_parents_digests_in_one_query_with_the_same_answer(
    db: Database, tmp_path: Path
) -> None:
    """check_stored(likely_in=parent) must accept and refuse exactly what it does without."""
    store = RemoteLike(LocalBackend(tmp_path / "blobs"), "u1")  # holds none of them
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    with db.session() as session:
        user, bucket = user_and_bucket(session)
        bx.publish(session, bucket, "snap/1/", [entry("x", a), entry("y", b)], snapshot_id="s1")
        # another user's snapshot referencing c proves nothing for this user
        _, others = user_and_bucket(session, "v")
        bx.publish(session, others, "snap/2/", [entry("z", c)], snapshot_id="s2")
        session.commit()
        for likely_in in (None, "s1", "s2", "elsewhere"):
            blobrefs.check_stored(session, store, user.id, {a, b}, likely_in=likely_in)
            with pytest.raises(blobrefs.MissingContent) as caught:
                blobrefs.check_stored(session, store, user.id, {a, b, c}, likely_in=likely_in)
            assert caught.value.digests == [c]
            session.rollback()
        session.execute(delete(Object).where(Object.key == "snap/1/y"))  # b's only key
        for likely_in in (None, "s1"):
            with pytest.raises(blobrefs.MissingContent) as caught:
                blobrefs.check_stored(session, store, user.id, {a, b}, likely_in=likely_in)
            assert caught.value.digests == [b]


def test_on_a_local_store_a_commit_proves_its_digests_by_the_store_alone(
    db: Database, tmp_path: Path
) -> None:
    """Where a ``stat`` is a system call, the store answers for every digest: stored content
    no key references yet passes, and content a key references but the store lost is missing
    (the agent then stores it again), whatever ``likely_in`` says."""
    store = ContentStore(LocalBackend(tmp_path / "blobs"), "u1")
    assert store.stats_cheaply
    kept = store.put_stream(io.BytesIO(b"kept")).digest
    lost = store.put_stream(io.BytesIO(b"lost")).digest
    store.delete(lost)
    with db.session() as session:
        user, bucket = user_and_bucket(session)
        bx.publish(session, bucket, "snap/1/", [entry("x", lost)], snapshot_id="s1")
        session.commit()
        for likely_in in (None, "s1"):
            blobrefs.check_stored(session, store, user.id, {kept}, likely_in=likely_in)
            with pytest.raises(blobrefs.MissingContent) as caught:
                blobrefs.check_stored(session, store, user.id, {kept, lost}, likely_in=likely_in)
            assert caught.value.digests == [lost]
            session.rollback()


def listing(session: Session, bucket: Bucket, prefix: str) -> dict[str, tuple[str, int, str]]:
    return {
        o.key[len(prefix) :]: (o.digest, o.size, o.snapshot_id or "")
        for o in bx.list_objects(session, bucket, prefix)
    }


def test_a_snapshots_keys_are_copied_in_sql_exactly_as_published(db: Database) -> None:
    """A delta commit's unchanged part: the keys snapshot s1 published, under another
    directory (here longer, and in another bucket), tagged with the new snapshot; keys of s1
    deleted or overwritten since are not copied, nor are other keys of its directory."""
    with db.session() as session:
        user, bucket = user_and_bucket(session)
        published = [entry(f"d{i % 3}/f{i}", f"{i:032x}", size=i) for i in range(20)]
        bx.publish(session, bucket, "snapshots/T1/", published, snapshot_id="s1")
        bx.publish(session, bucket, "snapshots/T0/", [entry("f0", "9" * 32)], snapshot_id="s0")
        bx.publish(session, bucket, "snapshots/T1/", [entry("d1/f1", "8" * 32)])  # overwritten
        bx.put_object(session, bucket, "snapshots/T1/extra", digest="7" * 32, size=1, mtime_ns=1)
        session.execute(delete(Object).where(Object.key == "snapshots/T1/d2/f2"))
        other = Bucket(owner_id=user.id, name="other")
        session.add(other)
        session.flush()
        copied = bx.copy_snapshot_keys(
            session, bucket, "snapshots/T1/", "s1", other, "snapshots/T2_longer/", "s2"
        )
        assert copied == 18
        want = {f.path: (f.digest, f.size, "s2") for f in published}
        del want["d1/f1"], want["d2/f2"]
        assert listing(session, other, "snapshots/T2_longer/") == want
        assert len(listing(session, bucket, "snapshots/T1/")) == 20  # the source is untouched

        gone = bx.delete_snapshot_keys(
            session, other, "snapshots/T2_longer/", ["d0/f0", "d0/f3", "nope", "d1/f1"], "s2"
        )
        assert gone == 2  # "nope" and d1/f1 (not copied) were not there
        assert set(listing(session, other, "snapshots/T2_longer/")) == set(want) - {
            "d0/f0",
            "d0/f3",
        }


def test_copied_keys_are_checked_when_the_new_directory_is_longer(db: Database) -> None:
    with db.session() as session:
        _, bucket = user_and_bucket(session)
        long_path = "a/" * 507 + "ab"  # 1016 bytes: 1020 with s/1/, 1026 with s/2_label/
        bx.publish(session, bucket, "s/1/", [entry(long_path, "0" * 32)], snapshot_id="s1")
        with pytest.raises(bx.BadRequest, match="longer than 1024 bytes"):
            bx.copy_snapshot_keys(session, bucket, "s/1/", "s1", bucket, "s/2_label/", "s2")
        assert bx.copy_snapshot_keys(session, bucket, "s/1/", "s1", bucket, "s/2/", "s2") == 1
