"""``hpcsnap submit|tasks|show|logs|wait|abort|snapshot|snapshots|periodic|download``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.cli.helpers import Cli
from tests.support import Api, wait_for

# A command in its own PID namespace is its init: without a trap it ignores the SIGTERM of an
# abort and only dies at the SIGKILL that follows seconds later.
WRITER = (
    "trap 'exit 143' TERM; "
    "mkdir -p processor0/1 1; echo p > processor0/1/U; echo u > 1/U; "
    "for i in $(seq 1 120); do echo t=$i >> log.run; echo step $i; sleep 0.25; done"
)


@pytest.fixture()
def running(cli: Cli) -> Iterator[str]:
    """A task that writes for 30 s; aborted at the end of the test."""
    uuid = cli.out("submit", "--name", "writer", "--results", "cli-writer", WRITER)
    cli("wait", uuid, "--output", "^step 1$")  # its files are there: snapshots see them
    yield uuid
    cli("abort", uuid, rc=None)


def test_submit_with_local_resources_wait_and_download(cli: Cli) -> None:
    (cli.cwd / "case").mkdir()
    (cli.cwd / "case" / "input.txt").write_text("a\nb\nc\n")
    done = cli(
        "submit", "-r", "case", "--results", "cli-out", "-e", "WHO=world", "--results-blacklist",
        r"\.tmp$", "--wait", "--download", "res",
        "wc -l < input.txt > count.txt; echo hello $WHO; touch junk.tmp",
    )  # fmt: skip
    uuid = done.stdout.strip()
    assert len(uuid) == 36
    assert "uploaded 1 file(s) from case to bucket wc-inputs-" in done.stderr
    assert f"task {uuid}: Success" in done.stderr
    assert sorted(p.name for p in (cli.cwd / "res").iterdir()) == ["count.txt"]
    assert (cli.cwd / "res" / "count.txt").read_text().strip() == "3"
    assert cli.out("logs", uuid) == "hello world"

    listed = json.loads(cli.out("tasks", "--json"))
    mine = next(t for t in listed if t["uuid"] == uuid)
    assert mine["state"] == "Success" and mine["resultsBlacklist"] == r"\.tmp$"
    assert uuid[:8] in cli.out("tasks", "--state", "Success")
    shown = cli.out("show", uuid[:8])  # a unique prefix is enough
    assert "uuid:" in shown and uuid in shown and "state:" in shown and "Success" in shown
    assert json.loads(cli.out("show", uuid, "--json"))["uuid"] == uuid
    cli("download", uuid, "again")
    assert (cli.cwd / "again" / "count.txt").is_file()


def test_failed_task_exit_code(cli: Cli) -> None:
    proc = cli("submit", "--wait", "echo bad >&2; exit 3", rc=1)
    uuid = proc.stdout.strip()
    assert f"task {uuid}: Failure" in proc.stderr
    assert cli("logs", "--stderr", uuid).stdout == "bad\n"
    assert cli("wait", uuid, rc=1).stderr.endswith(f"task {uuid}: Failure\n")
    assert json.loads(cli.out("show", uuid, "--json"))["exitCode"] == 3


def test_argv_command_and_follow(cli: Cli) -> None:
    uuid = cli.out("submit", "--", "sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done")
    assert json.loads(cli.out("show", uuid, "--json"))["constants"][0]["value"] == (
        "sh -c 'for i in 1 2 3; do echo line $i; sleep 0.3; done'"
    )
    assert cli.out("logs", "-f", uuid) == "line 1\nline 2\nline 3"
    assert json.loads(cli.out("show", uuid, "--json"))["state"] == "Success"


def test_wait_for_a_line_of_output(cli: Cli, running: str) -> None:
    done = cli("wait", running, "--output", r"^step [3-9]$", "--timeout", "60")
    assert done.stderr.endswith(f"task {running} printed: step 3\n")
    assert int(cli.out("logs", running).splitlines()[-1].split()[1]) >= 3
    late = cli("wait", running, "--output", "^never$", "--timeout", "0.5", rc=1)
    assert "printed no line matching '^never$' in 0.5 s" in late.stderr
    bad = cli("wait", running, "--output", "step [", rc=2)
    assert "is not a regular expression" in bad.stderr
    ended = cli.out("submit", "--wait", "echo only this")
    gone = cli("wait", ended, "--output", "^other$", rc=1)
    assert "ended (Success) without printing a line matching '^other$'" in gone.stderr


def test_snapshot_now_list_and_download(cli: Cli, running: str) -> None:
    uuid = running
    snap = cli("snapshot", uuid, "--label", "mid", "--wait")
    snap_id = snap.stdout.strip()
    assert len(snap_id) == 36
    assert f"snapshot {snap_id} Success:" in snap.stderr and "_mid/" in snap.stderr
    listed = json.loads(cli.out("snapshots", uuid, "--json"))
    assert [s["id"] for s in listed] == [snap_id] and listed[0]["label"] == "mid"
    table = cli.out("snapshots", uuid[:8])
    assert snap_id[:8] in table and "manual" in table and "_mid/" in table
    cli("download", uuid, "--snapshot", snap_id[:6], "by-prefix")
    assert (cli.cwd / "by-prefix" / "processor0" / "1" / "U").read_text() == "p\n"
    only = cli("snapshot", uuid, "--whitelist", "^1/", "--wait", "--json")
    assert json.loads(only.stdout)["filesTotal"] == 1


def test_periodic_while_running(cli: Cli, running: str) -> None:
    uuid = running
    api = Api(cli.env["HPCSNAP_URL"], cli.env["HPCSNAP_TOKEN"])
    note = cli("periodic", uuid, "1", "--blacklist", r"processor\d+").stderr
    assert note == f"task {uuid}: periodic snapshots every 1 s, blacklist processor\\d+\n"
    raw = json.loads(cli.out("show", uuid, "--json"))
    assert raw["snapshotInterval"] == 1 and raw["snapshotBlacklist"] == r"processor\d+"
    wait_for(
        lambda: api.ok("GET", f"/tasks/{uuid}/snapshots"),
        lambda snaps: any(s["kind"] == "periodic" and s["status"] == "Success" for s in snaps),
        30,
        "a periodic snapshot",
    )
    assert "periodic snapshots off" in cli("periodic", uuid, "0").stderr
    cli("download", uuid, "--snapshot", "latest", "latest")
    assert not (cli.cwd / "latest" / "processor0").exists()
    assert (cli.cwd / "latest" / "log.run").is_file()


def test_abort_and_not_running_errors(cli: Cli, running: str) -> None:
    uuid = running
    assert f"task {uuid}: Cancelled" in cli("abort", uuid, "--wait").stderr
    late = cli("snapshot", uuid, rc=1)
    assert late.stderr == (
        f"hpcsnap: error: task {uuid} is Cancelled: only a running task (FullyExecuting) "
        "can be snapshotted\n"
    )
    assert cli("abort", uuid, rc=1).stderr.startswith(f"hpcsnap: error: task {uuid} is already")
    unknown = cli("show", "ffffffff", rc=1)
    assert unknown.stderr == "hpcsnap: error: task ffffffff not found\n"
