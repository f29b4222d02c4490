"""Where a connection gets its server URL and token.

In order, the first one that gives a value wins, separately for the URL and for the token:

1. the arguments of :class:`~hpcsnap.Connection` (``cluster_url=``, ``client_token=``);
2. the configuration given as ``fileconf`` (a path or a dict);
3. the environment: ``HPCSNAP_URL`` and ``HPCSNAP_TOKEN`` (``QARNOT_CLUSTER_URL`` and
   ``QARNOT_CLIENT_TOKEN`` are read too, so qarnot scripts keep working);
4. the configuration file named by ``HPCSNAP_CONFIG``, or else
   ``$XDG_CONFIG_HOME/hpcsnap/config.ini`` (``~/.config/hpcsnap/config.ini``) if it exists;
5. the URL ``http://127.0.0.1:8642`` (there is no default token).

A configuration file has the qarnot SDK's INI layout::

    [cluster]
    url = http://127.0.0.1:8642
    timeout = 60        # optional, seconds
    [client]
    token = hps_...

A dict uses the keys ``cluster_url``, ``client_token`` (or qarnot's ``client_auth``) and
``cluster_timeout``.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hpcsnap.sdk.errors import ConfigurationError

__all__ = ["DEFAULT_URL", "Settings", "default_config_path", "resolve"]

DEFAULT_URL = "http://127.0.0.1:8642"
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """What a connection needs: the API's base URL (ending in ``/v1``), token, time-out."""

    api_url: str
    token: str
    timeout: float


def default_config_path() -> Path:
    """``$HPCSNAP_CONFIG``, else ``$XDG_CONFIG_HOME/hpcsnap/config.ini``."""
    named = os.environ.get("HPCSNAP_CONFIG")
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hpcsnap" / "config.ini"


def api_url(url: str) -> str:
    """The API base for a server URL: ``http://host:port`` and ``http://host:port/v1`` both
    give ``http://host:port/v1`` (a trailing slash is ignored)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"invalid server URL {url!r}: expected http(s)://host[:port], "
            "e.g. http://127.0.0.1:8642"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"invalid server URL {url!r}: no query or fragment allowed")
    return url if url.endswith("/v1") else url + "/v1"


def _read_file(path: Path) -> dict[str, Any]:
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from exc
    except configparser.Error as exc:
        raise ConfigurationError(f"malformed config file {path}: {exc}") from exc
    out: dict[str, Any] = {}
    if parser.has_option("cluster", "url"):
        out["cluster_url"] = parser.get("cluster", "url")
    if parser.has_option("cluster", "timeout"):
        out["cluster_timeout"] = parser.get("cluster", "timeout")
    for key in ("token", "auth"):
        if parser.has_option("client", key):
            out["client_token"] = parser.get("client", key)
            break
    return out


def _from_mapping(conf: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: conf[k] for k in ("cluster_url", "cluster_timeout") if conf.get(k) is not None}
    token = conf.get("client_token") or conf.get("client_auth")
    if token:
        out["client_token"] = token
    return out


def looks_like_token(value: str) -> bool:
    """A bare string given as ``fileconf`` is a token (as in ``Connection("hps_...")``) when it
    names no existing file and has no path separator or dot."""
    return not os.path.exists(value) and not any(c in value for c in "/\\.") and bool(value)


def resolve(
    fileconf: str | os.PathLike[str] | Mapping[str, Any] | None,
    *,
    client_token: str | None,
    cluster_url: str | None,
    timeout: float | None,
) -> Settings:
    """Combine arguments, ``fileconf``, environment and config file (see the module doc)."""
    given: dict[str, Any] = {}
    if isinstance(fileconf, Mapping):
        given = _from_mapping(fileconf)
    elif isinstance(fileconf, str) and looks_like_token(fileconf):
        given = {"client_token": fileconf}
    elif fileconf is not None:
        given = _read_file(Path(fileconf))
    env = {
        "cluster_url": os.environ.get("HPCSNAP_URL") or os.environ.get("QARNOT_CLUSTER_URL"),
        "client_token": os.environ.get("HPCSNAP_TOKEN") or os.environ.get("QARNOT_CLIENT_TOKEN"),
        "cluster_timeout": os.environ.get("HPCSNAP_TIMEOUT"),
    }
    url = cluster_url or given.get("cluster_url") or env["cluster_url"]
    token = client_token or given.get("client_token") or env["client_token"]
    raw_timeout = timeout or given.get("cluster_timeout") or env["cluster_timeout"]
    if not url or not token or not raw_timeout:
        path = default_config_path()
        if path.is_file():
            stored = _read_file(path)
            url = url or stored.get("cluster_url")
            token = token or stored.get("client_token")
            raw_timeout = raw_timeout or stored.get("cluster_timeout")
        elif os.environ.get("HPCSNAP_CONFIG"):
            raise ConfigurationError(f"HPCSNAP_CONFIG names {path}, which is not a file")
    if not token:
        raise ConfigurationError(
            "no API token: pass client_token=..., set HPCSNAP_TOKEN, or put it in "
            f"{default_config_path()} ([client] token = ...)"
        )
    try:
        seconds = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT
    except ValueError:
        raise ConfigurationError(f"invalid time-out {raw_timeout!r}: expected seconds") from None
    if seconds <= 0:
        raise ConfigurationError(f"invalid time-out {raw_timeout!r}: must be positive")
    return Settings(api_url=api_url(str(url or DEFAULT_URL)), token=str(token), timeout=seconds)
