"""``hpcsnap shell``: a shell inside a running task, relayed by the server (real server, real
agent, real task; namespace mode when the tests run as root)."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import hpcsnap
from tests.cli.helpers import EXE, Cli
from tests.support import Api, ServerProcess, wait_for

# Runs until a file named "stop" appears in /job (the trap makes an abort quick).
WAITER = "trap 'exit 143' TERM; while [ ! -e stop ]; do sleep 0.1; done; echo stopped"


def shell(
    cli: Cli, *args: str, input: str = "", rc: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """``hpcsnap shell ARGS`` with ``input`` piped to it (so not interactive)."""
    proc = subprocess.run(
        [str(EXE), "shell", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=cli.cwd,
        env=cli.env,
        timeout=90,
    )
    if rc is not None:
        assert proc.returncode == rc, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def processes(marker: str) -> list[int]:
    """Pids of the processes whose command line is ``marker`` (e.g. ``sleep 3456``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if cmdline.strip() == marker.encode():
                found.append(int(entry.name))
    return found


@pytest.fixture()
def api(server: ServerProcess, cli: Cli) -> Api:
    return Api(server.url, cli.env["HPCSNAP_TOKEN"])


@pytest.fixture()
def waiting(cli: Cli) -> Iterator[str]:
    """A running task that ends when /job/stop exists; aborted at the end of the test."""
    uuid = cli.out("submit", "--name", "shelled", "-e", "FOO=bar", "--results", "shell-res", WAITER)
    cli("wait", uuid, "--running")
    yield uuid
    cli("abort", uuid, rc=None)


def test_shell_runs_in_job_with_the_tasks_env_and_user(cli: Cli, api: Api, waiting: str) -> None:
    namespace = api.ok("GET", "/info")["jobMode"] == "namespace"
    proc = shell(
        cli,
        waiting[:8],
        input="echo $FOO; pwd; echo $JOB_DIR; id -un; id -u; echo oops >&2; exit 3\n",
        rc=3,  # the shell's own exit code
    )
    foo, pwd, job_dir, user, uid = proc.stdout.splitlines()
    assert foo == "bar"
    assert pwd == job_dir
    if namespace:
        assert (pwd, user) == ("/job", "hpcsnap-task")
        assert uid != "0"
    assert proc.stderr.startswith(
        f"Connected to task shelled ({waiting}) in {job_dir}. Files you save under {job_dir} "
        "are captured by snapshots and results; files saved elsewhere are not captured"
    )
    assert "oops" in proc.stderr.splitlines()  # stderr stays apart without a terminal
    quiet = shell(cli, waiting, "-q", "--command", "echo $FOO-again")
    assert (quiet.stdout, quiet.stderr) == ("bar-again\n", "")


def test_what_the_shell_saves_in_job_is_in_the_next_snapshot(
    cli: Cli, api: Api, waiting: str
) -> None:
    outside = f"/tmp/hpcsnap-shell-test-{secrets.token_hex(4)}"
    try:
        shell(cli, waiting, "-q", "-c", f"echo from-shell > saved.txt; echo lost > {outside}")
        snap_id = cli.out("snapshot", waiting, "--label", "after-shell", "--wait")
        snap = api.wait_snapshot(waiting, snap_id)
        assert snap["status"] == "Success", snap
        keys = api.keys("shell-res", snap["directory"])
        names = [k[len(snap["directory"]) :] for k in keys]
        assert "saved.txt" in names
        assert not [n for n in names if "hpcsnap-shell-test" in n]
        assert api.download("shell-res", snap["directory"] + "saved.txt") == b"from-shell\n"
    finally:
        Path(outside).unlink(missing_ok=True)


def test_a_terminal_of_the_requested_size_and_type(cli: Cli, waiting: str) -> None:
    conn = hpcsnap.Connection(
        client_token=cli.env["HPCSNAP_TOKEN"], cluster_url=cli.env["HPCSNAP_URL"]
    )
    with (
        conn,
        conn.retrieve_task(waiting).shell(
            "tty; stty size; echo $TERM; exit 4", tty=True, cols=101, rows=33, term="xterm-test"
        ) as sh,
    ):
        result = sh.communicate(timeout=30)
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("/dev/pts/"), lines
    assert lines[1:] == ["33 101", "xterm-test"]
    assert result.exit_code == 4 and result.reason is None


def test_refused_without_token_and_for_another_user(
    server: ServerProcess, cli: Cli, waiting: str
) -> None:
    url = cli.env["HPCSNAP_URL"].replace("http://", "ws://") + f"/v1/tasks/{waiting}/shell"
    other = server.user("shell-stranger").http.headers["Authorization"]
    for headers, status, message in (
        ({}, 401, "missing Authorization header"),
        ({"Authorization": "hps_nope"}, 401, "invalid or revoked token"),
        ({"Authorization": other}, 404, f"task {waiting} not found"),
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == status
        assert json.loads(refused.value.response.body or b"")["message"].startswith(message)
    proc = shell(cli, "0000000", rc=1)
    assert "task 0000000 not found" in proc.stderr


def test_the_session_ends_with_the_task_leaving_no_process_then_refused(
    cli: Cli, waiting: str
) -> None:
    marker = f"sleep {3000 + secrets.randbelow(999)}"
    proc = shell(cli, waiting, input=f"touch stop; {marker} & {marker}; echo never\n", rc=255)
    assert "never" not in proc.stdout
    assert proc.stderr.splitlines()[-1] == "hpcsnap: shell closed: the task ended"

    # the shell closes when the command ends; the task then uploads its results
    def state() -> str:
        return str(json.loads(cli.out("show", waiting, "--json"))["state"])

    wait_for(state, lambda s: s not in ("FullyExecuting", "UploadingResults"), 30, "the end")
    assert state() == "Success"
    wait_for(lambda: processes(marker), lambda found: not found, 30, f"no '{marker}' left")
    # an ended task refuses
    proc = shell(cli, waiting, rc=1)
    assert f"task {waiting} is Success: a shell opens only while its command runs" in proc.stderr


def test_disconnecting_kills_the_shell_and_its_jobs_and_the_cap(cli: Cli, waiting: str) -> None:
    conn = hpcsnap.Connection(
        client_token=cli.env["HPCSNAP_TOKEN"], cluster_url=cli.env["HPCSNAP_URL"]
    )
    task = conn.retrieve_task(waiting)
    marker = f"sleep {4000 + secrets.randbelow(999)}"
    first = task.shell(f"{marker} & nohup {marker} >/dev/null 2>&1 & {marker}")
    wait_for(lambda: processes(marker), lambda found: len(found) == 3, 30, "3 sleeps")
    others = [task.shell("sleep 60") for _ in range(3)]
    with pytest.raises(hpcsnap.ApiError) as too_many:
        task.shell("true")
    assert too_many.value.status_code == 429
    assert "has 4 shells open already" in str(too_many.value)
    first.close()
    wait_for(lambda: processes(marker), lambda found: not found, 30, f"no '{marker}' left")
    for sh in others:
        sh.close()
    # the task runs on, and takes new shells
    with task.shell("echo still here") as sh:
        assert sh.communicate(timeout=30).stdout == b"still here\n"
    task.update()
    assert task.state == "FullyExecuting"
    conn.close()


def test_task_variables_do_not_choose_what_root_runs(cli: Cli, api: Api, tmp_path: Path) -> None:
    """The task's PATH and LD_* reach the shell, never the tools the agent runs as root."""
    if api.ok("GET", "/info")["jobMode"] != "namespace":
        pytest.skip("no root-side tools in direct mode")
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "fake-tool-ran"
    for name in ("nsenter", "env", "cat"):
        (fake / name).write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
        (fake / name).chmod(0o755)
    tmp_path.chmod(0o755)
    path = f"{fake}:/usr/bin:/bin"
    uuid = cli.out("submit", "-e", f"PATH={path}", "-e", "LD_LIBRARY_PATH=/nowhere", WAITER)
    cli("wait", uuid, "--running")
    try:
        proc = shell(cli, uuid, "-q", "-c", "echo $PATH; echo $LD_LIBRARY_PATH")
        assert proc.stdout.splitlines() == [path, "/nowhere"]
        assert not marker.exists()
    finally:
        cli("abort", uuid, rc=None)


def test_interactive_on_a_terminal_with_resize(cli: Cli, waiting: str) -> None:
    """The CLI on a real pseudo-terminal: raw mode, the window size follows SIGWINCH."""
    import fcntl
    import os
    import pty
    import select
    import signal
    import struct
    import termios
    import time

    def set_size(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    pid, fd = pty.fork()
    if pid == 0:  # the child: hpcsnap shell on the pty
        os.environ.clear()
        os.environ.update({**cli.env, "TERM": "xterm-test"})
        os.execv(str(EXE), [str(EXE), "shell", "-q", waiting])
    set_size(fd, 33, 101)
    seen = b""

    def read_until(needle: bytes, timeout: float = 30) -> bool:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while needle not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        return needle in seen

    os.write(fd, b"stty size; echo T=$TERM\n")
    assert read_until(b"T=xterm-test"), seen
    assert b"33 101" in seen
    set_size(fd, 40, 120)
    os.kill(pid, signal.SIGWINCH)
    # the new size travels from the CLI through the server and the agent to the shell's
    # terminal: ask again until it has arrived
    deadline = time.monotonic() + 30
    while not read_until(b"40 120", 1) and time.monotonic() < deadline:
        os.write(fd, b"stty size\n")
    assert b"40 120" in seen, seen
    os.write(fd, b"exit 7\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 7
