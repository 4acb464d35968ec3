"""The OBS overlays (``/overlay/{sessionId}/chat|poll|reactions``) in headless Chromium against
a real server: transparent, without controls, styled by the query, live from the session.

Each test saves a screenshot of its overlay over a checkerboard in ``tmp_path`` and prints the
path (``pytest -s`` shows it), so what OBS would composite can be looked at.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from broker import Bus
from broker.models import ChatDelete
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory
from tests.test_web_page import (
    WAIT,
    accounts,
    browser,
    create_poll,
    publish_ingested,
    staffed_session,
    twitch_message,
    web_server,
)

__all__ = ["accounts", "browser", "web_server"]  # fixtures shared with test_web_page

pytestmark = pytest.mark.browser

CHECKERBOARD = (
    "html.overlay { background: repeating-conic-gradient(#8a8a8a 0 25%, #d6d6d6 0 50%) "
    "0 0 / 24px 24px !important; }"
)
CONTROLS = "button, input, select, textarea, a, [contenteditable]"


async def open_overlay(browser: Any, url: str) -> Any:
    """A page on ``url`` (the CSP is bypassed only so the test can paint the checkerboard)."""
    context = await browser.new_context(viewport={"width": 640, "height": 360}, bypass_csp=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    await page.goto(url)
    await page.wait_for_selector("body[data-state=live]", state="attached", timeout=WAIT)
    return page


async def assert_bare(page: Any) -> None:
    """Transparent everywhere but the content, and nothing to click."""
    backgrounds = await page.evaluate(
        "() => [document.documentElement, document.body, document.getElementById('overlay')]"
        ".map(n => getComputedStyle(n).backgroundColor)"
    )
    assert backgrounds == ["rgba(0, 0, 0, 0)"] * 3
    assert await page.eval_on_selector_all(CONTROLS, "nodes => nodes.length") == 0
    assert page.errors == []


async def screenshot(page: Any, path: Path) -> None:
    await page.add_style_tag(content=CHECKERBOARD)
    await page.screenshot(path=str(path))
    print(f"overlay screenshot: {path}")


async def test_chat_overlay_styles_by_query_keeps_max_lines_and_drops_deletions(
    web_server: LiveServer, accounts: Any, browser: Any, bus: Bus, tmp_path: Path
) -> None:
    session = await staffed_session(web_server, accounts)
    page = await open_overlay(
        browser,
        f"{web_server.base_url}/overlay/{session['id']}/chat"
        "?fontSize=30&color=ffcc00&maxLines=3&nameColor=00ff00",
    )
    messages = [twitch_message(f"line {n}", username=f"fan_{n}") for n in range(5)]
    await publish_ingested(bus, session["id"], *messages)
    await page.wait_for_function(
        "() => [...document.querySelectorAll('.line .text')].map(n => n.textContent).join()"
        " === 'line 2,line 3,line 4'",
        timeout=WAIT,
    )
    style = await page.eval_on_selector(
        ".line", "n => [getComputedStyle(n).fontSize, getComputedStyle(n).color]"
    )
    assert style == ["30px", "rgb(255, 204, 0)"]
    name = await page.eval_on_selector(".line .name", "n => getComputedStyle(n).color")
    assert name == "rgb(0, 255, 0)"
    await publish_ingested(bus, session["id"], ChatDelete(message_id=messages[3].id))
    await page.wait_for_function(
        "() => document.querySelectorAll('.line').length === 2", timeout=WAIT
    )
    await assert_bare(page)
    await screenshot(page, tmp_path / "overlay-chat.png")


async def test_poll_overlay_follows_votes_and_shows_the_final_result(
    web_server: LiveServer, accounts: Any, browser: Any, tmp_path: Path
) -> None:
    session = await staffed_session(web_server, accounts)
    poll = await create_poll(web_server, session, ["Moonlight", "Neon Rain"])
    page = await open_overlay(
        browser, f"{web_server.base_url}/overlay/{session['id']}/poll?accent=ff0066&linger=60"
    )
    await page.wait_for_selector("text=Which song next?", timeout=WAIT)
    for n in range(3):
        status, body = await web_server.call(
            "POST",
            f"/v1/vstudio/sessions/{session['id']}/polls/{poll['id']}/votes",
            token=web_server.token(f"voter-{uuid.uuid4().hex[:6]}-{n}"),
            json={"optionIndex": 1 if n else 0},
        )
        assert status == 200, body
    await page.wait_for_selector(".option[data-index='1'][data-count='2']", timeout=WAIT)
    share = await page.text_content(".option[data-index='1'] .share")
    assert share == "67%"
    bar = await page.eval_on_selector(
        ".option[data-index='1'] .bar", "n => getComputedStyle(n).backgroundColor"
    )
    assert bar == "rgb(255, 0, 102)"
    status, _ = await web_server.call(
        "POST",
        f"/v1/vstudio/sessions/{session['id']}/polls/{poll['id']}/end",
        token=web_server.token(session["artist"][0], "artist"),
    )
    assert status == 200
    await page.wait_for_selector(".poll[data-status=ended]", timeout=WAIT)
    assert "final" in (await page.text_content(".poll .total") or "")
    await assert_bare(page)
    await screenshot(page, tmp_path / "overlay-poll.png")


async def test_reactions_overlay_floats_bursts_and_counts_them(
    web_server: LiveServer, accounts: Any, browser: Any, tmp_path: Path
) -> None:
    session = await staffed_session(web_server, accounts)
    page = await open_overlay(
        browser, f"{web_server.base_url}/overlay/{session['id']}/reactions?totals=1&fontSize=40"
    )
    for emoji in ("🔥", "🎸"):
        status, body = await web_server.call(
            "POST",
            f"/v1/vstudio/sessions/{session['id']}/reactions",
            token=web_server.token(f"fan-{uuid.uuid4().hex[:6]}"),
            json={"emoji": emoji},
        )
        assert status in (200, 202), body
    await page.wait_for_selector(".burst[data-emoji='🔥']", timeout=WAIT)
    await page.wait_for_selector(".totals [data-emoji='🎸']", timeout=WAIT)
    assert await page.text_content(".totals [data-emoji='🔥']") == "🔥 1"
    await assert_bare(page)
    await screenshot(page, tmp_path / "overlay-reactions.png")


async def test_an_overlay_of_a_session_without_guests_shows_nothing_and_keeps_trying(
    web_server: LiveServer, accounts: Any, browser: Any, bus: Bus
) -> None:
    """The overlay reads as an anonymous guest would: no guests, no chat on screen."""
    session = await staffed_session(web_server, accounts, allowGuests=False)
    context = await browser.new_context()
    page = await context.new_page()
    guest_calls: list[str] = []
    page.on(
        "request", lambda r: guest_calls.append(r.url) if r.url.endswith("/auth/guest") else None
    )
    await page.goto(f"{web_server.base_url}/overlay/{session['id']}/chat")
    await page.wait_for_selector("body[data-state=waiting]", state="attached", timeout=WAIT)
    await publish_ingested(bus, session["id"], twitch_message("private", username="x"))
    await page.wait_for_timeout(2500)  # the first retries come after 1 s, then 2 s
    assert len(guest_calls) >= 2  # it did not give up
    assert await page.eval_on_selector_all(".line", "nodes => nodes.length") == 0
    await context.close()


@pytest.mark.slow
async def test_an_overlay_comes_back_by_itself_after_the_server_restarts(
    server_factory: ServerFactory, browser: Any, bus: Bus
) -> None:
    """About 10 s: a server stops, the overlay waits, a new server on the port is found."""
    first = server_factory(VSTUDIO_GUEST_RATE_LIMIT="1000")
    session = await first.live_session(allowGuests=True)
    page = await open_overlay(browser, f"{first.base_url}/overlay/{session['id']}/chat")
    await publish_ingested(bus, session["id"], twitch_message("before the restart"))
    await page.wait_for_selector("text=before the restart", timeout=WAIT)
    first.stop()
    await page.wait_for_selector("body:not([data-state=live])", state="attached", timeout=WAIT)
    server_factory(port=first.port, VSTUDIO_GUEST_RATE_LIMIT="1000")
    back = "body[data-state=live], body[data-state=resumed]"  # resumed: it missed nothing
    await page.wait_for_selector(back, state="attached", timeout=WAIT)
    await publish_ingested(bus, session["id"], twitch_message("after the restart"))
    await page.wait_for_selector("text=after the restart", timeout=WAIT)
    assert page.errors == []
