"""The seed's SDK snippets, exactly as the product description prints them, adapted only in
the import (``import hpcsnap as qarnot``) and the connection (token and URL), run against a
real running task."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import hpcsnap
from tests.support import ServerProcess

Start = Callable[..., hpcsnap.Task]

# Copied from seed/hpc-snapshots.txt ("With the python SDK: Setting up manual snapshots").
SEED_MANUAL = """\
import qarnot
# Connect to Qarnot
conn = qarnot.Connection(client_token= "your_auth_token" )
# Retrieve an existing task
task = conn.retrieve_task( "TASK-UUID" )
# Trigger a manual snapshot
task.instant()
"""

# Copied from seed/hpc-snapshots.txt ("Configuring periodic snapshots: With the python SDK").
SEED_PERIODIC = """\
import qarnot
# Connect to Qarnot
conn = qarnot.Connection( "your_auth_token" )
# Retrieve an existing task
task = conn.retrieve_task( "your-task-uuid" )
# Configure periodic snapshots (every hour)
task.snapshot_periodic(interval= 3600 )
# Configure periodic snapshots with filtering options
task.snapshot( 3600 )
# Optional, blacklist processor directories with regex
task.snapshot_blacklist = r"processor\\d+" # Set snapshots blacklist
task.results_blacklist = r"processor\\d+" # Set results blacklist
# Optional, whitelist only log. files with regex
task.snapshot_whitelist = r"log\\..*" # Set snapshots whitelist
task.results_whitelist = r"log\\..*" # Set results whitelist
"""

# A command in its own PID namespace is its init: without a trap it ignores the SIGTERM of an
# abort and only dies at the SIGKILL that follows seconds later.
CASE = (
    "trap 'exit 143' TERM; "
    "mkdir -p processor0/0.1 0.1; echo p > processor0/0.1/U; echo u > 0.1/U; "
    "for i in $(seq 1 120); do echo t=$i >> log.simpleFoam; echo step $i; sleep 0.25; done"
)


def adapt(snippet: str, server: ServerProcess, token: str, uuid: str | None = None) -> str:
    """Only the import and the connection change (plus the placeholders for the task)."""
    code = snippet.replace("import qarnot\n", "import hpcsnap as qarnot\n", 1)
    code = code.replace('"your_auth_token"', f"{token!r}, cluster_url={server.url!r}")
    for placeholder in ('"TASK-UUID"', '"your-task-uuid"'):
        code = code.replace(placeholder, repr(uuid))
    return code


def run_statements(code: str) -> dict[str, BaseException | None]:
    """Run each statement in turn; what each one raised (None: it ran)."""
    namespace: dict[str, object] = {}
    outcome: dict[str, BaseException | None] = {}
    for stmt in ast.parse(code).body:
        source = ast.get_source_segment(code, stmt)
        assert source is not None
        try:
            exec(compile(ast.Module([stmt], []), "<seed>", "exec"), namespace)
            outcome[source] = None
        except Exception as exc:
            outcome[source] = exc
    return outcome


def test_seed_manual_snapshot(
    server: ServerProcess, token: str, start_task: Start, tmp_path: Path
) -> None:
    task = start_task(CASE, ready="^step 1$")
    namespace: dict[str, object] = {}
    exec(adapt(SEED_MANUAL, server, token, task.uuid), namespace)
    # the snippet triggered one manual snapshot; it completes with the case's files
    (snap,) = task.snapshots()
    assert snap.kind == "manual"
    done = task.wait_snapshot(snap.id, timeout=30)
    assert done.succeeded, done
    keys = {f.key[len(done.directory) :] for f in done.files()}
    assert {"log.simpleFoam", "0.1/U", "processor0/0.1/U"} <= keys


def test_seed_periodic_snapshots_on_a_running_task(
    server: ServerProcess, token: str, start_task: Start
) -> None:
    task = start_task(CASE, ready="^step 1$")
    outcome = run_statements(adapt(SEED_PERIODIC, server, token, task.uuid))
    raised = {src: exc for src, exc in outcome.items() if exc is not None}
    # Every snapshot line works on the running task; the results filters were fixed when it
    # was submitted (the agent already applies them), so those two lines say so clearly.
    assert sorted(raised) == [
        'task.results_blacklist = r"processor\\d+"',
        'task.results_whitelist = r"log\\..*"',
    ]
    for exc in raised.values():
        assert isinstance(exc, hpcsnap.TaskSubmittedError)
        assert "fixed once the task is submitted" in str(exc)
    server_view = task._connection.retrieve_task(str(task.uuid)).raw
    assert server_view["snapshotInterval"] == 3600
    assert server_view["snapshotBlacklist"] == r"processor\d+"
    assert server_view["snapshotWhitelist"] == r"log\..*"
    # the filters now apply to every snapshot of the task
    snap = task.wait_snapshot(task.instant(), timeout=30)
    assert [f.key[len(snap.directory) :] for f in snap.files()] == ["log.simpleFoam"]


def test_seed_settings_before_submission(
    conn: hpcsnap.Connection, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    """The same configuration lines on a task being built: all of them apply, results too."""
    lines = SEED_PERIODIC.split("# Configure periodic snapshots (every hour)\n", 1)[1]
    task = conn.create_task("seed-before", "docker-batch")
    task.constants["DOCKER_CMD"] = CASE.replace("120", "4")
    namespace: dict[str, object] = {"task": task}
    exec(lines, namespace)
    task.submit()
    raw = task.raw
    assert raw["snapshotInterval"] == 3600
    assert (raw["snapshotBlacklist"], raw["resultsBlacklist"]) == (r"processor\d+",) * 2
    assert (raw["snapshotWhitelist"], raw["resultsWhitelist"]) == (r"log\..*",) * 2
    assert task.wait(60) and task.state == "Success"
    task.download_results(tmp_path / "res")
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["log.simpleFoam"]


@pytest.mark.parametrize("snippet", [SEED_MANUAL, SEED_PERIODIC])
def test_snippets_are_the_seeds(snippet: str) -> None:
    """Guard against drift: the snippets above are word for word in the seed."""
    seed = Path("/work/shared/seed/hpc-snapshots.txt")
    if not seed.exists():
        pytest.skip("the seed is not on this machine")
    text = " ".join(seed.read_text().split())
    for line in snippet.splitlines():
        assert " ".join(line.split()) in text, line
