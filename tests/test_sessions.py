"""The session store against a real Redis: lifecycle, one live session per artist, updates."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from broker import Bus, keys
from broker.models import ErrorCode, ProtocolError, Session, SessionStatus, SessionUpdate
from server.interactions.sessions import ArtistBusy, SessionStore


def new_session(artist: str, **fields: object) -> Session:
    return Session(id=uuid.uuid4().hex[:12], artist_id=artist, title="Live", **fields)


@pytest.fixture
def artist() -> str:
    return f"artist-{uuid.uuid4().hex[:8]}"


async def test_create_get_and_list(bus: Bus, artist: str) -> None:
    store = SessionStore(bus)
    created = await store.create(new_session(artist, producer_ids=[], allow_guests=True))
    fetched = await store.get(created.id)
    assert fetched == created
    assert fetched.producer_ids == [] and fetched.status == SessionStatus.SCHEDULED
    listed = await store.list(artist_id=artist)
    assert [session.id for session in listed] == [created.id]


async def test_unknown_session_is_4001(bus: Bus) -> None:
    with pytest.raises(ProtocolError) as caught:
        await SessionStore(bus).get("nope123")
    assert caught.value.code == ErrorCode.SESSION_NOT_FOUND


async def test_lifecycle_scheduled_live_ended_and_nothing_else(bus: Bus, artist: str) -> None:
    store = SessionStore(bus)
    session = await store.create(new_session(artist))
    live = await store.start(session.id)
    assert live.status == SessionStatus.LIVE and live.actual_start
    ended = await store.end(session.id, ended_by=artist)
    assert ended.status == SessionStatus.ENDED and ended.ended_at
    with pytest.raises(ProtocolError) as caught:
        await store.start(session.id)
    assert caught.value.code == ErrorCode.SESSION_ENDED
    started, event = (await bus.replay(session.id, "0-0")).events
    assert started.type == "session.update"  # clients on a scheduled session learn it is live
    assert started.payload == {"status": "live", "actualStart": live.actual_start}
    assert live.wire()["actualStart"] == live.actual_start and "startedAt" not in live.wire()
    assert event.type == "session.end" and event.payload["endedBy"] == artist


async def test_one_live_session_per_artist_even_when_racing(bus: Bus, artist: str) -> None:
    store = SessionStore(bus)
    sessions = [await store.create(new_session(artist)) for _ in range(5)]
    outcomes = await asyncio.gather(
        *(store.start(session.id) for session in sessions), return_exceptions=True
    )
    started = [o for o in outcomes if isinstance(o, Session)]
    refused = [o for o in outcomes if isinstance(o, ArtistBusy)]
    assert len(started) == 1 and len(refused) == 4
    assert "already has a live session" in refused[0].message
    await store.end(started[0].id, ended_by=artist)
    other = next(s for s in sessions if s.id != started[0].id)
    assert (await store.start(other.id)).status == SessionStatus.LIVE


async def test_update_toggles_and_announces(bus: Bus, artist: str) -> None:
    store = SessionStore(bus)
    session = await store.create(new_session(artist))
    updated = await store.update(session.id, SessionUpdate(chat_enabled=False))
    assert updated.chat_enabled is False and updated.reactions_enabled is True
    [event] = (await bus.replay(session.id, "0-0")).events
    assert event.type == "session.update" and event.payload == {"chatEnabled": False}


async def test_losing_a_race_to_end_says_the_session_ended(bus: Bus, artist: str) -> None:
    store = SessionStore(bus)
    session = await store.create(new_session(artist))
    await store.start(session.id)
    await store.end(session.id, ended_by=artist)  # another request won
    outcome = await store._transition(session.id, SessionStatus.LIVE, SessionStatus.ENDED)
    with pytest.raises(ProtocolError) as caught:
        store._refuse(session.id, outcome, SessionStatus.ENDED)
    assert caught.value.code == ErrorCode.SESSION_ENDED
    events = (await bus.replay(session.id, "0-0")).events
    assert [event.type for event in events] == ["session.update", "session.end"]  # end once


async def test_a_record_stored_with_started_at_reads_as_actual_start(bus: Bus, artist: str) -> None:
    store = SessionStore(bus)
    session = await store.create(new_session(artist))
    await bus.redis.hset(keys.session(session.id), "startedAt", "1699123456789")
    found = await store.get(session.id)
    assert found.actual_start == 1699123456789 and "startedAt" not in found.wire()


async def test_required_tokens_stored_as_bare_addresses_still_read(bus: Bus, artist: str) -> None:
    store = SessionStore(bus)
    session = await store.create(new_session(artist))
    address = "0x" + "ab" * 20
    await bus.redis.hset(
        keys.session(session.id), "requiredTokens", orjson.dumps([address, "0xnot-an-address"])
    )
    found = await store.get(session.id)
    assert found.wire()["requiredTokens"] == [{"contractAddress": address, "minBalance": 1}]


async def test_a_record_this_version_cannot_read_is_skipped_by_list(
    bus: Bus, artist: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One unreadable record (another version's fields, a hand edit) must not hide the rest."""
    store = SessionStore(bus)
    good = await store.create(new_session(artist))
    broken = uuid.uuid4().hex[:12]
    await bus.redis.hset(
        keys.session(broken),
        mapping={"id": f'"{broken}"', "artistId": f'"{artist}"', "fieldOfTheFuture": "1"},
    )
    await bus.redis.zadd(keys.sessions_index(), {broken: 10**13})  # newest of all
    listed = await store.list(artist_id=artist)
    assert [session.id for session in listed] == [good.id]
    assert broken in caplog.text
    with pytest.raises(ProtocolError) as caught:
        await store.get(broken)
    assert caught.value.code == ErrorCode.SESSION_NOT_FOUND and "cannot be read" in str(
        caught.value
    )
    await bus.redis.zrem(keys.sessions_index(), broken)


async def test_open_sessions_of_an_artist_are_counted_from_the_artists_own_index(
    bus: Bus, artist: str
) -> None:
    """Counting needs no scan of every session ever made (the cap on sessions per artist)."""
    store = SessionStore(bus)
    assert await store.count_open(artist) == 0
    one = await store.create(new_session(artist))
    two = await store.create(new_session(artist))
    await store.create(new_session(f"{artist}-other"))
    assert await store.count_open(artist) == 2
    await store.start(one.id)
    assert await store.count_open(artist) == 2  # live still counts
    await store.end(two.id, ended_by=artist)
    assert await store.count_open(artist) == 1
    await store.end(one.id, ended_by=artist)
    assert await store.count_open(artist) == 0
