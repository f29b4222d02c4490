"""Progress reporting: long operations call a hook you pass as ``progress=``.

The SDK draws nothing itself; the CLI turns the calls into progress bars. A hook receives
absolute values, so it can be called any number of times and in any order::

    def show(completed: int, total: int | None, description: str) -> None:
        print(f"{description}: {completed}/{total or '?'}")

    bucket.add_directory("case/", progress=show)

``completed`` and ``total`` are bytes for transfers and snapshots (``total`` is None while it
is unknown); for a task wait they are 0 and None and ``description`` is the task's state.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ProgressHook"]


class ProgressHook(Protocol):
    """Called with how much is done, of how much, and what is happening now."""

    def __call__(self, completed: int, total: int | None, description: str, /) -> None: ...


def report(hook: ProgressHook | None, completed: int, total: int | None, description: str) -> None:
    if hook is not None:
        hook(completed, total, description)
