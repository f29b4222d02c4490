"""Rows for tests that work on the server's database directly (no server)."""

from __future__ import annotations

import uuid

from hpcsnap.agent.protocol import TaskState
from hpcsnap.server.auth import create_user
from hpcsnap.server.db import Database, Task


def new_task(db: Database, state: TaskState = TaskState.EXECUTING) -> str:
    """A task of a new user, in ``state``; returns its uuid."""
    with db.session() as s:
        user, _ = create_user(s, f"u-{uuid.uuid4().hex[:6]}")
        task = Task(
            uuid=str(uuid.uuid4()),
            owner_id=user.id,
            name="t",
            command="true",
            result_bucket="out",
            state=state.value,
        )
        s.add(task)
        return task.uuid
