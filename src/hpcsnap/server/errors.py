"""API errors: every non-2xx answer is JSON ``{"message": ...}`` with a status that fits."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error with its HTTP status and a message that says what is wrong."""

    status = 400

    def __init__(
        self, message: str, *, status: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        #: Extra fields of the JSON answer, for programs (e.g. the digests a commit lacks).
        self.details = details or {}
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into ``{"message": ...}`` answers."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({**exc.details, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        for err in exc.errors()[:5]:
            if err.get("type") == "json_invalid":
                msgs.append(f"malformed JSON body: {err.get('ctx', {}).get('error', err['msg'])}")
            else:
                msgs.append(f"{_field_name(tuple(err.get('loc', ())))}: {err['msg']}")
        return JSONResponse({"message": "; ".join(msgs) or "invalid request"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        elif exc.status_code == 405:
            message = "method not allowed on this route"
        return JSONResponse({"message": message}, status_code=exc.status_code)
