"""``hpcsnap logs -f``: output with state and snapshot events inline, until the task ends."""

from __future__ import annotations

import json
import re
import subprocess

from tests.cli.helpers import EXE, Cli

# 8 s: the manual snapshot, asked for by a second CLI process once it runs, ends before step 8
STEPS = "for i in $(seq 1 8); do echo step $i; echo $i > f$i.txt; sleep 1; done"
SUCCESS = re.compile(
    r"^-- snapshot (\S+): Success, (\d+) files?, [\d.]+ (?:B|KiB|MiB) \((\d+) read, (\d+) reused\)"
    r" in \d+\.\d\d s$"
)


def test_logs_follow_shows_snapshots_inline_and_ends_with_the_task(cli: Cli) -> None:
    uuid = cli.out("submit", "--snapshot-interval", "1", "--results", "cli-follow", STEPS)
    cli("wait", uuid, "--running")
    manual = cli.out("snapshot", uuid, "--label", "mid")
    # as on a terminal: output on stdout, event lines on stderr, both in one place
    proc = subprocess.run(
        [str(EXE), "logs", "-f", uuid[:8]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli.env,
        cwd=cli.cwd,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert steps == [f"step {i}" for i in range(1, 9)]
    states = [line for line in lines if line.startswith("-- state: ")]
    assert states == [
        "-- state: Submitted",
        "-- state: Submitted -> FullyDispatched",
        "-- state: FullyDispatched -> FullyExecuting",
        "-- state: FullyExecuting -> UploadingResults",
        "-- state: UploadingResults -> Success",
    ]
    assert lines[-1] == "-- task ended: Success (exit code 0)"

    snaps = {s["id"]: s for s in json.loads(cli.out("snapshots", uuid, "--json"))}
    successes = {m.group(1): (i, m) for i, line in enumerate(lines) if (m := SUCCESS.match(line))}
    mid = snaps[manual]
    name = mid["directory"].rstrip("/").rsplit("/", 1)[-1]
    assert name.endswith("_mid") and name in successes
    index, match = successes[name]
    assert (int(match.group(2)), int(match.group(3)), int(match.group(4))) == (
        mid["filesTotal"],
        mid["filesRead"],
        mid["filesReused"],
    )
    # interleaved: the manual snapshot, taken while it ran, shows before its last output line
    assert lines.index("-- state: FullyDispatched -> FullyExecuting") < index
    assert index < lines.index("step 8")
    assert len(successes) == sum(1 for s in snaps.values() if s["status"] == "Success")

    # redirected, stdout holds the output alone
    assert cli("logs", "-f", uuid).stdout == "".join(f"step {i}\n" for i in range(1, 9))

    only = cli("logs", "--events-only", uuid).stdout.splitlines()
    assert only == [line for line in lines if line.startswith("-- ")]

    records = [json.loads(line) for line in cli("logs", "-f", "--json", uuid).stdout.splitlines()]
    assert [r["id"] for r in records] == sorted({r["id"] for r in records})
    assert "".join(r["text"] for r in records if r["type"] == "log") == "".join(
        f"step {i}\n" for i in range(1, 9)
    )
    assert records[-1]["type"] == "end" and records[-1]["state"] == "Success"
    assert {r["snapshotId"] for r in records if r["type"] == "snapshot.success"} == {
        s["id"] for s in snaps.values() if s["status"] == "Success"
    }


def test_logs_follow_of_a_failed_task(cli: Cli) -> None:
    uuid = cli("submit", "--wait", "echo bad >&2; exit 3", rc=1).stdout.strip()
    proc = cli("logs", "-f", "--stderr", uuid)
    assert proc.stdout == "bad\n"
    assert "-> Failure: the command exited with code 3\n" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "-- task ended: Failure (exit code 3)"
