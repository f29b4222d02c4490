"""What the CLI prints: tables and JSON on stdout, progress bars and notes on stderr.

Progress bars are drawn only on an interactive terminal (``TTY_INTERACTIVE=1`` forces them),
so scripts that capture stderr get plain lines.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from hpcsnap.sdk import ProgressHook

if TYPE_CHECKING:
    from rich.console import Console


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console() -> Console:
    from rich.console import Console

    # Piped output is not cut at 80 columns: ids must stay whole.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def note(message: str) -> None:
    """A line for the human (stderr): what happened, where things are."""
    click.echo(message, err=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout; an empty one prints only its header."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in columns:
        t.add_column(col, no_wrap=True, overflow="fold")
    for row in rows:
        t.add_row(*row)
    console = stdout_console()
    with console.capture() as captured:
        console.print(t)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def fields(pairs: Sequence[tuple[str, str]]) -> None:
    """``key: value`` lines, keys aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        click.echo(f"{key + ':':<{width + 1}} {value}")


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def when(value: dt.datetime | None) -> str:
    """A UTC time as ``2026-11-25 14:05:09``."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def short(ident: str | None) -> str:
    """The first 8 characters of an id (the CLI accepts any unique prefix)."""
    return (ident or "-")[:8]


@contextmanager
def progress(description: str, *, transfer: bool = True) -> Iterator[ProgressHook]:
    """A progress bar on stderr, fed by the SDK's progress hook.

    ``transfer`` bars show bytes, speed and time left; the others a spinner and what the hook
    says (a task's state).
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = stderr_console()
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if transfer:
        columns += [BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    else:
        columns += [TextColumn("[bold]{task.fields[status]}"), TimeElapsedColumn()]
    bar = Progress(*columns, console=console, disable=not console.is_interactive)
    task_id = bar.add_task(description, total=None, status="")

    def hook(completed: int, total: int | None, what: str) -> None:
        if transfer:
            label = f"{description} {_tail(what)}" if what else description
            bar.update(task_id, completed=completed, total=total, description=label)
        else:
            bar.update(task_id, status=what)

    with bar:
        yield hook


def _tail(text: str, width: int = 32) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
