"""Where a connection gets its URL and token: arguments, fileconf, environment, config file."""

from __future__ import annotations

from pathlib import Path

import pytest

import hpcsnap
from hpcsnap.sdk.config import resolve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "HPCSNAP_URL",
        "HPCSNAP_TOKEN",
        "HPCSNAP_CONFIG",
        "HPCSNAP_TIMEOUT",
        "QARNOT_CLUSTER_URL",
        "QARNOT_CLIENT_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def settings(fileconf: object = None, **kw: object) -> tuple[str, str]:
    s = resolve(
        fileconf,  # type: ignore[arg-type]
        client_token=kw.get("client_token"),  # type: ignore[arg-type]
        cluster_url=kw.get("cluster_url"),  # type: ignore[arg-type]
        timeout=None,
    )
    return s.api_url, s.token


@pytest.mark.parametrize(
    ("given", "api"),
    [
        ("http://h:1", "http://h:1/v1"),
        ("http://h:1/", "http://h:1/v1"),
        ("http://h:1/v1", "http://h:1/v1"),
        ("http://h:1/v1/", "http://h:1/v1"),
        ("https://h/base", "https://h/base/v1"),
    ],
)
def test_url_gets_v1_once(given: str, api: str) -> None:
    assert settings(client_token="t", cluster_url=given) == (api, "t")


def test_defaults_to_local_server() -> None:
    assert settings(client_token="t") == ("http://127.0.0.1:8642/v1", "t")


def test_bad_url_and_missing_token_are_configuration_errors() -> None:
    with pytest.raises(hpcsnap.ConfigurationError, match="invalid server URL"):
        settings(client_token="t", cluster_url="127.0.0.1:8642")
    with pytest.raises(hpcsnap.ConfigurationError, match="HPCSNAP_TOKEN"):
        settings(cluster_url="http://h")


def test_seed_positional_token(tmp_path: Path) -> None:
    # qarnot.Connection("your_auth_token"): a bare token as fileconf
    assert settings("hps_abc-DEF_123")[1] == "hps_abc-DEF_123"
    conn = hpcsnap.Connection("hps_tok", cluster_url="http://h:2")
    assert conn.url == "http://h:2/v1"
    conn.close()


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCSNAP_URL", "http://env:1")
    monkeypatch.setenv("HPCSNAP_TOKEN", "envtok")
    assert settings() == ("http://env:1/v1", "envtok")
    assert settings(client_token="arg", cluster_url="http://arg:1") == ("http://arg:1/v1", "arg")
    monkeypatch.delenv("HPCSNAP_URL")
    monkeypatch.delenv("HPCSNAP_TOKEN")
    monkeypatch.setenv("QARNOT_CLUSTER_URL", "http://q:1/v1")
    monkeypatch.setenv("QARNOT_CLIENT_TOKEN", "qtok")
    assert settings() == ("http://q:1/v1", "qtok")


def test_config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "my.conf"
    conf.write_text("[cluster]\nurl = http://file:3\ntimeout = 5\n[client]\ntoken = filetok\n")
    assert settings(str(conf)) == ("http://file:3/v1", "filetok")
    assert resolve(conf, client_token=None, cluster_url=None, timeout=None).timeout == 5
    # the default file, and HPCSNAP_CONFIG naming another one
    default = tmp_path / "xdg" / "hpcsnap" / "config.ini"
    default.parent.mkdir(parents=True)
    default.write_text("[client]\ntoken = deftok\n")
    assert settings() == ("http://127.0.0.1:8642/v1", "deftok")
    monkeypatch.setenv("HPCSNAP_CONFIG", str(conf))
    assert settings() == ("http://file:3/v1", "filetok")
    monkeypatch.setenv("HPCSNAP_CONFIG", str(tmp_path / "missing.ini"))
    with pytest.raises(hpcsnap.ConfigurationError, match="not a file"):
        settings(client_token="t")
    with pytest.raises(hpcsnap.ConfigurationError, match="cannot read config file"):
        settings(str(tmp_path / "nope.conf"))
    bad = tmp_path / "bad.conf"
    bad.write_text("no section\n")
    with pytest.raises(hpcsnap.ConfigurationError, match="malformed"):
        settings(str(bad))


def test_dict_fileconf() -> None:
    conf = {"cluster_url": "http://d:4", "client_auth": "dtok"}
    assert settings(conf) == ("http://d:4/v1", "dtok")
