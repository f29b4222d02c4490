"""Tasks: submit (Qarnot's JSON shape), list, inspect, abort, delete, stdout/stderr."""

from __future__ import annotations

import json
import logging
import re
import uuid as uuidlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import ACTIVE_STATES, TERMINAL_STATES, TaskState
from hpcsnap.blobstore import BlobError
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.api.deps import Ctx, DbSession, User
from hpcsnap.server.auth import Caller
from hpcsnap.server.config import Settings
from hpcsnap.server.db import LogChunk, Task
from hpcsnap.server.errors import ApiError, BadRequest, Forbidden, NotFound
from hpcsnap.server.events import record_state
from hpcsnap.server.lifecycle import lock_task, set_state
from hpcsnap.server.resume import ResumeFrom, resolve
from hpcsnap.server.retention import check_retention
from hpcsnap.server.taskgc import collect_task
from hpcsnap.server.taskviews import task_json
from hpcsnap.snapshot.filters import FilterError, compile_pattern

log = logging.getLogger(__name__)
router = APIRouter(tags=["tasks"])

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PROFILES = ("shell", "docker-batch")
SPAN = re.compile(r"^(?:(\d+)\.)?(\d+):([0-5]?\d):([0-5]?\d)$")


class Constant(BaseModel):
    key: str
    value: str | None = None


class ResourceBucketRef(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    bucket_name: str = Field(alias="bucketName")


class TaskSubmission(BaseModel):
    """The body of ``POST /tasks``: Qarnot's fields plus hpcsnap's (unknown keys are ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1, max_length=255)
    shortname: str | None = Field(default=None, max_length=255)
    profile: str = "docker-batch"
    command: str | None = None
    constants: list[Constant] = []
    tags: list[str] = []
    labels: dict[str, Any] = {}
    advanced_resource_buckets: list[ResourceBucketRef] = Field(
        default=[], alias="advancedResourceBuckets"
    )
    resource_buckets: list[str] = Field(default=[], alias="resourceBuckets")
    result_bucket: str | None = Field(default=None, alias="resultBucket")
    results_whitelist: str | None = Field(default=None, alias="resultsWhitelist")
    results_blacklist: str | None = Field(default=None, alias="resultsBlacklist")
    snapshot_whitelist: str | None = Field(default=None, alias="snapshotWhitelist")
    snapshot_blacklist: str | None = Field(default=None, alias="snapshotBlacklist")
    snapshot_interval: int | None = Field(default=None, alias="snapshotInterval")
    snapshot_bucket: str | None = Field(default=None, alias="snapshotBucket")
    snapshot_prefix: str | None = Field(default=None, alias="snapshotBucketPrefix")
    snapshot_retention: int | None = Field(default=None, alias="snapshotRetention")
    upload_results_on_cancellation: bool | None = Field(
        default=None, alias="uploadResultsOnCancellation"
    )
    include_unchanged_inputs: bool = Field(default=False, alias="includeUnchangedInputs")
    wall_time_limit: int | str | None = Field(default=None, alias="wallTimeLimit")
    instance_count: int | None = Field(default=1, alias="instanceCount")
    advanced_ranges: str | None = Field(default=None, alias="advancedRanges")
    resume_from: ResumeFrom | None = Field(default=None, alias="resumeFrom")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        if len(tags) > 64 or any(len(t) > 128 for t in tags):
            raise ValueError("at most 64 tags of at most 128 characters")
        return tags


def parse_span(value: int | str | None, field: str) -> int | None:
    """Seconds from an int or ``[D.]HH:MM:SS``; None/0 means no limit."""
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, int):
        seconds = value
    elif value.isdigit():
        seconds = int(value)
    else:
        m = SPAN.match(value)
        if not m:
            raise BadRequest(f"{field}: expected seconds or [D.]HH:MM:SS, got {value!r}")
        d, h, mi, s = (int(x) if x else 0 for x in m.groups())
        seconds = ((d * 24 + h) * 60 + mi) * 60 + s
    if seconds < 0:
        raise BadRequest(f"{field} must not be negative")
    return seconds or None


def check_regex(field: str, pattern: str | None) -> str | None:
    if pattern is None or pattern == "":
        return None
    try:
        compile_pattern(pattern)
    except FilterError as exc:
        raise BadRequest(f"{field}: {exc}") from None
    return pattern


def check_interval(settings: Settings, interval: int | None, field: str = "interval") -> int:
    if interval is None:
        return 0
    if interval < 0:
        raise BadRequest(f"{field} must be 0 (off) or a positive number of seconds, got {interval}")
    if 0 < interval < settings.min_snapshot_interval:
        raise BadRequest(
            f"{field} {interval} s is below this server's minimum of "
            f"{settings.min_snapshot_interval} s"
        )
    return interval


def build_task(session: Session, settings: Settings, caller: Caller, sub: TaskSubmission) -> Task:
    """Validate a submission completely, then create its task (state ``Submitted``)."""
    if sub.profile not in PROFILES and not sub.profile.startswith("docker-"):
        raise BadRequest(f"profile: unknown profile {sub.profile!r}; use one of {PROFILES}")
    if (sub.instance_count or 1) != 1 or sub.advanced_ranges:
        raise BadRequest("instanceCount: hpcsnap runs single-instance tasks (instanceCount 1)")
    env: list[dict[str, str]] = []
    command = sub.command
    for c in sub.constants:
        if c.key == "DOCKER_CMD":
            command = command or c.value
        elif not ENV_NAME.match(c.key):
            raise BadRequest(f"constants: {c.key!r} is not a valid environment variable name")
        else:
            env.append({"key": c.key, "value": c.value or ""})
    if not command or not command.strip():
        raise BadRequest("constants: the command (constant DOCKER_CMD, or 'command') is required")
    if "\x00" in command:
        raise BadRequest("command must not contain NUL characters")
    regexes = {
        "resultsWhitelist": check_regex("resultsWhitelist", sub.results_whitelist),
        "resultsBlacklist": check_regex("resultsBlacklist", sub.results_blacklist),
        "snapshotWhitelist": check_regex("snapshotWhitelist", sub.snapshot_whitelist),
        "snapshotBlacklist": check_regex("snapshotBlacklist", sub.snapshot_blacklist),
    }
    interval = check_interval(settings, sub.snapshot_interval, "snapshotInterval")
    wall = parse_span(sub.wall_time_limit, "wallTimeLimit")
    resources: list[dict[str, Any]] = []
    names = [r.bucket_name for r in sub.advanced_resource_buckets] + sub.resource_buckets
    raw = {r.bucket_name: r.model_dump(by_alias=True) for r in sub.advanced_resource_buckets}
    for name in dict.fromkeys(names):
        bx.get_bucket(session, caller.user_id, name)  # 404 names the missing bucket
        ref = raw.get(name, {"bucketName": name})
        ref.setdefault("filtering", {})
        ref.setdefault("resourcesTransformation", {})
        ref.setdefault("cacheTTLSec", None)
        resources.append(ref)
    resume_from = resolve(session, caller, sub.resume_from) if sub.resume_from else None
    task_uuid = str(uuidlib.uuid4())
    result_bucket = sub.result_bucket or f"task-{task_uuid}"
    bx.ensure_bucket(session, caller.user_id, result_bucket)
    if sub.snapshot_bucket:
        bx.ensure_bucket(session, caller.user_id, sub.snapshot_bucket)
    task = Task(
        uuid=task_uuid,
        owner_id=caller.user_id,
        name=sub.name,
        shortname=sub.shortname,
        profile=sub.profile,
        command=command,
        tags=sub.tags,
        labels=sub.labels,
        constants=env,
        resource_buckets=resources,
        result_bucket=result_bucket,
        results_whitelist=regexes["resultsWhitelist"],
        results_blacklist=regexes["resultsBlacklist"],
        snapshot_whitelist=regexes["snapshotWhitelist"],
        snapshot_blacklist=regexes["snapshotBlacklist"],
        snapshot_interval=interval,
        snapshot_bucket=sub.snapshot_bucket,
        snapshot_prefix=bx.check_prefix(sub.snapshot_prefix) or None,
        snapshot_retention=check_retention(sub.snapshot_retention),
        upload_results_on_cancellation=bool(sub.upload_results_on_cancellation),
        include_unchanged_inputs=sub.include_unchanged_inputs,
        wall_time_limit=wall,
        resume_from=resume_from,
        state=TaskState.SUBMITTED.value,
        executor=settings.executor,
    )
    session.add(task)
    session.flush()
    record_state(session, task, None)
    return task


def _message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@router.post("/tasks", status_code=201)
async def submit(request: Request, ctx: Ctx, user: User) -> Any:
    """Submit one task (JSON object → ``{"uuid"}``) or several (JSON array → one result each)."""
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if isinstance(body, list):
        return JSONResponse([_submit_one(ctx, user, item) for item in body], status_code=200)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object describing the task")
    result = _submit_one(ctx, user, body)
    if result["statusCode"] >= 300:
        raise ApiError(result["message"], status=result["statusCode"])
    return {"uuid": result["uuid"]}


def _submit_one(ctx: Ctx, user: Caller, body: Any) -> dict[str, Any]:
    try:
        sub = TaskSubmission.model_validate(body)
        with ctx.db.session() as session:
            task = build_task(session, ctx.settings, user, sub)
            return {"uuid": task.uuid, "statusCode": 200, "message": "submitted"}
    except ValidationError as exc:
        return {"uuid": None, "statusCode": 400, "message": _message(exc)}
    except ApiError as exc:
        return {"uuid": None, "statusCode": exc.status, "message": exc.message}


def get_task(session: Session, caller: Caller, task_uuid: str, *, lock: bool = False) -> Task:
    """The caller's task; another user's task is answered exactly as a missing one. ``lock``
    holds it (:func:`~hpcsnap.server.lifecycle.lock_task`) for a decision on its state."""
    task = lock_task(session, task_uuid) if lock else session.get(Task, task_uuid)
    if task is None or task.owner_id != caller.user_id or task.deleted:
        raise NotFound(f"task {task_uuid} not found")
    return task


@router.get("/tasks")
def list_tasks(user: User, session: DbSession, state: str | None = None) -> list[dict[str, Any]]:
    query = select(Task).where(Task.owner_id == user.user_id, Task.deleted.is_(False))
    if state:
        query = query.where(Task.state == state)
    return [task_json(t) for t in session.scalars(query.order_by(Task.creation_date.desc()))]


@router.get("/tasks/{task_uuid}")
def show_task(task_uuid: str, user: User, session: DbSession) -> dict[str, Any]:
    return task_json(get_task(session, user, task_uuid))


def request_abort(session: Session, task: Task) -> None:
    if task.state in TERMINAL_STATES:
        raise Forbidden(f"task {task.uuid} is already completed ({task.state})")
    if task.state == TaskState.SUBMITTED:
        set_state(session, task, TaskState.CANCELLED, error="aborted before it started")
        return
    task.abort_requested = True
    set_state(session, task, TaskState.PENDING_CANCEL)


@router.post("/tasks/{task_uuid}/abort")
def abort(task_uuid: str, user: User, session: DbSession) -> dict[str, Any]:
    task = get_task(session, user, task_uuid, lock=True)
    request_abort(session, task)
    return task_json(task)


@router.delete("/tasks/{task_uuid}", status_code=204)
def delete_task(task_uuid: str, ctx: Ctx, user: User) -> Response:
    """Delete a task (aborting it first if it runs). Its result bucket is kept; what only its
    snapshots held is freed (unless a task resumed from one may still restore it)."""
    with ctx.db.session() as session:
        task = get_task(session, user, task_uuid, lock=True)
        if task.state not in TERMINAL_STATES:
            request_abort(session, task)
        task.deleted = True
    try:
        collect_task(ctx.db, ctx.store(user.user_id), task_uuid)
    except BlobError as exc:  # the task is deleted; what is left is for the full sweep
        log.warning("task %s deleted, its snapshots' content not freed: %s", task_uuid, exc)
    return Response(status_code=204)


def read_log(session: Session, task_uuid: str, stream: str, start: int = 0) -> tuple[str, int]:
    chunks = session.scalars(
        select(LogChunk)
        .where(LogChunk.task_uuid == task_uuid, LogChunk.stream == stream)
        .where(LogChunk.offset + func.length(LogChunk.data) > start)
        .order_by(LogChunk.offset)
    ).all()
    text = "".join(c.data for c in chunks)
    first = chunks[0].offset if chunks else start
    text = text[max(0, start - first) :]
    return text, start + len(text)


def _log_response(text: str) -> PlainTextResponse:
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


def _whole(session: Session, user: Caller, task_uuid: str, stream: str, offset: int) -> str:
    get_task(session, user, task_uuid)
    return read_log(session, task_uuid, stream, max(0, offset))[0]


def _fresh(session: Session, user: Caller, task_uuid: str, stream: str) -> str:
    task = get_task(session, user, task_uuid)
    cursor_attr = f"{stream}_cursor"
    text, end = read_log(session, task_uuid, stream, getattr(task, cursor_attr))
    setattr(task, cursor_attr, end)
    return text


@router.get("/tasks/{task_uuid}/stdout")
def stdout(task_uuid: str, user: User, session: DbSession, offset: int = 0) -> PlainTextResponse:
    """The task's standard output since it started (or from character ``offset``)."""
    return _log_response(_whole(session, user, task_uuid, "stdout", offset))


@router.get("/tasks/{task_uuid}/stderr")
def stderr(task_uuid: str, user: User, session: DbSession, offset: int = 0) -> PlainTextResponse:
    """The task's standard error since it started (or from character ``offset``)."""
    return _log_response(_whole(session, user, task_uuid, "stderr", offset))


@router.post("/tasks/{task_uuid}/stdout")
def fresh_stdout(task_uuid: str, user: User, session: DbSession) -> PlainTextResponse:
    """Standard output written since the previous POST (the cursor is kept on the server)."""
    return _log_response(_fresh(session, user, task_uuid, "stdout"))


@router.post("/tasks/{task_uuid}/stderr")
def fresh_stderr(task_uuid: str, user: User, session: DbSession) -> PlainTextResponse:
    """Standard error written since the previous POST (the cursor is kept on the server)."""
    return _log_response(_fresh(session, user, task_uuid, "stderr"))


def _instance(session: Session, user: Caller, task_uuid: str, instance_id: str) -> None:
    get_task(session, user, task_uuid)
    if instance_id != "0":
        raise NotFound(f"task instance {instance_id} not found: hpcsnap tasks have instance 0 only")


@router.get("/tasks/{task_uuid}/stdout/{instance_id}")
def instance_stdout(
    task_uuid: str, instance_id: str, user: User, session: DbSession
) -> PlainTextResponse:
    """Qarnot's per-instance route: the standard output of instance 0 (the only one)."""
    _instance(session, user, task_uuid, instance_id)
    return _log_response(_whole(session, user, task_uuid, "stdout", 0))


@router.get("/tasks/{task_uuid}/stderr/{instance_id}")
def instance_stderr(
    task_uuid: str, instance_id: str, user: User, session: DbSession
) -> PlainTextResponse:
    """Qarnot's per-instance route: the standard error of instance 0 (the only one)."""
    _instance(session, user, task_uuid, instance_id)
    return _log_response(_whole(session, user, task_uuid, "stderr", 0))


@router.post("/tasks/{task_uuid}/stdout/{instance_id}")
def fresh_instance_stdout(
    task_uuid: str, instance_id: str, user: User, session: DbSession
) -> PlainTextResponse:
    """Standard output of instance 0 since the previous POST (the cursor is the task's)."""
    _instance(session, user, task_uuid, instance_id)
    return _log_response(_fresh(session, user, task_uuid, "stdout"))


@router.post("/tasks/{task_uuid}/stderr/{instance_id}")
def fresh_instance_stderr(
    task_uuid: str, instance_id: str, user: User, session: DbSession
) -> PlainTextResponse:
    """Standard error of instance 0 since the previous POST (the cursor is the task's)."""
    _instance(session, user, task_uuid, instance_id)
    return _log_response(_fresh(session, user, task_uuid, "stderr"))


def active_count(session: Session, executor: str) -> int:
    states = [s.value for s in ACTIVE_STATES]
    return (
        session.scalar(
            select(func.count()).where(Task.executor == executor, Task.state.in_(states))
        )
        or 0
    )
