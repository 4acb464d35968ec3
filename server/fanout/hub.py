"""Fan-out: one subscription per process, each event encoded once and written to every client.

The :class:`Hub` follows a session on the process's :class:`~broker.feed.SessionFeed` while it
has local clients. For each event it builds the frame bytes once (the JSON with the stream id
spliced in, then the WebSocket framing) and writes them straight to every WebSocket
connection's transport; a client whose unsent bytes pass ``send_buffer_limit`` is dropped (it
resumes by id) instead of slowing the loop down. ``chat.message`` events are coalesced per
session into ``chat.aggregate`` frames every ``chat_coalesce_ms``; everything else passes
straight through, and buffered chat is flushed first so order is kept.

Writing to thousands of sockets takes tens of milliseconds, and doing it in one go per frame
would hold the event loop that long: the next event would not even be read until the last
client had the previous one, so it waited up to two broadcasts. So frames go to the session's
:class:`~server.fanout.framelog.FrameLog` and one *walker* task goes round the WebSocket clients in
chunks of ``fanout_chunk`` (about 2 ms of writes), yielding to the loop between chunks; each
client gets everything it has not had yet in one write. A frame read mid-round reaches the
rest of that round's clients at once and the others in the next round. Small rooms are written
to at once, and a frame of a client's own (a reply, an error, a close) first writes what it is
owed, so its frames stay in order.

A client joins in two steps: while its first frames (``session.state``, the replay of what it
missed) are prepared it is *catching up* and live events are kept for it; then it becomes live
and anything it has already seen is filtered out by stream id, so nothing is lost or repeated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from broker.bus import Bus, BusEvent, Replay, parse_stream_id
from broker.feed import Resumed, SessionFeed
from broker.models import ErrorCode, MessageType, now_ms
from broker.tasks import stop_task
from config import ServerSettings
from server.fanout.audience import for_audience, is_gated, sees_gated
from server.fanout.frame import MAX_AGGREGATE, ZERO, Outgoing, StreamId, coalesce, is_chat
from server.fanout.framelog import FrameLog, unseen_part
from server.fanout.subscriber import FrameLogReader, Subscriber, reads_frame_log
from server.metrics import Metrics
from server.turns import TurnShare
from server.wire import PING_FRAME

__all__ = ["Hub", "Room", "StateBuilder"]

log = logging.getLogger("vstudio.server.fanout.hub")

STATE_CACHE_SECONDS = 0.25
"""How long one ``session.state`` serves new clients of a session (events drop it sooner)."""


def _succeeded(done: asyncio.Future[Any]) -> bool:
    return done.done() and not done.cancelled() and done.exception() is None


@dataclass
class Room:
    """This process's clients of one session."""

    session_id: str
    readers: set[FrameLogReader] = field(default_factory=set)
    """Clients the walker writes to from ``log`` (WebSocket)."""
    pushed: set[Subscriber] = field(default_factory=set)
    """Clients each frame is pushed to as it comes (SSE)."""
    catching_up: dict[Subscriber, list[BusEvent]] = field(default_factory=dict)
    """Clients being sent their first frames, with the live events kept for them meanwhile
    (here, not on each client: a live client keeps no list)."""
    log: FrameLog = field(default_factory=FrameLog)
    walker: asyncio.Task[None] | None = None
    chat: list[BusEvent] = field(default_factory=list)
    flush: asyncio.TimerHandle | None = None
    chat_due: float = 0.0
    followed: asyncio.Future[str] | None = None
    state: dict[str, Any] | None = None
    state_at: float = 0.0
    building: asyncio.Future[dict[str, Any]] | None = None
    """The ``session.state`` being built now, which clients arriving meanwhile share."""
    built_seen: int = 0
    """``events_seen`` when that build began."""
    events_seen: int = 0
    """Counts events delivered here, so a state built while one arrived is not cached."""
    covered: StreamId = ZERO
    """Events up to this id are part of a state sent after an incomplete resume."""

    def __len__(self) -> int:
        return len(self.readers) + len(self.pushed) + len(self.catching_up)

    def everyone(self) -> list[Subscriber]:
        return [*self.readers, *self.pushed, *self.catching_up]


StateBuilder = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class SharedReplay:
    """A replay read once for the clients resuming from one id in one turn, with its frames
    built once too (each client's copy had cost a frame build and a WebSocket framing per
    event): all of them, and those without gated events. Clients must not change them."""

    replay: Replay
    frames: list[Outgoing]
    public: list[Outgoing]
    seen: StreamId
    """The last id the replay covers."""


class Hub:
    """Every local client of every session, fed by one :class:`SessionFeed`."""

    def __init__(
        self, bus: Bus, settings: ServerSettings, metrics: Metrics, state: StateBuilder
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self.feed = SessionFeed(bus)
        self.rooms: dict[str, Room] = {}
        self.opened = 0
        """Clients that became live here, ever (with ``closed``, for server.gcpolicy)."""
        self.closed = 0
        self.replays: TurnShare[tuple[str, str], SharedReplay] = TurnShare(self._replay)
        """Clients resuming from the same id in one loop turn share one replay read."""
        self._tasks: list[asyncio.Task[Any]] = []

    async def _replay(self, key: tuple[str, str]) -> SharedReplay:
        replay = await self.bus.replay(*key)
        events = replay.events if replay.complete else []
        frames = coalesce(events)
        public = events if not any(is_gated(event) for event in events) else None
        return SharedReplay(
            replay=replay,
            frames=frames,
            public=frames
            if public is not None
            else coalesce(event for event in events if not is_gated(event)),
            seen=parse_stream_id(events[-1].id) if events else parse_stream_id(key[1]),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._consume(), name="hub-feed"),
            loop.create_task(self._heartbeat(), name="hub-heartbeat"),
        ]

    async def stop(self) -> None:
        for room in self.rooms.values():
            if room.walker is not None:
                room.walker.cancel()
        for task in self._tasks:
            await stop_task(task)
        await self.feed.close()

    @property
    def live(self) -> int:
        """Clients of this process now."""
        return sum(len(room) for room in self.rooms.values())

    def subscribers(self) -> list[Subscriber]:
        return [sub for room in self.rooms.values() for sub in room.everyone()]

    # --- joining and leaving ----------------------------------------------------------------

    async def attach(
        self, sub: Subscriber, *, since: str | None, first: Callable[[], Awaitable[int]]
    ) -> None:
        """Make ``sub`` a client: follow its session, send ``session.state`` and what it missed.

        ``first`` runs after the client is registered and before anything is sent: the caller
        counts presence there and returns the viewer count, which the state then carries.
        """
        session_id = sub.who.session_id
        room = self.rooms.get(session_id)
        if room is None:
            room = self.rooms[session_id] = Room(session_id)
        room.catching_up[sub] = []
        try:
            followed = room.followed
            if followed is None or (followed.done() and not _succeeded(followed)):
                # the first client, or the last attempt to follow failed
                followed = room.followed = asyncio.ensure_future(self.feed.follow(session_id))
            if not followed.done():  # once followed, a storm's clients skip a shield each
                await asyncio.shield(followed)
            viewers = await first()
            # after the client is catching up: the shared read starts on the next turn
            replay = await self.replays.get((session_id, since)) if since else None
            state = await self._state_of(room)
        except BaseException:
            room.catching_up.pop(sub, None)
            self._forget_if_empty(room)
            raise
        if sub.closed:
            room.catching_up.pop(sub, None)
            return
        state = dict(for_audience(state, sub.who))
        state["viewerCount"] = viewers
        recovered = replay is not None and replay.replay.complete
        if since is not None:
            state["recovered"] = recovered
        frames: list[Outgoing] = []
        seen = ZERO
        privileged = sees_gated(sub.who)
        if recovered and replay is not None:
            frames = list(replay.frames if privileged else replay.public)
            seen = replay.seen
        state_json = orjson.dumps(
            {"type": MessageType.SESSION_STATE, "payload": state, "timestamp": now_ms()}
        )
        late = [
            event
            for event in room.catching_up.get(sub, ())
            if parse_stream_id(event.id) > seen and (privileged or not is_gated(event))
        ]
        frames += coalesce(late)
        keep = sub.send_first(state_json, state, frames)
        sent = len(frames) + 1
        self.metrics.messages_sent.inc(sent)
        if frames:
            seen = max(seen, frames[-1].last_id)
        sub.seen = seen
        sub.fresh = seen > ZERO
        room.catching_up.pop(sub, None)
        if sub.closed:
            self._forget_if_empty(room)
            return
        if reads_frame_log(sub):
            sub.log, sub.next_seq = room.log, room.log.end
            sub.metrics = self.metrics
            room.readers.add(sub)
        else:
            room.pushed.add(sub)
        self.opened += 1
        self.metrics.connections_by_session.labels(session_id).set(len(room))
        if not keep:
            self._drop(room, [sub])
        if any(event.type == MessageType.SESSION_END for out in frames for event in out.events):
            sub.close(ErrorCode.SESSION_ENDED, "session ended")

    def detach(self, sub: Subscriber) -> None:
        """Forget ``sub``; stop following the session when it was the last local client."""
        session_id = sub.who.session_id
        room = self.rooms.get(session_id)
        if room is None:
            return
        if sub in room.readers or sub in room.pushed:
            self.closed += 1
        if reads_frame_log(sub):
            room.readers.discard(sub)
        room.pushed.discard(sub)
        room.catching_up.pop(sub, None)
        self.metrics.connections_by_session.labels(session_id).set(len(room))
        self._forget_if_empty(room)

    def _forget_if_empty(self, room: Room) -> None:
        if len(room) or self.rooms.get(room.session_id) is not room:
            return
        del self.rooms[room.session_id]
        if room.flush is not None:
            room.flush.cancel()
        if room.walker is not None:
            room.walker.cancel()
        followed = room.followed
        if followed is not None and followed.done():
            if _succeeded(followed):
                self.feed.unfollow(room.session_id)
        elif followed is not None:
            followed.add_done_callback(
                lambda done: self._unfollow_if_gone(room.session_id) if _succeeded(done) else None
            )
        self.metrics.connections_by_session.remove(room.session_id)

    def _unfollow_if_gone(self, session_id: str) -> None:
        if session_id not in self.rooms:
            self.feed.unfollow(session_id)

    # --- delivering ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            try:
                async for item in self.feed:
                    if isinstance(item, Resumed):
                        await self._resync(item)
                    else:
                        self.on_event(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fan-out loop failed; restarting it")
                await asyncio.sleep(0.5)

    def cached_state(self, session_id: str) -> dict[str, Any] | None:
        """The session's recent ``session.state`` if this process has one (see _state_of)."""
        room = self.rooms.get(session_id)
        if room is None or room.state is None:
            return None
        if time.monotonic() - room.state_at > STATE_CACHE_SECONDS:
            return None
        return room.state

    async def _state_of(self, room: Room) -> dict[str, Any]:
        """``session.state``, built at most once per :data:`STATE_CACHE_SECONDS` per session.

        A connect storm would otherwise rebuild the same state thousands of times. Reusing it
        loses nothing: any event that reaches this process drops the cached copy, and an event
        that has not reached it yet reaches the new client through its catch-up queue. Clients
        that arrive while a build is under way share it, unless an event arrived since it began.
        """
        cached = self.cached_state(room.session_id)
        if cached is not None:
            return dict(cached)
        building = room.building
        if building is not None and not building.done() and room.events_seen == room.built_seen:
            # no event has arrived since that build began: it is as new as one started now
            return dict(await asyncio.shield(building))
        seen_before = room.events_seen
        building = room.building = asyncio.ensure_future(self.state(room.session_id))
        room.built_seen = seen_before
        state = await asyncio.shield(building)
        if room.events_seen == seen_before:  # else it may predate an event: use it once only
            room.state, room.state_at = state, time.monotonic()
        return dict(state)

    def on_event(self, event: BusEvent) -> None:
        """Deliver one bus event to the session's local clients."""
        room = self.rooms.get(event.session_id)
        if room is None:
            return
        if room.covered > ZERO and parse_stream_id(event.id) <= room.covered:
            return  # replayed after an incomplete resume: the state just sent includes it
        room.state = None
        room.events_seen += 1
        for pending in room.catching_up.values():
            pending.append(event)
        if is_chat(event):
            room.chat.append(event)
            if len(room.chat) >= MAX_AGGREGATE:
                self._flush_chat(room)
            elif room.flush is None:
                wait = max(0.0, room.chat_due - time.monotonic())
                room.flush = asyncio.get_running_loop().call_later(wait, self._flush_chat, room)
            return
        self._flush_chat(room)
        if is_gated(event):
            self.deliver_gated(room, Outgoing.of_event(event))
            return
        self.deliver(room, Outgoing.of_event(event))
        if event.type == MessageType.SESSION_END:
            for sub in room.everyone():
                sub.close(ErrorCode.SESSION_ENDED, "session ended")

    def _flush_chat(self, room: Room) -> None:
        """Send the buffered chat as one ``chat.aggregate``.

        Frames start at most once per ``chat_coalesce_ms``: the first message after a quiet
        window goes out on the next loop turn, later ones wait for the window's end. The flush
        is always a timer, never inline, so when writing a frame to thousands of clients took
        longer than the window, everything the feed received meanwhile is read first and goes
        out in the next frame: frames carry more messages instead of falling behind.
        """
        if room.flush is not None:
            room.flush.cancel()
            room.flush = None
        if room.chat:
            started = time.monotonic()
            events, room.chat = room.chat, []
            self.deliver(room, Outgoing.of_chat(events))
            room.chat_due = started + self.settings.chat_coalesce_ms / 1000

    def deliver(self, room: Room, out: Outgoing) -> None:
        """Send ``out`` to every live client of ``room``; drop those that fell behind."""
        if room.pushed:
            slow: list[Subscriber] = []
            for sub in room.pushed:
                own: Outgoing | None = out
                if sub.fresh:
                    own, sub.fresh = unseen_part(out, sub.seen)
                if own is not None and not sub.send(own):
                    slow.append(sub)
            self.metrics.messages_sent.inc(len(room.pushed))
            if slow:
                self._drop(room, slow)
        if not room.readers:
            self._delivered([out])
            return
        room.log.append(out)
        if room.walker is not None:
            return  # the walker's round picks it up
        if len(room.readers) <= self.settings.fanout_chunk:
            target = room.log.end
            self._write_chunk(room, list(room.readers))
            self._delivered(room.log.trim(target))
        else:
            room.walker = asyncio.get_running_loop().create_task(self._walk(room))

    def deliver_gated(self, room: Room, out: Outgoing) -> None:
        """Send gated ``out`` to the room's token holders and staff only.

        It never enters the room's frame log (which every WebSocket client reads): each
        client that may see it gets it as a frame of its own, after what the log owes it, so
        its frames stay in order. Gated frames are rare (a gated poll's lifecycle and its
        throttled tallies), so this costs the common path nothing.
        """
        slow: list[Subscriber] = []
        sent = 0
        for sub in [*room.readers, *room.pushed]:
            if not sees_gated(sub.who) or sub.closed:
                continue
            if sub.fresh and out.last_id <= sub.seen:
                continue  # it had this event in its replay
            sent += 1
            if not sub.send_own(out.json, out.type, out.payload()):
                slow.append(sub)
        self.metrics.messages_sent.inc(sent)
        if slow:
            self._drop(room, slow)

    async def _walk(self, room: Room) -> None:
        """Go round the room's WebSocket clients until every one has every frame."""
        log = room.log
        chunk = self.settings.fanout_chunk
        try:
            while True:
                target = log.end
                clients = list(room.readers)
                for start in range(0, len(clients), chunk):
                    if start:
                        await asyncio.sleep(0)  # let the feed, handlers and timers run
                    self._write_chunk(room, clients[start : start + chunk])
                self._delivered(log.trim(target))  # everyone was at or past target
                if log.end == target:
                    return
        finally:
            room.walker = None

    def _write_chunk(self, room: Room, clients: list[FrameLogReader]) -> None:
        """The hot loop: each client that is behind gets what it lacks in one write."""
        log = room.log
        end = log.end
        since = log.since
        limit = self.settings.send_buffer_limit
        slow: list[Subscriber] = []
        sent = writes = 0
        last_seq, last_data = end, b""
        for sub in clients:
            seq = sub.next_seq
            if seq >= end:
                continue
            sub.next_seq = end
            transport = sub.transport
            if sub.closed or transport.is_closing():  # nothing may follow a close frame
                continue
            if sub.fresh:
                data, sub.fresh = log.since_for(seq, sub.seen)
                if not data:
                    continue
            elif seq == last_seq:
                data = last_data
            else:
                data = last_data = since(seq)
                last_seq = seq
            transport.write(data)
            writes += 1
            sent += end - seq
            if transport.get_write_buffer_size() > limit:
                slow.append(sub)
        if writes:
            self.metrics.messages_sent.inc(sent)
            self.metrics.fanout_writes.inc(writes)
        if slow:
            self._drop(room, slow)

    def _delivered(self, frames: list[Outgoing]) -> None:
        """Frames that reached every client: their publish-to-send delay."""
        now = now_ms()
        for out in frames:
            self.metrics.latency_ms.observe(max(0, now - out.timestamp))

    def _drop(self, room: Room, slow: list[Subscriber]) -> None:
        for sub in slow:
            log.warning(
                "dropping a client that fell behind",
                extra={
                    "session": room.session_id,
                    "user": sub.who.user_id,
                    "transport": sub.transport_name,
                },
            )
            self.metrics.errors.labels("slow_client").inc()
            sub.drop()

    async def _resync(self, resumed: Resumed) -> None:
        """After a Redis reconnect whose replay had a gap, tell every client the present."""
        room = self.rooms.get(resumed.session_id)
        if room is None or resumed.complete:
            return
        self._flush_chat(room)
        state = await self.state(resumed.session_id)
        if resumed.last_id is not None:  # the replayed events that follow are in this state
            room.covered = parse_stream_id(resumed.last_id)
        state["recovered"] = False
        encoded: dict[bool, tuple[bytes, dict[str, Any]]] = {}
        for sub in [*room.readers, *room.pushed]:
            privileged = sees_gated(sub.who)
            if privileged not in encoded:
                shown = for_audience(state, sub.who)
                encoded[privileged] = (
                    orjson.dumps(
                        {"type": MessageType.SESSION_STATE, "payload": shown, "timestamp": now_ms()}
                    ),
                    shown,
                )
            data, shown = encoded[privileged]
            sub.send_own(data, MessageType.SESSION_STATE, shown)

    # --- heartbeat ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Ping every WebSocket client once per ``heartbeat_interval``; drop those silent for
        ``heartbeat_max_missed`` pings.

        The clients go in parts of ``heartbeat_part``, spread over half the interval: 10,000
        pings written in one loop turn, and their 10,000 pongs read back together, held every
        fan-out frame of that moment for a few hundred milliseconds every 30 s.
        """
        interval = self.settings.heartbeat_interval
        loop = asyncio.get_running_loop()
        next_round = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_round - loop.time()))
            next_round = max(next_round + interval, loop.time())
            clients = [sub for room in self.rooms.values() for sub in room.readers]
            size = self.settings.heartbeat_part
            parts = [clients[at : at + size] for at in range(0, len(clients), size)]
            for n, part in enumerate(parts):
                if n:
                    await asyncio.sleep(interval / 2 / len(parts))
                sent_at = time.monotonic()
                for sub in part:
                    if not sub.closed and not sub.transport.is_closing():
                        sub.transport.write(PING_FRAME)
                loop.call_later(self.settings.heartbeat_timeout, self._check_pongs, part, sent_at)

    def _check_pongs(self, clients: list[FrameLogReader], sent_at: float) -> None:
        for sub in clients:
            if sub.closed:
                continue
            if sub.last_heard >= sent_at:
                sub.missed = 0
                continue
            sub.missed += 1
            if sub.missed >= self.settings.heartbeat_max_missed:
                log.info(
                    "heartbeat timeout",
                    extra={
                        "session": sub.who.session_id,
                        "user": sub.who.user_id,
                        "missed": sub.missed,
                    },
                )
                self.metrics.errors.labels("heartbeat_timeout").inc()
                sub.close(1001, "heartbeat timeout")

    def broadcast(
        self, data: bytes, type_: str, payload: dict[str, Any], session_id: str | None = None
    ) -> int:
        """Write a frame that is no session's event (a global announcement, no id) to every
        live client of this process, or of ``session_id`` only; how many it was written to."""
        if session_id is None:
            rooms = list(self.rooms.values())
        else:
            room = self.rooms.get(session_id)
            rooms = [room] if room is not None else []
        sent = 0
        for room in rooms:
            slow = [
                sub
                for sub in [*room.readers, *room.pushed]
                if not sub.send_own(data, type_, payload)
            ]
            sent += len(room.readers) + len(room.pushed)
            if slow:
                self._drop(room, slow)
        self.metrics.messages_sent.inc(sent)
        return sent

    def close_all(self, code: int, reason: str) -> None:
        """Close every client (drain on shutdown: 1012 tells them to reconnect)."""
        for room in list(self.rooms.values()):
            self._flush_chat(room)
            for sub in room.everyone():
                sub.close(code, reason)
