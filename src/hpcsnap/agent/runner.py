"""One task from start to end: stage, run, watch, snapshot, upload results, report.

The outcome is decided here, in one place:

==========================  ===========  ====================================================
what happened               final state  results uploaded
==========================  ===========  ====================================================
command exited 0            Success      yes
command exited non-zero     Failure      yes
wall-time limit reached     Failure      yes (after a ``final`` snapshot, before the kill)
SIGUSR1 (time limit near)   Failure      yes (after a ``final`` snapshot, before the kill)
abort (or SIGTERM/SIGINT)   Cancelled    only with ``uploadResultsOnCancellation``
staging failed              Failure      no
==========================  ===========  ====================================================

The results upload is retried, with backoff, while the storage fails in a way that may pass
(its S3 server away, its disk full or read-only: ``TransientBlobError``), for up to
:data:`RESULTS_PATIENCE` seconds; the task stays ``UploadingResults`` meanwhile.

SIGUSR1 is what Slurm sends ``grace`` seconds before a job's time limit (``sbatch
--signal=B:USR1@grace``): the agent stops the task as at its own wall-time limit, so that the
final snapshot and the results are safe before Slurm kills the job.

Staging first restores the snapshot the task resumes from, if any (:mod:`hpcsnap.agent.resume`),
then places the resource files: a resource file replaces a restored entry at the same path.
Both are the baseline: left out of snapshots and results until they change.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from hpcsnap.agent.client import AgentClient, CredentialRevoked, ServerRefused
from hpcsnap.agent.jobsocket import SOCKET_NAME, JobSocket
from hpcsnap.agent.logs import LogShipper
from hpcsnap.agent.protocol import AgentEvents, AgentSpec, ResultsCommit, StateReport, TaskState
from hpcsnap.agent.resume import snapshot_entries
from hpcsnap.agent.sandbox import Sandbox
from hpcsnap.agent.shell import ShellManager
from hpcsnap.agent.snapshots import Snapshotter, with_files
from hpcsnap.blobstore import ContentStore, TransientBlobError, open_backend
from hpcsnap.snapshot.capture import capture
from hpcsnap.snapshot.filters import CAPTURE_BUDGET, PathFilter
from hpcsnap.snapshot.manifest import Entry, Manifest
from hpcsnap.snapshot.restore import restore

log = logging.getLogger(__name__)

#: How long the results upload is retried while the storage fails (seconds).
RESULTS_PATIENCE = 1800.0
#: Longest wait between two tries of the results upload (seconds).
RESULTS_MAX_BACKOFF = 30.0


class TaskRunner:
    def __init__(self, client: AgentClient, work_dir: Path, task_uuid: str) -> None:
        self.client = client
        self.work_dir = work_dir
        self.task_uuid = task_uuid
        self.abort = threading.Event()
        self.time_up = threading.Event()
        self.revoked = threading.Event()
        self.finished = threading.Event()
        self.snapshotter: Snapshotter | None = None
        self.shells: ShellManager | None = None

    # -- signals and events ----------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("received signal %d: aborting the task", signum)
        self.abort.set()

    def _on_time_up(self, _signum: int, _frame: FrameType | None) -> None:
        log.warning("received SIGUSR1: the job's time limit is near; stopping the task")
        self.time_up.set()

    def _poll_events(self) -> None:
        version = -1
        delay = 0.2
        while not self.finished.is_set():
            try:
                data = self.client.call(
                    "GET",
                    "/events",
                    params={"wait": 20, "version": version},
                    patience=0,
                    timeout=40,
                )
                delay = 0.2
            except CredentialRevoked:
                self.revoked.set()
                return
            except Exception as exc:
                log.warning("events: %s; retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            ev = AgentEvents.model_validate(data)
            if ev.abort or ev.deleted:
                self.abort.set()
            if self.snapshotter is not None:
                self.snapshotter.configure(ev.periodic)
                version = self.snapshotter.periodic_version
                for req in ev.snapshots:
                    self.snapshotter.submit(req)
            else:
                version = ev.periodic.version
            if self.shells is not None:
                for shell in ev.shells:
                    self.shells.open(shell)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_time_up)
        spec = AgentSpec.model_validate(self.client.call("GET", "/spec", patience=None))
        store = ContentStore(open_backend(spec.storage), spec.namespace)
        box = Sandbox.create(self.work_dir / self.task_uuid, task_user=spec.task_user)
        try:
            baseline = self.stage(spec, store, box)
        except Exception as exc:
            log.exception("staging failed")
            self.report(TaskState.FAILURE, error=f"staging the resources failed: {exc}")
            self.discard(spec, box)
            return 1
        self.report(TaskState.EXECUTING, job_mode=box.mode)
        threading.Thread(target=self._poll_events, name="events", daemon=True).start()
        self.snapshotter = Snapshotter(
            self.client,
            store,
            box.job,
            baseline=baseline,
            include_unchanged_inputs=spec.include_unchanged_inputs,
            periodic=spec.periodic,
            soft_limit=spec.soft_limit,
            hard_limit=spec.hard_limit,
            ahead=spec.store_ahead,
        ).start()
        sock: JobSocket | None = None
        try:
            sock = JobSocket(box.job / SOCKET_NAME, self.snapshotter, uid=box.uid, gid=box.gid)
            sock.start()
        except OSError as exc:
            log.error("no in-job snapshot socket (hpcsnap job snapshot will fail): %s", exc)
        env = box.environment(
            spec.environment,
            {
                "HPCSNAP_TASK_UUID": spec.uuid,
                "HPCSNAP_JOB_SOCKET": f"{box.visible_job}/{SOCKET_NAME}",
            },
        )
        proc = box.launch(spec.command, env)
        assert proc.stdout is not None and proc.stderr is not None
        self.shells = ShellManager(
            box=box,
            task=proc,
            env=env,
            uuid=spec.uuid,
            url=self.client.websocket_url,
            token=self.client.token,
        )
        shipper = LogShipper(self.client, proc.stdout, proc.stderr).start()
        started = time.monotonic()
        outcome: TaskState | None = None
        error: str | None = None
        while proc.poll() is None:
            if self.abort.is_set() or self.revoked.is_set():
                outcome, error = TaskState.CANCELLED, None
                break
            limit = spec.wall_time_limit
            if limit and time.monotonic() - started >= limit:
                outcome = TaskState.FAILURE
                error = f"wall-time limit of {limit} s reached: the task was stopped"
                self.final_snapshot()
                break
            if self.time_up.is_set():
                outcome = TaskState.FAILURE
                error = (
                    "wall-time limit of its job nearly reached (SIGUSR1 from the executor): "
                    "the task was stopped after a final snapshot"
                )
                self.final_snapshot()
                break
            time.sleep(0.1)
        box.kill(proc)
        code = proc.returncode
        self.shells.close_all(
            "the task was cancelled"
            if outcome == TaskState.CANCELLED or self.abort.is_set()
            else "the task ended"
        )
        if outcome is None and self.abort.is_set():
            # SIGTERM to the whole job (scancel) stops the command and the agent together
            outcome = TaskState.CANCELLED
        if outcome is None:
            outcome = TaskState.SUCCESS if code == 0 else TaskState.FAILURE
            if code != 0:
                error = f"the command exited with code {code}"
        shipper.finish()
        if sock is not None:
            sock.close()
        self.snapshotter.stop()
        if self.revoked.is_set():
            log.error("the server revoked this task's credential; stopping without results")
            self.finished.set()
            return 1
        upload = outcome != TaskState.CANCELLED or spec.upload_results_on_cancellation
        if upload:
            self.report(TaskState.UPLOADING)
            try:
                self.upload_results_patiently(spec, store, box, baseline)
            except Exception as exc:
                log.exception("results upload failed")
                outcome = TaskState.FAILURE
                error = (error + "; " if error else "") + f"uploading the results failed: {exc}"
        self.finished.set()
        self.report(
            outcome, exit_code=code if outcome != TaskState.CANCELLED else None, error=error
        )
        self.discard(spec, box)
        return 0

    @staticmethod
    def discard(spec: AgentSpec, box: Sandbox) -> None:
        """Delete the task's working directory, unless the server keeps them
        (``HPCSNAP_KEEP_WORKDIRS``)."""
        if spec.keep_workdir:
            log.info("keeping the working directory %s", box.root)
        else:
            box.remove()

    def stage(self, spec: AgentSpec, store: ContentStore, box: Sandbox) -> Manifest:
        """Restore the snapshot to resume from, place the resource files in /job; return what
        was staged (the baseline)."""
        if spec.resume_error:
            raise RuntimeError(spec.resume_error)
        restored = snapshot_entries(store, spec.resume_manifests)
        restore(restored.values(), store, box.job)
        entries = [
            Entry(
                path=r.path,
                kind="file",
                size=r.size,
                mtime_ns=r.mtime_ns,
                ctime_ns=0,
                ino=0,
                mode=0o644,
                digest=r.digest,
            )
            for r in spec.resources
        ]
        restore(entries, store, box.job)
        box.hand_over()
        # restore() gives each file the size and mtime of its entry: they are the baseline.
        return Manifest([*restored.values(), *entries])

    def final_snapshot(self) -> None:
        assert self.snapshotter is not None
        try:
            _, job = self.snapshotter.open_and_submit("final")
        except Exception as exc:
            log.error("could not open the final snapshot: %s", exc)
            return
        if job is not None:
            job.done.wait(600)

    def upload_results_patiently(
        self, spec: AgentSpec, store: ContentStore, box: Sandbox, baseline: Manifest
    ) -> None:
        """:meth:`upload_results`, tried again with backoff while the storage fails in a way
        that may pass, for up to :data:`RESULTS_PATIENCE` seconds."""
        deadline = time.monotonic() + RESULTS_PATIENCE
        delay = 1.0
        while True:
            try:
                self.upload_results(spec, store, box, baseline)
                return
            except TransientBlobError as exc:
                if time.monotonic() + delay > deadline or self.abort.is_set():
                    raise
                log.warning("uploading the results failed (%s); retrying in %.0f s", exc, delay)
            if self.abort.wait(delay):  # an abort ends the waiting, after one last try
                deadline = time.monotonic()
            delay = min(delay * 2, RESULTS_MAX_BACKOFF)

    def upload_results(
        self, spec: AgentSpec, store: ContentStore, box: Sandbox, baseline: Manifest
    ) -> None:
        assert self.snapshotter is not None
        for attempt in (1, 2):
            result = capture(
                box.job,
                store,
                path_filter=PathFilter(
                    spec.results_whitelist,
                    spec.results_blacklist,
                    budget=CAPTURE_BUDGET,
                    label="results",
                ),
                parent=self.snapshotter.known,
                baseline=baseline,
                include_unchanged_inputs=spec.include_unchanged_inputs,
            )
            store.flush()
            body = ResultsCommit(files=[], warnings=list(result.warnings))
            try:
                self.client.call(
                    "POST", "/results", with_files(body, result.manifest.values()), patience=None
                )
            except ServerRefused as exc:
                if attempt == 2 or not exc.missing_digests:
                    raise
                self.snapshotter.forget(exc.missing_digests)  # freed meanwhile: store again
                continue
            return

    def report(self, state: TaskState, **fields: object) -> None:
        try:
            self.client.call(
                "POST",
                "/state",
                StateReport(state=state, **fields),  # type: ignore[arg-type]
                patience=None,
            )
        except ServerRefused as exc:
            log.error("state %s refused: %s", state, exc)
