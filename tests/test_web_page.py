"""The fans' web page in headless Chromium against a real ``vstudio serve`` and real Redis.

Every page is a separate browser context (its own storage, like a separate person). Requests
to any host but this server are recorded and refused, so the tests also prove the page asks
nothing of third parties except the stream embed itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from broker import Bus, connect
from broker.models import (
    ChatDelete,
    Emote,
    NormalizedChatMessage,
    Platform,
    PlatformEvent,
    Role,
    now_ms,
)
from ingest.batching import to_outgoing
from server.identity.accounts import AccountStore
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
CHROMIUM = os.environ.get("VSTUDIO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
EMBED_HOSTS = {"player.twitch.tv"}
PLAYER_STAND_IN = (
    "<body style='margin:0;display:grid;place-items:center;height:100vh;background:#18181b;"
    "color:#bf94ff;font:16px sans-serif'>player.twitch.tv (not reachable from the tests)</body>"
)


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain square PNG, the stand-in for an emote image from a platform's CDN."""
    row = b"\x00" + bytes(rgb) * size
    chunks = [
        (b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)),
        (b"IDAT", zlib.compress(row * size)),
        (b"IEND", b""),
    ]
    body = b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in chunks
    )
    return b"\x89PNG\r\n\x1a\n" + body


EMOTE_PNG = _png(28, (145, 70, 255))

REFUSE_WEBSOCKETS = """
    const Native = window.WebSocket;
    window.WebSocket = function (url, protocols) {
        const target = new URL(url, location.href);
        target.pathname = "/websockets-blocked-by-a-proxy";
        return new Native(target.toString(), protocols);
    };
    Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
    window.WebSocket.prototype = Native.prototype;
"""
"""As behind a proxy that blocks WebSockets: every upgrade goes to a path the server refuses
(HTTP 404 to the handshake), so the browser really fails to connect."""
WAIT = 15_000
"""Milliseconds a page gets to show something."""


def chromium_or_skip() -> str:
    """The Chromium binary; a skip on a laptop without one, a failure in CI."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class Fan:
    """One person's browser context and page, with what it asked of other hosts."""

    def __init__(self, context: Any, page: Any) -> None:
        self.context = context
        self.page = page
        self.foreign_hosts: set[str] = set()
        self.errors: list[str] = []

    async def open(self, url: str) -> Fan:
        await self.page.goto(url)
        return self

    async def join_as_guest(self) -> None:
        await self.page.click("#guest-button")
        await self.wait_state("live")

    async def sign_in(self, username: str, password: str) -> None:
        await self.page.fill("#login-form input[name=username]", username)
        await self.page.fill("#login-form input[name=password]", password)
        await self.page.click("#login-form button[type=submit]")
        await self.wait_state("live")

    async def wait_state(self, *states: str, timeout: int = WAIT) -> str:
        selector = ", ".join(f"#conn[data-state={state}]" for state in states)
        try:
            await self.page.wait_for_selector(selector, timeout=timeout)
        except Exception as exc:
            raise AssertionError(f"page never got to {states}: {await self.shown()}") from exc
        return await self.page.get_attribute("#conn", "data-state")

    async def shown(self) -> str:
        """What the page tells the person: connection state, sign-in error, alerts."""
        return " | ".join(
            [
                await self.page.text_content("#conn") or "",
                await self.page.text_content("#signin-error") or "",
                await self.page.inner_text("#alerts"),
            ]
        )

    async def chat_texts(self) -> list[str]:
        return await self.page.eval_on_selector_all(
            "#chat-list .msg .text", "nodes => nodes.map(n => n.textContent)"
        )

    async def wait_chat(self, text: str, *, present: bool = True) -> None:
        await self.page.wait_for_function(
            """([text, present]) => {
                const texts = [...document.querySelectorAll('#chat-list .msg .text')]
                    .map(n => n.textContent);
                return texts.includes(text) === present;
            }""",
            arg=[text, present],
            timeout=WAIT,
        )

    async def option_count(self, index: int) -> int:
        value = await self.page.get_attribute(f".option[data-index='{index}'] .count", "data-count")
        return int(value or 0)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def fans(browser: Any) -> AsyncIterator[Any]:
    """``await fans()`` opens a new person's page; page errors fail the test at the end."""
    opened: list[Fan] = []

    async def new_fan(*, viewport: dict[str, int] | None = None, init_script: str = "") -> Fan:
        context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 860})
        if init_script:
            await context.add_init_script(init_script)
        page = await context.new_page()
        fan = Fan(context, page)

        async def guard(route: Any) -> None:
            host = urlparse(route.request.url).hostname or ""
            if host in LOCAL_HOSTS:
                await route.continue_()
                return
            fan.foreign_hosts.add(host)  # recorded; answered locally (no internet here)
            if host in EMBED_HOSTS:
                await route.fulfill(content_type="text/html", body=PLAYER_STAND_IN)
            elif route.request.resource_type == "image" and not host.startswith("unreachable"):
                await route.fulfill(content_type="image/png", body=EMOTE_PNG)
            else:
                await route.abort()

        await context.route("**/*", guard)
        page.on("pageerror", lambda error: fan.errors.append(str(error)))
        opened.append(fan)
        return fan

    yield new_fan
    for fan in opened:
        await fan.context.close()
    errors = [error for fan in opened for error in fan.errors]
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def web_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A ``vstudio serve`` of these tests with its own limits.

    Many people join as guests from one address here, so the per-address guest limit is
    raised; reactions are limited to 2 per 30 s so the rate-limit message can be provoked; the
    reactions and currencies on offer are not the defaults, so the page must take the server's.
    """
    server = LiveServer(
        redis_url,
        tmp_path_factory.mktemp("web-server"),
        env={
            "VSTUDIO_GUEST_RATE_LIMIT": "1000",
            "VSTUDIO_REACTION_RATE_LIMIT": "2",
            "VSTUDIO_REACTION_RATE_WINDOW": "30",
            "VSTUDIO_ALLOWED_REACTIONS": '["🔥", "👏", "🎸"]',
            "VSTUDIO_TIP_CURRENCIES": '["EUR", "USD", "CHF"]',
        },
    )
    yield server
    server.stop()


@pytest.fixture
async def accounts(redis_url: str) -> AsyncIterator[Any]:
    """``await accounts(role)`` creates an account as ``vstudio user add`` does: (name, pw)."""
    client = await connect(redis_url)
    store = AccountStore(client)

    async def add(role: Role) -> tuple[str, str]:
        name = f"{role.value}-{uuid.uuid4().hex[:8]}"
        await store.add(name, "secret-pw-long", role)
        return name, "secret-pw-long"

    yield add
    await client.aclose()


async def staffed_session(server: LiveServer, accounts: Any, **fields: Any) -> dict[str, Any]:
    """A live session whose artist and producer have accounts; their logins in the record."""
    artist = await accounts(Role.ARTIST)
    producer = await accounts(Role.PRODUCER)
    fields = {
        "title": "Night Live",
        "streamUrl": "https://www.twitch.tv/some_artist",
        "streamPlatform": "twitch",
        "allowGuests": True,
        "producerIds": [producer[0]],
        **fields,
    }
    session = await server.live_session(artist[0], **fields)
    return {**session, "artist": artist, "producer": producer}


async def create_poll(
    server: LiveServer, session: dict[str, Any], options: list[str]
) -> dict[str, Any]:
    status, poll = await server.call(
        "POST",
        f"/v1/vstudio/sessions/{session['id']}/polls",
        token=server.token(session["artist"][0], "artist"),
        json={"question": "Which song next?", "options": options},
    )
    assert status in (200, 201), poll
    return poll


async def publish_ingested(bus: Bus, session_id: str, *items: Any) -> None:
    """Publish what a platform worker read, exactly as ``ingest.runtime`` does."""
    for item in items:
        kind, event = to_outgoing(item)
        await bus.publish_many(session_id, kind, [event])


def twitch_message(text: str, username: str = "night_owl", **extra: Any) -> NormalizedChatMessage:
    extra.setdefault("display_name", username.title().replace("_", ""))
    return NormalizedChatMessage(
        id=f"twitch:{uuid.uuid4()}",
        platform=Platform.TWITCH,
        username=username,
        text=text,
        timestamp=now_ms(),
        **extra,
    )


# --- scenarios ---------------------------------------------------------------------------------


async def test_guest_votes_and_sees_the_bars_move(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    poll = await create_poll(web_server, session, ["Moonlight", "Neon Rain", "Static"])
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.page.wait_for_selector("#guest-button")
    assert await fan.page.text_content("#title") == "Night Live"
    await fan.join_as_guest()
    await fan.page.wait_for_selector("text=Which song next?")

    await fan.page.focus(".option[data-index='1']")  # by keyboard, as anyone can
    await fan.page.keyboard.press("Enter")
    await fan.page.wait_for_selector(".option[data-index='1'][aria-pressed=true]", timeout=WAIT)
    assert await fan.page.is_disabled(".option[data-index='0']")  # one vote, shown as cast
    assert "you voted for Neon Rain" in await fan.page.text_content(".poll-status")

    for n in range(3):  # other people vote over REST
        status, body = await web_server.call(
            "POST",
            f"/v1/vstudio/sessions/{session['id']}/polls/{poll['id']}/votes",
            token=web_server.token(f"voter-{uuid.uuid4().hex[:6]}-{n}"),
            json={"optionIndex": 2},
        )
        assert status == 200, body
    await fan.page.wait_for_function(
        "() => document.querySelector(\".option[data-index='2'] .count\").dataset.count === '3'",
        timeout=WAIT,
    )
    assert await fan.option_count(1) == 1
    width = await fan.page.eval_on_selector(
        ".option[data-index='2'] .fill", "node => node.style.width"
    )
    assert width == "75%"

    OUTPUT.mkdir(exist_ok=True)
    await fan.page.screenshot(
        path=OUTPUT / "web-session-desktop.png", full_page=True, animations="disabled"
    )
    assert fan.foreign_hosts <= EMBED_HOSTS, fan.foreign_hosts
    assert fan.foreign_hosts == EMBED_HOSTS  # the Twitch player was embedded


async def test_chat_from_a_worker_and_a_viewer_and_a_producer_deletion(
    web_server: LiveServer, accounts: Any, fans: Any, bus: Bus
) -> None:
    session = await staffed_session(web_server, accounts)
    url = f"{web_server.base_url}/s/{session['id']}"
    viewer = await (await fans()).open(url)
    await viewer.join_as_guest()
    other = await (await fans(viewport={"width": 390, "height": 844})).open(url)
    await other.join_as_guest()
    producer = await (await fans()).open(url)
    await producer.sign_in(*session["producer"])
    assert await producer.page.is_visible("#controls")
    assert not await viewer.page.is_visible("#controls")

    await producer.page.wait_for_function(
        "() => document.getElementById('viewer-count').textContent === '3'", timeout=WAIT
    )

    kappa = Emote(name="Kappa", url="https://static-cdn.example/kappa.png", positions=[(2, 6)])
    worker_message = twitch_message("😀 Kappa what a night", emotes=[kappa])
    await publish_ingested(bus, session["id"], worker_message)
    await other.page.fill("#chat-input", "hello from the couch")
    await other.page.press("#chat-input", "Enter")

    for fan in (viewer, other, producer):
        await fan.wait_chat("😀  what a night")  # the emote became an image
        await fan.wait_chat("hello from the couch")
    emote = viewer.page.locator("#chat-list img.emote")
    assert await emote.get_attribute("alt") == "Kappa"
    badge = viewer.page.locator(f"#chat-list .msg[data-id='{worker_message.id}'] .badge")
    assert await badge.text_content() == "Twitch"

    OUTPUT.mkdir(exist_ok=True)
    await other.page.screenshot(
        path=OUTPUT / "web-session-phone.png", full_page=True, animations="disabled"
    )
    await producer.page.screenshot(
        path=OUTPUT / "web-session-producer.png", full_page=True, animations="disabled"
    )
    await producer.page.click(f".msg[data-id='{worker_message.id}'] button.delete")
    for fan in (viewer, other, producer):
        await fan.wait_chat("😀  what a night", present=False)
    assert "hello from the couch" in await viewer.chat_texts()

    # A platform-side ban removes every message of that user on that platform.
    await publish_ingested(bus, session["id"], twitch_message("spam 1", "spammer"))
    await viewer.wait_chat("spam 1")
    await publish_ingested(
        bus, session["id"], ChatDelete(username="spammer", platform=Platform.TWITCH)
    )
    await viewer.wait_chat("spam 1", present=False)


async def test_a_script_in_chat_renders_as_text(
    web_server: LiveServer, accounts: Any, fans: Any, bus: Bus
) -> None:
    session = await staffed_session(web_server, accounts)
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.join_as_guest()
    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    await publish_ingested(
        bus, session["id"], twitch_message(evil, "<b>mallory</b>", display_name="<i>M</i>")
    )
    await fan.page.fill("#chat-input", "<script>window.pwned = 3</script>")
    await fan.page.press("#chat-input", "Enter")
    await fan.wait_chat(evil)
    await fan.wait_chat("<script>window.pwned = 3</script>")
    assert await fan.page.evaluate("window.pwned") is None
    assert await fan.page.locator("#chat-list script, #chat-list b, #chat-list i").count() == 0
    assert await fan.page.locator("#chat-list img:not(.emote)").count() == 0
    assert "<i>M</i>" in await fan.page.inner_text("#chat-list")

    lost = Emote(name="LUL", url="https://unreachable.example/lul.png", positions=[(3, 5)])
    await publish_ingested(bus, session["id"], twitch_message("ha LUL", emotes=[lost]))
    await fan.wait_chat("ha LUL")  # an emote image that cannot load reads as its name
    assert await fan.page.locator("#chat-list .emote-name", has_text="LUL").count() == 1


async def test_reactions_animate_and_tips_arrive(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    url = f"{web_server.base_url}/s/{session['id']}"
    sender = await (await fans()).open(url)
    await sender.join_as_guest()
    watcher = await (await fans()).open(url)
    await watcher.join_as_guest()

    offered = await sender.page.eval_on_selector_all(
        ".reaction", "nodes => nodes.map(n => n.dataset.emoji)"
    )
    assert offered == ["🔥", "👏", "🎸"]
    currencies = await sender.page.eval_on_selector_all(
        "#tip-form select[name=currency] option", "nodes => nodes.map(n => n.value)"
    )
    assert currencies == ["EUR", "USD", "CHF"]
    await sender.page.click(".reaction[data-emoji='🔥']")
    await watcher.page.wait_for_selector("#bursts .burst[data-emoji='🔥']", timeout=WAIT)
    animation = await watcher.page.eval_on_selector(
        "#bursts .burst", "node => getComputedStyle(node).animationName"
    )
    assert animation == "float-up"
    await watcher.page.wait_for_function(
        "() => document.querySelector(\".reaction[data-emoji='🔥'] .total\").textContent === '1'",
        timeout=WAIT,
    )

    await sender.page.fill("#tip-form input[name=amount]", "5")
    await sender.page.select_option("#tip-form select[name=currency]", "EUR")
    await sender.page.fill("#tip-form input[name=message]", "for the encore")
    await sender.page.click("#tip-form button[type=submit]")
    await watcher.page.wait_for_selector("#tip-list li", timeout=WAIT)
    assert "for the encore" in await watcher.page.text_content("#tip-list li")
    assert "5" in await watcher.page.text_content("#tip-totals")


async def test_platform_money_shows_in_the_header_once_per_event(
    web_server: LiveServer, accounts: Any, fans: Any, bus: Bus
) -> None:
    session = await staffed_session(web_server, accounts)
    url = f"{web_server.base_url}/s/{session['id']}"
    early = await (await fans()).open(url)
    await early.join_as_guest()
    cheer = PlatformEvent(
        id=f"twitch:{uuid.uuid4()}:cheer",
        platform=Platform.TWITCH,
        kind="cheer",
        username="night_owl",
        count=1500,
        amount_minor=1500,
        currency="BITS",
        timestamp=now_ms(),
    )
    superchat = PlatformEvent(
        id=f"youtube:{uuid.uuid4()}:superchat",
        platform=Platform.YOUTUBE,
        kind="superchat",
        username="@fan",
        amount_minor=500,
        currency="USD",
        timestamp=now_ms(),
    )
    shared = cheer.model_copy(update={"id": f"twitch:{uuid.uuid4()}:cheer", "source_channel": "9"})
    # a worker's repeat, and a cheer sent in another channel of a shared chat (not this artist's)
    await publish_ingested(bus, session["id"], shared, cheer, superchat, cheer)
    expected = await early.page.evaluate(  # "1,500 BITS (twitch) · $5.00 (youtube)" in en-US
        """`Cheers & gifts: ${(1500).toLocaleString()} BITS (twitch) · ${new Intl.NumberFormat(
            undefined, {style: "currency", currency: "USD"}).format(5)} (youtube)`"""
    )
    await early.page.wait_for_function(
        f"() => document.getElementById('money-totals').textContent === {expected!r}",
        timeout=WAIT,
    )
    late = await (await fans()).open(url)  # from session.state's ledgerTotals
    await late.join_as_guest()
    await late.page.wait_for_function(
        f"() => document.getElementById('money-totals').textContent === {expected!r}",
        timeout=WAIT,
    )
    assert await early.page.text_content("#money-totals") == expected


async def test_announcements_show_on_the_page(
    web_server: LiveServer, accounts: Any, fans: Any, redis_url: str
) -> None:
    session = await staffed_session(web_server, accounts)
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.join_as_guest()
    client = await connect(redis_url)
    try:  # an operator's raw publish, as the seed names the channel
        await client.publish("vstudio:global:announcements", "Doors close at midnight")
    finally:
        await client.aclose()
    await fan.page.wait_for_selector("#chat-list .notice-announcement", timeout=WAIT)
    assert "Doors close at midnight" in await fan.page.text_content("#chat-list")
    assert "Doors close at midnight" in await fan.page.text_content("#alerts")


async def test_rate_limit_is_told_in_plain_words(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.join_as_guest()
    for _ in range(3):
        await fan.page.click(".reaction[data-emoji='👏']")
    alert = fan.page.locator("#alerts .alert", has_text="going too fast")
    await alert.wait_for(timeout=WAIT)
    assert "Try again in" in await alert.text_content()


async def test_falls_back_to_sse_when_websockets_are_refused_and_votes_over_rest(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    poll = await create_poll(web_server, session, ["Yes", "No"])
    fan = await (await fans(init_script=REFUSE_WEBSOCKETS)).open(
        f"{web_server.base_url}/s/{session['id']}"
    )
    await fan.page.click("#guest-button")
    assert await fan.wait_state("sse") == "sse"
    assert await fan.page.get_attribute("body", "data-transport") == "sse"
    assert "SSE" in await fan.page.text_content("#conn")

    await fan.page.click(".option[data-index='0']")
    await fan.page.wait_for_selector(".option[data-index='0'][aria-pressed=true]", timeout=WAIT)
    await fan.page.wait_for_function(
        "() => document.querySelector(\".option[data-index='0'] .count\").dataset.count === '1'",
        timeout=WAIT,
    )
    async with web_server.ws(session["id"], f"checker-{uuid.uuid4().hex[:6]}") as ws:
        state = (await ws.receive_json())["payload"]
    assert state["activePoll"]["id"] == poll["id"]
    assert state["activePoll"]["results"] == [1, 0]  # counted in Redis, through REST

    await fan.page.fill("#chat-input", "typed over the fallback")
    await fan.page.press("#chat-input", "Enter")
    await fan.wait_chat("typed over the fallback")


async def test_the_artist_ends_the_session_and_every_page_says_so(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    url = f"{web_server.base_url}/s/{session['id']}"
    viewers = []
    for _ in range(2):
        viewer = await (await fans()).open(url)
        await viewer.join_as_guest()
        viewers.append(viewer)
    artist = await (await fans()).open(url)
    await artist.sign_in(*session["artist"])
    assert await artist.page.text_content("#controls-title") == "Artist controls"

    await artist.page.click("#end-session")
    assert await artist.page.text_content("#end-session") == "Really end the session?"
    await artist.page.click("#end-session")
    for fan in (*viewers, artist):
        assert await fan.wait_state("ended") == "ended"
        assert await fan.page.is_visible("#ended")
        assert await fan.page.is_disabled("#chat-input")

    OUTPUT.mkdir(exist_ok=True)
    await viewers[0].page.screenshot(path=OUTPUT / "web-session-ended.png", animations="disabled")

    late = await (await fans()).open(url)  # a page opened afterwards says so too
    await late.page.wait_for_selector("#ended", state="visible", timeout=WAIT)


async def test_producer_controls_polls_and_chat_toggle(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    url = f"{web_server.base_url}/s/{session['id']}"
    viewer = await (await fans()).open(url)
    await viewer.join_as_guest()
    producer = await (await fans()).open(url)
    await producer.sign_in(*session["producer"])
    assert not await producer.page.is_visible("#end-session")  # the artist's alone

    await producer.page.fill("#poll-form input[name=question]", "Encore?")
    await producer.page.fill("#poll-form textarea[name=options]", "Yes\nOf course")
    await producer.page.click("#poll-form button[type=submit]")
    await viewer.page.wait_for_selector("text=Encore?", timeout=WAIT)
    await viewer.page.click(".option[data-index='1']")
    await producer.page.wait_for_function(
        "() => document.querySelector(\".option[data-index='1'] .count\")?.dataset.count === '1'",
        timeout=WAIT,
    )
    await producer.page.click("#end-poll")
    await viewer.page.wait_for_selector("#poll[data-status=ended]", timeout=WAIT)
    assert "final results" in await viewer.page.text_content(".poll-status")

    await producer.page.click("#toggle-chat")
    await viewer.page.wait_for_selector("#chat-off", state="visible", timeout=WAIT)
    assert not await viewer.page.is_visible("#chat-form")
    await producer.page.click("#toggle-chat")
    await viewer.page.wait_for_selector("#chat-form", state="visible", timeout=WAIT)

    await producer.page.click("#toggle-reactions")
    await viewer.page.wait_for_selector("#reactions-off", state="visible", timeout=WAIT)
    assert not await viewer.page.is_visible("#reaction-buttons")

    await viewer.page.fill("#chat-input", "first!!!")
    await viewer.page.press("#chat-input", "Enter")
    await producer.wait_chat("first!!!")
    await producer.page.click(".msg.platform-audifi button.mute")
    await viewer.page.locator("#alerts .alert", has_text="You have been muted.").wait_for()
    await producer.page.locator(".msg.platform-audifi button.mute", has_text="Unmute").wait_for()
    await viewer.page.fill("#chat-input", "second!!!")
    await viewer.page.press("#chat-input", "Enter")
    refusal = viewer.page.locator("#alerts .alert", has_text="Your message was not sent")
    await refusal.wait_for(timeout=WAIT)
    assert "muted" in await refusal.text_content()
    assert await viewer.page.input_value("#chat-input") == "second!!!"  # nothing lost


async def test_front_page_lists_live_sessions(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    fan = await (await fans()).open(f"{web_server.base_url}/")
    link = fan.page.locator(f".session-card[data-id='{session['id']}'] a")
    await link.wait_for(timeout=WAIT)
    OUTPUT.mkdir(exist_ok=True)
    await fan.page.screenshot(path=OUTPUT / "web-front-page.png")
    await link.click()
    await fan.page.wait_for_url(f"**/s/{session['id']}")
    await fan.page.wait_for_selector("#guest-button")


# --- restart ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_the_page_reconnects_after_a_server_restart_and_shows_what_it_missed(
    server_factory: ServerFactory, accounts: Any, fans: Any, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_GUEST_RATE_LIMIT="1000")
    session = await staffed_session(server, accounts)
    fan = await (await fans()).open(f"{server.base_url}/s/{session['id']}")
    await fan.join_as_guest()
    await publish_ingested(bus, session["id"], twitch_message("before the restart"))
    await fan.wait_chat("before the restart")

    await asyncio.to_thread(server.stop)
    await fan.wait_state("reconnecting", "failed")
    assert "Reconnecting" in await fan.page.text_content("#conn")
    missed = [twitch_message(f"while you were away {n}") for n in range(3)]
    await publish_ingested(bus, session["id"], *missed)  # the worker kept reading the platform

    await asyncio.to_thread(
        lambda: server_factory(port=server.port, VSTUDIO_GUEST_RATE_LIMIT="1000")
    )
    assert await fan.wait_state("resumed", timeout=40_000) == "resumed"
    assert await fan.page.get_attribute("body", "data-transport") == "ws"
    for message in missed:
        await fan.wait_chat(message.text)
    texts = await fan.chat_texts()
    assert texts.count("before the restart") == 1  # nothing repeated
    assert texts.index("before the restart") < texts.index("while you were away 0")


@pytest.mark.slow
async def test_the_heartbeat_notices_a_silent_server_and_the_page_comes_back(
    server_factory: ServerFactory, accounts: Any, fans: Any, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_GUEST_RATE_LIMIT="1000")
    session = await staffed_session(server, accounts)
    fan = await (await fans()).open(f"{server.base_url}/s/{session['id']}?heartbeat=1000")
    await fan.join_as_guest()
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)  # the connection stays open, but nothing answers any more
    try:
        await fan.wait_state("reconnecting", timeout=10_000)
        await publish_ingested(bus, session["id"], twitch_message("said while it was silent"))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await fan.wait_state("resumed", timeout=40_000) == "resumed"
    await fan.wait_chat("said while it was silent")


async def test_unknown_sessions_and_sessions_without_guests(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    fan = await (await fans()).open(f"{web_server.base_url}/s/no-such-session")
    await fan.page.wait_for_function(
        "() => document.getElementById('title').textContent === 'Session not found'",
        timeout=WAIT,
    )
    assert await fan.page.locator("#panel").is_hidden()

    session = await staffed_session(web_server, accounts, allowGuests=False)
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.page.wait_for_selector("#login-form", timeout=WAIT)
    assert await fan.page.locator("#guest-button").is_hidden()
    await fan.page.fill("#login-form input[name=username]", "nobody")
    await fan.page.fill("#login-form input[name=password]", "wrong-password")
    await fan.page.click("#login-form button[type=submit]")
    error = fan.page.locator("#signin-error", has_text="Wrong username or password.")
    await error.wait_for(timeout=WAIT)
    viewer = await accounts(Role.VIEWER)
    await fan.sign_in(*viewer)
    assert await fan.page.text_content("#who") == viewer[0]
    assert await fan.page.locator("#controls").is_hidden()


async def test_a_several_choice_poll_that_ends_by_itself(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    status, poll = await web_server.call(
        "POST",
        f"/v1/vstudio/sessions/{session['id']}/polls",
        token=web_server.token(session["artist"][0], "artist"),
        json={
            "question": "Which encores?",
            "options": ["A", "B", "C"],
            "allowMultiple": True,
            "duration": 5,
        },
    )
    assert status in (200, 201), poll
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.join_as_guest()
    await fan.page.wait_for_selector("text=Which encores?")
    assert "ends in" in await fan.page.text_content(".poll-status")
    for index in (0, 2):
        await fan.page.click(f".option[data-index='{index}']")
        await fan.page.wait_for_selector(
            f".option[data-index='{index}'][aria-pressed=true]", timeout=WAIT
        )
    assert await fan.page.is_enabled(".option[data-index='1']")  # one vote per option
    assert "you voted for A, C" in await fan.page.text_content(".poll-status")

    await fan.page.wait_for_selector("#poll[data-status=ended]", timeout=WAIT)
    assert "final results" in await fan.page.text_content(".poll-status")
    assert await fan.page.is_disabled(".option[data-index='1']")
    assert [await fan.option_count(i) for i in range(3)] == [1, 0, 1]


async def test_a_scheduled_session_says_so_until_it_starts(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    artist, _ = await accounts(Role.ARTIST)
    token = web_server.token(artist, "artist")
    status, session = await web_server.call(
        "POST",
        "/v1/vstudio/sessions",
        token=token,
        json={"title": "Later tonight", "allowGuests": True},
    )
    assert status == 201, session
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.page.wait_for_selector("#scheduled", state="visible", timeout=WAIT)
    assert await fan.page.get_attribute("#stream", "data-kind") == "none"  # a placeholder
    await fan.join_as_guest()
    status, _ = await web_server.call(
        "POST", f"/v1/vstudio/sessions/{session['id']}/start", token=token
    )
    assert status == 200
    await fan.page.wait_for_selector("#scheduled", state="hidden", timeout=WAIT)


@pytest.mark.slow
async def test_a_resume_beyond_the_history_says_chat_may_be_missing(
    server_factory: ServerFactory, accounts: Any, fans: Any, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_GUEST_RATE_LIMIT="1000")
    session = await staffed_session(server, accounts)
    fan = await (await fans()).open(f"{server.base_url}/s/{session['id']}")
    await fan.join_as_guest()
    await publish_ingested(bus, session["id"], twitch_message("seen live"))
    await fan.wait_chat("seen live")

    await asyncio.to_thread(server.stop)
    await fan.wait_state("reconnecting", "failed")
    for start in range(0, 2500, 250):  # far more than the history keeps (1,000 here)
        flood = [to_outgoing(twitch_message(f"flood {n}"))[1] for n in range(start, start + 250)]
        await bus.publish_many(session["id"], "chat", flood)

    await asyncio.to_thread(
        lambda: server_factory(port=server.port, VSTUDIO_GUEST_RATE_LIMIT="1000")
    )
    await fan.wait_state("live", timeout=40_000)
    assert "some earlier chat may be missing" in await fan.page.text_content("#conn")
    assert "seen live" in await fan.chat_texts()  # what it had stays on the page


@pytest.mark.slow
async def test_a_full_session_tells_the_person_and_keeps_trying(
    server_factory: ServerFactory, accounts: Any, fans: Any
) -> None:
    server = server_factory(VSTUDIO_GUEST_RATE_LIMIT="1000", VSTUDIO_MAX_VIEWERS="1")
    session = await staffed_session(server, accounts)
    url = f"{server.base_url}/s/{session['id']}"
    first = await (await fans()).open(url)
    await first.join_as_guest()
    second = await (await fans()).open(url)
    await second.page.click("#guest-button")
    await second.wait_state("reconnecting")
    assert "This session is full right now." in await second.page.text_content("#conn")

    await first.page.click("#sign-out")  # a place frees up; the retry gets in
    await second.wait_state("live", timeout=40_000)


async def test_every_control_has_a_name_and_the_keyboard_reaches_it(
    web_server: LiveServer, accounts: Any, fans: Any
) -> None:
    session = await staffed_session(web_server, accounts)
    await create_poll(web_server, session, ["One", "Two"])
    fan = await (await fans()).open(f"{web_server.base_url}/s/{session['id']}")
    await fan.sign_in(*session["producer"])  # staff see every control there is
    await fan.page.wait_for_selector(".option")
    unnamed = await fan.page.evaluate(
        """() => [...document.querySelectorAll('a, button, input, select, textarea')]
            .filter((node) => node.offsetParent !== null)
            .filter((node) => {
                const label = [...(node.labels ?? [])].map((l) => l.textContent).join('');
                const name = node.getAttribute('aria-label') || label || node.textContent;
                return !name.trim();
            })
            .map((node) => node.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []

    await fan.page.reload()  # still signed in (this tab keeps its sign-in), focus at the top
    await fan.wait_state("live")
    await fan.page.wait_for_selector(".option")
    await fan.page.keyboard.press("Tab")  # the first stop skips to the interactions
    assert await fan.page.evaluate("document.activeElement.className") == "skip"
    await fan.page.keyboard.press("Enter")
    for _ in range(40):  # and from there the keyboard reaches the first poll option
        await fan.page.keyboard.press("Tab")
        if await fan.page.evaluate("document.activeElement.dataset.index") == "0":
            break
    else:
        raise AssertionError("the first poll option is not reachable with Tab")
    await fan.page.keyboard.press("Space")
    await fan.page.wait_for_selector(".option[data-index='0'][aria-pressed=true]", timeout=WAIT)


@pytest.mark.slow
async def test_the_sse_fallback_resumes_after_a_server_restart(
    server_factory: ServerFactory, accounts: Any, fans: Any, bus: Bus
) -> None:
    server = server_factory(VSTUDIO_GUEST_RATE_LIMIT="1000")
    session = await staffed_session(server, accounts)
    fan = await (await fans(init_script=REFUSE_WEBSOCKETS)).open(
        f"{server.base_url}/s/{session['id']}"
    )
    await fan.page.click("#guest-button")
    await fan.wait_state("sse")
    await publish_ingested(bus, session["id"], twitch_message("before, over SSE"))
    await fan.wait_chat("before, over SSE")

    await asyncio.to_thread(server.stop)
    await fan.wait_state("reconnecting")
    await publish_ingested(bus, session["id"], twitch_message("missed, over SSE"))
    await asyncio.to_thread(
        lambda: server_factory(port=server.port, VSTUDIO_GUEST_RATE_LIMIT="1000")
    )
    assert await fan.wait_state("resumed", timeout=40_000) == "resumed"
    await fan.wait_chat("missed, over SSE")
    assert await fan.page.get_attribute("body", "data-transport") == "sse"
    assert (await fan.chat_texts()).count("before, over SSE") == 1
