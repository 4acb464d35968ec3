"""``vstudio fleet status`` as a real process against a real Redis (issue 15).

The sessions and their declarations are stored as the server stores them, the workers'
records, leases and health as the workers write them (tests/support/fleet_records.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker import keys
from broker.bus import Bus
from broker.connection import connect
from broker.models import Platform, Session, SessionStatus
from broker.sources import SourceSpec, SourceStore
from server.interactions.sessions import SessionStore
from tests.support.fleet_records import write_worker


def fleet_status(
    redis_url: str, fleet: str, tmp: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VSTUDIO_DATA_DIR": str(tmp / "data"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "vstudio_cli.main", "fleet", "status", "--redis-url", redis_url,
         "--fleet", fleet, *args],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


@pytest.fixture
async def fleet(redis_url: str) -> AsyncIterator[tuple[str, Any]]:
    name = f"t{uuid.uuid4().hex[:10]}"
    client = await connect(redis_url)
    try:
        yield name, client
    finally:
        await client.delete(
            keys.fleet_sources(name), keys.fleet_workers(name), keys.fleet_health(name)
        )
        await client.aclose()


def _spec(platform: str, target: str, redundancy: int | None = None) -> SourceSpec:
    return SourceSpec(platform=Platform(platform), target=target, redundancy=redundancy)


async def test_owned_unclaimed_and_workers(
    fleet: tuple[str, Any], redis_url: str, tmp_path: Path
) -> None:
    name, client = fleet
    live, ended = f"s{uuid.uuid4().hex[:10]}", f"s{uuid.uuid4().hex[:10]}"
    sessions = SessionStore(Bus(client, history_size=10))
    for sid, status in ((live, SessionStatus.LIVE), (ended, SessionStatus.ENDED)):
        await sessions.create(Session(id=sid, artist_id="a", title="t", status=status))
    store = SourceStore(client, name)
    await store.add(live, _spec("twitch", "owned", 2))
    await store.add(live, _spec("twitch", "orphan"))
    await store.add(ended, _spec("twitch", "forgotten"))
    await write_worker(client, name, "w1", {"twitch:owned": "connected"}, sessions=[live])
    await write_worker(
        client, name, "w2", {"twitch:owned": "connected"}, sessions=[live], host="host-b",
        replica=1, msg_per_s=6.0, lag_ms=None, last_error="no [ingest.fleet_credentials] x",
    )  # fmt: skip
    await write_worker(client, name, "w3", {}, sessions=[], host="host-c", alive=False)

    result = fleet_status(redis_url, name, tmp_path, "--json")
    assert result.returncode == 9, result.stderr
    body = json.loads(result.stdout)
    assert body["fleet"] == name and body["unclaimed"] == ["twitch:orphan"]
    rows = {row["id"]: row for row in body["sources"]}
    assert set(rows) == {"twitch:owned", "twitch:orphan"}  # an ended session wants nothing
    owned = rows["twitch:owned"]
    assert owned["owners"] == ["w1", "w2"] and owned["sessions"] == [live]
    assert owned["state"] == "connected" and owned["msgPerS"] == 6.0 and owned["lagMs"] == 120
    assert owned["lastError"] == "no [ingest.fleet_credentials] x"
    assert rows["twitch:orphan"]["state"] == "unclaimed"
    workers = {w["id"]: w for w in body["workers"]}
    assert workers["w2"]["host"] == "host-b" and workers["w2"]["pid"] == 4242
    assert workers["w1"]["alive"] and not workers["w3"]["alive"]

    table = fleet_status(redis_url, name, tmp_path)
    assert table.returncode == 9
    assert "twitch:orphan" in table.stdout and "w1, w2 (2/2)" in table.stdout
    assert "1 wanted source(s) have no worker: twitch:orphan" in table.stdout
    assert "host-b" in table.stdout and "gone" in table.stdout
    assert "no [ingest.fleet_credentials] x" in table.stdout  # shown as text, not as markup

    await write_worker(client, name, "w3", {"twitch:orphan": "connected"}, sessions=[live])
    result = fleet_status(redis_url, name, tmp_path, "--json")
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["unclaimed"] == []


def test_unreachable_redis_and_bad_fleet_name(tmp_path: Path) -> None:
    result = fleet_status("redis://127.0.0.1:1", "default", tmp_path)
    assert result.returncode == 1 and "did not answer" in result.stderr
    result = fleet_status("redis://127.0.0.1:1", "no spaces", tmp_path)
    assert result.returncode == 2 and "fleet" in result.stderr
