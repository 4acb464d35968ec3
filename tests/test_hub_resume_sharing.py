"""Clients resuming in one loop turn share one replay read; nothing is lost or repeated."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from broker import Bus, keys
from broker.bus import OutgoingEvent
from broker.models import Role
from config import ServerSettings
from server.fanout.hub import Hub
from server.identity.participant import Participant
from server.metrics import Metrics
from server.transport.sse import SseClient


async def _state(session_id: str) -> dict[str, Any]:
    return {"sessionId": session_id, "status": "live"}


async def _one() -> int:
    return 1


def _frames(client: SseClient) -> list[tuple[str, Any, str | None]]:
    """(event, data, id) of everything queued for an SSE client."""
    found = []
    for block in client.take().decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields["event"], orjson.loads(fields["data"]), fields.get("id")))
    return found


def _viewer(session_id: str, user: str) -> SseClient:
    return SseClient(Participant(session_id, user, user, Role.VIEWER), buffer_limit=1 << 20)


async def _publish(bus: Bus, session_id: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        [event_id] = await bus.publish_many(
            session_id, "events", [OutgoingEvent("tip.received", {"n": n})]
        )
        assert event_id is not None
        ids.append(event_id)
    return ids


async def test_two_clients_resuming_in_one_turn_share_one_replay_read(
    bus: Bus, session_id: str
) -> None:
    ids = await _publish(bus, session_id, 4)
    hub = Hub(bus, ServerSettings(), Metrics("test"), _state)
    await hub.start()
    a, b = _viewer(session_id, "a"), _viewer(session_id, "b")
    try:
        await asyncio.gather(
            hub.attach(a, since=ids[0], first=_one), hub.attach(b, since=ids[0], first=_one)
        )
        assert hub.replays.reads == 1
        for client in (a, b):
            frames = _frames(client)
            assert frames[0][0] == "session.state" and frames[0][1]["recovered"] is True
            assert [frame[2] for frame in frames[1:]] == ids[1:]
        # a client from another id in the same turn gets its own read
        c, d = _viewer(session_id, "c"), _viewer(session_id, "d")
        await asyncio.gather(
            hub.attach(c, since=ids[1], first=_one), hub.attach(d, since=ids[2], first=_one)
        )
        assert hub.replays.reads == 3
        assert [frame[2] for frame in _frames(c)[1:]] == ids[2:]
        assert [frame[2] for frame in _frames(d)[1:]] == ids[3:]
    finally:
        await hub.stop()


async def test_an_event_published_during_a_shared_resume_reaches_each_client_once(
    bus: Bus, session_id: str
) -> None:
    """Live events that arrive while the clients are catching up are kept for them and the
    replayed ones filtered out: each client sees every id exactly once, in order."""
    ids = await _publish(bus, session_id, 3)
    hub = Hub(bus, ServerSettings(), Metrics("test"), _state)
    await hub.start()
    clients = [_viewer(session_id, f"u{n}") for n in range(5)]
    try:
        joins = [hub.attach(sub, since=ids[0], first=_one) for sub in clients]
        more = asyncio.ensure_future(_publish(bus, session_id, 3))
        await asyncio.gather(*joins)
        ids += await more
        await asyncio.sleep(0.3)  # the live ones come through the feed
        for client in clients:
            seen = [frame[2] for frame in _frames(client) if frame[2]]
            assert seen == ids[1:], client.who.user_id
    finally:
        await hub.stop()


async def test_an_event_that_comes_while_a_client_joins_is_kept_for_it(
    bus: Bus, session_id: str
) -> None:
    """The room keeps the live events of a client that is catching up (its list, not the
    client's): one published while the join counts presence still reaches that client."""
    hub = Hub(bus, ServerSettings(), Metrics("test"), _state)
    await hub.start()
    client = _viewer(session_id, "late")
    published: list[str] = []

    async def first() -> int:
        published.extend(await _publish(bus, session_id, 1))
        for _ in range(100):  # until the feed has handed it to the hub
            room = hub.rooms[session_id]
            if room.events_seen:
                break
            await asyncio.sleep(0.02)
        return 1

    try:
        await hub.attach(client, since=None, first=first)
        assert hub.rooms[session_id].events_seen == 1
        assert [frame[2] for frame in _frames(client) if frame[2]] == published
        assert not hub.rooms[session_id].catching_up
    finally:
        await hub.stop()


async def test_resuming_from_before_the_log_starts_is_not_recovered(
    bus: Bus, session_id: str
) -> None:
    """The documented path: ``recovered: false`` in the state, no partial replay."""
    ids = await _publish(bus, session_id, 5)
    await bus.redis.xtrim(keys.stream(session_id), maxlen=2, approximate=False)
    hub = Hub(bus, ServerSettings(), Metrics("test"), _state)
    await hub.start()
    a, b = _viewer(session_id, "a"), _viewer(session_id, "b")
    try:
        await asyncio.gather(
            hub.attach(a, since=ids[0], first=_one), hub.attach(b, since=ids[0], first=_one)
        )
        assert hub.replays.reads == 1
        for client in (a, b):
            frames = _frames(client)
            assert [frame[0] for frame in frames] == ["session.state"]
            assert frames[0][1]["recovered"] is False
    finally:
        await hub.stop()
