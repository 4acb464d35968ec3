"""The page's client retries a request refused with 4009 once Redis is back, and it counts once:
the real client.js in headless Chromium, against a live server whose Redis is stopped (issue 13).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker import Bus, connect
from tests.support.loopback import free_port
from tests.support.redis import start_private_redis
from tests.support.types import ServerFactory
from tests.test_web_protocol import CHROMIUM_ARGS, chromium_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_the_page_retries_chat_and_votes_after_an_outage_and_counts_once(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    executable = chromium_or_skip()
    playwright_api = pytest.importorskip("playwright.async_api")
    port = free_port()
    redis = start_private_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}"
    try:
        server = server_factory(VSTUDIO_REDIS_URL=url, VSTUDIO_OUTAGE_RETRY_AFTER="0.5")
        session = await server.live_session()
        sid = session["id"]
        status, poll = await server.call(
            "POST",
            f"/v1/vstudio/sessions/{sid}/polls",
            token=server.token(session["artistId"], "artist"),
            json={"question": "Encore?", "options": ["yes", "no"]},
        )
        assert status in (200, 201), poll
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{server.base_url}/healthz")
                await page.evaluate(
                    """async ([sid, token]) => {
                      const C = await import('/static/js/client.js');
                      // the REST road (SSE transport): no socket needed to send
                      window.conn = new C.SessionConnection(
                        {sessionId: sid, token, options: {transport: 'sse'}});
                    }""",
                    [sid, server.token("page-fan")],
                )
                redis.stop()
                sending = asyncio.ensure_future(
                    page.evaluate(
                        """async (pollId) => [
                          await conn.request('chat.message', {text: 'from the page'}),
                          await conn.request('poll.vote', {pollId, optionIndex: 1}),
                        ]""",
                        poll["id"],
                    )
                )
                await asyncio.sleep(1.5)
                assert not sending.done()  # still retrying while Redis is down
                redis = await asyncio.to_thread(start_private_redis, tmp_path / "redis", port)
                chat, vote = await asyncio.wait_for(sending, 30)
            finally:
                await browser.close()
        assert chat["id"].startswith("audifi:") and vote
        status, body = await server.call(
            "GET", f"/v1/vstudio/sessions/{sid}/polls/{poll['id']}", token=server.token("x")
        )
        assert status == 200 and body["results"] == [0, 1], body
        client = await connect(url)
        try:
            replay = await Bus(client).replay(sid, "0-0")
        finally:
            await client.aclose()
        texts = [e.payload["text"] for e in replay.events if e.type == "chat.message"]
        assert texts == ["from the page"]
    finally:
        redis.stop()
