#!/usr/bin/env python3
"""P4's job: a fixed amount of CPU work on every core, while the job also rewrites a share of
its 1 GiB working tree every few seconds (as a solver writing fields). Prints its wall time.
Each run writes new content unless given a ``--seed``: the content of an earlier run would
already be in the user's store, and snapshots of it cheaper than of a job's fresh outputs.
Also prints the CPU seconds the job itself used while timed (its workers' and its own): the
same work every run, so what it costs tells how fast the machine was meanwhile. Says first
when its timed part begins (Unix time), so that the bench can tell what else ran meanwhile."""

import argparse
import multiprocessing
import os
import random
import resource
import time


def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def write_tree(root, total, files, rng):
    paths = []
    per = total // files
    for i in range(files):
        d = os.path.join(root, f"t{i % 97}")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"f{i}.dat")
        with open(p, "wb") as f:
            f.write(rng.randbytes(per))
        paths.append(p)
    return paths


def cpu_seconds():
    """User + system seconds of this process and of its children that have ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--work", type=int, default=60_000_000)
    parser.add_argument("--churn", type=float, default=0.05)
    parser.add_argument("--churn-every", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None, help="default: new content every run")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    paths = write_tree("tree", args.tree_mib << 20, args.files, rng)
    os.sync()
    cores = os.cpu_count() or 1
    cpu = cpu_seconds()
    start = time.perf_counter()
    # when the timed part began, on the clock the bench samples by (bench/e2e.py, Timeline)
    print(f"timed-start {time.time():.3f}", flush=True)
    with multiprocessing.Pool(cores) as pool:
        result = pool.map_async(work, [args.work // cores] * cores)
        while not result.ready():
            result.wait(args.churn_every)
            if not result.ready():
                for p in rng.sample(paths, int(len(paths) * args.churn)):
                    with open(p, "r+b") as f:
                        f.write(rng.randbytes(4096))
        result.get()
    elapsed = time.perf_counter() - start
    # the pool's workers are ended and waited for when its block ends: their CPU is counted
    print(f"elapsed {elapsed:.3f} cpu {cpu_seconds() - cpu:.3f}")


if __name__ == "__main__":
    main()
