"""REST routes under ``/v1``: one module per resource, all behind token authentication."""

from fastapi import APIRouter

from hpcsnap.server.api import (
    admin,
    agent,
    buckets,
    contents,
    events,
    meta,
    shell,
    snapshots,
    tasks,
    tokens,
    upkeep,
)


def router() -> APIRouter:
    r = APIRouter()
    for module in (
        meta,
        buckets,
        tasks,
        events,
        snapshots,
        tokens,
        contents,
        upkeep,
        agent,
        shell,
        admin,
    ):
        r.include_router(module.router)
    return r
