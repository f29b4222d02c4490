"""``hpcsnap shell TASK``: a terminal inside a running task (relayed by the server)."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from types import FrameType

import click

from hpcsnap.cli import output
from hpcsnap.cli.common import connection, find_task
from hpcsnap.sdk.shell import STDERR, ShellSession

#: Exit code when the shell's own is unknown (the session was cut, the task ended).
LOST = 255


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _interactive(sh: ShellSession) -> None:
    """The local terminal in raw mode, wired to the remote one until the shell ends."""
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    wake_r, wake_w = os.pipe()

    def on_winch(_signum: int, _frame: FrameType | None) -> None:
        os.write(wake_w, b"w")

    def show() -> None:
        with contextlib.suppress(OSError):
            while (chunk := sh.read()) is not None:
                _write_all(fd_out, chunk[1])
        os.write(wake_w, b"e")

    saved = termios.tcgetattr(fd_in)
    previous = signal.signal(signal.SIGWINCH, on_winch)
    reader = threading.Thread(target=show, daemon=True)
    tty.setraw(fd_in, termios.TCSADRAIN)  # keeps what was typed ahead
    try:
        reader.start()
        sources = [fd_in, wake_r]
        while True:
            ready, _, _ = select.select(sources, [], [])
            if wake_r in ready:
                woken = os.read(wake_r, 64)
                if b"e" in woken:
                    break
                size = os.get_terminal_size(fd_in)
                sh.resize(size.columns, size.lines)
            if fd_in in ready:
                data = os.read(fd_in, 4096)
                if data:
                    sh.write(data)
                else:
                    sh.eof()
                    sources.remove(fd_in)
    finally:
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
        os.close(wake_r)
        os.close(wake_w)


def _piped(sh: ShellSession) -> None:
    """stdin to the shell (then end of input); its stdout and stderr to ours."""

    def feed() -> None:
        with contextlib.suppress(OSError, ValueError):
            while data := os.read(sys.stdin.fileno(), 65536):
                sh.write(data)
        sh.eof()

    threading.Thread(target=feed, daemon=True).start()
    while (chunk := sh.read()) is not None:
        stream = sys.stderr.buffer if chunk[0] == STDERR else sys.stdout.buffer
        stream.write(chunk[1])
        stream.flush()


@click.command("shell")
@click.argument("task_ref", metavar="TASK")
@click.option(
    "-c", "--command", default=None, help="Run this command line instead of an interactive shell."
)
@click.option(
    "--tty/--no-tty",
    "use_tty",
    default=None,
    help="Give the shell a terminal [when stdin is one]. Without, its stdout and stderr stay "
    "apart and stdin is sent as is, then closed.",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not print the banner.")
def shell(task_ref: str, command: str | None, use_tty: bool | None, quiet: bool) -> None:
    """Open a shell inside the running task TASK (uuid or prefix).

    It runs beside the task's command: same filesystem view, cwd /job, the command's
    environment, the same unprivileged user. Files saved under /job are captured by snapshots
    and results; files saved elsewhere are not. The session ends when the shell exits, when
    you disconnect, or when the task ends. Exit code: the shell's (255 if it is unknown).
    """
    task = find_task(connection(), task_ref)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    use_tty = interactive if use_tty is None else use_tty
    size = os.get_terminal_size(sys.stdin.fileno()) if interactive else shutil.get_terminal_size()
    sh = task.shell(
        command,
        tty=use_tty,
        cols=size.columns,
        rows=size.lines,
        term=os.environ.get("TERM") if use_tty else None,
    )
    with sh:
        if not quiet and sh.banner:
            output.note(sh.banner)
        if use_tty and interactive:
            _interactive(sh)
        else:
            _piped(sh)
    if sh.exit_code is None:
        output.note(f"hpcsnap: shell closed: {sh.reason or 'the connection was lost'}")
        raise SystemExit(LOST)
    raise SystemExit(sh.exit_code)


def register(group: click.Group) -> None:
    group.add_command(shell)
