"""Logs as the seed shows them: JSON lines on a stderr that is not a terminal."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from config.logging import JsonLineFormatter, configure_logging
from tests.support.live_server import LiveServer


@pytest.fixture
def plain_server(redis_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """``vstudio serve`` as an operator starts it: no ``--log-json``, stderr to a file."""
    server = LiveServer(redis_url, tmp_path / "plain", log_json=False)
    yield server
    server.stop()


def iso(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


async def test_connection_lines_are_the_seeds_json(plain_server: LiveServer) -> None:
    sid = (await plain_server.live_session())["id"]
    user = f"fan-{uuid.uuid4().hex[:6]}"
    async with plain_server.ws(sid, user) as ws:
        await ws.receive_json(timeout=5)
    async with plain_server.ws(sid, user + "-2") as ws:
        await ws.receive_json(timeout=5)
        plain_server.process.send_signal(signal.SIGTERM)  # the drain's disconnects are logged
        async for _ in ws:
            pass
    plain_server.stop()
    lines = [line for line in plain_server.log.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, none is rich text
    for entry in entries:
        assert {"level", "event", "timestamp"} <= entry.keys(), entry
        iso(entry["timestamp"])
    mine = [entry for entry in entries if entry.get("userId") == user]
    events = [entry["event"] for entry in mine]
    assert events == ["ws_connection", "ws_disconnect"], mine
    for entry in mine:
        assert entry["level"] == "info"
        assert entry["sessionId"] == sid and entry["role"] == "viewer"
    drained = [entry["event"] for entry in entries if entry.get("userId") == user + "-2"]
    assert drained == ["ws_connection", "ws_disconnect"], entries


def test_json_by_default_only_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
        configure_logging()
        assert isinstance(root.handlers[0].formatter, JsonLineFormatter)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        configure_logging()
        assert not isinstance(root.handlers[0].formatter, JsonLineFormatter)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_formatter_speaks_the_seeds_names() -> None:
    import logging

    record = logging.makeLogRecord(
        {"msg": "lost %s", "args": ("x",), "levelname": "WARNING", "session": "s1", "user": "u1"}
    )
    entry = json.loads(JsonLineFormatter().format(record))
    assert entry["event"] == "lost %s" and entry["message"] == "lost x"
    assert entry["sessionId"] == "s1" and entry["userId"] == "u1" and entry["level"] == "warning"
    iso(entry["timestamp"])
