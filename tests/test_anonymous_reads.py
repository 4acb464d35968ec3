"""Without a token, the REST reads show what fans may see and nothing more; /metrics can ask
for a bearer token of its own."""

from __future__ import annotations

import uuid

from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

PRIVATE = ("producerIds", "requiredTokens")


async def sessions_of(server: LiveServer, artist: str, token: str | None = None) -> list[dict]:
    status, body = await server.call("GET", f"/v1/vstudio/sessions?artistId={artist}", token=token)
    assert status == 200, body
    return list(body["sessions"])


async def test_anonymous_lists_show_live_and_public_sessions_without_private_fields(
    live_server: LiveServer,
) -> None:
    artist = f"artist-{uuid.uuid4().hex[:8]}"
    token = live_server.token(artist, "artist")
    made = {}
    for title, guests in (("private plan", False), ("public plan", True), ("live", False)):
        status, body = await live_server.call(
            "POST",
            "/v1/vstudio/sessions",
            token=token,
            json={"title": title, "allowGuests": guests, "producerIds": ["pat"]},
        )
        assert status == 201, body
        made[title] = body["id"]
    status, _ = await live_server.call(
        "POST", f"/v1/vstudio/sessions/{made['live']}/start", token=token
    )
    assert status == 200
    seen = await sessions_of(live_server, artist)
    assert {s["id"] for s in seen} == {made["public plan"], made["live"]}
    for session in seen:
        assert not set(PRIVATE) & set(session), session
    full = await sessions_of(live_server, artist, token)
    assert {s["id"] for s in full} == set(made.values())
    assert all(s["producerIds"] == ["pat"] for s in full)
    status, one = await live_server.call("GET", f"/v1/vstudio/sessions/{made['private plan']}")
    assert status == 200 and "producerIds" not in one and one["title"] == "private plan"
    assert one["viewerCount"] == 0
    status, one = await live_server.call(
        "GET", f"/v1/vstudio/sessions/{made['private plan']}", token=token
    )
    assert one["producerIds"] == ["pat"]
    status, body = await live_server.call("GET", "/v1/vstudio/sessions", token="not-a-jwt")
    assert status == 401, body  # a token that is sent is checked, not ignored


async def test_metrics_can_require_a_bearer_token(server_factory: ServerFactory) -> None:
    server = server_factory(VSTUDIO_METRICS_TOKEN="scrape-me-please-0123456789")
    status, _ = await server.call("GET", "/metrics")
    assert status == 401
    status, _ = await server.call("GET", "/metrics", token="wrong-one")
    assert status == 401
    status, text = await server.call("GET", "/metrics", token="scrape-me-please-0123456789")
    assert status == 200 and "ws_messages_sent_total" in text
