"""Settings precedence: flags over environment over the TOML file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ServerSettings, load_settings, setting_sources


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vstudio.toml"
    path.write_text("[server]\nport = 9100\nchat_rate_limit = 7\nmax_viewers = 50\n")
    monkeypatch.setenv("VSTUDIO_CONFIG", str(path))
    return path


def test_defaults_are_the_contracts_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VSTUDIO_CONFIG", raising=False)
    settings = ServerSettings()
    assert (settings.chat_rate_limit, settings.chat_rate_window) == (5, 10.0)
    assert (settings.reaction_rate_limit, settings.message_rate_limit) == (10, 50)
    assert settings.max_message_bytes == 4096 and settings.max_viewers == 10_000
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (30.0, 10.0)
    assert settings.ticket_ttl == 30


def test_precedence(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTUDIO_CHAT_RATE_LIMIT", "3")
    settings = load_settings(ServerSettings, port=9200, host=None)
    assert settings.port == 9200  # flag beats the file
    assert settings.chat_rate_limit == 3  # environment beats the file
    assert settings.max_viewers == 50  # the file beats the default
    assert settings.host == "127.0.0.1"  # an unset flag leaves the default
    sources = setting_sources(ServerSettings, port=9200)
    assert sources["port"] == "flag"
    assert sources["chat_rate_limit"] == "env VSTUDIO_CHAT_RATE_LIMIT"
    assert sources["max_viewers"] == "file [server]"
    assert sources["host"] == "default"


def test_a_broken_config_file_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport = ")
    monkeypatch.setenv("VSTUDIO_CONFIG", str(path))
    with pytest.raises(ValueError, match=r"bad\.toml is not valid TOML"):
        ServerSettings()


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VSTUDIO_CONFIG", raising=False)
    monkeypatch.setenv("VSTUDIO_MAX_VIEWERS", "0")
    with pytest.raises(ValueError, match="max_viewers"):
        ServerSettings()
