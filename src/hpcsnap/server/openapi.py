"""The OpenAPI document at ``/openapi.json``, made to say what the API really answers.

FastAPI derives the document from the routes' signatures, which is not enough here: errors are
``{"message": ...}`` with 400/401/403/404/409/413 (never FastAPI's 422), several routes read a
JSON body by hand (so that a bad one gets hpcsnap's message), logs are ``text/plain`` and most
routes return plain dicts. :func:`install` patches the generated document once, from the tables
below; ``tests/security/test_api_fuzz.py`` checks every live answer against it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from hpcsnap.server.api.snapshots import PeriodicBody, SnapshotBody
from hpcsnap.server.api.tasks import TaskSubmission


class _Open(BaseModel):
    """Response shapes: the fields clients rely on; more may come (Qarnot's shapes are wide)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Message(BaseModel):
    """Every error: what is wrong, in words."""

    message: str


class Health(_Open):
    status: str
    version: str


class ServerSettings(_Open):
    storage: str
    version: str
    min_snapshot_interval: int = Field(alias="minSnapshotInterval")


class Info(_Open):
    email: str
    task_count: int = Field(alias="taskCount")
    running_task_count: int = Field(alias="runningTaskCount")
    bucket_count: int = Field(alias="bucketCount")
    job_mode: str = Field(alias="jobMode")


class BucketInfo(_Open):
    name: str
    creation_date: str = Field(alias="creationDate")


class BucketFile(_Open):
    key: str
    size: int
    hash: str
    md5: str | None
    mtime: float
    snapshot_id: str | None = Field(alias="snapshotId")


class Uploaded(_Open):
    key: str
    size: int
    hash: str
    md5: str


class TaskCreated(_Open):
    uuid: str


class TaskSubmitted(_Open):
    """One element of a bulk submission's answer."""

    uuid: str | None
    status_code: int = Field(alias="statusCode")
    message: str


class TaskView(_Open):
    uuid: str
    name: str
    state: str
    creation_date: str = Field(alias="creationDate")
    result_bucket: str = Field(alias="resultBucket")
    errors: list[dict[str, Any]]
    constants: list[dict[str, Any]]
    snapshot_interval: int = Field(alias="snapshotInterval")


class SnapshotCreated(_Open):
    id: str


class SnapshotView(_Open):
    id: str
    task_uuid: str = Field(alias="taskUuid")
    kind: str
    label: str | None
    status: str
    trigger_date: str = Field(alias="triggerDate")
    directory: str | None
    warnings: list[Any]
    error: str | None


class PeriodicView(_Open):
    interval: int
    whitelist: str | None
    blacklist: str | None
    bucket: str | None
    bucket_prefix: str | None = Field(alias="bucketPrefix")


class TokenView(_Open):
    id: int
    created: str
    current: bool


class TokenCreated(TokenView):
    token: str


_JSON = "application/json"
_TEXT = "text/plain"
_BYTES = "application/octet-stream"

#: (method, path) → (success status, media type, schema: a model, ``[model]`` for a list, or
#: ``None`` for no content).
RESPONSES: dict[tuple[str, str], tuple[int, str, Any]] = {
    ("get", "/v1/health"): (200, _JSON, Health),
    ("get", "/v1/settings"): (200, _JSON, ServerSettings),
    ("get", "/v1/info"): (200, _JSON, Info),
    ("get", "/v1/buckets"): (200, _JSON, [BucketInfo]),
    ("post", "/v1/buckets"): (201, _JSON, BucketInfo),
    ("delete", "/v1/buckets/{name}"): (204, "", None),
    ("get", "/v1/buckets/{name}/files"): (200, _JSON, [BucketFile]),
    ("put", "/v1/buckets/{name}/files/{key}"): (200, _JSON, Uploaded),
    ("get", "/v1/buckets/{name}/files/{key}"): (200, _BYTES, None),
    ("delete", "/v1/buckets/{name}/files/{key}"): (204, "", None),
    ("post", "/v1/tasks"): (201, _JSON, TaskCreated),
    ("get", "/v1/tasks"): (200, _JSON, [TaskView]),
    ("get", "/v1/tasks/{task_uuid}"): (200, _JSON, TaskView),
    ("delete", "/v1/tasks/{task_uuid}"): (204, "", None),
    ("post", "/v1/tasks/{task_uuid}/abort"): (200, _JSON, TaskView),
    ("post", "/v1/tasks/{task_uuid}/snapshot"): (200, _JSON, SnapshotCreated),
    ("post", "/v1/tasks/{task_uuid}/snapshot/periodic"): (200, _JSON, PeriodicView),
    ("get", "/v1/tasks/{task_uuid}/snapshot/{snapshot_id}"): (200, _JSON, SnapshotView),
    ("get", "/v1/tasks/{task_uuid}/snapshots"): (200, _JSON, [SnapshotView]),
    ("get", "/v1/tokens"): (200, _JSON, [TokenView]),
    ("post", "/v1/tokens"): (201, _JSON, TokenCreated),
    ("delete", "/v1/tokens/{token_id}"): (204, "", None),
}
for _stream in ("stdout", "stderr"):
    for _method in ("get", "post"):
        RESPONSES[(_method, f"/v1/tasks/{{task_uuid}}/{_stream}")] = (200, _TEXT, None)
        RESPONSES[(_method, f"/v1/tasks/{{task_uuid}}/{_stream}/{{instance_id}}")] = (
            200,
            _TEXT,
            None,
        )

_BINARY = {"type": "string", "format": "binary"}
_ARCHIVES = {"application/gzip": _BINARY, "application/zip": _BINARY}
#: Success answers with several media types: (method, path) → {status: {media: schema}}.
MULTI: dict[tuple[str, str], dict[int, dict[str, Any]]] = {
    ("get", "/v1/tasks/{task_uuid}/snapshots/{snapshot_id}/archive"): {200: _ARCHIVES},
    ("get", "/v1/tasks/{task_uuid}/results/archive"): {200: _ARCHIVES},
    # the stream (SSE) or, with format=json, one long-poll answer; 204: nothing will ever come
    ("get", "/v1/tasks/{task_uuid}/events"): {
        200: {"text/event-stream": {"type": "string"}, _JSON: {"type": "object"}},
        204: {},
    },
}

#: Bodies that routes read themselves (JSON parsed by hand, or raw bytes).
BODIES: dict[tuple[str, str], tuple[str, Any]] = {
    ("post", "/v1/tasks"): (_JSON, TaskSubmission),
    ("post", "/v1/tasks/{task_uuid}/snapshot"): (_JSON, SnapshotBody),
    ("post", "/v1/tasks/{task_uuid}/snapshot/periodic"): (_JSON, PeriodicBody),
    ("put", "/v1/buckets/{name}/files/{key}"): (_BYTES, None),
}

#: Errors beyond the ones every authenticated route may answer (400, 401, 404).
EXTRA_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/tasks/{task_uuid}/abort"): (403,),
    ("delete", "/v1/tasks/{task_uuid}"): (403,),
    ("delete", "/v1/buckets/{name}"): (409,),
    ("post", "/v1/tasks/{task_uuid}/snapshot"): (409,),
    ("post", "/v1/tasks/{task_uuid}/snapshot/periodic"): (409,),
    ("delete", "/v1/tokens/{token_id}"): (409,),
    ("post", "/v1/tasks"): (409,),  # resumeFrom a snapshot that cannot be restored
    ("delete", "/v1/tasks/{task_uuid}/snapshot/{snapshot_id}"): (409,),
    ("post", "/v1/tasks/{task_uuid}/snapshot/{snapshot_id}/verify"): (409,),
    ("post", "/v1/tasks/{task_uuid}/results/verify"): (409,),
    ("get", "/v1/tasks/{task_uuid}/results/diff"): (409,),
    ("get", "/v1/tasks/{task_uuid}/results/archive"): (409,),
    ("post", "/v1/admin/gc"): (403,),
}

_ERROR_TEXT = {
    400: "Invalid request (the message names the field)",
    401: "Missing, invalid or revoked token",
    403: "Not allowed (the object's current state, or not an administrator)",
    404: "No such object (or another user's: they look the same)",
    409: "Conflicts with the object's current state",
    413: "Request body too large",
}


def _schema_of(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    if isinstance(model, list):
        return {"type": "array", "items": _schema_of(model[0], components)}
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": schema}}


def patch(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (FastAPI's document) with hpcsnap's real bodies, answers and errors."""
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    error_ref = _schema_of(Message, components)
    doc["components"]["securitySchemes"] = {
        "token": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An API token (``hps_...``), optionally after ``Bearer``.",
        }
    }
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            key = (method, path)
            responses: dict[str, Any] = op.setdefault("responses", {})
            responses.pop("422", None)
            if key in RESPONSES:
                status, media, model = RESPONSES[key]
                for code in [c for c in responses if c.startswith("2")]:
                    del responses[code]
                answer: dict[str, Any] = {"description": "Success"}
                if media:
                    schema = _schema_of(model, components) if model is not None else {}
                    if media == _BYTES:
                        schema = {"type": "string", "format": "binary"}
                    elif media == _TEXT:
                        schema = {"type": "string"}
                    answer["content"] = _content(media, schema)
                responses[str(status)] = answer
            if key in MULTI:
                for code in [c for c in responses if c.startswith("2")]:
                    del responses[code]
                for status, media_types in MULTI[key].items():
                    responses[str(status)] = {"description": "Success"}
                    if media_types:
                        responses[str(status)]["content"] = {
                            media: {"schema": schema} for media, schema in media_types.items()
                        }
            if key in BODIES:
                media, model = BODIES[key]
                if model is None:
                    schema = {"type": "string", "format": "binary"}
                else:
                    schema = _schema_of(model, components)
                if key == ("post", "/v1/tasks"):
                    # one task, or several at once (Qarnot's bulk submission)
                    schema = {"anyOf": [schema, {"type": "array", "items": schema}]}
                    responses["200"] = {
                        "description": "Bulk submission: one result per task",
                        "content": _content(_JSON, _schema_of([TaskSubmitted], components)),
                    }
                op["requestBody"] = {"required": False, "content": _content(media, schema)}
            if path == "/v1/health":
                continue
            op["security"] = [{"token": []}]
            codes = (400, 401, 404, *EXTRA_ERRORS.get(key, ()))
            if "requestBody" in op:
                codes = (*codes, 413)
            for error in codes:
                responses.setdefault(
                    str(error),
                    {"description": _ERROR_TEXT[error], "content": _content(_JSON, error_ref)},
                )
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    """Serve the patched document (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = patch(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
