"""A stateful fake of sbatch, squeue and scancel behind the executors' one subprocess seam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpcsnap.executors.commands import CommandError


@dataclass
class Call:
    argv: list[str]
    input: str | None
    env: dict[str, str] | None


@dataclass
class FakeSlurm:
    """Jobs and their Slurm states; ``fail`` makes the next commands fail like a lost
    controller; ``purged`` jobs are no longer known (as after ``MinJobAge``)."""

    jobs: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail: bool = False
    sbatch_reply: str | None = None
    next_id: int = 100

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> str:
        self.calls.append(Call(list(argv), input, dict(env) if env is not None else None))
        if self.fail:
            raise CommandError(
                argv, 1, "", "slurm_load_jobs error: Unable to contact slurm controller"
            )
        cmd = argv[0]
        if cmd == "sbatch":
            self.next_id += 1
            job_id = str(self.next_id)
            self.jobs[job_id] = "PENDING"
            return self.sbatch_reply if self.sbatch_reply is not None else f"{job_id};test\n"
        if cmd == "squeue":
            wanted = argv[argv.index("--jobs") + 1].split(",")
            known = [j for j in wanted if j in self.jobs]
            if not known:
                raise CommandError(argv, 1, "", "slurm_load_jobs error: Invalid job id specified")
            return "".join(f"{j} {self.jobs[j]}\n" for j in known)
        if cmd == "scancel":
            for job_id in argv[1:]:
                if self.jobs.get(job_id) in ("PENDING", "RUNNING"):
                    self.jobs[job_id] = "CANCELLED"
            return ""
        raise CommandError(argv, 127, "", f"{cmd}: command not found")

    def commands(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.argv[0] == name]
