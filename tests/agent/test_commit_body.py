"""The commit bodies the agent encodes by hand are exactly the protocol's messages."""

from __future__ import annotations

import json

from hpcsnap.agent.protocol import ResultsCommit, SnapshotCommit
from hpcsnap.agent.snapshots import with_files
from hpcsnap.snapshot.manifest import Entry, Manifest


def entries(n: int) -> list[Entry]:
    files = [
        Entry(f"d{i % 7}/f{i}", "file", i, 10**18 + i, 10**18, i, 0o644, f"{i:032x}")
        for i in range(n)
    ]
    return [*files, Entry("link", "symlink", 4, 1, 1, 1, 0o777, None, "f0")]


def test_a_large_snapshot_commit_round_trips() -> None:
    manifest = Manifest(entries(10_000))  # more than one encoding chunk
    body = SnapshotCommit(files=[], manifest_digest="ab" * 16, warnings=["w"], files_total=3)
    sent = b"".join(with_files(body, manifest.values()))
    parsed = SnapshotCommit.model_validate(json.loads(sent))
    assert parsed.manifest_digest == "ab" * 16 and parsed.warnings == ["w"]
    assert len(parsed.files) == 10_000  # the symlink is not a bucket key
    assert parsed.files[4097].path == "d2/f4097" and parsed.files[4097].mtime_ns == 10**18 + 4097


def test_empty_results_commit() -> None:
    body = with_files(ResultsCommit(files=[]), [])
    assert ResultsCommit.model_validate(json.loads(b"".join(body))).files == []
