"""The hub's short-lived ``session.state`` cache must never outlive an event it predates."""

from __future__ import annotations

from typing import Any

from broker import Bus
from broker.bus import BusEvent, encode_event
from config import ServerSettings
from server.fanout import Hub, Room
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
