"""The agent's snapshot worker: one capture at a time, periodic ticks, requests, final capture.

Every successful capture is published by the server in one transaction (``commit``); a capture
that fails is reported ``Failure`` and changes nothing that was published before. Change
detection uses every file this agent has already stored (the union of its successful captures,
and of what it stored ahead), so a file is read once however the filters of successive snapshots
differ. While periodic snapshots are on and the machine has CPU to spare, the worker stores
ahead the new files the job has left alone, so that the next tick's capture reads only what
changed since. When snapshots are deleted, the server may free content this agent still
reuses: it then refuses the commit, naming the missing blobs, and the agent forgets them and
captures again (once).
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from hpcsnap.agent.client import AgentClient, CredentialRevoked, ServerRefused
from hpcsnap.agent.priority import IdleMeter, calm_session, hurry_session, lower_this_thread
from hpcsnap.agent.protocol import (
    NewSnapshot,
    PeriodicConfig,
    SnapshotCommit,
    SnapshotProgress,
    SnapshotRequest,
    SnapshotStatus,
    dump,
)
from hpcsnap.blobstore import ContentStore
from hpcsnap.snapshot.capture import CaptureResult, Progress, capture, store_ahead
from hpcsnap.snapshot.filters import CAPTURE_BUDGET, PathFilter
from hpcsnap.snapshot.manifest import Entry, Manifest

log = logging.getLogger(__name__)

HURRY_AHEAD = 0.4
"""A capture still running this share of the periodic interval before the next tick stops
yielding to the job (:func:`~hpcsnap.agent.priority.hurry_session`) until it ends, so that the
tick finds it done rather than being skipped: snapshots yield only while they keep their
schedule."""

PROGRESS_EVERY = 1.0
"""Seconds between two progress reports of a capture to the server (the last one is always
sent): each costs the server a transaction, and a job sharing the machine pays for it."""


STORE_AHEAD_LOOK = 0.5
"""Seconds between two looks, while no capture runs or waits, at whether the machine has CPU to
spare for storing ahead (:meth:`Snapshotter.store_ahead`); also how often a pass checks it
still has."""

STORE_AHEAD_LONGEST = 4.0
"""Longest wait between two passes of storing ahead: the wait doubles from
:data:`STORE_AHEAD_LOOK` after every pass that found nothing new (each pass looks at every
file of the tree: on an idle machine, once every half second was a sixth of a core for a
10,000-file tree), up to what :data:`STORE_AHEAD_SHARE` allows, and is back to
:data:`STORE_AHEAD_LOOK` once a pass stores files or a capture reads some."""

STORE_AHEAD_SHARE = 0.02
"""Share of a core that passes finding nothing may cost: the wait after such a pass grows to no
more than its CPU time over this share. A pass over a small tree costs next to nothing, so the
wait stays short while the job has written nothing yet, and its first outputs are stored as
they settle: backed off to 4 s before the job wrote anything, storing ahead had left the job's
first outputs to the ticks (P4 in bench/README.md: 2,404 of its 10,000 files were read by a
tick while it computed)."""

SYNC_AHEAD_AFTER = 0.25
"""Seconds a snapshot's sync has waited for the disk, with :data:`STORE_AHEAD_IDLE` cores left
idle meanwhile, before the worker stores ahead while it waits (:meth:`Snapshotter.flush`)."""

STORE_AHEAD_IDLE = 0.5
"""Cores left idle on average since the last look (the snapshot worker's own CPU counted as
idle) for the worker to store ahead."""

SETTLED = 0.5
"""Seconds a file must have been left alone (its ctime) to be stored ahead."""


class ManifestStore:
    """Stores manifests as blobs; a manifest equal to the previous one reuses its blob, so an
    unchanged snapshot is not even re-encoded."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self._last: tuple[Manifest, str] | None = None

    def save(self, manifest: Manifest) -> str:
        if self._last is not None and self._last[0] == manifest:
            return self._last[1]
        digest = self.store.put_stream(io.BytesIO(manifest.to_bytes())).digest
        self._last = (manifest, digest)
        return digest


@dataclass
class Job:
    request: SnapshotRequest
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    error: str | None = None


def with_files(body: BaseModel, entries: Iterable[Entry]) -> list[bytes]:
    """The JSON of ``body`` (a commit message) with the regular files among ``entries`` as its
    ``files`` (each as :class:`~hpcsnap.agent.protocol.FileEntry`; symlinks stay in the
    manifest only), as pieces to send one after the other. Encoded a few thousand files at a
    time, straight to bytes and never joined: on 100,000 files, models, one big list of dicts
    or one joined copy would cost the agent tens of MiB more."""
    payload = dump(body)
    payload.pop("files", None)
    head = json.dumps(payload)[:-1]
    parts = [head.encode(), b',"files":[' if payload else b'"files":[']
    files = [e for e in entries if e.kind == "file" and e.digest is not None]
    for i in range(0, len(files), 4096):
        rows = [
            {"path": e.path, "digest": e.digest, "size": e.size, "mtime_ns": e.mtime_ns}
            for e in files[i : i + 4096]
        ]
        parts.append((("," if i else "") + json.dumps(rows)[1:-1]).encode())
    parts.append(b"]}")
    return parts


def changes(base: Manifest, manifest: Manifest) -> tuple[list[Entry], list[str], int]:
    """What a delta commit of ``manifest`` over ``base`` (its parent's manifest) sends: the
    files whose key is new or changed (content, size or time), the paths of ``base``'s keys
    that are gone, and how many keys ``base`` published (its regular files)."""
    old, new = base.lookup, manifest.lookup
    files = []
    for e in manifest.values():
        if e.kind == "file" and e.digest is not None:
            b = old(e.path)
            if b is e:  # reused as it was (the common case): nothing to unpack
                continue
            if (
                b is None
                or b.kind != "file"
                or (b.digest, b.size, b.mtime_ns) != (e.digest, e.size, e.mtime_ns)
            ):
                files.append(e)
    removed, base_files = [], 0
    for b in base.values():
        if b.kind == "file" and b.digest is not None:
            base_files += 1
            now = new(b.path)
            if now is None or now.kind != "file" or now.digest is None:
                removed.append(b.path)
    return files, removed, base_files


class Snapshotter:
    def __init__(
        self,
        client: AgentClient,
        store: ContentStore,
        root: Path,
        *,
        baseline: Manifest,
        include_unchanged_inputs: bool,
        periodic: PeriodicConfig,
        soft_limit: int | None,
        hard_limit: int | None,
        clock: Callable[[], float] = time.monotonic,
        filter_budget: float = CAPTURE_BUDGET,
        ahead: bool = True,
    ) -> None:
        self.client = client
        self.ahead = ahead
        #: Seconds until the next look at storing ahead (see :data:`STORE_AHEAD_LONGEST`).
        self.ahead_wait = STORE_AHEAD_LOOK
        self._ahead_error = ""
        self.filter_budget = filter_budget
        self.store = store
        self.root = root
        self.baseline = baseline
        self.include_unchanged_inputs = include_unchanged_inputs
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.clock = clock
        self.known: dict[str, Entry] = {}
        self.manifests = ManifestStore(store)
        self.last_id: str | None = None
        #: The manifest of ``last_id``, whose keys a delta commit starts from.
        self.published: Manifest | None = None
        self.skipped_ticks = 0
        self._periodic = periodic
        self._next_tick = self._due(periodic)
        self._seen: set[str] = set()
        self._opened: set[str] = set()  # snapshots this agent opened, not yet captured
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._busy = threading.Lock()
        self._cfg = threading.Lock()
        self._opening = threading.Lock()  # see open_and_submit
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="snapshots", daemon=True)
        self._ticker = threading.Thread(target=self._tick, name="periodic", daemon=True)

    # -- configuration and requests -------------------------------------------------------

    def _due(self, cfg: PeriodicConfig) -> float | None:
        return self.clock() + cfg.interval if cfg.interval > 0 else None

    def configure(self, cfg: PeriodicConfig) -> None:
        with self._cfg:
            if cfg.version == self._periodic.version:
                return
            changed = cfg.interval != self._periodic.interval
            self._periodic = cfg
            if changed:
                self._next_tick = self._due(cfg)

    @property
    def periodic_version(self) -> int:
        return self._periodic.version

    def submit(self, request: SnapshotRequest) -> Job | None:
        if request.id in self._seen:
            return None
        self._seen.add(request.id)
        job = Job(request)
        self._queue.put(job)
        return job

    def start(self) -> Snapshotter:
        self._worker.start()
        self._ticker.start()
        return self

    def stop(self, *, wait: float = 600.0) -> None:
        """No new periodic ticks; let the queued captures finish (up to ``wait`` seconds)."""
        self._stop.set()
        self._queue.put(None)
        self._worker.join(wait)

    # -- the worker ----------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.tick()
            except CredentialRevoked:
                return

    def _pending(self) -> bool:
        """Whether a capture runs or waits."""
        return self._busy.locked() or not self._queue.empty()

    def tick(self) -> str:
        """One look at the periodic schedule: ``idle`` (not due), ``skipped`` (due while a
        capture runs or waits: snapshots never overlap), ``opened`` or ``error``. A capture
        that runs or waits when the tick is near (:data:`HURRY_AHEAD`), or due, is hurried."""
        with self._cfg:
            due = self._next_tick
            if due is None:
                return "idle"
            now = self.clock()
            if now < due:
                if now >= due - HURRY_AHEAD * self._periodic.interval and self._pending():
                    hurry_session()  # once per capture; calmed when it ends
                return "idle"
            self._next_tick = due + self._periodic.interval
            if self._next_tick < self.clock():
                self._next_tick = self.clock() + self._periodic.interval
        if self._pending():
            self.skipped_ticks += 1
            log.info("periodic tick skipped: a snapshot is still running")
            hurry_session()
            return "skipped"
        try:
            self.open_and_submit("periodic")
        except CredentialRevoked:
            raise
        except Exception as exc:
            log.warning("could not open a periodic snapshot: %s", exc)
            return "error"
        return "opened"

    def open_snapshot(
        self, kind: Literal["periodic", "final", "job"], label: str | None = None
    ) -> SnapshotRequest:
        """Ask the server for a new snapshot record (it fixes the filters and directory)."""
        data = self.client.call(
            "POST",
            "/snapshots",
            NewSnapshot(kind=kind, label=label),
            patience=30,
        )
        request = SnapshotRequest.model_validate(data)
        self._opened.add(request.id)
        return request

    def open_and_submit(
        self, kind: Literal["periodic", "final", "job"], label: str | None = None
    ) -> tuple[SnapshotRequest, Job | None]:
        """Open a snapshot (:meth:`open_snapshot`) and queue it (:meth:`submit`) as one step, so
        that the worker captures the snapshots this agent opens in the order the server
        stamped them, whichever thread opened them (the periodic tick, the job's own request,
        the final snapshot). The server fails as abandoned any snapshot still open that was
        stamped before one being committed (:func:`hpcsnap.server.snapshots.fail_abandoned`):
        one stamped first but queued second would be failed, then captured for nothing."""
        with self._opening:
            request = self.open_snapshot(kind, label)
            return request, self.submit(request)

    def _work(self) -> None:
        lower_this_thread()
        meter = IdleMeter()
        spare = False  # the last pass stored files, and the CPU was still spare
        while True:
            try:
                job = self._queue.get(timeout=0 if spare else self.ahead_wait)
            except queue.Empty:
                spare = (spare or meter.idle_cores() >= STORE_AHEAD_IDLE) and self.store_ahead(
                    meter
                )
                continue
            if job is None:
                return
            try:
                with self._busy:
                    self.run(job)
            finally:
                calm_session()  # after the capture: a tick seeing it still pending hurries
            job.done.set()
            meter.reset()  # the capture's CPU was not spare
            spare = False

    def _filter(self, whitelist: str | None, blacklist: str | None) -> PathFilter:
        return PathFilter(whitelist, blacklist, budget=self.filter_budget, label="snapshot")

    def store_ahead(
        self,
        meter: IdleMeter,
        *,
        until: Callable[[], bool] | None = None,
        known: Mapping[str, Entry] | None = None,
    ) -> bool:
        """While periodic snapshots are on (and ``ahead``, the server's ``HPCSNAP_STORE_AHEAD``),
        store the new files (never stored by this agent) that have been left alone for
        :data:`SETTLED` seconds, with the filters of the periodic snapshots, and add them to
        what change detection knows: the next tick's capture then reads only what changed
        since (files rewritten in place are left to it: each path is stored ahead once). Only
        on spare CPU: the pass stops when a capture is asked for, or when the machine has had
        less than :data:`STORE_AHEAD_IDLE` cores idle since the last look. Returns whether it
        stored files and the CPU is still spare (then another pass may follow at once). Best
        effort: a failure is logged and the capture does the work. ``until`` also stops the
        pass once it answers true; ``known``, entries stored but not yet in :attr:`known`, are
        not stored again."""
        cfg = self._periodic
        if not self.ahead or cfg.interval <= 0 or self._stop.is_set():
            return False
        busy = [False]

        def stop() -> bool:
            if not self._queue.empty() or self._stop.is_set():
                return True
            if until is not None and until():
                return True
            if meter.age() < STORE_AHEAD_LOOK:
                return False
            busy[0] = meter.idle_cores() < STORE_AHEAD_IDLE
            return busy[0]

        spent = time.thread_time()
        try:
            stored = store_ahead(
                self.root,
                self.store,
                path_filter=self._filter(cfg.whitelist, cfg.blacklist),
                parent=self.known if known is None else {**self.known, **known},
                settled_before=time.time_ns() - int(SETTLED * 1e9),
                stop=stop,
                baseline=None if self.include_unchanged_inputs else self.baseline,
                hard_limit=self.hard_limit,
            )
        except Exception as exc:
            if str(exc) != self._ahead_error:  # once, not at every pass on idle CPU
                log.info("storing ahead stopped: %s", exc)
                self._ahead_error = str(exc)
            return False
        spent = time.thread_time() - spent
        self.known.update(stored)
        if stored:
            self.ahead_wait = STORE_AHEAD_LOOK
        elif not busy[0]:  # a whole pass, and nothing new
            affordable = max(STORE_AHEAD_LOOK, spent / STORE_AHEAD_SHARE)
            self.ahead_wait = min(2 * self.ahead_wait, STORE_AHEAD_LONGEST, affordable)
        return bool(stored) and not busy[0]

    def run(self, job: Job) -> None:
        req = job.request
        started = time.monotonic()
        last = [started]

        def progress(p: Progress) -> None:
            # every PROGRESS_EVERY seconds, and not at the end: the commit that follows says it
            now = time.monotonic()
            done = p.files_done >= p.files_total and p.transferred >= p.size_to_upload
            if now - last[0] < PROGRESS_EVERY or done:
                return
            last[0] = now
            self._report(req.id, SnapshotStatus.IN_PROGRESS, p)

        try:
            if req.id in self._opened:  # the server made it InProgress when it was opened
                self._opened.discard(req.id)
            else:  # triggered by the user through the server
                self._report(req.id, SnapshotStatus.IN_PROGRESS, None)
            for attempt in (1, 2):
                result = capture(
                    self.root,
                    self.store,
                    path_filter=self._filter(req.whitelist, req.blacklist),
                    parent=self.known,
                    baseline=self.baseline,
                    include_unchanged_inputs=self.include_unchanged_inputs,
                    progress=progress,
                    soft_limit=self.soft_limit,
                    hard_limit=self.hard_limit,
                    flush=False,  # the commit's sync makes the content and manifest durable
                )
                try:
                    self.commit(req, result, started)
                except ServerRefused as exc:
                    if attempt == 2 or not exc.missing_digests:
                        raise
                    self.forget(exc.missing_digests)
                    continue
                break
            job.ok = True
        except CredentialRevoked:
            job.error = "the task has ended"
        except Exception as exc:
            job.error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            log.exception("snapshot %s failed", req.id)
            try:
                self.client.call(
                    "POST",
                    f"/snapshots/{req.id}/progress",
                    SnapshotProgress(status=SnapshotStatus.FAILURE, error=job.error),
                    patience=60,
                )
            except Exception:
                log.exception("could not report the failure of snapshot %s", req.id)

    def forget(self, digests: list[str]) -> None:
        """Stop reusing content the server says is no longer stored (a snapshot holding it was
        deleted and its blobs freed): the files are read and stored again next time."""
        gone = set(digests)
        log.warning("%d blob(s) were freed by the server; storing them again", len(gone))
        self.known = {p: e for p, e in self.known.items() if e.digest not in gone}
        self.manifests = ManifestStore(self.store)

    def _report(self, snap_id: str, status: SnapshotStatus, p: Progress | None) -> None:
        body = SnapshotProgress(status=status)
        if p is not None:
            body = SnapshotProgress(
                status=status,
                size_to_upload=p.size_to_upload,
                transferred_size=p.transferred,
                files_total=p.files_total,
                files_done=p.files_done,
            )
        try:
            self.client.call("POST", f"/snapshots/{snap_id}/progress", body, patience=5)
        except CredentialRevoked:
            raise
        except Exception as exc:  # progress is best effort; the commit is what counts
            log.warning("progress of snapshot %s not reported: %s", snap_id, exc)

    def commit(self, req: SnapshotRequest, result: CaptureResult, started: float) -> None:
        manifest_digest = self.manifests.save(result.manifest)
        self.flush(result.manifest)
        body = SnapshotCommit(
            files=[],
            manifest_digest=manifest_digest,
            parent_id=self.last_id,
            warnings=list(result.warnings),
            size_to_upload=result.bytes_read,
            files_total=result.files_total,
            files_reused=result.files_reused,
            files_read=result.files_read,
            bytes_total=result.bytes_total,
            bytes_stored=result.bytes_stored,
            duration_ms=int((time.monotonic() - started) * 1000),
            skipped_ticks=self.skipped_ticks,
        )
        self._send(req.id, body, result.manifest)
        if result.files_read:  # the tree changes: look for more to store ahead soon
            self.ahead_wait = STORE_AHEAD_LOOK
        self.known.update(result.manifest)
        self.last_id = req.id
        self.published = result.manifest

    def flush(self, captured: Manifest) -> None:
        """Make what the store holds durable before a snapshot is published. The sync waits
        for every write of the file system, the job's too: a job writing its files fast makes
        it wait seconds. Meanwhile, while periodic snapshots are on and the sync has waited
        :data:`SYNC_AHEAD_AFTER` with the CPU spare, the worker stores ahead (the files of
        ``captured``, stored by this snapshot, are not stored again), once per sync while a
        pass finds files: the next tick then reads less, perhaps while the job computes."""
        if not self.ahead or self._periodic.interval <= 0:
            self.store.flush()
            return
        with concurrent.futures.ThreadPoolExecutor(1, "snapshot-sync") as pool:
            synced = pool.submit(self.store.flush)
            meter = IdleMeter()
            more = True
            while not concurrent.futures.wait([synced], SYNC_AHEAD_AFTER).done:
                if more and meter.idle_cores() >= STORE_AHEAD_IDLE:
                    more = self.store_ahead(meter, until=synced.done, known=captured)
            synced.result()  # its error, if any, fails the snapshot

    def _send(self, snap_id: str, body: SnapshotCommit, manifest: Manifest) -> None:
        """Commit the changes since the previous snapshot (its keys, which the server copies
        without reading them, are most of a periodic snapshot's); every key when there is no
        previous one, or when the server no longer has its keys as published."""
        path = f"/snapshots/{snap_id}/commit"
        if self.published is not None and body.parent_id is not None:
            files, removed, base_files = changes(self.published, manifest)
            delta = body.model_copy(update={"base_files": base_files, "removed": removed})
            try:
                self.client.call("POST", path, with_files(delta, files), patience=None)
                return
            except ServerRefused as exc:
                if not exc.base_changed:
                    raise
                log.info("sending every key of snapshot %s: %s", snap_id, exc.message)
                self.published = None  # and of the next ones, until one is committed
        self.client.call("POST", path, with_files(body, manifest.values()), patience=None)
