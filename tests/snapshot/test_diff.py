"""Diffs of two trees: an example, then properties over random pairs of trees (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hpcsnap.snapshot import Diff, Item, Manifest, Record, diff
from tests.snapshot.test_manifest import file_entry, link_entry


def paths(changes: tuple[object, ...]) -> list[str]:
    return [c.path for c in changes]  # type: ignore[attr-defined]


def test_diff_of_two_manifests() -> None:
    old = Manifest(
        [
            file_entry("same"),
            file_entry("touched"),
            file_entry("chmod"),
            file_entry("content", digest="1" * 32, size=3),
            file_entry("gone", size=7),
            link_entry("retarget", "a"),
            file_entry("became-link"),
        ]
    )
    new = Manifest(
        [
            file_entry("same"),
            file_entry("touched", mtime_ns=5, ino=7),
            file_entry("chmod", mode=0o100755),
            file_entry("content", digest="2" * 32, size=30),
            link_entry("retarget", "b"),
            link_entry("became-link", "same"),
            file_entry("new", size=100),
        ]
    )
    d = diff(old, new)
    assert paths(d.added) == ["new"]
    assert paths(d.removed) == ["gone"]
    assert paths(d.modified) == ["became-link", "content", "retarget"]
    # a permission change alone is not a modification; an mtime change is not reported at all
    assert paths(d.mode_changed) == ["chmod"]
    assert d.unchanged == 3
    assert (d.bytes_added, d.bytes_removed) == (100, 7)
    # symlinks hold no content: "retarget" counts 0 on both sides, "became-link" 10 -> 0
    assert (d.bytes_modified_old, d.bytes_modified_new) == (3 + 10, 30)
    assert diff(new, new) == Diff(unchanged=len(new)) and diff(new, new).is_empty


def test_a_manifest_against_a_key_listing() -> None:
    """Results are bucket keys: no mode, no symlinks. Same content is the same."""
    manifest = Manifest([file_entry("a", mode=0o100755), file_entry("b", digest="9" * 32)])
    keys = {"a": Item("a", "0" * 32, 10), "b": Item("b", "8" * 32, 10), "c": Item("c", "7", 1)}
    d = diff(manifest, keys)
    assert paths(d.modified) == ["b"] and paths(d.added) == ["c"] and not d.mode_changed
    assert d.unchanged == 1


# -- properties ---------------------------------------------------------------------------------

records = st.one_of(
    st.builds(  # one content, one size
        lambda content, mode, mtime: ("file", *content, None, mode, mtime),
        st.sampled_from([("d1", 0), ("d2", 5), ("d3", 10**12)]),
        st.sampled_from([0o100644, 0o100755, None]),
        st.integers(0, 3),
    ),
    st.builds(
        lambda target: ("symlink", None, len(target), target, 0o120777, 0),
        st.sampled_from(["x", "y", "../z"]),
    ),
)
trees = st.dictionaries(st.text(alphabet="ab/é", min_size=1, max_size=4), records, max_size=12).map(
    lambda d: {
        p: Item(p, digest, size, mtime, kind, target, mode)
        for p, (kind, digest, size, target, mode, mtime) in d.items()
    }
)


@given(trees)
def test_a_tree_against_itself_is_empty(a: dict[str, Record]) -> None:
    d = diff(a, a)
    assert d.is_empty and not d.mode_changed and d.unchanged == len(a)
    assert d.bytes_added == d.bytes_removed == d.bytes_modified_old == d.bytes_modified_new == 0


@given(trees, trees)
def test_reversing_swaps_added_and_removed(a: dict[str, Record], b: dict[str, Record]) -> None:
    forth, back = diff(a, b), diff(b, a)
    assert paths(forth.added) == paths(back.removed)
    assert paths(forth.removed) == paths(back.added)
    assert paths(forth.modified) == paths(back.modified)
    assert paths(forth.mode_changed) == paths(back.mode_changed)
    assert [(c.old, c.new) for c in forth.modified] == [(c.new, c.old) for c in back.modified]
    assert (forth.bytes_added, forth.bytes_removed) == (back.bytes_removed, back.bytes_added)
    assert forth.bytes_modified_old == back.bytes_modified_new
    assert forth.unchanged == back.unchanged


@given(trees, trees)
def test_applying_the_diff_to_a_gives_b(a: dict[str, Record], b: dict[str, Record]) -> None:
    d = diff(a, b)
    result = dict(a)
    for c in d.removed:
        assert c.new is None and c.old is a[c.path]
        del result[c.path]
    for c in d.added + d.modified:
        assert c.new is b[c.path]
        result[c.path] = c.new
    assert result.keys() == b.keys()
    for p, r in result.items():  # what the diff leaves alone already has b's content
        assert (r.kind, r.digest, r.target) == (b[p].kind, b[p].digest, b[p].target)
    assert len(d.added) + len(d.modified) + d.unchanged == len(b)
    assert len(d.removed) + len(d.modified) + d.unchanged == len(a)


@given(trees, trees)
def test_totals_are_the_sums(a: dict[str, Record], b: dict[str, Record]) -> None:
    d = diff(a, b)

    def content(r: Record | None) -> int:
        return r.size if r is not None and r.kind == "file" else 0

    assert d.bytes_added == sum(content(b[c.path]) for c in d.added)
    assert d.bytes_removed == sum(content(a[c.path]) for c in d.removed)
    assert d.bytes_modified_old == sum(content(a[c.path]) for c in d.modified)
    assert d.bytes_modified_new == sum(content(b[c.path]) for c in d.modified)
    # bytes of b = bytes of a - removed - modified (old) + added + modified (new)
    total_a = sum(content(r) for r in a.values())
    total_b = sum(content(r) for r in b.values())
    unchanged_bytes = sum(
        content(b[p]) for p in b if p in a and p not in {c.path for c in d.modified}
    )
    assert total_b == unchanged_bytes + d.bytes_added + d.bytes_modified_new
    assert total_a == unchanged_bytes + d.bytes_removed + d.bytes_modified_old
    for changes in (d.added, d.removed, d.modified, d.mode_changed):
        assert paths(changes) == sorted(paths(changes))
