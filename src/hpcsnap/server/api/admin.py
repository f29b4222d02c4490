"""Administration routes (administrators only): the garbage-collection sweep."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from hpcsnap.server import sweep
from hpcsnap.server.api.deps import Ctx, User
from hpcsnap.server.auth import Caller
from hpcsnap.server.errors import Forbidden

router = APIRouter(tags=["admin"])


def _administrator(user: User) -> Caller:
    """The caller, if an administrator: checked before anything of the request is read."""
    if not user.is_admin:
        raise Forbidden("only an administrator can run garbage collection")
    return user


Admin = Annotated[Caller, Depends(_administrator)]


class GcRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    grace_minutes: float = Field(default=sweep.GRACE_MINUTES, ge=0, alias="graceMinutes")
    dry_run: bool = Field(default=False, alias="dryRun")


@router.post("/admin/gc")
def collect_garbage(ctx: Ctx, _admin: Admin, body: GcRequest | None = None) -> dict[str, Any]:
    """Free every stored blob that no key, no needed manifest and no live snapshot references
    and that is older than ``graceMinutes`` (default 60); ``dryRun`` only counts them."""
    body = body or GcRequest()
    report = sweep.sweep(
        ctx.db, ctx.backend, grace_minutes=body.grace_minutes, dry_run=body.dry_run
    )
    return report.as_json()
