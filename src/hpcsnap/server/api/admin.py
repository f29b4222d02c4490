"""Administration routes (administrators only): the garbage-collection sweep."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from hpcsnap.server import sweep
from hpcsnap.server.api.deps import Ctx, User
from hpcsnap.server.errors import Forbidden

router = APIRouter(tags=["admin"])


class GcRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    grace_minutes: float = Field(default=sweep.GRACE_MINUTES, ge=0, alias="graceMinutes")
    dry_run: bool = Field(default=False, alias="dryRun")


@router.post("/admin/gc")
def collect_garbage(ctx: Ctx, user: User, body: GcRequest | None = None) -> dict[str, Any]:
    """Free every stored blob that no key, no needed manifest and no live snapshot references
    and that is older than ``graceMinutes`` (default 60); ``dryRun`` only counts them."""
    if not user.is_admin:
        raise Forbidden("only an administrator can run garbage collection")
    body = body or GcRequest()
    report = sweep.sweep(
        ctx.db, ctx.backend, grace_minutes=body.grace_minutes, dry_run=body.dry_run
    )
    return report.as_json()
