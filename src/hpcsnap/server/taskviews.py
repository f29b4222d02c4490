"""JSON shapes of tasks and snapshots, exactly as Qarnot's API and SDK expect them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hpcsnap.agent.protocol import TaskState
from hpcsnap.server.db import Snapshot, Task
from hpcsnap.server.db.models import utcnow


def fmt_date(value: dt.datetime | None) -> str | None:
    """``%Y-%m-%dT%H:%M:%SZ``: the format the qarnot SDK parses (no fraction, literal Z)."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def fmt_date_ms(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if value else None


def fmt_span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def status_json(task: Task, execution: float, wall: float) -> dict[str, Any]:
    """Qarnot's ``status`` object, complete: the qarnot SDK's ``Status`` requires the two
    ``...ByCpuModel`` lists whenever ``status`` is a non-empty object."""
    done = task.state in (TaskState.SUCCESS, TaskState.FAILURE)
    ranges = {
        "succeededRange": "0" if task.state == TaskState.SUCCESS else "",
        "executedRange": "0" if done else "",
        "failedRange": "0" if task.state == TaskState.FAILURE else "",
    }
    return {
        "instanceCount": 1,
        "downloadProgress": 0 if task.start_date is None else 100,
        "executionProgress": 100 if done else 0,
        "uploadProgress": 100 if done else 0,
        "downloadTime": "00:00:00",
        "downloadTimeSec": 0,
        "environmentTime": "00:00:00",
        "environmentTimeSec": 0,
        "executionTime": fmt_span(execution),
        "executionTimeSec": int(execution),
        "uploadTime": "00:00:00",
        "uploadTimeSec": 0,
        "wallTime": fmt_span(wall),
        "wallTimeSec": int(wall),
        **ranges,
        "executionTimeByCpuModel": [],
        "executionTimeGhzByCpuModel": [],
        "runningInstancesInfo": {"perRunningInstanceInfo": [], "snapshotResults": []},
    }


def task_json(task: Task) -> dict[str, Any]:
    end = task.end_date or utcnow()
    execution = (end - task.start_date).total_seconds() if task.start_date else 0.0
    wall = (end - task.creation_date).total_seconds()
    constants = [{"key": "DOCKER_CMD", "value": task.command}] + [
        c for c in task.constants if c.get("key") != "DOCKER_CMD"
    ]
    return {
        "uuid": task.uuid,
        "name": task.name,
        "shortname": task.shortname or task.uuid,
        "profile": task.profile,
        "poolUuid": None,
        "jobUuid": None,
        "instanceCount": 1,
        "state": task.state,
        "previousState": task.previous_state,
        "stateTransitionTime": fmt_date(task.state_transition_time),
        "previousStateTransitionTime": fmt_date(task.previous_state_transition_time),
        "creationDate": fmt_date(task.creation_date),
        "lastModified": fmt_date(task.state_transition_time),
        "endDate": fmt_date(task.end_date),
        "executionTime": fmt_span(execution),
        "wallTime": fmt_span(wall),
        "progress": 100 if task.state in (TaskState.SUCCESS, TaskState.FAILURE) else 0,
        "runningInstanceCount": 1 if task.state == TaskState.EXECUTING else 0,
        "runningCoreCount": 0,
        "resourceBuckets": [],
        "advancedResourceBuckets": task.resource_buckets,
        "resultBucket": task.result_bucket,
        "resultsCount": task.results_count,
        "errors": task.errors,
        "completedInstances": [],
        "constants": constants,
        "tags": task.tags,
        "labels": task.labels,
        "dependencies": None,
        "status": status_json(task, execution, wall),
        "snapshotInterval": task.snapshot_interval,
        "snapshotWhitelist": task.snapshot_whitelist,
        "snapshotBlacklist": task.snapshot_blacklist,
        "snapshotBucket": task.snapshot_bucket,
        "snapshotBucketPrefix": task.snapshot_prefix,
        "snapshotRetention": task.snapshot_retention,
        "resultsWhitelist": task.results_whitelist,
        "resultsBlacklist": task.results_blacklist,
        "uploadResultsOnCancellation": task.upload_results_on_cancellation,
        "wallTimeLimit": task.wall_time_limit,
        "resumeFrom": task.resume_from,
        "exitCode": task.exit_code,
        "jobMode": task.job_mode,
        "autoDeleteOnCompletion": False,
        "completionTimeToLive": "00:00:00",
        "privileges": {"exportApiAndStorageCredentialsInEnvironment": False},
        "retrySettings": {"maxTotalRetries": 0, "maxPerInstanceRetries": 0},
        "secretsAccessRights": {"bySecret": [], "byPrefix": []},
        "hardwareConstraints": [],
        "forcedNetworkRules": [],
        "schedulingType": "Flex",
    }


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    return {
        "id": snap.id,
        "taskUuid": snap.task_uuid,
        "kind": snap.kind,
        "label": snap.label,
        "status": snap.status,
        "triggerDate": fmt_date_ms(snap.trigger_date),
        "lastUpdateDate": fmt_date_ms(snap.last_update_date),
        "snapshotConfig": {
            "whitelist": snap.whitelist,
            "blacklist": snap.blacklist,
            "bucket": snap.bucket,
            "bucketPrefix": snap.bucket_prefix,
        },
        "directory": snap.directory,
        "sizeToUpload": snap.size_to_upload,
        "transferredSize": snap.transferred_size,
        "filesTotal": snap.files_total,
        "filesDone": snap.files_done,
        "filesReused": snap.files_reused,
        "filesRead": snap.files_read,
        "bytesTotal": snap.bytes_total,
        "bytesStored": snap.bytes_stored,
        "durationMs": snap.duration_ms,
        "skippedTicks": snap.skipped_ticks,
        "parentId": snap.parent_id,
        "manifestDigest": snap.manifest_digest,
        "warnings": snap.warnings,
        "error": snap.error,
        "deleted": snap.deleted_at is not None,
        "deletedAt": fmt_date_ms(snap.deleted_at),
    }
