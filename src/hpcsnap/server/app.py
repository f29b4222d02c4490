"""The ASGI application: routes under /v1, OpenAPI at /docs, the scheduler in the background."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from hpcsnap import __version__, web
from hpcsnap.server import errors, openapi
from hpcsnap.server.api import router
from hpcsnap.server.config import Settings
from hpcsnap.server.context import ServerContext, build_context
from hpcsnap.server.limits import BodyLimit
from hpcsnap.server.s3.app import S3App, S3Dispatch
from hpcsnap.server.scheduler import Scheduler

_SLASHES = re.compile(r"/{2,}")


class MergeSlashes:
    """``/v1//tasks`` is ``/v1/tasks`` (clients that join URLs naively add a slash)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = dict(scope)
            scope["path"] = _SLASHES.sub("/", scope["path"])
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, ctx: ServerContext | None = None) -> FastAPI:
    context = ctx or build_context(settings)
    scheduler = Scheduler(context)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()

    app = FastAPI(
        title="hpcsnap",
        version=__version__,
        description="Run long HPC simulations as tasks, with incremental snapshots of /job.",
        lifespan=lifespan,
    )
    app.state.ctx = context
    errors.install(app)
    app.include_router(router(), prefix="/v1")
    web.install(app)  # the web interface: pages at /, their script and styles at /static
    openapi.install(app)  # the document says what the routes really answer
    app.add_middleware(BodyLimit)  # 413 for JSON/form bodies over 8 MiB (uploads stream)
    app.add_middleware(MergeSlashes)
    # S3 clients (boto3, rclone, the qarnot SDK) on the same port: signed requests go to S3.
    app.add_middleware(S3Dispatch, s3=S3App(context))
    return app
