"""Many Twitch channels over a few IRC-over-WebSocket connections (issue 15).

One connection per channel costs a socket, a login and a reader per channel; Twitch lets one
connection join many channels. A :class:`TwitchPool` owns the connections (at most
``twitch_channels_per_connection`` channels each) and hands out one adapter per channel:
``pool.adapter("somechannel")`` satisfies :class:`ingest.base.Adapter`, so the usual
:class:`~ingest.runtime.Worker` runs it unchanged (batching, dedupe, publish, reconnect), and
one event loop can run hundreds of them.

- ``run(emit)`` registers the channel on a connection with room, waits for its JOIN to go out
  and emits only that channel's items; it raises when the connection drops (every channel on
  it raises, and the runtime's reconnect joins each again, on a new connection), when Twitch
  sends RECONNECT, or :class:`~ingest.twitch.ChannelNotFound` when Twitch leaves the JOIN
  unanswered (that channel only). Cancelling it sends PART; the last channel to leave closes
  the connection.
- JOINs of the whole pool are paced by :class:`~ingest.twitch_joins.JoinTurns`: at most
  ``twitch_join_limit`` in any ``twitch_join_window_seconds`` (Twitch: 20 per 10 s for a normal
  account), counted from when each JOIN is sent; the join timeout starts then too, not while
  the JOIN waits its turn. Given a Redis client (a fleet worker's), the window is the
  account's, shared by every process of the fleet that logs in as it.

Lines are parsed, routed and mapped by :class:`~ingest.twitch.TwitchProtocol` (one per
connection); this module only moves lines and routes items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from broker.models import Platform
from config import IngestSettings
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit
from ingest.irc import split_lines
from ingest.twitch import (
    ChannelFatal,
    ChannelNotFound,
    TwitchProtocol,
    TwitchReconnect,
    login_of,
    normalize_channel,
)
from ingest.twitch_joins import JoinPacer, JoinTurns, shared_joins

__all__ = ["JoinPacer", "PooledChannel", "TwitchPool"]

log = logging.getLogger("vstudio.ingest.twitch_pool")


@dataclass(eq=False)
class _Member:
    """One adapter's registration: where its channel's items go, and how its run ends."""

    channel: str
    emit: Emit
    status: AdapterStatus
    ended: asyncio.Future[None]


def _copy(error: BaseException) -> Exception:
    """A fresh exception per channel (one instance raised in many tasks tangles tracebacks)."""
    text = str(error) or type(error).__name__
    copy: Exception
    if isinstance(error, ChannelFatal):
        copy = type(error)(error.channel, text)
    elif isinstance(error, AdapterFatal | TwitchReconnect):
        copy = type(error)(text)
    elif isinstance(error, ConnectionError) and type(error) is ConnectionError:
        copy = ConnectionError(text)
    else:
        copy = ConnectionError(f"{type(error).__name__}: {text}")
    copy.__cause__ = error if isinstance(error, Exception) else None
    return copy


class _Link:
    """One IRC-over-WebSocket connection and the channels it carries."""

    def __init__(self, pool: TwitchPool, number: int) -> None:
        self.pool = pool
        self.number = number
        settings = pool.settings
        self.protocol = TwitchProtocol("", pool.nick, pool.token, settings.twitch_join_timeout)
        self.members: dict[str, list[_Member]] = {}
        self.joined: set[str] = set()
        """Channels whose JOIN went out on this connection."""
        self.answered: set[str] = set()
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_frame = time.monotonic()
        self._idle = False
        for line in self.protocol.hello():
            self.outbox.put_nowait(line)
        self.task = asyncio.create_task(self._run(), name=f"twitch-pool-link-{number}")

    # --- membership (called by the pool) ---------------------------------------------------

    def add(self, member: _Member) -> bool:
        """Add ``member``; ``True`` when its channel is new here and needs a JOIN."""
        subscribers = self.members.setdefault(member.channel, [])
        subscribers.append(member)
        if member.channel in self.answered:
            self._mark_joined(member)
        return len(subscribers) == 1

    def remove(self, member: _Member) -> None:
        """Remove ``member``; PART its channel when it was the last, close when empty."""
        subscribers = self.members.get(member.channel)
        if subscribers is None or member not in subscribers:
            return
        subscribers.remove(member)
        if subscribers:
            return
        del self.members[member.channel]
        self.answered.discard(member.channel)
        if member.channel in self.joined and not self.closed:
            self.joined.discard(member.channel)
            self.outbox.put_nowait(self.protocol.part(member.channel))
        if not self.members:
            self.close()

    def join(self, channel: str, now: float) -> None:
        """Send the JOIN of ``channel`` (its turn came) and start its answer's timer."""
        self.joined.add(channel)
        self.outbox.put_nowait(self.protocol.join(channel, now))
        if self._timer is None:
            self._arm()

    def close(self) -> None:
        """Send what is queued (PARTs), then close the connection."""
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
            self.outbox.put_nowait(None)

    # --- the connection ----------------------------------------------------------------------

    async def _run(self) -> None:
        error: BaseException = ConnectionError("the Twitch pool was closed")
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.ws_connect(self.pool.url, autoping=True, max_msg_size=1 << 20) as ws,
            ):
                self.opened.set()
                helpers = [
                    asyncio.create_task(self._write(ws)),
                    asyncio.create_task(self._watch_idle(ws)),
                ]
                try:
                    await self._read(ws)
                finally:
                    for helper in helpers:
                        helper.cancel()
                if self._idle:
                    error = ConnectionError(
                        f"nothing from Twitch for {self.pool.idle_timeout:.0f} s"
                    )
                else:
                    error = ConnectionError(f"Twitch closed the connection (code {ws.close_code})")
        except Exception as exc:
            error = exc
        finally:
            self.closed = True
            self.opened.set()
            if self._timer is not None:
                self._timer.cancel()
            self.pool._forget(self)
            for channel in list(self.members):
                self._fail(channel, error)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        text = aiohttp.WSMsgType.TEXT
        async for frame in ws:
            self._last_frame = time.monotonic()
            if frame.type is text:
                for line in split_lines(frame.data):
                    self._receive(line)
            elif frame.type is aiohttp.WSMsgType.ERROR:
                raise ConnectionError(f"WebSocket error: {ws.exception()}")

    def _receive(self, line: str) -> None:
        """One line: its items to its channel's adapters, PONG back, one channel's failure."""
        try:
            routed = self.protocol.route(line)
        except ChannelFatal as exc:
            self._fail(exc.channel, exc)
            return
        for reply in routed.replies:
            self.outbox.put_nowait(reply)
        subscribers = self.members.get(routed.channel) if routed.channel else None
        if not subscribers:
            return
        if routed.answered:
            self.answered.add(routed.channel or "")
            for member in subscribers:
                self._mark_joined(member)
        for item in routed.items:
            for member in subscribers:
                member.emit(item)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while (line := await self.outbox.get()) is not None:
            await ws.send_str(line + "\r\n")
        await ws.close()

    async def _watch_idle(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Close the socket when nothing arrived for ``idle_timeout`` (Twitch PINGs ~5 min)."""
        limit = self.pool.idle_timeout
        while not ws.closed:
            quiet = time.monotonic() - self._last_frame
            if quiet >= limit:
                self._idle = True
                await ws.close()
                return
            await asyncio.sleep(limit - quiet)

    # --- joins and failures --------------------------------------------------------------------

    def _arm(self) -> None:
        deadline = self.protocol.next_deadline()
        if deadline is not None and not self.closed:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._check_joins)

    def _check_joins(self) -> None:
        """Fail the channels Twitch left unanswered: they do not exist or are banned."""
        self._timer = None
        for channel in self.protocol.overdue(asyncio.get_running_loop().time()):
            self.joined.discard(channel)  # never joined: no PART
            self._fail(channel, ChannelNotFound.unanswered(channel, self.protocol.join_timeout))
        self._arm()

    def _fail(self, channel: str, error: BaseException) -> None:
        for member in self.members.get(channel, []):
            if not member.ended.done():
                member.ended.set_exception(_copy(error))

    def _mark_joined(self, member: _Member) -> None:
        member.status.state = AdapterState.CONNECTED
        member.status.detail = (
            f"joined #{member.channel} as {self.pool.nick} "
            f"(connection {self.number}, {len(self.members)} channels)"
        )


class PooledChannel:
    """Adapter: one Twitch channel read through a :class:`TwitchPool`'s shared connection."""

    platform = Platform.TWITCH

    def __init__(self, pool: TwitchPool, channel: str) -> None:
        self.pool = pool
        self.channel = normalize_channel(channel)
        self.target = f"#{self.channel}"
        self.status = AdapterStatus()

    async def run(self, emit: Emit) -> None:
        """Join the channel on a shared connection and emit its items until that ends."""
        member = _Member(
            self.channel, emit, self.status, asyncio.get_running_loop().create_future()
        )
        self.status.state = AdapterState.CONNECTING
        self.status.detail = f"waiting to join #{self.channel}"
        link = self.pool._attach(member)
        try:
            await member.ended
        finally:
            link.remove(member)


class TwitchPool:
    """The shared Twitch IRC connections of one event loop, and their JOIN pacing.

    With ``redis``, JOINs are counted in the account's window of ``fleet`` (every process of
    the fleet logging in as the same account shares it); without, or logged in anonymously,
    in this pool alone.
    """

    def __init__(
        self,
        settings: IngestSettings,
        *,
        idle_timeout: float = 360.0,
        redis: Any = None,
        fleet: str = "default",
    ) -> None:
        self.settings = settings
        self.url = settings.twitch_irc_url
        self.nick, self.token = login_of(settings)
        self.idle_timeout = idle_timeout
        limit, window = settings.twitch_join_limit, settings.twitch_join_window_seconds
        shared = None
        if redis is not None:
            shared = shared_joins(redis, fleet, self.nick, self.token, limit, window)
        self.turns = JoinTurns(JoinPacer(limit, window), shared)
        """JOIN pacing: this pool's, and its account's across the fleet (not anonymous)."""
        self.links: list[_Link] = []
        """The open connections."""
        self.opened = 0
        """Connections opened so far."""
        self._joins: asyncio.Queue[tuple[_Link, str]] = asyncio.Queue()
        self._joiner: asyncio.Task[None] | None = None

    def adapter(self, channel: str) -> PooledChannel:
        """The adapter of ``channel`` (``ValueError`` for a name Twitch cannot have)."""
        return PooledChannel(self, channel)

    def channels(self) -> int:
        """Channels on the open connections."""
        return sum(len(link.members) for link in self.links)

    async def aclose(self) -> None:
        """Close every connection; the adapters still running raise ``ConnectionError``."""
        if self._joiner is not None:
            self._joiner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._joiner
        links = list(self.links)
        for link in links:
            link.task.cancel()
        for link in links:
            with contextlib.suppress(asyncio.CancelledError):
                await link.task

    # --- what the adapters and connections call ----------------------------------------------

    def _attach(self, member: _Member) -> _Link:
        link = self._link_for(member.channel)
        if link.add(member):
            self._joins.put_nowait((link, member.channel))
            if self._joiner is None or self._joiner.done():
                self._joiner = asyncio.create_task(self._join_loop(), name="twitch-pool-joins")
        return link

    def _link_for(self, channel: str) -> _Link:
        """The connection that carries ``channel`` already, else one with room, else a new one."""
        cap = self.settings.twitch_channels_per_connection
        for link in self.links:
            if channel in link.members:
                return link
        for link in self.links:
            if len(link.members) < cap:
                return link
        link = _Link(self, self.opened)
        self.opened += 1
        self.links.append(link)
        return link

    def _forget(self, link: _Link) -> None:
        if link in self.links:
            self.links.remove(link)

    async def _join_loop(self) -> None:
        """Send queued JOINs in order, as fast as the account's window allows."""
        loop = asyncio.get_running_loop()
        while True:
            link, channel = await self._joins.get()
            await link.opened.wait()
            while not link.closed and channel in link.members:
                wait = await self.turns.take()
                if wait <= 0:
                    link.join(channel, loop.time())
                    break
                await asyncio.sleep(wait)
