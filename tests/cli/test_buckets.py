"""``hpcsnap bucket ...`` through the real entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cli.helpers import Cli


def test_bucket_round_trip(cli: Cli) -> None:
    case = cli.cwd / "case"
    (case / "0.1").mkdir(parents=True)
    (case / "0.1" / "T").write_text("field\n")
    (case / "log.run").write_text("t=1\n")
    (cli.cwd / "input.txt").write_text("a\nb\n")

    assert "bucket cli-in ready" in cli("bucket", "create", "cli-in").stderr
    put = cli("bucket", "put", "cli-in", "input.txt", "case", "--prefix", "run1/")
    assert put.stdout == "" and "uploaded 3 file(s) to bucket cli-in" in put.stderr
    assert "cli-in" in cli.out("bucket", "ls").splitlines()

    listing = json.loads(cli.out("bucket", "ls", "cli-in", "--json"))
    assert sorted(f["key"] for f in listing) == ["run1/0.1/T", "run1/input.txt", "run1/log.run"]
    assert all(set(f) >= {"key", "size", "hash"} for f in listing)
    table = cli.out("bucket", "ls", "cli-in", "--prefix", "run1/0")
    assert "run1/0.1/T" in table and "input.txt" not in table

    cli("bucket", "get", "cli-in", "run1/input.txt", "-o", "copy.txt")
    assert (cli.cwd / "copy.txt").read_text() == "a\nb\n"
    cli("bucket", "get", "cli-in", "--prefix", "run1/0.1/", "-o", "some")
    assert (cli.cwd / "some" / "run1" / "0.1" / "T").read_text() == "field\n"
    cli("bucket", "get", "cli-in", "-o", "all")
    assert sorted(str(p.relative_to(cli.cwd / "all")) for p in (cli.cwd / "all").rglob("*.*")) == [
        "run1/0.1",
        "run1/input.txt",
        "run1/log.run",
    ]

    cli("bucket", "rm", "cli-in", "run1/log.run")
    assert len(json.loads(cli.out("bucket", "ls", "cli-in", "--json"))) == 2
    refused = cli("bucket", "rm", "cli-in", rc=1)
    assert (
        refused.stderr
        == "hpcsnap: error: bucket cli-in holds 2 file(s); add --force to delete it with them\n"
    )
    cli("bucket", "rm", "cli-in", "--force")
    gone = cli("bucket", "ls", "cli-in", rc=1)
    assert gone.stderr == "hpcsnap: error: bucket 'cli-in' not found\n"


def test_progress_bar_on_an_interactive_terminal(cli: Cli) -> None:
    big = cli.cwd / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    plain = cli("bucket", "put", "cli-big", "big.bin")
    assert plain.stderr == "uploaded 1 file(s) to bucket cli-big\n"  # no bar for scripts
    tty = {"TTY_INTERACTIVE": "1", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    shown = cli("bucket", "put", "cli-big", "big.bin", env=tty)
    assert "upload to cli-big" in shown.stderr and "3.1/3.1 MB" in shown.stderr, shown.stderr
    got = cli("bucket", "get", "cli-big", "big.bin", "-o", "back.bin", env=tty)
    assert "download cli-big" in got.stderr and "3.1/3.1 MB" in got.stderr, got.stderr
    assert (cli.cwd / "back.bin").read_bytes() == big.read_bytes()


def test_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    bad = cli("bucket", "ls", env={"HPCSNAP_TOKEN": "hps_wrong"}, rc=1)
    assert bad.stdout == ""
    assert bad.stderr.startswith("hpcsnap: error: invalid or revoked token")
    assert bad.stderr.count("\n") == 1
    down = cli("--url", "http://127.0.0.1:9", "bucket", "ls", rc=1)
    assert down.stderr.startswith("hpcsnap: error: cannot reach the hpcsnap server")
    assert down.stderr.count("\n") == 1
    env = {"HPCSNAP_TOKEN": ""}
    missing = cli("bucket", "ls", env=env, rc=1)
    assert missing.stderr.startswith("hpcsnap: error: no API token")
    invalid = cli("bucket", "create", "Bad_Name", rc=1)
    assert "invalid bucket name 'Bad_Name'" in invalid.stderr
    usage = cli("bucket", "put", rc=2)
    assert "Missing argument" in usage.stderr
    # a config file works in place of the environment
    conf = tmp_path / "hpcsnap.ini"
    conf.write_text(
        f"[cluster]\nurl = {cli.env['HPCSNAP_URL']}\n[client]\ntoken = {cli.env['HPCSNAP_TOKEN']}\n"
    )
    no_env = {"HPCSNAP_URL": "", "HPCSNAP_TOKEN": ""}
    assert cli("--config", str(conf), "bucket", "ls", env=no_env).returncode == 0
    assert cli("bucket", "ls", env={**no_env, "HPCSNAP_CONFIG": str(conf)}).returncode == 0
