"""Sealed copies of API tokens, so that the S3 endpoint can verify AWS signatures.

A SigV4 signature is an HMAC keyed by the secret (here: the API token), so checking one needs
the token itself, while the database keeps only SHA-256 hashes of tokens. Each user token
therefore also gets a copy sealed (Fernet: AES-128-CBC + HMAC-SHA256) with a server key kept
outside the database, in ``<data dir>/s3-seal.key`` (mode 0600, created on first use). A
stolen database alone reveals no token. Servers sharing one database must share this file.

A token gets its sealed copy when it is created by a process that knows the data dir, or else
the first time it authenticates a REST call (the qarnot SDK always calls ``/settings`` and
``/info`` before any S3 request). Sealed copies are used only to verify S3 signatures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "s3-seal.key"

_lock = threading.Lock()
_cache: dict[Path, Sealer] = {}


class Sealer:
    """Seals and unseals secrets with one server key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode("utf-8", "surrogateescape")).decode("ascii")

    def unseal(self, sealed: str) -> str | None:
        """The secret, or None if ``sealed`` was not sealed with this key (or is corrupt)."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8", "surrogateescape")
        except (InvalidToken, ValueError, UnicodeEncodeError):
            return None


def _read_or_create(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        # link() fails if another process created the key first: then theirs wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def sealer_for(data_dir: Path) -> Sealer:
    """The sealer of the server whose data dir is ``data_dir`` (its key created if absent)."""
    path = (Path(data_dir) / KEY_FILE).absolute()
    with _lock:
        sealer = _cache.get(path)
        if sealer is None:
            sealer = _cache[path] = Sealer(_read_or_create(path))
        return sealer
