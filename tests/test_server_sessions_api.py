"""Sessions over REST, the OpenAPI document, health, metrics and the port check."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from broker import EmbeddedRedis
from broker.models import ErrorCode
from server.serve import find_free_port
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory


def artist() -> str:
    return f"artist-{uuid.uuid4().hex[:8]}"


async def test_create_read_list_start_end(live_server: LiveServer) -> None:
    who = artist()
    token = live_server.token(who, "artist")
    status, created = await live_server.call(
        "POST",
        "/v1/vstudio/sessions",
        token=token,
        json={
            "title": "Album night",
            "streamUrl": "https://twitch.tv/x",
            "streamPlatform": "twitch",
            "producerIds": ["p1"],
            "allowGuests": True,
        },
    )
    assert status == 201, created
    sid = created["id"]
    assert created["artistId"] == who and created["status"] == "scheduled"
    status, got = await live_server.call("GET", f"/v1/vstudio/sessions/{sid}")
    assert status == 200 and got["title"] == "Album night" and got["viewerCount"] == 0
    status, listed = await live_server.call("GET", f"/v1/vstudio/sessions?artistId={who}")
    assert [s["id"] for s in listed["sessions"]] == [sid]
    status, listed = await live_server.call(
        "GET", f"/v1/vstudio/sessions?artistId={who}&status=live"
    )
    assert listed["sessions"] == []
    status, started = await live_server.call(
        "POST", f"/v1/vstudio/sessions/{sid}/start", token=token
    )
    assert status == 200 and started["status"] == "live"
    status, ended = await live_server.call("POST", f"/v1/vstudio/sessions/{sid}/end", token=token)
    assert status == 200 and ended["session"]["status"] == "ended"
    status, again = await live_server.call("POST", f"/v1/vstudio/sessions/{sid}/start", token=token)
    assert status == 409 and again["code"] == ErrorCode.SESSION_ENDED


async def test_second_live_session_is_409(live_server: LiveServer) -> None:
    who = artist()
    await live_server.live_session(who)
    token = live_server.token(who, "artist")
    _, second = await live_server.call(
        "POST", "/v1/vstudio/sessions", token=token, json={"title": "two"}
    )
    status, body = await live_server.call(
        "POST",
        f"/v1/vstudio/sessions/{second['id']}/start",
        token=token,
    )
    assert status == 409 and "already has a live session" in body["message"]


async def test_who_may_do_what(live_server: LiveServer) -> None:
    session = await live_server.live_session(producerIds=["prod"])
    sid = session["id"]
    path = f"/v1/vstudio/sessions/{sid}"
    viewer = live_server.token("someone")
    producer = live_server.token("prod")
    status, body = await live_server.call(
        "POST", "/v1/vstudio/sessions", token=viewer, json={"title": "x"}
    )
    assert status == 403 and body["code"] == ErrorCode.FORBIDDEN
    status, body = await live_server.call("POST", f"{path}/end", token=viewer)
    assert status == 403, body
    status, body = await live_server.call("POST", f"{path}/end", token=producer)
    assert status == 403, body
    status, body = await live_server.call(
        "PATCH", path, token=producer, json={"chatEnabled": False}
    )
    assert status == 200 and body["session"]["chatEnabled"] is False
    status, body = await live_server.call("PATCH", path, token=producer, json={"title": "mine"})
    assert status == 403 and "only toggle" in body["message"]
    status, body = await live_server.call("PATCH", path, token=viewer, json={"chatEnabled": True})
    assert status == 403, body
    artist_token = live_server.token(session["artistId"], "artist")
    status, body = await live_server.call(
        "PATCH", path, token=artist_token, json={"title": "renamed", "allowGuests": True}
    )
    assert status == 200 and body["session"]["title"] == "renamed"


async def test_bad_requests_are_json_with_a_code(live_server: LiveServer) -> None:
    token = live_server.token(artist(), "artist")
    status, body = await live_server.call(
        "POST", "/v1/vstudio/sessions", token=token, json={"title": ""}
    )
    assert status == 400 and body["code"] == ErrorCode.INVALID_MESSAGE
    assert "title" in body["message"]
    status, body = await live_server.call(
        "POST", "/v1/vstudio/sessions", token=token, data=b"{nope", headers={}
    )
    assert status == 400 and "JSON" in body["message"]
    status, body = await live_server.call(
        "POST", "/v1/vstudio/sessions", token=token, json={"title": "x" * 5000}
    )
    assert status == 413 and body["code"] == ErrorCode.MESSAGE_TOO_LARGE
    status, body = await live_server.call("GET", "/v1/vstudio/sessions/doesnotexist")
    assert status == 404 and body["code"] == ErrorCode.SESSION_NOT_FOUND
    status, body = await live_server.call("GET", "/v1/vstudio/sessions?status=weird")
    assert status == 400, body


async def test_openapi_lists_every_route_with_model_schemas(live_server: LiveServer) -> None:
    from server.http.actions import REST_ACTIONS

    status, doc = await live_server.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for entry in REST_ACTIONS:
        assert entry.method.lower() in paths["/v1/vstudio/sessions/{sessionId}" + entry.path]
    schemas = doc["components"]["schemas"]
    assert "PollVote" in schemas and "SessionCreate" in schemas
    assert "pollId" in schemas["PollVote"]["properties"]  # camelCase, as validated
    create = paths["/v1/vstudio/sessions"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SessionCreate"
    }


async def test_health_ready_metrics(live_server: LiveServer) -> None:
    assert (await live_server.call("GET", "/healthz"))[0] == 200
    status, body = await live_server.call("GET", "/readyz")
    assert status == 200 and body == {"ok": True}
    session = await live_server.live_session()
    async with live_server.ws(session["id"], "m") as ws:
        await ws.receive_json(timeout=5)
        status, text = await live_server.call("GET", "/metrics")
    assert status == 200
    for name in (
        "ws_connections_total",
        "ws_connections_by_session",
        "ws_messages_sent_total",
        "ws_messages_received_total",
        "ws_errors_total",
        "ws_latency_ms_bucket",
    ):
        assert name in text, name
    assert f'ws_connections_by_session{{session="{session["id"]}"}} 1.0' in text


@pytest.mark.slow
async def test_readyz_fails_without_redis(server_factory: ServerFactory, tmp_path: Path) -> None:
    embedded = EmbeddedRedis(tmp_path / "own-redis")
    url = embedded.start()
    try:
        server = server_factory(VSTUDIO_REDIS_URL=url)
        assert (await server.call("GET", "/readyz"))[0] == 200
    finally:
        embedded.stop()
    status, body = await server.call("GET", "/readyz")
    assert status == 503 and "redis" in body["reason"]
    assert (await server.call("GET", "/healthz"))[0] == 200


@pytest.mark.slow
def test_a_taken_port_is_reported_clearly(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "vstudio_cli.main", "serve", "--port", str(port)],
            env={"VSTUDIO_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
        assert "Traceback" not in result.stderr
        assert find_free_port("127.0.0.1", port) != port
    assert find_free_port("127.0.0.1", port) == port
