"""The hub's short-lived ``session.state`` cache must never outlive an event it predates."""

from __future__ import annotations

from typing import Any

from broker import Bus
from broker.bus import BusEvent, encode_event
from config import ServerSettings
from server.fanout.hub import Hub, Room
from server.metrics import Metrics


async def test_a_state_built_while_an_event_arrived_is_not_reused(bus: Bus) -> None:
    builds: list[int] = []
    hub: Hub

    async def build(session_id: str) -> dict[str, Any]:
        builds.append(len(builds))
        if len(builds) == 1:  # an event reaches the process while this state is being read
            raw = encode_event("poll.create", {"id": "p1"})
            hub.on_event(BusEvent(session_id, "polls", "1-1", raw))
        return {"build": len(builds)}

    hub = Hub(bus, ServerSettings(), Metrics("test"), build)
    room = Room("s1")
    hub.rooms["s1"] = room
    first = await hub._state_of(room)
    second = await hub._state_of(room)
    assert first == {"build": 1}
    assert second == {"build": 2}  # rebuilt: the first may not show the poll
    third = await hub._state_of(room)
    assert third == {"build": 2}  # a state built in quiet is reused
    await hub.feed.close()


async def test_after_an_incomplete_resume_the_state_is_not_followed_by_older_events(
    bus: Bus,
) -> None:
    """The feed replays what it could and says the replay was incomplete; clients then get the
    present state, and the replayed events (already part of that state) must not follow it."""
    from broker import Resumed
    from broker.models import Role
    from server.identity.participant import Participant
    from server.transport.sse import SseClient

    async def build(session_id: str) -> dict[str, Any]:
        return {"session": {"id": session_id}}

    hub = Hub(bus, ServerSettings(), Metrics("test"), build)
    room = Room("s2")
    hub.rooms["s2"] = room
    client = SseClient(Participant("s2", "u1", "u1", Role.VIEWER), buffer_limit=1 << 20)
    room.pushed.add(client)
    await hub._resync(Resumed("s2", "1-0", replayed=1, complete=False, last_id="5-0"))
    hub.on_event(BusEvent("s2", "events", "5-0", encode_event("tip.received", {"n": "old"})))
    hub.on_event(BusEvent("s2", "events", "6-0", encode_event("tip.received", {"n": "new"})))
    sent = client.take().decode()
    assert "event: session.state" in sent
    assert '"new"' in sent and '"old"' not in sent
    await hub.feed.close()


async def test_clients_arriving_during_a_build_share_it_unless_an_event_came(bus: Bus) -> None:
    """A connect storm builds ``session.state`` once, not once per client that arrives while it
    is being read; a client arriving after an event reached the process gets a new build."""
    import asyncio

    builds = 0
    release = asyncio.Event()

    async def build(session_id: str) -> dict[str, Any]:
        nonlocal builds
        builds += 1
        mine = builds
        await release.wait()
        return {"build": mine}

    hub = Hub(bus, ServerSettings(), Metrics("test"), build)
    room = Room("s3")
    hub.rooms["s3"] = room
    early = [asyncio.ensure_future(hub._state_of(room)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert builds == 1
    hub.on_event(BusEvent("s3", "polls", "1-1", encode_event("poll.create", {"id": "p1"})))
    late = asyncio.ensure_future(hub._state_of(room))
    await asyncio.sleep(0.01)
    assert builds == 2  # the first build may not show the poll
    release.set()
    assert [await each for each in early] == [{"build": 1}] * 3
    assert await late == {"build": 2}
    await hub.feed.close()
