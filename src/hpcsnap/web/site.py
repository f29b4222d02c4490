"""Adding the web interface to the server's application."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from hpcsnap.web import browser, live, pages, submit
from hpcsnap.web.render import STATIC_DIR


def install(app: FastAPI) -> None:
    """Serve the pages at ``/`` and their script and styles at ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # submit first: its /tasks/new must win over the task page's /tasks/{uuid}.
    for module in (submit, pages, live, browser):
        app.include_router(module.router)
