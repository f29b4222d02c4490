"""Health, settings and account information (``/settings`` and ``/info`` as Qarnot serves them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select

from hpcsnap import __version__
from hpcsnap.agent.protocol import ACTIVE_STATES
from hpcsnap.server.api.deps import Ctx, DbSession, User
from hpcsnap.server.db import Bucket, Task

router = APIRouter(tags=["meta"])


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness probe (no authentication)."""
    return {"status": "ok", "version": __version__}


@router.get("/settings")
def settings(ctx: Ctx, user: User, request: Request) -> dict[str, Any]:
    """Server settings; ``storage`` is the S3 endpoint of the buckets (this server's own base
    URL, as the client reached it: S3 requests are told apart by their AWS signature)."""
    return {
        "storage": str(request.base_url).rstrip("/"),
        "version": __version__,
        "minSnapshotInterval": ctx.settings.min_snapshot_interval,
        "snapshotSoftLimit": ctx.settings.snapshot_soft_limit,
        "snapshotHardLimit": ctx.settings.snapshot_hard_limit,
    }


@router.get("/info")
def info(ctx: Ctx, user: User, session: DbSession) -> dict[str, Any]:
    tasks = session.scalar(select(func.count()).where(Task.owner_id == user.user_id)) or 0
    running = (
        session.scalar(
            select(func.count()).where(
                Task.owner_id == user.user_id, Task.state.in_([s.value for s in ACTIVE_STATES])
            )
        )
        or 0
    )
    buckets = session.scalar(select(func.count()).where(Bucket.owner_id == user.user_id)) or 0
    return {
        "email": user.email,
        "taskCount": tasks,
        "runningTaskCount": running,
        "bucketCount": buckets,
        "executor": ctx.executor.name,
        "jobMode": ctx.job_mode,
        "slots": ctx.settings.slots,
    }
