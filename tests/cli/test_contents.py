"""``hpcsnap diff|archive`` on a real finished task with two snapshots and results."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.cli.helpers import EXE, Cli
from tests.server.test_contents import COMMAND, FIELD, FINAL


@pytest.fixture(scope="module")
def task(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    cli = Cli(module_env, tmp_path_factory.mktemp("submit"))
    uuid = cli.out("submit", "--name", "cli diff", "--results", "cli-diff", "--wait", COMMAND)
    return uuid


def test_diff_json_and_table(cli: Cli, task: str) -> None:
    d = json.loads(cli.out("diff", task, "first", "second", "--json"))
    assert [c["path"] for c in d["added"]] == ["b.txt"]
    assert [c["path"] for c in d["removed"]] == ["out/field.bin"]
    assert [c["path"] for c in d["modified"]] == ["a.txt", "link"]
    assert d["totals"]["bytesRemoved"] == len(FIELD)

    lines = cli.out("diff", task[:8], "first", "second").splitlines()
    rows = [line.split() for line in lines[2:-1]]  # header, rule, ..., totals
    assert rows == [
        ["modified", "a.txt", "4", "B", "12", "B"],
        ["added", "b.txt", "-", "3", "B"],
        ["modified", "link", "5", "B", "5", "B"],
        ["removed", "out/field.bin", "8.7", "KiB", "-"],
        ["mode", "same.txt", "0644", "0755"],
    ]
    assert lines[-1] == (
        f"{d['from'][:8]} -> {d['to'][:8]}: 1 added (+3 B), 1 removed (-8.7 KiB), "
        "2 modified (4 B -> 12 B), 1 with new permissions only, 1 unchanged"
    )

    # results on either side; ids, prefixes and 'latest' name snapshots too
    out = cli.out("diff", task, d["from"][:10], "results")
    assert out.splitlines()[-1].startswith(f"{d['from'][:8]} -> results: 2 added (+8 B)")
    back = json.loads(cli.out("diff", task, "results", "latest", "--json"))
    assert (back["from"], [c["path"] for c in back["removed"]]) == ("results", ["c.txt"])
    same = cli.out("diff", task, "second", "second")
    assert same == (
        f"{d['to'][:8]} -> {d['to'][:8]}: 0 added (+0 B), 0 removed (-0 B), "
        "0 modified (0 B -> 0 B), 4 unchanged"
    )
    bad = cli("diff", task, "first", "no-such-label", rc=1)
    assert "has no snapshot 'no-such-label'" in bad.stderr


def test_archives(cli: Cli, task: str) -> None:
    done = cli("archive", task, "results.zip")
    assert "wrote the results of task" in done.stderr
    with zipfile.ZipFile(cli.cwd / "results.zip") as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == {
            f"cli-diff-results/{p}": data for p, data in FINAL.items()
        }
    cli("archive", task, "-s", "first", "first.tgz")
    with tarfile.open(cli.cwd / "first.tgz", "r:gz") as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        assert top.endswith("_first")
        assert sorted(names) == [
            f"{top}/{p}" for p in ("a.txt", "link", "out/field.bin", "same.txt")
        ]
        assert tar.extractfile(f"{top}/out/field.bin").read() == FIELD  # type: ignore[union-attr]
    # '-': the archive on standard output
    piped = subprocess.run(
        [str(EXE), "archive", task, "-s", "second", "-", "--format", "zip"],
        capture_output=True, env=cli.env, check=True, timeout=60,
    ).stdout  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(piped)) as zf:
        assert zf.read(f"{zf.namelist()[0].split('/')[0]}/b.txt") == b"new"
    bad = cli("archive", task, "out.rar", rc=2)
    assert "name it .tar.gz, .tgz or .zip" in bad.stderr
    assert not Path(cli.cwd / "out.rar").exists()
