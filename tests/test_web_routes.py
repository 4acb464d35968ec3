"""The page's HTTP routes on a real ``vstudio serve``: pages, static files, public session JSON."""

from __future__ import annotations

import uuid

from server.http.pages import PUBLIC_FIELDS
from tests.support.live_server import LiveServer


async def test_pages_carry_a_strict_content_security_policy(live_server: LiveServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for path in ("/", "/s/anything"):
            async with http.get(live_server.base_url + path) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                policy = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in policy
                assert "connect-src 'self'" in policy
                assert "frame-src https://player.twitch.tv" in policy
                assert response.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(live_server.base_url + "/static/js/client.js") as response:
            assert response.status == 200
            assert "javascript" in response.content_type
        async with http.get(live_server.base_url + "/static/session.html") as response:
            assert response.status == 404  # HTML only through its routes, with the policy


async def test_public_session_json_holds_public_fields_only(live_server: LiveServer) -> None:
    artist = f"artist-{uuid.uuid4().hex[:8]}"
    session = await live_server.live_session(
        artist,
        title="Public",
        streamUrl="https://www.twitch.tv/x",
        producerIds=["a-producer"],
        requiredTokens=["0xabc"],
    )
    status, body = await live_server.call("GET", f"/web/sessions/{session['id']}")
    assert status == 200
    assert set(body) <= set(PUBLIC_FIELDS)
    assert body["title"] == "Public" and body["status"] == "live"
    assert "producerIds" not in body and "requiredTokens" not in body

    status, listing = await live_server.call("GET", "/web/sessions?status=live")
    assert status == 200
    assert all(set(item) <= set(PUBLIC_FIELDS) for item in listing["sessions"])

    status, body = await live_server.call("GET", "/web/sessions/no-such-session")
    assert (status, body["code"]) == (404, 4001)
    status, body = await live_server.call("GET", "/web/sessions?status=paused")
    assert (status, body["code"]) == (400, 4006)
    assert "live" in body["message"]
