"""API fuzzing: schemathesis generates requests from the live ``/openapi.json`` (issue #10, 4).

Every operation gets valid and invalid inputs (random ids, and then the caller's real task,
snapshot, bucket and key), over 1,000 cases in all. Every answer must be no 5xx, have a
documented status, the documented content type, and match the documented schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.support import Api, ServerProcess

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Examples per operation and generation mode, with random path parameters ...
RANDOM_EXAMPLES = 25
#: ... and per operation with the caller's real objects in the path.
REAL_EXAMPLES = 12
#: Revoking tokens at random would lock the fuzzer out: tests/security/test_tenancy.py covers it.
SKIPPED = {"DELETE /v1/tokens/{token_id}"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("fuzz"), HPCSNAP_SLOTS="1") as srv:
        yield srv


def _real_objects(api: Api) -> dict[str, str]:
    api.ok("POST", "/buckets", json={"name": "fuzz-data"})
    api.upload("fuzz-data", "dir/file.txt", b"content")
    uuid = api.submit("echo hi; sleep 300", resultBucket="fuzz-data")
    api.wait(uuid, {"FullyExecuting"})
    snap = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "fuzz"})["id"]
    api.wait_snapshot(uuid, snap)
    return {
        "task_uuid": uuid,
        "snapshot_id": snap,
        "name": "fuzz-data",
        "key": "dir/file.txt",
        "instance_id": "0",
    }


@pytest.mark.timeout(600)
def test_every_operation_answers_as_documented(fuzzed: ServerProcess, tmp_path: Path) -> None:
    api = fuzzed.user("fuzzer")
    token = str(api.http.headers["Authorization"])
    real = _real_objects(api)
    schema = schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")
    failures: dict[tuple[str, str], str] = {}
    count = 0

    def run(op: Any, mode: Any, examples: int, path_parameters: dict[str, str] | None) -> None:
        strategy = op.as_strategy(generation_mode=mode, path_parameters=path_parameters)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def one(case: Any) -> None:
            nonlocal count
            count += 1
            resp = case.call(base_url=fuzzed.url, headers={"Authorization": token}, timeout=30)
            for check in CHECKS:
                try:
                    case.validate_response(resp, checks=[check])
                except (Exception, BaseExceptionGroup) as exc:
                    failures.setdefault(
                        (op.label, check.__name__),
                        f"{resp.status_code}: {exc}\n{case.as_curl_command()}"[:1500],
                    )

        # Unsatisfiable: e.g. no invalid input exists for an operation without parameters
        with contextlib.suppress(Unsatisfiable):
            one()

    operations = [r.ok() for r in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert "POST /v1/tasks" in labels and "GET /v1/tasks/{task_uuid}/snapshots" in labels
    for op in operations:
        if op.label in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(op, mode, RANDOM_EXAMPLES, None)
        params = {p.name for p in op.path_parameters}
        if params:
            run(op, GenerationMode.POSITIVE, REAL_EXAMPLES, {p: real[p] for p in params})
    report = "\n\n".join(f"{label} [{check}]\n{text}" for (label, check), text in failures.items())
    assert not failures, f"{len(failures)} kinds of failure in {count} cases:\n{report}"
    assert count >= 1000, f"only {count} cases were generated"
    # the server is still healthy, and the fuzzer still the only owner of its data
    assert api.ok("GET", "/info")["email"] == "fuzzer@hpcsnap.local"
    print(f"schemathesis: {count} cases, {len(operations)} operations, no failure")
