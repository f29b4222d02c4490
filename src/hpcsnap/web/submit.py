"""The submission form: task, resources, results and, on its last page, snapshots.

The form posts ``multipart/form-data`` (files and folders included) to ``/tasks/new``; the
handler turns it into the API's :class:`TaskSubmission` and lets ``build_task`` validate and
create the task, so the form accepts exactly what ``POST /v1/tasks`` accepts. Uploaded files go
to a resource bucket; their content is stored only once the whole submission has been checked.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from hpcsnap.blobstore import Stored
from hpcsnap.server import blobrefs
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.api.tasks import ENV_NAME, TaskSubmission, build_task
from hpcsnap.server.db import Task
from hpcsnap.server.errors import ApiError, BadRequest, NotFound
from hpcsnap.web import example, queries
from hpcsnap.web.checks import REGEX_FIELDS, check_form
from hpcsnap.web.deps import Me, WebRoute, WebUser, check_csrf, server_ctx, wants_json
from hpcsnap.web.pages import parse_interval
from hpcsnap.web.render import page

router = APIRouter(route_class=WebRoute, include_in_schema=False)

TEXT_FIELDS = (
    "name",
    "command",
    "profile",
    "wall_time",
    "environment",
    "upload_bucket",
    "result_bucket",
    "results_whitelist",
    "results_blacklist",
    "snapshot_interval",
    "snapshot_unit",
    "snapshot_retention",
    "snapshot_whitelist",
    "snapshot_blacklist",
    "snapshot_bucket",
    "snapshot_prefix",
    "expected_size",
    "expected_unit",
    "sample_paths",
    "resume_task",
    "resume_snapshot",
)
CHECKBOXES = ("snapshot_enabled", "upload_on_cancel", "include_unchanged")
DEFAULTS: dict[str, Any] = {
    "profile": "docker-batch",
    "snapshot_interval": "10",
    "snapshot_unit": "min",
    "expected_unit": "MiB",
}
#: The API's field names (as its messages start) → the form field to show the message at.
API_FIELDS = {
    "name": "name",
    "profile": "profile",
    "constants": "command",
    "command": "command",
    "wallTimeLimit": "wall_time",
    "snapshotInterval": "snapshot_interval",
    "snapshotRetention": "snapshot_retention",
    "resultBucket": "result_bucket",
    "snapshotBucket": "snapshot_bucket",
    "snapshotBucketPrefix": "snapshot_prefix",
    "prefix": "snapshot_prefix",
    "resumeFrom": "resume_task",
    **{api: form for form, api in REGEX_FIELDS.items()},
}
MAX_FILES = 10000


class FieldError(BadRequest):
    """A submission error that belongs to one field of the form."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Upload:
    key: str
    file: UploadFile


def form_values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = dict(DEFAULTS)
    for name in TEXT_FIELDS:
        raw = form.get(name)
        if isinstance(raw, str):
            values[name] = raw
    for name in CHECKBOXES:
        values[name] = form.get(name) is not None
    values["buckets"] = [b for b in form.getlist("buckets") if isinstance(b, str) and b]
    return values


def uploads_of(form: FormData) -> list[Upload]:
    """Files become keys by their name; a folder's files by their path inside the folder."""
    out: list[Upload] = []
    seen: set[str] = set()
    for field in ("files", "folder"):
        for item in form.getlist(field):
            if not isinstance(item, UploadFile) or not item.filename:
                continue
            name = item.filename.replace("\\", "/")
            if field == "files":
                key = name.rsplit("/", 1)[-1]
            else:
                key = name.split("/", 1)[1] if "/" in name else name
            try:
                bx.check_key(key, what="file name")
            except ApiError as exc:
                raise FieldError(field, exc.message) from None
            if key in seen:
                raise FieldError(field, f"two uploaded files would both be /job/{key}")
            seen.add(key)
            out.append(Upload(key, item))
    if len(out) > MAX_FILES:
        raise FieldError("files", f"at most {MAX_FILES} files per submission")
    return out


def environment(text: str) -> list[dict[str, str]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not ENV_NAME.match(key):
            raise FieldError(
                "environment", f"line {n}: expected NAME=value with a valid variable name"
            )
        if key == "DOCKER_CMD":
            raise FieldError("environment", f"line {n}: DOCKER_CMD is the command field")
        out.append({"key": key, "value": value})
    return out


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return s or "task"


def submission_body(values: dict[str, Any], upload_bucket: str | None) -> dict[str, Any]:
    """The API's JSON body for these form values (checked field by field on the way)."""
    for field in ("result_bucket", "snapshot_bucket"):
        if values.get(field, "").strip():
            try:
                bx.check_bucket_name(values[field].strip())
            except ApiError as exc:
                raise FieldError(field, exc.message) from None
    interval = 0
    if values.get("snapshot_enabled"):
        try:
            interval = parse_interval(
                values.get("snapshot_interval", ""), values.get("snapshot_unit", "s")
            )
        except ApiError as exc:
            raise FieldError("snapshot_interval", exc.message) from None
        if interval == 0:
            raise FieldError("snapshot_interval", "give an interval, or untick periodic snapshots")
    keep = values.get("snapshot_retention", "").strip()
    if keep and not (keep.isdigit() and int(keep) >= 1):
        raise FieldError("snapshot_retention", "a whole number of snapshots (at least 1), or empty")
    buckets = list(values.get("buckets", []))
    if upload_bucket:
        buckets.insert(0, upload_bucket)

    def text(name: str) -> str | None:
        return values.get(name, "").strip() or None

    return {
        "name": values.get("name", "").strip(),
        "profile": values.get("profile") or "docker-batch",
        "constants": [
            {"key": "DOCKER_CMD", "value": values.get("command", "")},
            *environment(values.get("environment", "")),
        ],
        "advancedResourceBuckets": [{"bucketName": b} for b in dict.fromkeys(buckets)],
        "resultBucket": text("result_bucket"),
        "resultsWhitelist": values.get("results_whitelist") or None,
        "resultsBlacklist": values.get("results_blacklist") or None,
        "snapshotInterval": interval,
        "snapshotRetention": int(keep) if keep and interval else None,
        "snapshotWhitelist": values.get("snapshot_whitelist") or None,
        "snapshotBlacklist": values.get("snapshot_blacklist") or None,
        "snapshotBucket": text("snapshot_bucket"),
        "snapshotBucketPrefix": text("snapshot_prefix"),
        "uploadResultsOnCancellation": bool(values.get("upload_on_cancel")),
        "includeUnchangedInputs": bool(values.get("include_unchanged")),
        "wallTimeLimit": text("wall_time"),
        "resumeFrom": {"taskUuid": text("resume_task"), "snapshotId": text("resume_snapshot")}
        if text("resume_task")
        else None,
    }


def at_field(message: str) -> str:
    """The message without the API field name it starts with (shown next to that field)."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head in API_FIELDS else message


def field_of(message: str) -> str | None:
    head = re.split(r"[:\s]", message.strip(), maxsplit=1)[0]
    if head in API_FIELDS:
        return API_FIELDS[head]
    if message.startswith("bucket ") and "not found" in message:
        return "buckets"
    return None


class _DryRun(Exception):
    pass


def create_task(
    request: Request, user: WebUser, values: dict[str, Any], uploads: list[Upload]
) -> str:
    """Check everything (a rolled-back ``build_task``), store the uploads, create the task."""
    ctx = server_ctx(request)
    upload_bucket = None
    if uploads:
        upload_bucket = values.get("upload_bucket", "").strip() or (
            f"{slug(values.get('name', ''))}-inputs-{secrets.token_hex(3)}"
        )
        try:
            bx.check_bucket_name(upload_bucket)
        except ApiError as exc:
            raise FieldError("upload_bucket", exc.message) from None
    body = submission_body(values, upload_bucket)
    try:
        sub = TaskSubmission.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        raise BadRequest(f"{loc}: {err['msg']}") from None
    try:
        with ctx.db.session() as s:
            if upload_bucket:
                bx.ensure_bucket(s, user.id, upload_bucket)
            build_task(s, ctx.settings, user.caller, sub)
            raise _DryRun
    except _DryRun:
        pass
    stored = []
    store = ctx.store(user.id)
    tmp = ctx.settings.data_dir / "tmp"
    source: dict[str, Upload] = {}

    def put(up: Upload) -> Stored:
        up.file.file.seek(0)
        return store.put_stream(up.file.file, tmpdir=tmp)

    if uploads:
        tmp.mkdir(exist_ok=True)
        for up in uploads:
            blob = put(up)
            stored.append((up.key, blob))
            source[blob.digest] = up
        store.flush()
    with ctx.db.session() as s:
        if upload_bucket:
            # content found already stored may have been freed since (garbage collection)
            blobrefs.ensure_stored(s, store, user.id, source, lambda d: put(source[d]))
            bucket = bx.ensure_bucket(s, user.id, upload_bucket)
            now = time.time_ns()
            for key, blob in stored:
                bx.put_object(
                    s, bucket, key, digest=blob.digest, size=blob.size, mtime_ns=now, md5=blob.md5
                )
        return build_task(s, ctx.settings, user.caller, sub).uuid


def restart_values(s: Session, user: WebUser, task_uuid: str, snapshot_id: str) -> dict[str, Any]:
    """The form filled in to restart the user's task ``task_uuid`` from a snapshot: its
    command, environment and resources, with /job restored from ``snapshot_id``."""
    task = s.get(Task, task_uuid)
    if task is None or task.owner_id != user.id or task.deleted:
        return {}
    return {
        "name": f"{task.name}-restart"[:255],
        "command": task.command,
        "profile": task.profile,
        "environment": "\n".join(f"{c['key']}={c['value']}" for c in task.constants),
        "buckets": [r["bucketName"] for r in task.resource_buckets],
        "resume_task": task.uuid,
        "resume_snapshot": snapshot_id or "latest",
    }


def resume_choices(s: Session, user: WebUser, task_uuid: str) -> list[tuple[str, str]]:
    """Snapshots the task in the "Resume from" field can restart from: (id, description)."""
    task = s.get(Task, task_uuid.strip()) if task_uuid.strip() else None
    if task is None or task.owner_id != user.id or task.deleted:
        return []
    return [
        (x.id, f"{x.trigger_date:%Y-%m-%d %H:%M:%S} UTC {x.kind} {x.label or ''}".rstrip())
        for x in queries.snapshots_of(s, task.uuid)
        if x.status == "Success" and x.deleted_at is None
    ]


def _form_page(
    user: WebUser, values: dict[str, Any], buckets: list[str], **extra: Any
) -> dict[str, Any]:
    return {
        "user": user,
        "csrf": user.csrf,
        "nav": "new",
        "v": values,
        "buckets": buckets,
        "has_example": example.available(),
        "errors": {},
        "error": None,
        **extra,
    }


@router.get("/tasks/new")
def new_task(
    request: Request, user: Me, resume_task: str = "", resume_snapshot: str = ""
) -> Response:
    """The form; ``?resume_task=&resume_snapshot=`` fills it in to restart that task."""
    values = dict(DEFAULTS)
    with server_ctx(request).db.session() as s:
        buckets = queries.bucket_names(s, user.id)
        if resume_task:
            values.update(restart_values(s, user, resume_task, resume_snapshot))
        choices = resume_choices(s, user, values.get("resume_task", ""))
    settings = server_ctx(request).settings
    return page(
        "new_task.html",
        **_form_page(user, values, buckets),
        resume_choices=choices,
        min_interval=settings.min_snapshot_interval,
    )


@router.post("/tasks/new")
async def submit(request: Request, user: Me) -> Response:
    form = await request.form(max_files=MAX_FILES, max_fields=1000 + MAX_FILES)
    try:
        await check_csrf(request, user, form)
        values = form_values(form)
        try:
            uploads = uploads_of(form)
            uuid = await run_in_threadpool(create_task, request, user, values, uploads)
        except ApiError as exc:
            field = getattr(exc, "field", None) or field_of(exc.message)
            if wants_json(request):
                return JSONResponse(
                    {"message": exc.message, "field": field, "fieldMessage": at_field(exc.message)},
                    status_code=exc.status,
                )
            with server_ctx(request).db.session() as s:
                buckets = queries.bucket_names(s, user.id)
                choices = resume_choices(s, user, values.get("resume_task", ""))
            return page(
                "new_task.html",
                status=exc.status,
                **_form_page(
                    user,
                    values,
                    buckets,
                    errors={field: at_field(exc.message)} if field else {},
                    error=exc.message,
                ),
                resume_choices=choices,
                min_interval=server_ctx(request).settings.min_snapshot_interval,
            )
    finally:
        await form.close()
    if wants_json(request):
        return JSONResponse({"uuid": uuid, "url": f"/tasks/{uuid}"}, status_code=201)
    return RedirectResponse(f"/tasks/{uuid}", status_code=303)


class CheckBody(BaseModel):
    regexes: dict[str, str | None] = {}
    interval: int | None = None
    expected: int | None = Field(default=None, ge=0)
    paths: list[str] = Field(default=[], max_length=10000)


@router.post("/ui/api/check")
async def check(request: Request, body: CheckBody, user: Me) -> dict[str, Any]:
    """Live validation for the form: the server's regex rules, warnings, the filter preview."""
    await check_csrf(request, user)
    settings = server_ctx(request).settings
    result = await run_in_threadpool(
        check_form,
        settings,
        {k: v for k, v in body.regexes.items() if k in REGEX_FIELDS},
        interval=body.interval,
        expected=body.expected,
        paths=[p[:1024] for p in body.paths],
    )
    return result.json()


@router.get("/ui/api/example")
def example_form(user: Me) -> dict[str, Any]:
    if not example.available():
        raise NotFound("the example simulation (examples/heat) is not installed with this server")
    return example.description()


@router.get("/ui/example/{name}")
def example_file(name: str, user: Me) -> Response:
    path = example.FILES.get(name)
    if path is None or not path.is_file():
        raise NotFound(f"no example file {name!r}")
    return FileResponse(path, media_type="text/x-python; charset=utf-8")
