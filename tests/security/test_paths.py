"""Path normalisation, property-based (issue #10, item 4): bucket keys and prefixes accept
exactly the safe ones, no accepted key escapes its bucket's directory, normalisation is
idempotent, and restore refuses any path that is not plain."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcsnap.server.bucketindex import MAX_KEY, check_key, check_prefix
from hpcsnap.server.errors import BadRequest
from hpcsnap.snapshot.manifest import Entry
from hpcsnap.snapshot.restore import UnsafePath, _parts

#: Segments that matter, mixed with arbitrary text (NUL, backslashes, dots, unicode).
SEGMENT = st.one_of(
    st.sampled_from(["", ".", "..", "...", "a", "b.txt", ".hidden", "..x", "a\\..", "\x00", " "]),
    st.text(min_size=0, max_size=12),
)
KEY = st.lists(SEGMENT, min_size=1, max_size=8).map("/".join) | st.text(max_size=40)


def safe(key: str) -> bool:
    """The reference rule, stated independently of the code."""
    parts = key.split("/")
    return (
        key != ""
        and len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY
        and "\x00" not in key
        and not key.startswith("/")
        and all(p not in (".", "..") for p in parts)
        and all(p != "" for p in parts[:-1])
    )


def accepted(key: str) -> bool:
    try:
        check_key(key)
    except BadRequest:
        return False
    return True


@settings(max_examples=500)
@given(KEY)
def test_check_key_accepts_exactly_the_safe_keys(key: str) -> None:
    assert accepted(key) == safe(key)


@settings(max_examples=500)
@given(KEY)
def test_an_accepted_key_never_escapes_its_bucket(key: str) -> None:
    if accepted(key):
        joined = posixpath.normpath(posixpath.join("/bucket", key))
        assert joined.startswith("/bucket/") or (key.endswith("/") and joined == "/bucket")
        # as a local file name too (the SDK and the agent write keys below a directory)
        assert (Path("/bucket") / key).resolve().is_relative_to("/bucket")


@settings(max_examples=500)
@given(KEY)
def test_prefix_normalisation_is_idempotent_and_safe(prefix: str) -> None:
    try:
        once = check_prefix(prefix)
    except BadRequest:
        return
    assert check_prefix(once) == once
    assert once == "" or (once.endswith("/") and accepted(once + "x"))
    if once:
        assert accepted(once.rstrip("/"))


@settings(max_examples=300)
@given(st.lists(SEGMENT, min_size=1, max_size=6))
def test_restore_refuses_every_path_that_is_not_plain(segments: list[str]) -> None:
    raw = "/".join(segments).encode("utf-8", "surrogateescape")
    entry = Entry(
        path=raw.decode("utf-8", "replace"),
        kind="file",
        size=0,
        mtime_ns=0,
        ctime_ns=0,
        ino=0,
        mode=0o644,
        raw=raw,
    )
    parts = raw.split(b"/")
    plain = b"\x00" not in raw and all(p not in (b"", b".", b"..") for p in parts)
    if plain:
        assert _parts(entry) == parts
    else:
        with pytest.raises(UnsafePath):
            _parts(entry)
