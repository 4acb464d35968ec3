"""The console against a real server: pressing ``m`` on a Twitch user's line mutes that user
(their next messages reach nobody), the Muted panel names them, and platform money shows in the
Money panel."""

from __future__ import annotations

from broker import Bus
from broker.models import NormalizedChatMessage, Platform, PlatformEvent
from ingest.batching import grouped_by_kind
from tests.test_console_live import Crew, connected, crew, until
from vstudio_cli.console.widgets.muted import MutedPanel
from vstudio_cli.console.widgets.tips import TipsPanel

__all__ = ["crew"]  # the fixture, used by name


def twitch_line(n: int, user_id: str, username: str) -> NormalizedChatMessage:
    return NormalizedChatMessage(
        id=f"twitch:cm{n}",
        platform=Platform.TWITCH,
        username=username,
        text=f"line {n} from {username}",
        timestamp=1_700_000_000_000 + n,
        user_id=user_id,
    )


async def ingest(bus: Bus, session_id: str, *items: NormalizedChatMessage | PlatformEvent) -> None:
    for kind, events in grouped_by_kind(items):
        await bus.publish_many(session_id, kind, events)


async def test_mute_a_twitch_user_and_see_platform_money(crew: Crew, bus: Bus) -> None:
    app = crew.console(crew.producer, "producer")
    async with app.run_test(size=(100, 30)) as pilot, crew.viewer() as watcher:
        await connected(pilot, app)
        await ingest(bus, crew.id, twitch_line(1, "4242", "troll"))
        await until(pilot, lambda: app.state.find_message("twitch:cm1") is not None)
        await until(pilot, lambda: app.chat.selected() is not None)
        selected = app.chat.selected()
        assert selected is not None and selected.id == "twitch:cm1"

        await pilot.press("m")
        await until(pilot, lambda: "twitch:4242" in app.state.muted)
        panel = app.query_one(MutedPanel)
        await until(pilot, lambda: "troll (twitch)" in str(panel.render()))

        cheer = PlatformEvent(
            id="twitch:cm3:cheer",
            platform=Platform.TWITCH,
            kind="cheer",
            username="troll",
            user_id="4242",
            count=100,
            amount_minor=100,
            currency="BITS",
            timestamp=1_700_000_000_003,
        )
        await ingest(
            bus, crew.id, twitch_line(2, "4242", "troll"), twitch_line(3, "7", "fan"), cheer
        )
        await until(pilot, lambda: app.state.find_message("twitch:cm3") is not None)
        assert app.state.find_message("twitch:cm2") is None  # the muted user's line never came
        money = app.query_one(TipsPanel)
        await until(pilot, lambda: "100 BITS" in str(money.render()))

        seen: list[str] = []
        while "twitch:cm3" not in seen:
            frame = await watcher.wait_for("chat.aggregate")
            seen += [m["id"] for m in frame["payload"]["messages"]]
        assert "twitch:cm2" not in seen
