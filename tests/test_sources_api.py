"""A session's chat sources over REST (issue 15), against a real server process and Redis.

The worker side is written here as the workers write it (records, liveness marks, leases,
health, through broker.keys and broker.sources' models): that is the wire contract with the
fleet, not a stand-in for it.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from broker import keys
from broker.connection import connect
from broker.models import ErrorCode
from broker.sources import SourceStore
from server.identity.auth import mint_token
from tests.support.fleet_records import write_worker
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory


def _path(session_id: str, rest: str = "") -> str:
    return f"/v1/vstudio/sessions/{session_id}/sources{rest}"


async def _live(server: LiveServer, **fields: object) -> tuple[dict[str, object], str]:
    artist = f"artist-{uuid.uuid4().hex[:8]}"
    session = await server.live_session(artist, **fields)
    return session, server.token(artist, "artist")


async def test_add_list_replace_remove(live_server: LiveServer) -> None:
    session, token = await _live(live_server)
    sid = str(session["id"])
    status, body = await live_server.call(
        "POST", _path(sid), token=token, json={"platform": "twitch", "target": "#Shroud"}
    )
    assert status == 201, body
    assert body["created"] is True and body["source"]["id"] == "twitch:shroud"
    status, body = await live_server.call(
        "POST",
        _path(sid),
        token=token,
        json={"platform": "twitch", "target": "shroud", "credentials": "bot2", "redundancy": 2},
    )
    assert status == 200 and body["created"] is False
    status, listed = await live_server.call("GET", _path(sid), token=token)
    assert status == 200
    assert listed["sources"] == [
        {
            "id": "twitch:shroud",
            "platform": "twitch",
            "target": "shroud",
            "credentials": "bot2",
            "redundancy": 2,
        }
    ]
    status, body = await live_server.call("DELETE", _path(sid, "/twitch:shroud"), token=token)
    assert status == 200 and body["removed"] == "twitch:shroud"
    status, body = await live_server.call("DELETE", _path(sid, "/twitch:shroud"), token=token)
    assert status == 404 and "no source 'twitch:shroud'" in body["message"]
    status, listed = await live_server.call("GET", _path(sid), token=token)
    assert listed["sources"] == []


async def test_a_bad_target_is_422_with_the_rule_and_a_bad_body_400(
    live_server: LiveServer,
) -> None:
    session, token = await _live(live_server)
    sid = str(session["id"])
    status, body = await live_server.call(
        "POST", _path(sid), token=token, json={"platform": "discord", "target": "general"}
    )
    assert status == 422, body
    assert body["code"] == ErrorCode.INVALID_MESSAGE
    assert body["message"] == "'general' is not a Discord channel id (a snowflake)"
    status, body = await live_server.call(
        "POST", _path(sid), token=token, json={"platform": "myspace", "target": "x"}
    )
    assert status == 400 and body["message"].startswith("platform:")
    status, body = await live_server.call(
        "POST", _path(sid), token=token, json={"platform": "twitch", "target": "a", "extra": 1}
    )
    assert status == 400
    _, listed = await live_server.call("GET", _path(sid), token=token)
    assert listed["sources"] == []  # nothing declared by a refused request


async def test_who_may_read_and_change(live_server: LiveServer) -> None:
    session, token = await _live(live_server, producerIds=["prod-1"])
    sid = str(session["id"])
    fan = live_server.token("fan-1", "viewer")
    producer = live_server.token("prod-1", "producer")
    operator = mint_token(
        live_server.secret, user_id="ops", role="viewer", extra={"operator": True}
    )
    spec = {"platform": "youtube", "target": "dQw4w9WgXcQ"}
    status, body = await live_server.call("POST", _path(sid), token=fan, json=spec)
    assert status == 403 and body["code"] == ErrorCode.FORBIDDEN
    status, _ = await live_server.call("GET", _path(sid), token=fan)
    assert status == 403
    status, _ = await live_server.call("GET", _path(sid))
    assert status == 401
    status, _ = await live_server.call("POST", _path(sid), token=producer, json=spec)
    assert status == 201
    status, listed = await live_server.call("GET", _path(sid), token=operator)
    assert status == 200 and [s["id"] for s in listed["sources"]] == ["youtube:dQw4w9WgXcQ"]
    status, _ = await live_server.call("GET", _path("nosuchsession"), token=token)
    assert status == 404


async def test_an_ended_session_refuses_new_sources_and_wants_none(
    live_server: LiveServer, redis_url: str
) -> None:
    session, token = await _live(live_server)
    sid = str(session["id"])
    spec = {"platform": "tiktok", "target": "@someone"}
    status, _ = await live_server.call("POST", _path(sid), token=token, json=spec)
    assert status == 201
    client = await connect(redis_url)
    try:
        wanted = await SourceStore(client).wanted(int(time.time() * 1000))
        assert sid in wanted["tiktok:someone"].sessions
        await live_server.call("POST", f"/v1/vstudio/sessions/{sid}/end", token=token)
        wanted = await SourceStore(client).wanted(int(time.time() * 1000))
        assert "tiktok:someone" not in wanted or sid not in wanted["tiktok:someone"].sessions
    finally:
        await client.aclose()
    status, body = await live_server.call("POST", _path(sid), token=token, json=spec)
    assert status == 409 and body["code"] == ErrorCode.SESSION_ENDED
    status, body = await live_server.call("DELETE", _path(sid, "/tiktok:someone"), token=token)
    assert status == 200  # withdrawing still tidies up


@pytest.fixture
def fleet() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_health_and_metrics_show_owners_and_unclaimed(
    server_factory: ServerFactory, redis_url: str, fleet: str
) -> None:
    server = server_factory(VSTUDIO_FLEET=fleet)
    session, token = await _live(server)
    sid = str(session["id"])
    for spec in (
        {"platform": "twitch", "target": "owned"},
        {"platform": "twitch", "target": "lost"},
    ):
        status, _ = await server.call("POST", _path(sid), token=token, json=spec)
        assert status == 201
    client = await connect(redis_url)
    try:
        await write_worker(client, fleet, "w1", {"twitch:owned": "reading"}, sessions=[sid])
        status, listed = await server.call("GET", _path(sid, "?health=1"), token=token)
        assert status == 200
        rows = {row["id"]: row for row in listed["sources"]}
        assert rows["twitch:owned"]["owners"] == ["w1"]
        assert rows["twitch:owned"]["state"] == "reading"
        assert rows["twitch:owned"]["msgPerS"] == 4.5 and rows["twitch:owned"]["lagMs"] == 120
        assert rows["twitch:lost"]["owners"] == [] and rows["twitch:lost"]["state"] == "unclaimed"
        status, text = await server.call("GET", "/metrics")
        assert status == 200
        assert re.search(
            rf'vstudio_ingest_sources{{platform="twitch",session="{sid}",state="reading"}} 1\.0',
            text,
        ), text
        assert (
            f'vstudio_ingest_sources{{platform="twitch",session="{sid}",state="unclaimed"}} 1.0'
            in text
        )
        assert 'vstudio_ingest_source_owners{source="twitch:owned"} 1.0' in text
        assert 'vstudio_ingest_source_owners{source="twitch:lost"} 0.0' in text
        await server.call("POST", f"/v1/vstudio/sessions/{sid}/end", token=token)
        _, text = await server.call("GET", "/metrics")
        assert "twitch:owned" not in text  # an ended session wants nothing
    finally:
        await client.delete(
            keys.fleet_workers(fleet), keys.fleet_health(fleet), keys.fleet_sources(fleet)
        )
        await client.aclose()
