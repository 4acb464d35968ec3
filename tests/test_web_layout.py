"""The fans' page at 1280x800 in headless Chromium, measured: the chat beside the stream and
above the fold, the producers' controls on screen without scrolling, toasts over no form.

The fixtures are the browser tests' own (a real ``vstudio serve``, real Redis, Chromium).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.live_server import LiveServer
from tests.test_web_page import (
    OUTPUT,
    WAIT,
    accounts,
    browser,
    create_poll,
    fans,
    staffed_session,
    web_server,
)

pytestmark = pytest.mark.browser
FIXTURES = (accounts, browser, fans, web_server)
"""The page's browser-test fixtures, used here by name."""

SCREEN = {"width": 1280, "height": 800}

Box = dict[str, float]


async def box(page: Any, selector: str) -> Box:
    found = await page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not shown"
    return dict(found)


def on_screen(item: Box) -> bool:
    """Wholly inside the 1280x800 window, with the page scrolled to the top."""
    return (
        item["x"] >= 0
        and item["y"] >= 0
        and item["x"] + item["width"] <= SCREEN["width"]
        and item["y"] + item["height"] <= SCREEN["height"]
    )


def overlap(a: Box, b: Box) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


async def test_a_producer_sees_stream_chat_poll_and_controls_without_scrolling(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    await create_poll(web_server, session, ["Midnight Drive", "Neon Rain", "Golden Hour"])
    url = f"{web_server.base_url}/s/{session['id']}"
    producer = await (await fans(viewport=SCREEN)).open(url)
    await producer.sign_in(*session["producer"])
    await producer.page.wait_for_selector(".option", timeout=WAIT)
    page = producer.page
    assert await page.evaluate("() => [window.scrollX, window.scrollY]") == [0, 0]
    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT / "layout-producer-1280x800.png"))

    stream, chat = await box(page, "#stream"), await box(page, ".card.chat")
    assert on_screen(stream) and on_screen(chat)
    assert chat["x"] >= stream["x"] + stream["width"], "the chat is beside the stream"
    assert chat["y"] <= stream["y"] + 1 and chat["height"] >= 500, chat
    for selector in ("#chat-list", "#chat-input", "#chat-form button"):
        assert on_screen(await box(page, selector)), selector
    for selector in (
        "#end-poll",
        "#toggle-chat",
        "#toggle-reactions",
        "#poll-form input[name=question]",
        "#poll-form button[type=submit]",
        ".option[data-index='2']",
    ):
        assert on_screen(await box(page, selector)), f"{selector} needs scrolling"


async def test_a_fan_sees_the_chat_beside_the_stream_and_a_toast_covers_no_form(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    url = f"{web_server.base_url}/s/{session['id']}"
    fan = await (await fans(viewport=SCREEN)).open(url)
    await fan.join_as_guest()
    page = fan.page
    stream, chat = await box(page, "#stream"), await box(page, ".card.chat")
    assert on_screen(stream) and on_screen(chat) and chat["x"] >= stream["x"] + stream["width"]
    for selector in ("#poll", "#chat-input", ".reaction", "#tip-form button[type=submit]"):
        assert on_screen(await box(page, selector)), f"{selector} needs scrolling"

    await page.fill("#tip-form input[name=amount]", "3")
    await page.click("#tip-form button[type=submit]")
    toast = page.locator("#alerts .alert", has_text="Your tip was sent")
    await toast.wait_for(timeout=WAIT)
    shown = await box(page, "#alerts .alert")
    await page.screenshot(path=str(OUTPUT / "layout-fan-toast-1280x800.png"))
    for form in ("#tip-form", "#chat-form", "#poll", ".reactions"):
        assert not overlap(shown, await box(page, form)), f"the toast covers {form}"


async def test_the_favicon_is_served(web_server: LiveServer) -> None:
    status, body = await web_server.call("GET", "/favicon.ico")
    assert status == 200 and str(body).startswith("<svg"), body
