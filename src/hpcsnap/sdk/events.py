"""A task's event stream: state changes, snapshot events, output chunks and its end, in order.

:meth:`Task.events <hpcsnap.Task.events>` reads ``GET /v1/tasks/{uuid}/events?format=json``
(the long-poll form of the stream: one request at a time, each answered as soon as there is
news), so a follower sees an event within a fraction of a second and rides over a server restart
like any other ``GET``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpcsnap.sdk._poll import Deadline
from hpcsnap.sdk.snapshot import parse_date

if TYPE_CHECKING:
    from hpcsnap.sdk._http import Http

__all__ = ["TaskEvent"]

#: Seconds one long-poll request may wait on the server for news (the server's cap is 30).
LONG_POLL = 25.0


@dataclass(frozen=True)
class TaskEvent:
    """One event of a task's stream (the server's JSON is :attr:`raw`).

    :attr:`type` is one of ``state`` (``raw["from"]``, ``raw["to"]``, ``raw["message"]`` on a
    failure), ``snapshot.triggered``, ``snapshot.progress``, ``snapshot.success``,
    ``snapshot.failure``, ``snapshot.deleted`` (``raw["snapshotId"]``, ``directory``, counts),
    ``log`` (:attr:`stream` and :attr:`text`) and ``end`` (``raw["state"]``, the last event).
    """

    #: Increases along the stream: ``events(after=id)`` resumes after this event.
    id: int
    type: str
    time: dt.datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskEvent:
        return cls(int(data["id"]), str(data["type"]), parse_date(data.get("time")), data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @property
    def is_log(self) -> bool:
        return self.type == "log"

    @property
    def is_end(self) -> bool:
        return self.type == "end"

    @property
    def stream(self) -> str | None:
        """``stdout`` or ``stderr`` for a ``log`` event."""
        value = self.raw.get("stream")
        return str(value) if value is not None else None

    @property
    def text(self) -> str:
        """The output of a ``log`` event ("" for the others)."""
        return str(self.raw.get("text") or "")


def iter_events(
    http: Http,
    url: str,
    *,
    after: int = 0,
    follow: bool = False,
    wait: float = LONG_POLL,
    deadline: Deadline | None = None,
) -> Iterator[TaskEvent]:
    """Events after ``after``; with ``follow``, keep waiting for new ones until the task's
    ``end`` (without it, stop once caught up), or until ``deadline`` if one is given."""
    wait = max(0.0, min(wait, LONG_POLL, http.settings.timeout - 5))
    while True:
        left = None if deadline is None else deadline.remaining()
        if left is not None and left <= 0:
            return
        answer = http.json(
            "GET",
            url,
            params={
                "format": "json",
                "after": after,
                "wait": (wait if left is None else min(wait, left)) if follow else 0,
            },
        )
        for item in answer.get("events", []):
            event = TaskEvent.from_json(item)
            after = max(after, event.id)
            yield event
        after = max(after, int(answer.get("last", after)))
        if answer.get("done"):
            return
        if not follow and not answer.get("events"):
            return
