"""``Task.events()``: a task's event stream through the SDK (JSON long-poll)."""

from __future__ import annotations

from collections.abc import Callable

import hpcsnap

Start = Callable[..., hpcsnap.Task]


def test_events_follow_until_the_end(start_task: Start) -> None:
    task = start_task("echo one; sleep 1; echo two")
    snap_id = task.instant(label="sdk")
    seen = list(task.events(follow=True))
    task.update()
    assert task.state == hpcsnap.TaskState.SUCCESS
    assert all(isinstance(e, hpcsnap.TaskEvent) for e in seen)
    assert [e.id for e in seen] == sorted({e.id for e in seen})
    assert [e.get("to") for e in seen if e.type == "state"][-1] == "Success"
    assert seen[-1].is_end and seen[-1].get("state") == "Success"
    assert all(e.time is not None for e in seen)
    assert "".join(e.text for e in seen if e.is_log and e.stream == "stdout") == "one\ntwo\n"
    done = [e for e in seen if e.type == "snapshot.success"]
    assert snap_id in {e.get("snapshotId") for e in done}
    # without follow: what there is, then stop; after= resumes
    assert list(task.events()) == seen
    middle = seen[len(seen) // 2].id
    assert list(task.events(after=middle)) == [e for e in seen if e.id > middle]
    assert list(task.events(after=seen[-1].id, follow=True)) == []


def test_events_of_a_running_task_without_follow_stop_when_caught_up(start_task: Start) -> None:
    task = start_task("trap 'exit 143' TERM; sleep 60 & wait")
    seen = list(task.events())
    assert [e.get("to") for e in seen if e.type == "state"] == [
        "Submitted",
        "FullyDispatched",
        "FullyExecuting",
    ]
    assert not any(e.is_end for e in seen)
