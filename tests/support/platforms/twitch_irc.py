"""A local server that speaks Twitch's IRC-over-WebSocket, for tests and benchmarks.

It answers the login the way ``irc-ws.chat.twitch.tv`` does (CAP ACK, the 001-376 welcome,
or ``NOTICE * :Login authentication failed`` for a refused token), and every JOIN (one channel
or a comma list, at any time) with the JOIN echo, 353/366, USERSTATE and ROOMSTATE, and every
PART with its echo. Like Twitch it says nothing at all to a JOIN of a channel that does not
exist: ``channels`` is the set that exists (``None``: every channel). After the first JOIN it
plays one script per connection: lines to send, ``EXPECT`` a line from the client, ``DROP`` the
TCP connection without a close frame, or ``CLOSE`` it cleanly. :meth:`TwitchIrcServer.say`
sends lines to the connections that joined a channel, as Twitch relays a channel's chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.support.loopback import serve_app

DROP = "<drop>"
CLOSE = "<close>"


@dataclass(frozen=True)
class Expect:
    """Wait until the client sends a line starting with ``prefix``."""

    prefix: str
    timeout: float = 5.0


Step = str | Expect


@dataclass(eq=False)
class Connection:
    """One client connection as the server sees it."""

    number: int
    ws: web.WebSocketResponse
    request: web.Request
    nick: str = ""
    token: str | None = None
    joined: set[str] = field(default_factory=set)
    first_join: asyncio.Event = field(default_factory=asyncio.Event)
    refused: bool = False


@dataclass
class TwitchIrcServer:
    """``scripts[i]`` is played on the i-th connection; later connections just idle."""

    scripts: Sequence[Sequence[Step]] = field(default_factory=list)
    valid_tokens: set[str] | None = None
    lines_per_frame: int = 1
    channels: set[str] | None = None
    """The channels that exist; a JOIN of any other is never answered (``None``: all exist)."""
    close_before_login: bool = False
    """Close every connection at its first line, before any answer."""
    connections: int = 0
    received: list[str] = field(default_factory=list)
    joins: list[tuple[float, str]] = field(default_factory=list)
    """Every JOIN received: ``(time.monotonic(), channel)``."""
    joins_by: dict[str, list[float]] = field(default_factory=dict)
    """When each login (the NICK) sent its JOINs: ``time.monotonic()`` per channel joined."""
    parts: list[str] = field(default_factory=list)
    url: str = ""
    open: dict[int, Connection] = field(default_factory=dict)
    """The connections open now, by number."""
    _served: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/", self._handle)
        base = await self._served.enter_async_context(serve_app(app))
        self.url = f"{base.replace('http://', 'ws://', 1)}/"
        return self.url

    async def stop(self) -> None:
        await self._served.aclose()

    async def __aenter__(self) -> TwitchIrcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def say(self, channel: str, *lines: str) -> int:
        """Send ``lines`` to every connection that joined ``channel``; how many got them."""
        targets = [conn for conn in self.open.values() if channel in conn.joined]
        for conn in targets:
            with contextlib.suppress(ConnectionError):
                await conn.ws.send_str("\r\n".join(lines) + "\r\n")
        return len(targets)

    async def broadcast(self, *lines: str) -> None:
        """Send ``lines`` to every open connection (``RECONNECT``, say)."""
        for conn in list(self.open.values()):
            with contextlib.suppress(ConnectionError):
                await conn.ws.send_str("\r\n".join(lines) + "\r\n")

    def drop_all(self) -> None:
        """Cut every open connection's TCP stream, without a close frame."""
        for conn in list(self.open.values()):
            if conn.request.transport is not None:
                conn.request.transport.abort()

    def joined(self) -> set[str]:
        """Every channel some open connection has joined."""
        return {channel for conn in self.open.values() for channel in conn.joined}

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Connection(self.connections, ws, request)
        self.connections += 1
        self.open[conn.number] = conn
        inbox: asyncio.Queue[str] = asyncio.Queue()
        reader = asyncio.create_task(self._read(conn, inbox))
        joined = asyncio.create_task(conn.first_join.wait())
        try:
            await asyncio.wait({reader, joined}, return_when=asyncio.FIRST_COMPLETED)
            if not conn.first_join.is_set():
                return ws
            scripts = self.scripts
            script = scripts[conn.number] if conn.number < len(scripts) else []
            await self._play(request, ws, inbox, script)
            transport = request.transport
            if not ws.closed and transport is not None and not transport.is_closing():
                await reader  # idle until the client goes away
        finally:
            joined.cancel()
            reader.cancel()
            self.open.pop(conn.number, None)
        return ws

    async def _read(self, conn: Connection, inbox: asyncio.Queue[str]) -> None:
        async for message in conn.ws:
            if message.type is not WSMsgType.TEXT:
                continue
            for line in message.data.split("\r\n"):
                if not line:
                    continue
                self.received.append(line)
                playing = conn.first_join.is_set()  # scripts EXPECT what follows the JOIN
                await self._answer(conn, line)
                if conn.refused:
                    return
                if playing:
                    await inbox.put(line)

    async def _answer(self, conn: Connection, line: str) -> None:
        """Answer one client line as Twitch would."""
        ws = conn.ws
        if self.close_before_login:
            conn.refused = True
            await ws.close()
        elif line.startswith("CAP REQ"):
            caps = line.split(":", 1)[1] if ":" in line else line.split()[-1]
            await ws.send_str(f":tmi.twitch.tv CAP * ACK :{caps}\r\n")
        elif line.startswith("PASS "):
            conn.token = line[5:].removeprefix("oauth:")
        elif line.startswith("NICK "):
            await self._welcome(conn, line[5:].strip())
        elif line.startswith("JOIN "):
            for channel in line[5:].strip().split(","):
                await self._join(conn, channel.strip().lstrip("#"))
            conn.first_join.set()
        elif line.startswith("PART "):
            for channel in line[5:].strip().split(","):
                name = channel.strip().lstrip("#")
                self.parts.append(name)
                if name in conn.joined:
                    conn.joined.discard(name)
                    nick = conn.nick
                    await ws.send_str(f":{nick}!{nick}@{nick}.tmi.twitch.tv PART #{name}\r\n")

    async def _welcome(self, conn: Connection, nick: str) -> None:
        conn.nick = nick
        anonymous = nick.startswith("justinfan") and conn.token is None
        if not anonymous and (self.valid_tokens is None or conn.token not in self.valid_tokens):
            conn.refused = True
            await conn.ws.send_str(":tmi.twitch.tv NOTICE * :Login authentication failed\r\n")
            await conn.ws.close()
            return
        welcome = [
            f":tmi.twitch.tv 001 {nick} :Welcome, GLHF!",
            f":tmi.twitch.tv 002 {nick} :Your host is tmi.twitch.tv",
            f":tmi.twitch.tv 003 {nick} :This server is rather new",
            f":tmi.twitch.tv 004 {nick} :-",
            f":tmi.twitch.tv 375 {nick} :-",
            f":tmi.twitch.tv 372 {nick} :You are in a maze of twisty passages, all alike.",
            f":tmi.twitch.tv 376 {nick} :>",
        ]
        await conn.ws.send_str("\r\n".join(welcome) + "\r\n")

    async def _join(self, conn: Connection, channel: str) -> None:
        self.joins.append((time.monotonic(), channel))
        self.joins_by.setdefault(conn.nick, []).append(self.joins[-1][0])
        if self.channels is not None and channel not in self.channels:
            return  # Twitch answers nothing: no JOIN echo, no ROOMSTATE, no NOTICE
        conn.joined.add(channel)
        nick = conn.nick
        joined = [
            f":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN #{channel}",
            f":{nick}.tmi.twitch.tv 353 {nick} = #{channel} :{nick}",
            f":{nick}.tmi.twitch.tv 366 {nick} #{channel} :End of /NAMES list",
            f"@badge-info=;badges=;color=;display-name={nick};emote-sets=0;mod=0;"
            f"subscriber=0;user-type= :tmi.twitch.tv USERSTATE #{channel}",
            f"@emote-only=0;followers-only=-1;r9k=0;room-id=1337;slow=0;subs-only=0 "
            f":tmi.twitch.tv ROOMSTATE #{channel}",
        ]
        await conn.ws.send_str("\r\n".join(joined) + "\r\n")

    async def _play(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        inbox: asyncio.Queue[str],
        script: Sequence[Step],
    ) -> None:
        pending: list[str] = []

        async def flush() -> None:
            while pending:
                chunk = pending[: self.lines_per_frame]
                del pending[: self.lines_per_frame]
                await ws.send_str("\r\n".join(chunk) + "\r\n")

        for step in script:
            if isinstance(step, Expect):
                await flush()
                while True:
                    line = await asyncio.wait_for(inbox.get(), step.timeout)
                    if line.startswith(step.prefix):
                        break
            elif step == DROP:
                await flush()
                assert request.transport is not None
                request.transport.abort()
                return
            elif step == CLOSE:
                await flush()
                await ws.close()
                return
            else:
                pending.append(step)
                if len(pending) >= self.lines_per_frame:
                    await flush()
        await flush()


def privmsg(
    msg_id: str,
    text: str,
    *,
    channel: str = "dallas",
    user: str = "ronni",
    emotes: str = "",
    badges: str = "",
    ts: int = 1_700_000_000_000,
    bits: int = 0,
) -> str:
    """A PRIVMSG line exactly as Twitch sends it with twitch.tv/tags (a cheer with ``bits``)."""
    cheer = f"bits={bits};" if bits else ""
    return (
        f"@badge-info=;badges={badges};{cheer}client-nonce=abc;color=#1E90FF;display-name={user.title()};"
        f"emotes={emotes};first-msg=0;flags=;id={msg_id};mod=0;returning-chatter=0;"
        f"room-id=1337;subscriber=0;tmi-sent-ts={ts};turbo=0;user-id=4242;user-type= "
        f":{user}!{user}@{user}.tmi.twitch.tv PRIVMSG #{channel} :{text}"
    )
