"""Running the task's command: at the literal path /job, unprivileged, killable as a whole.

Two modes, chosen by privilege:

``namespace`` (agent runs as root)
    The command runs in a private mount namespace where the task's directory is bind-mounted
    on ``/job``, in its own PID namespace (it cannot see or signal other processes, including the
    agent and its credential), as the unprivileged task user, with no capabilities and
    ``no_new_privs``. Killing the namespace's first process kills every process of the task.
``direct`` (no privilege)
    The command runs in the task's real directory, named by ``JOB_DIR``, in its own process
    group, as the agent's user.

No shell string is ever built from user input: the command travels as one argv element to
``/bin/sh -c``, exactly as the user wrote it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hpcsnap.agent import jobclient

JOB = "/job"
#: Where the agent looks up the tools it runs as root: never the task's own PATH.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: World-readable home of the in-job ``hpcsnap`` client (hpcsnap's own interpreter may live
#: where the task user cannot go).
TOOLS = "/opt/hpcsnap/bin"
#: Run by /bin/sh inside the new namespaces; its arguments come as $1..$4, never spliced in.
#: This root shell stays the namespace's first process (its "init"): the kernel gives PID 1 no
#: default signal actions, so the user's command must not be PID 1 or a plain SIGTERM would
#: be ignored. It forwards TERM/INT/HUP to the command and exits with the command's status;
#: when it exits, the kernel kills whatever is left in the namespace.
_INNER = """\
mount --bind "$1" /job && cd /job || exit 125
setpriv --reuid "$2" --regid "$3" --clear-groups --no-new-privs --pdeathsig KILL \
  -- /bin/sh -c "$5" hpcsnap-job "$4" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
  wait "$child"
  code=$?
  kill -0 "$child" 2>/dev/null || exit "$code"
done
"""
#: The task's variables travel to the command under this prefix, inert: every process that runs
#: as root on the way (setpriv, unshare, sh, mount) sees only :data:`ROOT_ENV` besides them, so
#: the task's PATH, LD_PRELOAD, LD_LIBRARY_PATH, IFS... never choose what root runs. The last
#: step, already as the task user, gives them back their names (see :func:`restorer`).
CARRIED = "HPCSNAP_ENV_"
ROOT_ENV = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def carried(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` under the :data:`CARRIED` prefix, for the trip through root's processes. Names a
    shell cannot export (not identifiers) are left out."""
    return {CARRIED + k: v for k, v in env.items() if _NAME.match(k)}


def restorer(env: Mapping[str, str], then: str = 'exec /bin/sh -c "$1"') -> str:
    """The script, run by ``/bin/sh -c`` as the task user, that gives the carried variables
    their names back, drops the carried copies, then runs ``then`` (by default: the command
    ``$1`` with ``/bin/sh -c``). It holds variable names only (identifiers), never a value:
    each value is read from the environment by the shell itself."""
    lines = []
    for name in env:
        if _NAME.match(name):
            lines.append(f'export {name}="${{{CARRIED}{name}}}"; unset {CARRIED}{name}')
    lines.append(then)
    return "\n".join(lines) + "\n"


class SandboxError(Exception):
    """The task's environment could not be prepared."""


def ensure_user(name: str) -> pwd.struct_passwd:
    """The task user, created (system user, no home, no login shell) if it does not exist."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=False,
        capture_output=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise SandboxError(f"could not create the task user {name!r} (useradd failed)") from None


def install_tools() -> None:
    """Install (or refresh) the in-job client as ``TOOLS/hpcsnap``, atomically."""
    source = Path(jobclient.__file__).read_bytes()
    target = Path(TOOLS) / "hpcsnap"
    with contextlib.suppress(OSError):
        if target.read_bytes() == source:
            return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = target.with_name(f".hpcsnap.{os.getpid()}")
    tmp.write_bytes(source)
    tmp.chmod(0o755)
    os.replace(tmp, target)


def tool(name: str) -> str:
    """The absolute path of a system tool, found on :data:`SAFE_PATH`."""
    return shutil.which(name, path=SAFE_PATH) or name


def namespace_init(pid: int) -> int | None:
    """The first process of the namespaces that ``pid`` (``unshare --fork``) created."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


@dataclass
class Sandbox:
    """One task's working area: ``root`` (private to the agent) holding ``job`` (the task's)."""

    root: Path
    mode: str
    uid: int
    gid: int

    @property
    def job(self) -> Path:
        return self.root / "job"

    @classmethod
    def create(cls, root: Path, *, task_user: str | None) -> Sandbox:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        privileged = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv")
        if privileged and task_user:
            user = ensure_user(task_user)
            Path(JOB).mkdir(mode=0o755, exist_ok=True)
            install_tools()
            box = cls(root=root, mode="namespace", uid=user.pw_uid, gid=user.pw_gid)
        else:
            box = cls(root=root, mode="direct", uid=os.geteuid(), gid=os.getegid())
        box.job.mkdir(exist_ok=True, mode=0o700)
        return box

    @property
    def tools(self) -> str:
        """Directory of ``hpcsnap`` as the command can run it."""
        return TOOLS if self.mode == "namespace" else str(Path(sys.executable).parent)

    @property
    def visible_job(self) -> str:
        """The path the command sees as its working directory."""
        return JOB if self.mode == "namespace" else str(self.job)

    def hand_over(self) -> None:
        """Give everything staged in ``job`` to the task user (before the command starts)."""
        if self.mode != "namespace":
            return
        for dirpath, dirnames, filenames in os.walk(self.job):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), self.uid, self.gid)
        os.chown(self.job, self.uid, self.gid)

    def environment(self, constants: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
        env = {
            # hpcsnap's in-job client last, so that `hpcsnap job snapshot` works in the job
            # without shadowing anything of the system's.
            "PATH": f"/usr/local/bin:/usr/bin:/bin:{self.tools}",
            "LANG": "C.UTF-8",
            "HOME": self.visible_job,
            "JOB_DIR": self.visible_job,
        }
        env.update(constants)
        env.update(extra)
        return env

    def launch(self, command: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        if self.mode == "namespace":
            # --pdeathsig: if the agent dies (even by SIGKILL), unshare is killed, and with it
            # (--kill-child) the whole PID namespace: no task outlives its agent.
            argv = [
                tool("setpriv"),
                "--pdeathsig",
                "KILL",
                "--",
                tool("unshare"),
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "/bin/sh",
                "-c",
                _INNER,
                "hpcsnap-job",
                str(self.job),
                str(self.uid),
                str(self.gid),
                command,
                restorer(env),
            ]
            cwd = str(self.root)
            run_env = {**ROOT_ENV, **carried(env)}
        else:
            argv = ["/bin/sh", "-c", command]
            cwd = str(self.job)
            run_env = dict(env)
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=run_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def enter(self, task: subprocess.Popen[bytes], argv: list[str]) -> tuple[list[str], str]:
        """The argv and working directory that run ``argv`` beside the running ``task``.

        In namespace mode: in the task's mount and PID namespaces, in /job, as the task user
        with the command's own restrictions (no capabilities, ``no_new_privs``, killed with
        its parent). In direct mode: in the job directory, as the agent's user. The tools run
        as root are absolute paths: give them a fixed environment, not the task's (whose PATH
        or LD_PRELOAD would choose what root runs).
        """
        if self.mode != "namespace":
            return argv, str(self.job)
        init = namespace_init(task.pid)
        if init is None:
            raise SandboxError("the task's command is not running")
        # `env --chdir` runs once inside the mount namespace, where /job is the task's.
        wrapped = [
            tool("nsenter"),
            "--target",
            str(init),
            "--mount",
            "--pid",
            "--",
            tool("env"),
            f"--chdir={JOB}",
            tool("setpriv"),
            "--reuid",
            str(self.uid),
            "--regid",
            str(self.gid),
            "--clear-groups",
            "--no-new-privs",
            "--pdeathsig",
            "KILL",
            "--",
            *argv,
        ]
        return wrapped, str(self.root)

    def kill(self, proc: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
        """SIGTERM to the whole task, then SIGKILL after ``grace`` seconds.

        Also used after a normal exit, to end what the command left running in the background.
        """
        if proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            # In namespace mode, killing unshare makes the kernel kill the whole PID namespace.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        proc.wait()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
