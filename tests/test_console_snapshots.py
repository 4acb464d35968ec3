"""Snapshots of the producer console at 80x24, from a fixed sequence of real frame shapes.

The state comes through the reducer from frames shaped by the contract's models, and the clock
is fixed, so the pictures change only when the console's look does. Update them on purpose with
``pytest tests/test_console_snapshots.py --snapshot-update`` and look at the report.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from broker.models import (
    NormalizedChatMessage,
    PlatformEvent,
    Poll,
    ReactionBurst,
    TipReceived,
)
from vstudio_cli.console.app import ConsoleApp
from vstudio_cli.console.model import ConsoleState
from vstudio_cli.console.reducer import apply_frame

T0 = 1_764_000_000_000
SIZE = (80, 24)


def _chat(index: int, platform: str, username: str, text: str, **extra: Any) -> dict[str, Any]:
    return NormalizedChatMessage(
        id=f"{platform}:{index}",
        platform=platform,
        username=username,
        text=text,
        timestamp=T0 + index,
        **extra,
    ).wire()


def _frames(with_poll: bool) -> list[dict[str, Any]]:
    poll = Poll(
        id="p1",
        session_id="demo",
        question="Which song next?",
        options=["Blue Monday", "Heroes", "Atmosphere"],
        results=[42, 17, 9],
        created_at=T0,
    ).wire()
    messages = [
        _chat(
            1,
            "twitch",
            "nightowl",
            "this set is unreal",
            display_name="NightOwl",
            is_subscriber=True,
        ),
        _chat(2, "youtube", "maria.k", "hello from Lisbon!!"),
        _chat(3, "tiktok", "dj_kid", "🔥🔥🔥"),
        _chat(4, "discord", "modbot", "reminder: be nice in chat, everyone", is_moderator=True),
        _chat(5, "audifi", "fan42", "play Heroes please, it is my birthday", user_id="u-fan42"),
        _chat(6, "twitch", "spammer", "buy followers at example.com", user_id="999"),
    ]
    tips = [
        TipReceived(
            tip_id="t1",
            user_id="u1",
            username="maria.k",
            amount=5,
            currency="USD",
            message="love it",
        ),
        TipReceived(tip_id="t2", user_id="u2", username="bigfan", amount=20, currency="EUR"),
    ]
    state = {
        "session": {
            "id": "demo",
            "title": "Friday Night Live",
            "status": "live",
            "artistId": "artist-1",
            "chatEnabled": True,
            "reactionsEnabled": True,
        },
        "viewerCount": 1234,
        "polls": [poll] if with_poll else [],
        "tipTotals": {"USD": 25.0},
        "ledgerTotals": {"audifi": {"USD": 25.0}},
    }
    gift = PlatformEvent(
        id="tiktok:g1",
        platform="tiktok",
        kind="gift",
        username="rosa",
        detail="Rose",
        count=5,
        amount_minor=5,
        currency="DIAMONDS",
        timestamp=T0,
    ).wire()
    cheer = PlatformEvent(
        id="twitch:c1:cheer",
        platform="twitch",
        kind="cheer",
        username="nightowl",
        display_name="NightOwl",
        count=500,
        amount_minor=500,
        currency="BITS",
        message="Cheer500 encore!",
        timestamp=T0,
    ).wire()
    mute = {"userId": "twitch:999", "muted": True, "platform": "twitch", "username": "spammer"}
    burst = ReactionBurst(counts={"🔥": 40, "❤️": 12, "👏": 5}, window=250).wire()
    return [
        {"type": "connection.state", "payload": {"state": "live"}},
        {"type": "session.state", "payload": state, "timestamp": T0},
        {"type": "chat.aggregate", "payload": {"messages": messages}, "timestamp": T0},
        {"type": "reaction.burst", "payload": burst, "timestamp": T0},
        *({"type": "tip.received", "payload": tip.wire(), "timestamp": T0} for tip in tips),
        {"type": "chat.delete", "payload": {"messageId": "twitch:6"}, "timestamp": T0},
        {"type": "platform.event", "payload": gift, "timestamp": T0},
        {"type": "platform.event", "payload": cheer, "timestamp": T0},
        {"type": "chat.mute", "payload": mute, "timestamp": T0},
    ]


def console(with_poll: bool = True) -> ConsoleApp:
    state = ConsoleState(session_id="demo", role="artist")
    for frame in _frames(with_poll):
        apply_frame(state, frame)
    return ConsoleApp(None, state, clock=lambda: T0 + 1000)


def test_dashboard(snap_compare: Any) -> None:
    assert snap_compare(console(), terminal_size=SIZE)


def test_dashboard_filtered_to_twitch_and_searched(snap_compare: Any) -> None:
    assert snap_compare(console(), press=["f", "slash", "o", "w", "l", "enter"], terminal_size=SIZE)


def test_poll_form(snap_compare: Any) -> None:
    async def fill(pilot: Pilot[None]) -> None:
        await pilot.press("p")
        await pilot.press(*"Encore?", "enter", *"Yes", "enter", *"Again!", "tab", "3", "0")

    assert snap_compare(console(with_poll=False), run_before=fill, terminal_size=SIZE)


def test_poll_form_shows_why_it_refuses(snap_compare: Any) -> None:
    async def fill(pilot: Pilot[None]) -> None:
        await pilot.press("p", *"Encore?", "enter", *"Only one option", "ctrl+s")

    assert snap_compare(console(with_poll=False), run_before=fill, terminal_size=SIZE)


def test_end_session_confirmation(snap_compare: Any) -> None:
    assert snap_compare(console(), press=["x"], terminal_size=SIZE)
