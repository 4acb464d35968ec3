"""The ``vstudio`` command as people run it: a real process, real output, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def vstudio(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vstudio_cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_version() -> None:
    result = vstudio("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("vstudio ")


def test_help_lists_the_commands() -> None:
    result = vstudio("--help")
    assert result.returncode == 0
    assert "doctor" in result.stdout and "config" in result.stdout


def test_config_show_reports_sources_and_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text("[server]\nport = 9300\n")
    result = vstudio(
        "--config",
        str(config),
        "config",
        "show",
        "--json",
        env={"VSTUDIO_JWT_SECRET": "hunter2", "VSTUDIO_REDIS_URL": "redis://:pw@h:1/0"},
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["settings"]}
    assert rows["port"]["value"] == 9300 and rows["port"]["source"] == "file [server]"
    assert rows["jwt_secret"]["value"] == "********"
    assert rows["redis_url"]["value"] == "redis://:***@h:1/0"
    assert "hunter2" not in result.stdout and "pw@" not in result.stdout


def test_config_show_exits_2_on_invalid_settings() -> None:
    result = vstudio("config", "show", env={"VSTUDIO_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "port" in result.stderr


def test_doctor_passes_against_a_real_redis(redis_url: str) -> None:
    result = vstudio("doctor", "--json", env={"VSTUDIO_REDIS_URL": redis_url})
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    [redis] = [check for check in report["checks"] if check["name"] == "redis"]
    assert "answers at" in redis["detail"]


def test_doctor_fails_clearly_when_redis_is_unreachable() -> None:
    result = vstudio(
        "doctor",
        "--json",
        env={"VSTUDIO_REDIS_URL": "redis://127.0.0.1:1", "VSTUDIO_CONNECT_ATTEMPTS": "1"},
    )
    assert result.returncode == 1
    [redis] = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "redis"]
    assert redis["status"] == "fail"
    assert "did not answer" in redis["detail"] and "embedded" in redis["detail"]


@pytest.mark.slow
def test_doctor_checks_the_embedded_server(tmp_path: Path) -> None:
    env = {"VSTUDIO_DATA_DIR": str(tmp_path / "data"), "VSTUDIO_REDIS_URL": ""}
    result = vstudio("doctor", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["embedded server"]["status"] == "ok"
    assert "Valkey" in checks["embedded server"]["detail"]
