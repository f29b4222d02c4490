"""Generated trees that look like simulation output: nested directories, many small files of
mixed sizes, a few large ones; and churn (rewriting a fraction of the files)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class TreeSpec:
    total_bytes: int
    files: int
    large_files: int = 1
    large_size: int = 256 * MiB
    seed: int = 1


def _small_sizes(rng: random.Random, count: int, budget: int) -> list[int]:
    """Log-uniform sizes from 200 B to 2 MiB, scaled to fill ``budget``."""
    raw = [int(10 ** rng.uniform(2.3, 6.3)) for _ in range(count)]
    scale = budget / max(1, sum(raw))
    return [max(1, int(s * scale)) for s in raw]


def make_tree(root: Path, spec: TreeSpec) -> list[Path]:
    """Write the tree under ``root``; return the regular files written."""
    rng = random.Random(spec.seed)
    root.mkdir(parents=True, exist_ok=True)
    small = spec.files - spec.large_files
    budget = max(spec.total_bytes - spec.large_files * spec.large_size, small)
    paths: list[Path] = []
    dirs = max(1, small // 30)
    for i, size in enumerate(_small_sizes(rng, small, budget)):
        d = i % dirs
        sub = root / f"case{d % 7}" / f"processor{d % 11}" / f"t{d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"field{i}.dat"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    for i in range(spec.large_files):
        path = root / f"mesh{i}.bin"
        with open(path, "wb") as f:
            left = spec.large_size
            while left:
                n = min(left, 16 * MiB)
                f.write(rng.randbytes(n))
                left -= n
        paths.append(path)
    return paths


def churn(paths: list[Path], fraction: float, rng: random.Random) -> int:
    """Rewrite ``fraction`` of the small files with new content; return bytes written."""
    candidates = [p for p in paths if p.stat().st_size < 64 * MiB]
    written = 0
    for path in rng.sample(candidates, max(1, int(len(candidates) * fraction))):
        size = path.stat().st_size
        path.write_bytes(rng.randbytes(size))
        written += size
    return written


def du(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (like ``du -s --block-size=1``)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total
