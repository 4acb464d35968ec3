"""A local server that speaks Twitch's IRC-over-WebSocket, for tests and benchmarks.

It answers the login the way ``irc-ws.chat.twitch.tv`` does (CAP ACK, the 001-376 welcome,
the JOIN echo, 353/366, USERSTATE, ROOMSTATE, or ``NOTICE * :Login authentication failed``
for a refused token), then plays one script per connection: lines to send, ``EXPECT`` a line
from the client, ``DROP`` the TCP connection without a close frame, or ``CLOSE`` it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass
class TwitchIrcServer:
    """``scripts[i]`` is played on the i-th connection; later connections just idle."""

    scripts: Sequence[Sequence[Step]] = field(default_factory=list)
    valid_tokens: set[str] | None = None
    lines_per_frame: int = 1
    connections: int = 0
    received: list[str] = field(default_factory=list)
    url: str = ""
    _served: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _inbox: asyncio.Queue[str] | None = None

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

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        number = self.connections
        self.connections += 1
        inbox: asyncio.Queue[str] = asyncio.Queue()
        reader = asyncio.create_task(self._read(ws, inbox))
        try:
            if not await self._login(ws, inbox):
                return ws
            script = self.scripts[number] if number < len(self.scripts) else []
            await self._play(request, ws, inbox, script)
            transport = request.transport
            if not ws.closed and transport is not None and not transport.is_closing():
                await reader  # idle until the client goes away
        finally:
            reader.cancel()
        return ws

    async def _read(self, ws: web.WebSocketResponse, inbox: asyncio.Queue[str]) -> None:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                for line in message.data.split("\r\n"):
                    if line:
                        self.received.append(line)
                        await inbox.put(line)

    async def _login(self, ws: web.WebSocketResponse, inbox: asyncio.Queue[str]) -> bool:
        token: str | None = None
        nick = ""
        while True:
            line = await inbox.get()
            if line.startswith("CAP REQ"):
                caps = line.split(":", 1)[1] if ":" in line else line.split()[-1]
                await ws.send_str(f":tmi.twitch.tv CAP * ACK :{caps}\r\n")
            elif line.startswith("PASS "):
                token = line[5:].removeprefix("oauth:")
            elif line.startswith("NICK "):
                nick = line[5:].strip()
                anonymous = nick.startswith("justinfan") and token is None
                if not anonymous and (self.valid_tokens is None or token not in self.valid_tokens):
                    await ws.send_str(":tmi.twitch.tv NOTICE * :Login authentication failed\r\n")
                    await ws.close()
                    return False
                welcome = [
                    f":tmi.twitch.tv 001 {nick} :Welcome, GLHF!",
                    f":tmi.twitch.tv 002 {nick} :Your host is tmi.twitch.tv",
                    f":tmi.twitch.tv 003 {nick} :This server is rather new",
                    f":tmi.twitch.tv 004 {nick} :-",
                    f":tmi.twitch.tv 375 {nick} :-",
                    f":tmi.twitch.tv 372 {nick} :You are in a maze of twisty passages, all alike.",
                    f":tmi.twitch.tv 376 {nick} :>",
                ]
                await ws.send_str("\r\n".join(welcome) + "\r\n")
            elif line.startswith("JOIN #"):
                channel = line[6:].strip()
                joined = [
                    f":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN #{channel}",
                    f":{nick}.tmi.twitch.tv 353 {nick} = #{channel} :{nick}",
                    f":{nick}.tmi.twitch.tv 366 {nick} #{channel} :End of /NAMES list",
                    f"@badge-info=;badges=;color=;display-name={nick};emote-sets=0;mod=0;"
                    f"subscriber=0;user-type= :tmi.twitch.tv USERSTATE #{channel}",
                    f"@emote-only=0;followers-only=-1;r9k=0;room-id=1337;slow=0;subs-only=0 "
                    f":tmi.twitch.tv ROOMSTATE #{channel}",
                ]
                await ws.send_str("\r\n".join(joined) + "\r\n")
                return True

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
