#!/usr/bin/env python3
"""heatFoam-like 2-D heat diffusion: the example simulation of hpcsnap.

Explicit finite volumes on an N x N grid of a 1 m x 1 m plate, hot wall (T = 1) on the left,
cold walls (T = 0) elsewhere, T = 0 inside at time 0. Output mimics an OpenFOAM case in the
current directory (the task's /job). Standard library only, Python 3.8 or later (``zip`` without
``strict=``, hence the B905 exemptions). Run ``heat.py --help`` for details.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time

ALPHA = 0.1  # thermal diffusivity, m^2/s
T_HOT = 1.0  # left wall
T_COLD = 0.0  # right, bottom and top walls
MAX_R = 0.125  # stability bound on alpha*dt/dx^2 (explicit scheme with wall ghosts: < 1/6)
GROUPS_PER_WRITE = 5  # log blocks and probe samples per written time step
LOG_NAME = "log.heatFoam"
PROBE_FILE = os.path.join("postProcessing", "probes", "0", "T")
TMP_PREFIX = ".heat-tmp-"
EXIT_USAGE = 2
EXIT_FAIL_AT = 3

TIME_NAME_RE = re.compile(r"[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
PROCESSOR_RE = re.compile(r"processor([0-9]+)")

DESCRIPTION = """\
A small 2-D heat-diffusion solver that writes an OpenFOAM-like case in the current directory.
It is hpcsnap's example simulation: a long-running job whose /job keeps changing, to demo
periodic snapshots, filters and restarting a failed run from a snapshot.

Physics: explicit finite volumes on an N x N grid of a 1 m plate, diffusivity 0.1 m^2/s, hot wall
T = 1 on the left, cold walls T = 0 elsewhere. The internal time step is chosen for stability
and so that written times are hit exactly.
"""

EPILOG = """\
output (in the current directory):
  log.heatFoam                 OpenFOAM-style log, one block per iteration group (Time = ...,
                               residuals, ExecutionTime = ... s), flushed as it goes; "End" on
                               normal completion; a "FOAM FATAL ERROR" block on --fail-at.
                               Also echoed on stdout. Appended to on restart.
  0/ 0.1/ 0.2/ ... <time>/T    one directory per written time (OpenFOAM names, no trailing
                               zeros) holding the field T (OpenFOAM header, ASCII values).
  processor<k>/<time>/T        instead of the above with --np N > 1: strip k of the domain
                               (rows of cells), like a decomposed OpenFOAM case.
  postProcessing/probes/0/T    temperature at the centre cell, one line per iteration group:
                               a file that grows all the time.

atomic time steps:
  A time directory is written under a temporary name (.heat-tmp-*) and renamed when its T is
  complete, so a snapshot never sees a torn step. With --np, a time is complete when every
  processor<k> has it.

restart:
  By default the run restarts when the case already holds time directories: it continues from
  the latest complete time (every processor has its T), reading T back; it appends to the log
  and drops probe lines after that time. A newer time that only some processors have (the run
  stopped while publishing it) is removed. So a restarted run writes byte-identical fields and
  probes to an uninterrupted run with the same parameters. A T that cannot be read, or a case
  made with another --grid/--np, stops the run with exit code 2 and deletes nothing.
  --no-restart deletes the existing time directories and probes and starts again at 0.

exit codes:
  0 done; 2 bad arguments or a case that cannot be restarted; 3 --fail-at reached (the error is
  in the log, earlier time directories are complete); 128+N killed by signal N (SIGTERM, SIGINT).

with hpcsnap (see README.md):
  submit as a task with e.g.
    python3 heat.py --end-time 2 --write-interval 0.1 --step-seconds 1
  with periodic snapshots (blacklist 'processor\\d+' or whitelist 'log\\..*' to keep them small),
  and restart a failed run by restoring /job from a snapshot and running the same command
  without --fail-at.
"""


class UsageError(Exception):
    """The case or the arguments do not allow this run; the message says what to do."""


class FailAt(Exception):
    """The simulated time reached --fail-at."""


class Interrupted(Exception):
    """A termination signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --------------------------------------------------------------------------- times


def time_name(t: float) -> str:
    """OpenFOAM-like name of a time directory: general format, no trailing zeros."""
    return f"{t:.10g}"


def parse_time_name(name: str) -> float | None:
    """The time a directory name stands for, or None if it is not a time name."""
    return float(name) if TIME_NAME_RE.fullmatch(name) else None


def write_schedule(end_time: float, write_interval: float) -> list[float]:
    """Every written time from 0 to end_time: multiples of the interval, then end_time.

    Each time is the float of its directory name (0.3, not 3 * 0.1 = 0.30000000000000004), so
    the steps between two written times depend on nothing else: a run restarted from a time
    directory, or extended to a later end time, repeats exactly the same arithmetic.
    """
    tol = 1e-9 * write_interval
    times = []
    k = 0
    while k * write_interval < end_time - tol:
        times.append(float(time_name(k * write_interval)))
        k += 1
    times.append(float(time_name(end_time)))
    return times


# --------------------------------------------------------------------------- numerics


def strips(grid: int, nprocs: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of each processor's strip, as equal as possible."""
    base, extra = divmod(grid, nprocs)
    out, start = [], 0
    for k in range(nprocs):
        stop = start + base + (1 if k < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def substep(rows: list[list[float]], r: float) -> list[list[float]]:
    """One explicit Euler step of dT/dt = alpha * laplacian(T); walls through ghost cells."""
    n = len(rows)
    below_ghost = [2.0 * T_COLD - v for v in rows[0]]
    above_ghost = [2.0 * T_COLD - v for v in rows[-1]]
    new_rows = []
    for j in range(n):
        row = rows[j]
        below = rows[j - 1] if j > 0 else below_ghost
        above = rows[j + 1] if j < n - 1 else above_ghost
        padded = [2.0 * T_HOT - row[0], *row, 2.0 * T_COLD - row[-1]]
        new_rows.append(
            [
                c + r * (w + e + s + a - 4.0 * c)
                for w, c, e, s, a in zip(padded, row, padded[2:], below, above)  # noqa: B905
            ]
        )
    return new_rows


def residual(old: list[list[float]], new: list[list[float]]) -> float:
    """Mean absolute change over one substep, normalised by the mean temperature."""
    change = sum(abs(b - a) for ro, rn in zip(old, new) for a, b in zip(ro, rn))  # noqa: B905
    scale = sum(abs(v) for rn in new for v in rn)
    return change / scale if scale > 0.0 else 0.0


# --------------------------------------------------------------------------- field files

BANNER = r"""/*--------------------------------*- C++ -*----------------------------------*\
| =========                 |                                                 |
| \\      /  F ield         | heatFoam: the hpcsnap example case              |
|  \\    /   O peration     | (stdlib Python, OpenFOAM-like output)           |
|   \\  /    A nd           |                                                 |
|    \\/     M anipulation  |                                                 |
\*---------------------------------------------------------------------------*/
"""
SEPARATOR = "// * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * //\n"


def patch(name: str, kind: str, value: str | None = None) -> str:
    text = f"    {name}\n    {{\n        type            {kind};\n"
    if value is not None:
        text += f"        value           {value};\n"
    return text + "    }\n"


def field_text(
    location: str, values: list[float] | None, ncells: int, proc: int, nprocs: int
) -> str:
    """The T file of one (sub)domain; values None means the uniform initial field 0."""
    out = [
        BANNER,
        "FoamFile\n{\n    version     2.0;\n    format      ascii;\n",
        "    class       volScalarField;\n",
        f'    location    "{location}";\n    object      T;\n}}\n',
        SEPARATOR,
        "\ndimensions      [0 0 0 1 0 0 0];\n\n",
    ]
    if values is None:
        out.append(f"internalField   uniform {T_COLD!r};\n\n")
    else:
        out.append(f"internalField   nonuniform List<scalar>\n{ncells}\n(\n")
        out.extend(f"{v!r}\n" for v in values)
        out.append(")\n;\n\n")
    out.append("boundaryField\n{\n")
    out.append(patch("hotWall", "fixedValue", f"uniform {T_HOT!r}"))
    out.append(patch("coldWalls", "fixedValue", f"uniform {T_COLD!r}"))
    if nprocs > 1:
        if proc > 0:
            out.append(patch(f"procBoundary{proc}to{proc - 1}", "processor"))
        if proc < nprocs - 1:
            out.append(patch(f"procBoundary{proc}to{proc + 1}", "processor"))
    out.append(patch("frontAndBack", "empty"))
    out.append("}\n\n\n")
    out.append("// ************************************************************************* //\n")
    return "".join(out)


def parse_field(text: str, ncells: int) -> list[float]:
    """The internal field of a T file; ValueError if it is torn or not for this grid."""
    start = text.find("internalField")
    stop = text.find("boundaryField", start)
    if start < 0 or stop < 0 or not text.rstrip().endswith("//"):
        raise ValueError("no complete internalField/boundaryField")
    tokens = text[start + len("internalField") : stop].split()
    if len(tokens) == 2 and tokens[0] == "uniform" and tokens[1].endswith(";"):
        return [float(tokens[1][:-1])] * ncells
    if tokens[:2] != ["nonuniform", "List<scalar>"] or len(tokens) != ncells + 6:
        raise ValueError(f"expected a nonuniform list of {ncells} values")
    if int(tokens[2]) != ncells or tokens[3] != "(" or tokens[-2:] != [")", ";"]:
        raise ValueError(f"malformed list, or not {ncells} values")
    return [float(v) for v in tokens[4:-2]]


# --------------------------------------------------------------------------- files


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish_dir(parent: str, name: str, files: dict[str, str]) -> None:
    """Create parent/name holding files, atomically: write a temporary directory, rename it."""
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f"{TMP_PREFIX}{name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp)
    for fname, text in files.items():
        with open(os.path.join(tmp, fname), "w", encoding="ascii", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    final = os.path.join(parent, name)
    if os.path.lexists(final):  # a stale, incomplete copy of this time: replace it
        old = os.path.join(parent, f"{TMP_PREFIX}old-{name}-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_dir(parent)


def replace_file(path: str, text: str) -> None:
    """Write path atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f"{TMP_PREFIX}{os.path.basename(path)}")
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def time_dirs(path: str) -> dict[str, float]:
    """Time directories directly under path: name -> time."""
    out: dict[str, float] = {}
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        t = parse_time_name(entry.name)
        if t is not None and entry.is_dir(follow_symlinks=False):
            out[entry.name] = t
    return out


def processor_dirs(root: str) -> dict[int, str]:
    out = {}
    for entry in os.scandir(root):
        m = PROCESSOR_RE.fullmatch(entry.name)
        if m and entry.is_dir(follow_symlinks=False):
            out[int(m.group(1))] = entry.path
    return out


def remove_tmp(paths: list[str]) -> None:
    """Remove what an interrupted earlier run left under a temporary name."""
    for path in paths:
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


# --------------------------------------------------------------------------- the case


class Case:
    """The case directory: its layout (serial or decomposed) and its time directories."""

    def __init__(self, root: str, grid: int, nprocs: int) -> None:
        self.root = root
        self.grid = grid
        self.nprocs = nprocs
        self.strips = strips(grid, nprocs)
        if nprocs == 1:
            self.parents = [root]
        else:
            self.parents = [os.path.join(root, f"processor{k}") for k in range(nprocs)]

    def check_layout(self) -> None:
        """UsageError if existing time directories belong to another decomposition."""
        procs = {k for k, p in processor_dirs(self.root).items() if time_dirs(p)}
        serial = bool(time_dirs(self.root))
        if self.nprocs == 1 and procs and not serial:
            found = f"decomposed over processor0..processor{max(procs)}"
        elif self.nprocs > 1 and ((serial and not procs) or any(k >= self.nprocs for k in procs)):
            found = "not decomposed" if not procs else f"decomposed up to processor{max(procs)}"
        else:
            return
        raise UsageError(
            f"the case is {found} but --np is {self.nprocs}: "
            "rerun with the --np it was started with, or --no-restart to start over"
        )

    def times(self) -> dict[str, float]:
        names: dict[str, float] = {}
        for parent in self.parents:
            names.update(time_dirs(parent))
        return names

    def pieces(self, name: str) -> int:
        """How many of the processors (1 if serial) hold a T file at time name."""
        return sum(os.path.isfile(os.path.join(p, name, "T")) for p in self.parents)

    def read(self, name: str) -> list[list[float]]:
        """The whole field at time name; UsageError if a part is unreadable or for another grid."""
        rows: list[list[float]] = []
        for parent, (r0, r1) in zip(self.parents, self.strips):  # noqa: B905
            path = os.path.join(parent, name, "T")
            try:
                with open(path, encoding="ascii") as f:
                    values = parse_field(f.read(), (r1 - r0) * self.grid)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise UsageError(
                    f"cannot restart from {os.path.relpath(path, self.root)}: {exc} "
                    "(was the case run with another --grid or --np?); "
                    "rerun with the same parameters, or --no-restart to start over"
                ) from exc
            g = self.grid
            rows.extend(values[i : i + g] for i in range(0, len(values), g))
        return rows

    def write(self, name: str, rows: list[list[float]] | None) -> None:
        """Publish time name (rows None: the uniform initial field), one strip per processor."""
        for k, (parent, (r0, r1)) in enumerate(zip(self.parents, self.strips)):  # noqa: B905
            values = None if rows is None else [v for row in rows[r0:r1] for v in row]
            text = field_text(name, values, (r1 - r0) * self.grid, k, self.nprocs)
            publish_dir(parent, name, {"T": text})

    def remove(self, name: str) -> None:
        for parent in self.parents:
            if os.path.isfile(os.path.join(parent, name, "T")):
                shutil.rmtree(os.path.join(parent, name))

    def wipe(self) -> None:
        """Delete every time directory, serial or decomposed, and the probes."""
        for name in time_dirs(self.root):
            shutil.rmtree(os.path.join(self.root, name))
        for path in processor_dirs(self.root).values():
            for name in time_dirs(path):
                shutil.rmtree(os.path.join(path, name))
            if not os.listdir(path):
                os.rmdir(path)
        probe = os.path.join(self.root, PROBE_FILE)
        if os.path.exists(probe):
            os.unlink(probe)


# --------------------------------------------------------------------------- log and probe


class Log:
    """log.heatFoam, flushed after every write, echoed on stdout."""

    def __init__(self, path: str, append: bool) -> None:
        self.file = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.file.close()


class Probe:
    """postProcessing/probes/0/T: the centre cell's temperature, appended as the run goes."""

    def __init__(self, root: str, grid: int, restart_time: float | None, tol: float) -> None:
        self.path = os.path.join(root, PROBE_FILE)
        self.j = self.i = grid // 2
        x = (self.i + 0.5) / grid
        y = (self.j + 0.5) / grid
        header = f"# Probe 0 ({x:.6g} {y:.6g} 0)\n# {'Probe':>14} {0:>14}\n# {'Time':>14}\n"
        kept = []
        if restart_time is not None and os.path.exists(self.path):
            with open(self.path, encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("#") or not line.endswith("\n"):
                        continue
                    try:
                        t, _ = (float(v) for v in line.split())
                    except ValueError:
                        continue
                    if t <= restart_time + tol:
                        kept.append(line)
        replace_file(self.path, header + "".join(kept))
        self.file = open(self.path, "a", encoding="ascii")  # noqa: SIM115

    def record(self, t: float, rows: list[list[float]]) -> None:
        self.file.write(f"  {time_name(t):>14} {rows[self.j][self.i]:>14.10g}\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------- the run


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, not {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="heat.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--grid", type=positive_int, default=48, metavar="N", help="N x N cells (default 48)"
    )
    p.add_argument(
        "--end-time",
        type=positive_float,
        default=1.0,
        metavar="T",
        help="simulated end time in s (default 1)",
    )
    p.add_argument(
        "--write-interval",
        type=positive_float,
        default=0.1,
        metavar="DT",
        help="simulated time between written time directories (default 0.1)",
    )
    p.add_argument(
        "--step-seconds",
        type=non_negative_float,
        default=1.0,
        metavar="S",
        help="wall-clock seconds each written step takes at least: the solver sleeps what "
        "computing did not use, spread over the step (default 1; 0 = as fast as possible). "
        "The run lasts about S x (end-time / write-interval) seconds.",
    )
    p.add_argument(
        "--np",
        type=positive_int,
        default=1,
        metavar="N",
        help="decompose the domain into N strips written under processor0..processor<N-1> "
        "(default 1: time directories at the top level)",
    )
    p.add_argument(
        "--fail-at",
        type=positive_float,
        metavar="TIME",
        help="crash on purpose (exit code 3, error in the log) when the simulated time "
        "reaches TIME, to demo recovery; drop it when restarting",
    )
    p.add_argument(
        "--restart",
        action="store_const",
        const=True,
        default=None,
        help="continue from the latest complete time directory (the default when the case "
        "has time directories); an error if there is none",
    )
    p.add_argument(
        "--no-restart",
        dest="restart",
        action="store_const",
        const=False,
        help="delete existing time directories and probes, start again at time 0",
    )
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.np > args.grid:
        parser.error(f"--np {args.np} is more than the {args.grid} rows of the grid")
    names = [time_name(t) for t in write_schedule(args.end_time, args.write_interval)]
    if len(set(names)) != len(names):
        parser.error("--write-interval is too small for distinct time directory names")
    return args


def header(case: Case, start_time: float | None, notes: list[str]) -> str:
    now = time.localtime()
    lines = [
        BANNER,
        "Build  : heat.py (hpcsnap example, Python "
        f"{sys.version_info.major}.{sys.version_info.minor})",
        f"Exec   : {shlex.join(['heat.py', *sys.argv[1:]])}",
        f"Date   : {time.strftime('%b %d %Y', now)}",
        f"Time   : {time.strftime('%H:%M:%S', now)}",
        f"Host   : {socket.gethostname()}",
        f"PID    : {os.getpid()}",
        f"Case   : {case.root}",
        f"nProcs : {case.nprocs}",
        SEPARATOR.rstrip("\n"),
        "Create time",
        "",
        f"Create mesh: {case.grid} x {case.grid} cells, 1 x 1 m, alpha = {ALPHA} m^2/s",
        "",
    ]
    lines += [*notes, ""] if notes else []
    if start_time is None:
        lines += ["Writing initial field T at Time = 0", ""]
    else:
        lines += [f"Restarting from Time = {time_name(start_time)}, reading field T", ""]
    lines += ["Starting time loop", "", ""]
    return "\n".join(lines)


def prepare(
    case: Case, args: argparse.Namespace, notes: list[str]
) -> tuple[float | None, list[list[float]]]:
    """Decide fresh start or restart: (restart time or None, starting field); notes for the log.

    A time is complete when every processor has its T (always true of a serial case, since a
    time directory appears whole). A time that only some processors have was being published
    when the run stopped: it is skipped and, being newer than the restart time, removed.
    Directories with a time name but no T at all are not ours and are left alone.
    """
    remove_tmp([case.root, os.path.dirname(os.path.join(case.root, PROBE_FILE))])
    remove_tmp(list(processor_dirs(case.root).values()))
    if args.restart is False:
        case.wipe()
        return None, [[T_COLD] * case.grid for _ in range(case.grid)]
    case.check_layout()
    names = case.times()
    if not names:
        if args.restart:
            raise UsageError("--restart: the case has no time directory to restart from")
        return None, [[T_COLD] * case.grid for _ in range(case.grid)]
    partial = []
    for name in sorted(names, key=names.__getitem__, reverse=True):
        have = case.pieces(name)
        if have == 0:
            continue
        if have < case.nprocs:
            partial.append(name)
            continue
        rows = case.read(name)
        for bad in partial:
            notes.append(
                f"Removing incomplete time {bad} "
                f"(in {case.pieces(bad)} of {case.nprocs} processors)"
            )
            case.remove(bad)
        return names[name], rows
    raise UsageError(
        "no complete time directory (with a T file in every processor) to restart from; "
        "use --no-restart to start over"
    )


def run(args: argparse.Namespace) -> int:
    case = Case(os.getcwd(), args.grid, args.np)
    schedule = write_schedule(args.end_time, args.write_interval)
    tol = 1e-6 * args.write_interval
    notes: list[str] = []
    restart_time, rows = prepare(case, args, notes)

    if restart_time is None:
        t_start, targets = 0.0, schedule[1:]
    else:
        t_start = restart_time
        targets = [t for t in schedule if t > t_start + tol]

    log = Log(os.path.join(case.root, LOG_NAME), append=restart_time is not None)
    probe = Probe(case.root, case.grid, restart_time, tol)
    wall0 = time.monotonic()
    cpu0 = time.process_time()
    t = t_start
    last_written = t_start
    try:
        log.write(header(case, restart_time, notes))
        if restart_time is None:
            case.write(time_name(0.0), None)
        dx2 = (1.0 / case.grid) ** 2
        dt_max = MAX_R * dx2 / ALPHA
        t_a = t_start
        for t_b in targets:
            nsub = max(1, math.ceil((t_b - t_a) / dt_max))
            dt = (t_b - t_a) / nsub
            r = ALPHA * dt / dx2
            groups = min(GROUPS_PER_WRITE, nsub)
            step_wall0 = time.monotonic()
            for g in range(groups):
                first, stop = nsub * g // groups, nsub * (g + 1) // groups
                res0 = res1 = 0.0
                for n in range(first, stop):
                    new = substep(rows, r)
                    if n == first or n == stop - 1:
                        res = residual(rows, new)
                        res0, res1 = (res, res) if n == first else (res0, res)
                    rows = new
                    t = t_b if n + 1 == nsub else t_a + (n + 1) * dt
                    if args.fail_at is not None and t_start < args.fail_at - tol <= t:
                        raise FailAt()
                if g == groups - 1:
                    case.write(time_name(t_b), rows)
                    last_written = t_b
                probe.record(t, rows)
                log.write(
                    f"Time = {t:.6g}\n\n"
                    f"explicitEuler:  Solving for T, Initial residual = {res0:.6g}, "
                    f"Final residual = {res1:.6g}, No Iterations {stop - first}\n"
                    f"ExecutionTime = {time.process_time() - cpu0:.2f} s  "
                    f"ClockTime = {time.monotonic() - wall0:.0f} s\n\n"
                )
                deadline = step_wall0 + args.step_seconds * (g + 1) / groups
                pause = deadline - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            t_a = t_b
        log.write("End\n\n")
        return 0
    except FailAt:
        log.write(
            "\n--> FOAM FATAL ERROR: \n"
            f"Simulated failure requested by --fail-at {time_name(args.fail_at)}, "
            f"reached at Time = {t:.6g}\n"
            f"Last complete time directory: {time_name(last_written)}\n\n"
            "    From function heatFoam::evolve()\n    in file heat.py\n\nFOAM exiting\n\n"
        )
        print(f"heat.py: --fail-at {time_name(args.fail_at)} reached", file=sys.stderr)
        return EXIT_FAIL_AT
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        log.write(
            f"\n--> heatFoam: received {name} at Time = {t:.6g}; "
            f"last complete time directory: {time_name(last_written)}\n\n"
        )
        return 128 + exc.signum
    finally:
        probe.close()
        log.close()


def on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(args)
    except UsageError as exc:
        print(f"heat.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:  # before the log was open
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
