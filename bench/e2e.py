"""P4, P5, P8: through a real server, real agents and real tasks."""

from __future__ import annotations

import bisect
import json
import math
import os
import random
import re
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import Api, ServerProcess, agent_pids, wait_for

from bench import cpujob
from bench.engine import Row
from bench.timing import Sample, settle
from hpcsnap.sdk.snapshot import parse_date

HERE = Path(__file__).parent


def _vm_hwm_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) if m else 0


def _cpu_s(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq) and
    stolen by its host (``steal``), from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / tick, steal / tick


#: The columns of a :class:`Timeline` sample after its time.
COLUMNS = ("agent", "server", "machine", "steal")


@dataclass
class Timeline:
    """One P4 run as the bench saw it: every 0.2 s, the Unix time and the CPU seconds used so
    far by the task's agent, by the server and by the whole machine, and the steal time
    (:data:`COLUMNS`); the job's timed part (it says when it began); its snapshots.

    What the job feels of its snapshots is what ran during its timed part, while it keeps every
    core busy: the agent's and the server's CPU over the whole task also count what they did
    while the job wrote its tree, on a core the job left idle (bench/README.md, P4)."""

    samples: list[tuple[float, ...]] = field(default_factory=list)
    start: float | None = None
    elapsed: float = 0.0
    #: (triggered, ended, files read) of each successful snapshot, times in Unix time
    snapshots: list[tuple[float, float, int]] = field(default_factory=list)

    def at(self, column: str, when: float) -> float:
        """``column``'s value at ``when``, interpolated between the samples around it."""
        i = COLUMNS.index(column) + 1
        times = [s[0] for s in self.samples]
        k = bisect.bisect_right(times, when)
        if k == 0:
            return self.samples[0][i]
        if k == len(times):
            return self.samples[-1][i]
        (t0, v0), (t1, v1) = (times[k - 1], self.samples[k - 1][i]), (times[k], self.samples[k][i])
        return v1 if t1 <= t0 else v0 + (v1 - v0) * (when - t0) / (t1 - t0)

    def between(self, column: str, begin: float, end: float) -> float:
        return self.at(column, end) - self.at(column, begin)

    def timed(self, column: str) -> float | None:
        """``column``'s CPU seconds during the job's timed part (None: the job did not say)."""
        if self.start is None or not self.samples:
            return None
        return self.between(column, self.start, self.start + self.elapsed)

    def report(self, side: str) -> dict[str, object]:
        """This run as one JSON object: its timed part's CPU, then second by second."""
        assert self.start is not None
        start = self.start
        seconds = [
            [
                round(self.between(c, start + k, min(start + k + 1, start + self.elapsed)), 3)
                for c in COLUMNS
            ]
            for k in range(math.ceil(self.elapsed))
        ]
        return {
            "side": side,
            "elapsed": round(self.elapsed, 3),
            "timed": {c: round(self.timed(c) or 0.0, 3) for c in COLUMNS},
            "columns": COLUMNS,
            "seconds": seconds,
            "snapshots": [
                [round(a - start, 2), round(b - start, 2), read] for a, b, read in self.snapshots
            ],
        }


def _unix(stamp: str) -> float:
    """A date of the API (a snapshot's ``triggerDate``), as the SDK reads it, in Unix time."""
    when = parse_date(stamp)
    assert when is not None, f"not a date of the API: {stamp!r}"
    return when.timestamp()


def _elapsed(
    api: Api,
    uuid: str,
    cpu: dict[str, float] | None = None,
    timeline: Timeline | None = None,
) -> float:
    """The job's own wall time; with ``cpu``, also the CPU seconds its agent and the server
    spent meanwhile (the agent sampled every 0.2 s until it exits), and those the job itself
    used while timed, when it says (``job``); with ``timeline``, fills it in."""
    server = _server_pid(api)
    server_start = _cpu_s(server) if server else 0.0
    agent_cpu: dict[int, float] = {}
    while True:
        ended = api.task(uuid)["state"] in ("Success", "Failure", "Cancelled")
        for pid in agent_pids(uuid):
            agent_cpu[pid] = max(agent_cpu.get(pid, 0.0), _cpu_s(pid))
        if timeline is not None:
            busy, steal = _machine_cpu()
            server_now = _cpu_s(server) if server else 0.0
            timeline.samples.append((time.time(), sum(agent_cpu.values()), server_now, busy, steal))
        if ended:
            break
        time.sleep(0.2)
    task = api.wait(uuid, timeout=3600)
    assert task["state"] == "Success", task
    if cpu is not None:
        cpu["agent"] = sum(agent_cpu.values())
        cpu["server"] = (_cpu_s(server) - server_start) if server else 0.0
    out = api.get(f"/tasks/{uuid}/stdout").text
    said = out.rsplit("elapsed ", 1)[1].split()
    if cpu is not None and len(said) >= 3 and said[1] == "cpu":
        cpu["job"] = float(said[2])
    if timeline is not None:
        timeline.elapsed = float(said[0])
        start = re.search(r"^timed-start ([\d.]+)$", out, re.M)
        timeline.start = float(start[1]) if start else None
        timeline.snapshots = [
            (_unix(s["triggerDate"]), _unix(s["lastUpdateDate"]), int(s["filesRead"]))
            for s in api.ok("GET", f"/tasks/{uuid}/snapshots")
            if s["status"] == "Success"
        ]
    return float(said[0])


def _server_pid(api: Api) -> int | None:
    """The pid of the ``hpcsnap serve`` listening on the API's port."""
    port = str(api.http.base_url.port).encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmd and port in cmd:
            return int(p.name)
    return None


def p4_job_slowdown(
    server: ServerProcess,
    api: Api,
    runs: int,
    tree_mib: int,
    work: int,
    settle_s: float,
    interval: int = 5,
    trace: Path | None = None,
) -> list[Row]:
    """P4, and P4c; with ``interval`` 0, P4n instead: the same runs without snapshots on
    either side, whose ratio is the measure's own noise (bench/README.md, P4). With ``trace``,
    each run's :meth:`Timeline.report` is added to that file, one JSON object per line.

    The server keeps each task's 1 GiB / 10,000-file ``/job`` when it ends
    (``HPCSNAP_KEEP_WORKDIRS``), and each snapshotted run waits ``settle_s`` before it starts
    (:func:`~bench.timing.settle`), as P1 does: its snapshots create thousands of files while
    the job is timed, and on ext4 without a journal each would otherwise scan past the inodes
    deleted in the last minutes (up to six: see bench/README.md), a cost the run without
    snapshots never pays in its timed part (it creates its tree before)."""
    api.ok("POST", "/buckets", json={"name": "bench-job"})
    api.upload("bench-job", "cpujob.py", (HERE / "cpujob.py").read_bytes())
    cmd = f"python3 cpujob.py --tree-mib {tree_mib} --work {work}"
    plain, snapped = [], []
    snaps = 0
    costs: list[dict[str, float]] = []
    plain_costs: list[dict[str, float]] = []
    lines: list[Timeline] = []
    plain_lines: list[Timeline] = []
    for _ in range(runs):
        for second, (every, out) in enumerate(((0, plain), (interval, snapped))):
            if second:
                settle(settle_s)
            uuid = api.submit(
                cmd,
                advancedResourceBuckets=[{"bucketName": "bench-job"}],
                snapshotInterval=every,
                snapshotBlacklist=None,
            )
            cpu: dict[str, float] = {}
            timeline = Timeline()
            out.append(_elapsed(api, uuid, cpu, timeline))
            (costs if second else plain_costs).append(cpu)
            (lines if second else plain_lines).append(timeline)
            if trace is not None and timeline.start is not None:
                with trace.open("a") as f:
                    f.write(json.dumps(timeline.report("snapshots" if every else "none")) + "\n")
            if every:
                snaps += len(timeline.snapshots)
    a = Sample(statistics.median(snapped), min(snapped), max(snapped), len(snapped))
    b = Sample(statistics.median(plain), min(plain), max(plain), len(plain))
    r = a.median / b.median
    if not interval:
        return [
            Row(
                "P4n",
                "P4 with no snapshots on either side, run as P4 runs its two sides (the second "
                "after the same wait): how far apart two identical sides land, at this number "
                "of runs",
                str(a),
                str(b),
                r,
                "(info)",
                None,
            )
        ]
    # the same work each run: its CPU tells how fast the machine was (bench/README.md, P4)
    job_cpu = statistics.median(c.get("job", 0.0) for c in costs)
    job_cpu_plain = statistics.median(c.get("job", 0.0) for c in plain_costs)
    agent = statistics.median(c["agent"] for c in costs)
    server_cpu = statistics.median(c["server"] for c in costs)
    # what a task costs them anyway: staging, the results upload after the job, polls
    agent_plain = statistics.median(c["agent"] for c in plain_costs)
    server_plain = statistics.median(c["server"] for c in plain_costs)
    # what ran while the job kept every core busy: what it felt (:class:`Timeline`)
    timed = {
        (side, c): statistics.median(t.timed(c) or 0.0 for t in side_lines)
        for side, side_lines in (("snapshots", lines), ("none", plain_lines))
        for c in ("agent", "server")
    }
    # fewer snapshots than the interval allows would make the job look faster for nothing
    expected = int(b.median // 5) - 1
    per_run = snaps / runs
    return [
        Row(
            "P4",
            f"CPU-bound job on all cores, {tree_mib} MiB tree, 5 % churn: snapshots "
            f"every 5 s ({per_run:.0f} per run, ≥ {expected} expected; agent {agent:.1f} + "
            f"server {server_cpu:.1f} CPU-s per run, against {agent_plain:.1f} + "
            f"{server_plain:.1f} without snapshots, of which {timed['snapshots', 'agent']:.1f} "
            f"+ {timed['snapshots', 'server']:.1f} against {timed['none', 'agent']:.1f} + "
            f"{timed['none', 'server']:.1f} in the job's timed part; the job's own work took "
            f"{job_cpu:.2f} CPU-s, against {job_cpu_plain:.2f}) vs none",
            str(a),
            str(b),
            r,
            "≤ 1.05×",
            r <= 1.05 and per_run >= expected,
        ),
        copy_floor(tree_mib, runs, job_cpu=job_cpu_plain or b.median * (os.cpu_count() or 1)),
    ]


def copy_floor(tree_mib: int, runs: int, job_cpu: float) -> Row:
    """The CPU one ``cp -a`` of P4's tree costs, against the job's: any first snapshot copies
    the whole tree at least once, so this share of the job's CPU is a floor of P4's slowdown
    on a machine whose cores the job keeps busy."""
    with tempfile.TemporaryDirectory(prefix="p4-floor-") as tmp:
        src, costs = Path(tmp) / "tree", []
        cpujob.write_tree(str(src), tree_mib << 20, 10_000, random.Random(3))
        os.sync()
        for i in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(["cp", "-a", str(src), f"{tmp}/copy{i}"], check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            costs.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            os.sync()
    cpu = statistics.median(costs)
    return Row(
        "P4c",
        f"CPU of one `cp -a` of P4's tree (user + sys, median of {runs}), as a share of the "
        f"job's {job_cpu:.0f} CPU-s: the floor of any first full copy",
        "-",
        f"{cpu:.2f} CPU-s ({min(costs):.2f}–{max(costs):.2f})",
        1 + cpu / job_cpu,
        "(info)",
        None,
    )


def p5_manual_latency(api: Api, runs: int) -> Row:
    cmd = (
        "mkdir -p d; for i in $(seq 1 100); do head -c 100000 /dev/urandom > d/f$i; done; "
        "echo ready; sleep 600"
    )
    uuid = api.submit(cmd)
    wait_for(lambda: api.get(f"/tasks/{uuid}/stdout").text, lambda t: "ready" in t, 120, "files")
    times = []
    for i in range(runs):
        start = time.perf_counter()
        sid = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": f"p5-{i}"})["id"]
        delay = 0.01
        while True:
            snap = api.ok("GET", f"/tasks/{uuid}/snapshot/{sid}")
            if snap["status"] in ("Success", "Failure"):
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        assert snap["status"] == "Success", snap
        times.append(time.perf_counter() - start)
    api.ok("POST", f"/tasks/{uuid}/abort")
    s = Sample(statistics.median(times), min(times), max(times), len(times))
    return Row(
        "P5",
        "manual snapshot of 100 files / 10 MB: POST → Success seen by the client",
        str(s),
        "-",
        None,
        "median ≤ 0.3 s",
        s.median <= 0.3,
    )


def p8_agent_memory(api: Api, files: int) -> Row:
    cmd = (
        "python3 -c 'import os\n"
        f"for i in range({files}):\n"
        '    d = "d%d/e%d" % (i % 100, i % 1000)\n'
        "    os.makedirs(d, exist_ok=True)\n"
        '    open("%s/f%d" % (d, i), "w").write(str(i))\n\''
        " && hpcsnap job snapshot --label big && sleep 3"
    )
    uuid = api.submit(cmd)
    peak = 0
    snap_seen = False
    while True:
        task = api.task(uuid)
        for pid in agent_pids(uuid):
            peak = max(peak, _vm_hwm_kib(pid))
        if task["state"] in ("Success", "Failure", "Cancelled"):
            break
        time.sleep(0.2)
    snaps = api.ok("GET", f"/tasks/{uuid}/snapshots")
    snap_seen = any(s["label"] == "big" and s["status"] == "Success" for s in snaps)
    files_total = snaps[0]["filesTotal"] if snaps else 0
    mib = peak / 1024
    return Row(
        "P8",
        f"agent peak RSS (VmHWM) snapshotting {files_total:,} files",
        f"{mib:.0f} MiB",
        "-",
        None,
        "≤ 150 MiB",
        snap_seen and mib <= 150,
    )
