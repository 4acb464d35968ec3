"""The page's pure protocol rules (server/web/js/protocol.js), run in headless Chromium.

The module is served over real HTTP from ``server/web/static`` and imported by a blank page, so the
same code the page runs is what is tested: the reconnection schedule, stream embeds, emote
splitting by code point, deletions, REST equivalents and error wording.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.loopback import serve_app

pytestmark = pytest.mark.browser

STATIC_DIR = Path(__file__).resolve().parents[1] / "server" / "web" / "static"

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


def chromium_or_skip() -> str:
    """The Chromium binary; a skip on a laptop without one, a failure in CI."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


async def blank_page(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>protocol</title>", content_type="text/html")


@pytest.fixture
async def js() -> AsyncIterator[Any]:
    """A page that has imported protocol.js as ``window.P``."""
    executable = chromium_or_skip()
    playwright_api = pytest.importorskip("playwright.async_api")
    app = web.Application()
    app.router.add_get("/", blank_page)
    app.router.add_static("/static", STATIC_DIR)
    async with serve_app(app) as base, playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{base}/")
        await page.evaluate("async () => { window.P = await import('/static/js/protocol.js'); }")
        try:
            yield page
        finally:
            await browser.close()


async def test_backoff_doubles_to_thirty_seconds_with_thirty_percent_jitter(js: Any) -> None:
    plain = await js.evaluate("[0,1,2,3,4].map(n => P.backoffDelay(n, () => 0.5))")
    assert plain == [1000, 2000, 4000, 8000, 16000]
    capped = await js.evaluate("[5,6,9].map(n => P.backoffDelay(n, () => 1))")
    assert capped == [30000, 30000, 30000]
    low, high = await js.evaluate("[P.backoffDelay(2, () => 0), P.backoffDelay(2, () => 1)]")
    assert (low, high) == (2800, 5200)
    assert await js.evaluate("P.BACKOFF.retries") == 10


async def test_backoff_never_exceeds_thirty_seconds_after_jitter(js: Any) -> None:
    draws = [0, 1e-9, 0.25, 0.5, 0.75, 0.999999, 1]
    delays = await js.evaluate(
        "draws => [...Array(40).keys()].flatMap(n => draws.map(r => P.backoffDelay(n, () => r)))",
        draws,
    )
    assert max(delays) == 30000
    at_cap = await js.evaluate(
        "draws => [5, 9, 20].flatMap(n => draws.map(r => P.backoffDelay(n, () => r)))", draws
    )
    assert all(21000 <= d <= 30000 for d in at_cap)
    assert len(set(at_cap)) > 4  # still jittered below the cap, not stuck at it


async def test_stream_embeds_only_known_players(js: Any) -> None:
    cases = await js.evaluate(
        """[
          P.streamEmbed('https://www.twitch.tv/some_artist', 'twitch', 'fans.example'),
          P.streamEmbed('https://youtu.be/dQw4w9WgXcQ', null, 'h'),
          P.streamEmbed('https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=3', null, 'h'),
          P.streamEmbed('https://www.youtube.com/live/abcDEF12345', null, 'h'),
          P.streamEmbed('https://www.tiktok.com/@artist/video/7301234567890123456', null, 'h'),
          P.streamEmbed('https://www.tiktok.com/@artist/live', 'tiktok', 'h'),
          P.streamEmbed('javascript:alert(1)', null, 'h'),
          P.streamEmbed(null, null, 'h'),
          P.streamEmbed('https://www.twitch.tv/bad"name', null, 'h'),
        ]"""
    )
    assert cases[0] == {
        "kind": "iframe",
        "platform": "twitch",
        "src": "https://player.twitch.tv/?channel=some_artist&parent=fans.example&autoplay=false",
    }
    assert cases[1]["src"] == "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
    assert cases[2]["src"] == "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
    assert cases[3]["src"] == "https://www.youtube-nocookie.com/embed/abcDEF12345"
    assert cases[4]["src"] == "https://www.tiktok.com/player/v1/7301234567890123456"
    assert cases[5] == {
        "kind": "link",
        "href": "https://www.tiktok.com/@artist/live",
        "platform": "tiktok",
    }
    assert cases[6] == {"kind": "none"}
    assert cases[7] == {"kind": "none"}
    assert cases[8]["kind"] == "link"


async def test_emotes_split_by_code_point_not_utf16_unit(js: Any) -> None:
    # "😀 Kappa hi": the emoji is one code point but two UTF-16 units; Kappa is at 2..6.
    segments = await js.evaluate(
        """P.chatSegments('😀 Kappa hi Kappa', [
             {name: 'Kappa', url: 'https://cdn.example/kappa.png', positions: [[2, 6], [11, 15]]},
           ])"""
    )
    assert segments == [
        {"text": "😀 "},
        {"emote": {"name": "Kappa", "url": "https://cdn.example/kappa.png"}},
        {"text": " hi "},
        {"emote": {"name": "Kappa", "url": "https://cdn.example/kappa.png"}},
    ]


async def test_bad_emotes_are_ignored_and_text_kept(js: Any) -> None:
    segments = await js.evaluate(
        """P.chatSegments('hello', [
             {name: 'x', url: 'javascript:alert(1)', positions: [[0, 1]]},
             {name: 'y', url: 'https://e/y.png', positions: [[3, 9], [-1, 0], [2, 1]]},
             {name: 'z', url: 'https://e/z.png', positions: [[1, 2], [2, 3]]},
           ])"""
    )
    assert segments == [
        {"text": "h"},
        {"emote": {"name": "z", "url": "https://e/z.png"}},
        {"text": "lo"},
    ]
    assert await js.evaluate("P.chatSegments('<b>x</b>', null)") == [{"text": "<b>x</b>"}]


async def test_deletions_by_id_or_by_user_on_a_platform(js: Any) -> None:
    result = await js.evaluate(
        """(() => {
          const m = {id: 'twitch:1', platform: 'twitch', username: 'Troll'};
          return [
            P.deletionMatches({messageId: 'twitch:1'}, m),
            P.deletionMatches({messageId: 'twitch:2'}, m),
            P.deletionMatches({username: 'troll', platform: 'twitch'}, m),
            P.deletionMatches({username: 'troll', platform: 'youtube'}, m),
            P.deletionMatches({username: '*', platform: 'twitch'}, m),
            P.deletionMatches({username: '*', platform: 'youtube'}, m),
          ];
        })()"""
    )
    # username "*" is a whole-chat clear of that platform (a Twitch /clear)
    assert result == [True, False, True, False, True, False]


async def test_a_ban_by_user_id_and_platform_mute_keys(js: Any) -> None:
    result = await js.evaluate(
        """(() => {
          const a = {id: 'youtube:1', platform: 'youtube', username: '@sam', userId: 'UCa'};
          const b = {id: 'youtube:2', platform: 'youtube', username: '@sam', userId: 'UCb'};
          const ban = {userId: 'UCa', platform: 'youtube'};
          return [
            P.deletionMatches(ban, a), P.deletionMatches(ban, b),
            P.muteKey(a), P.muteKey({platform: 'audifi', userId: 'fan-9'}),
            P.muteKey({platform: 'twitch', username: 'anon'}),
          ];
        })()"""
    )
    assert result == [True, False, "youtube:UCa", "fan-9", "twitch:anon"]


async def test_ledger_line_shows_pseudo_currencies_as_themselves(js: Any) -> None:
    line = await js.evaluate(
        """P.ledgerLine(
          {audifi: {USD: 3}, twitch: {BITS: 1500}, youtube: {USD: 5}, tiktok: {DIAMONDS: 0}},
          (amount, currency) => `${currency} ${amount.toFixed(2)}`,
        )"""
    )
    assert line == "1,500 BITS (twitch) · USD 5.00 (youtube)"


async def test_rest_equivalents_of_client_messages(js: Any) -> None:
    calls = await js.evaluate(
        """[
          P.restAction('s1', 'poll.vote', {pollId: 'p/1', optionIndex: 2}),
          P.restAction('s1', 'tip.send', {amount: 5, currency: 'USD'}, 'req-1'),
          P.restAction('s1', 'chat.delete', {messageId: 'twitch:9'}),
          P.restAction('s1', 'session.end', {}),
          P.restAction('s1', 'ping', {}),
        ]"""
    )
    assert calls[0] == {
        "method": "POST",
        "path": "/v1/vstudio/sessions/s1/polls/p%2F1/votes",
        "body": {"optionIndex": 2},
    }
    assert calls[1]["headers"] == {"Idempotency-Key": "req-1"}
    assert calls[1]["path"] == "/v1/vstudio/sessions/s1/tips"
    assert calls[2]["path"] == "/v1/vstudio/sessions/s1/chat/twitch%3A9/delete"
    assert calls[3] == {"method": "POST", "path": "/v1/vstudio/sessions/s1/end", "body": {}}
    assert calls[4] is None


async def test_errors_in_plain_words(js: Any) -> None:
    words = await js.evaluate(
        """[
          P.describeError({code: 4003, message: 'rate limited', retryAfter: 2.2}),
          P.describeError({code: 4002, message: 'session ended'}),
          P.describeError({code: 4006, message: 'text: too long'}),
          P.describeError({status: 401, message: 'token expired'}),
          P.describeError({status: 0, message: 'The server cannot be reached.'}),
        ]"""
    )
    assert words == [
        "You are going too fast. Try again in 3 s.",
        "This session has ended.",
        "The server did not accept that: text: too long",
        "Please sign in again.",
        "The server cannot be reached.",
    ]


async def test_roles_and_result_shares(js: Any) -> None:
    roles = await js.evaluate(
        """[
          P.roleCandidates({id: 'a1', role: 'artist'}, {artistId: 'a1'}),
          P.roleCandidates({id: 'p1', role: 'producer'}, {artistId: 'a1'}),
          P.roleCandidates({id: 'g', role: 'viewer'}, {artistId: 'a1'}),
          P.roleCandidates({id: 'g2', role: 'viewer', guest: true}, {artistId: 'a1'}),
        ]"""
    )
    assert roles == [
        ["artist", "producer", "viewer"],
        ["producer", "viewer"],
        ["viewer"],
        ["viewer"],
    ]
    assert await js.evaluate("P.resultShares([1, 3, 0])") == [25, 75, 0]
    assert await js.evaluate("P.resultShares([0, 0])") == [0, 0]


async def test_a_poll_tally_is_told_from_a_poll_edit(js: Any) -> None:
    verdicts = await js.evaluate(
        """[
          P.isPollTally({pollId: 'poll_123', results: [42, 58], totalVotes: 100}),
          P.isPollTally({id: 'p1', question: 'Q?', options: ['a', 'b'], results: [0, 0]}),
          P.isPollTally({pollId: 'p1', question: 'Q?'}),
          P.isPollTally({pollId: 'p1', results: [1, 2]}),
          P.isPollTally(null),
        ]"""
    )
    assert verdicts == [True, False, False, False, False]
