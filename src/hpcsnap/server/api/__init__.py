"""REST routes under ``/v1``: one module per resource, all behind token authentication."""

from fastapi import APIRouter

from hpcsnap.server.api import agent, buckets, meta, snapshots, tasks, tokens


def router() -> APIRouter:
    r = APIRouter()
    for module in (meta, buckets, tasks, snapshots, tokens, agent):
        r.include_router(module.router)
    return r
