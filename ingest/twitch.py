"""Twitch chat over IRC-over-WebSocket (``wss://irc-ws.chat.twitch.tv:443``).

:class:`TwitchProtocol` is the whole protocol without I/O: the lines to send on connect, and for
each received line the items to emit and the lines to answer (PONG), or an exception (RECONNECT
asks for a new connection; a login failure or a suspended channel is :class:`AdapterFatal`).
:class:`TwitchChat` is the adapter: it only moves lines between an aiohttp WebSocket and the
protocol. Without a token it logs in anonymously as ``justinfan<digits>`` (read-only chat, no
credentials); with ``--token`` and ``--nick`` it logs in as that account.

Twitch never answers a JOIN to a channel that does not exist (no ROOMSTATE, no error), so the
protocol remembers when each JOIN went out and :meth:`TwitchProtocol.overdue` names the ones
left unanswered for ``join_timeout`` seconds: :class:`ChannelNotFound`, exit 4. The protocol
serves one connection with any number of channels; ``ingest/twitch_pool.py`` shares one
connection between many channels through :meth:`TwitchProtocol.route`.

What each line stands for (chat, deletions, platform events) is ``ingest/twitch_map.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import aiohttp
from pydantic import ValidationError

from broker.models import Platform
from config import IngestSettings
from ingest.base import (
    AdapterFatal,
    AdapterState,
    AdapterStatus,
    Emit,
    IngestItem,
    TargetNotFound,
)
from ingest.irc import IrcMessage, IrcParseError, format_line, parse_line, split_lines
from ingest.twitch_map import to_items

__all__ = [
    "ChannelFatal",
    "ChannelNotFound",
    "IrcState",
    "Routed",
    "TwitchChat",
    "TwitchProtocol",
    "TwitchReconnect",
    "anonymous_nick",
    "login_of",
    "normalize_channel",
]

log = logging.getLogger("vstudio.ingest.twitch")

CHANNEL_NAME = re.compile(r"^[a-z0-9_]{1,25}$")

FATAL_NOTICES = {
    "msg_channel_suspended": "the channel is suspended or does not exist",
    "msg_banned": "this account is banned from the channel",
    "tos_ban": "the channel has been closed for a terms-of-service violation",
    "msg_requires_verified_phone_number": "the channel requires a verified phone number",
}
LOGIN_FAILURES = (
    "login authentication failed",
    "login unsuccessful",
    "error logging in",
    "improperly formatted auth",
    "invalid nick",
)


class TwitchReconnect(ConnectionError):
    """Twitch sent RECONNECT: it is about to close this connection; open a new one."""


class ChannelFatal(AdapterFatal):
    """One channel cannot be read (suspended, banned); the connection's other channels can."""

    def __init__(self, channel: str, message: str) -> None:
        super().__init__(message)
        self.channel = channel


class ChannelNotFound(ChannelFatal, TargetNotFound):
    """The channel does not exist, is suspended or banned (exit 4)."""

    @classmethod
    def unanswered(cls, channel: str, waited: float) -> ChannelNotFound:
        """Twitch did not answer the JOIN: it sends nothing back for such a channel."""
        return cls(
            channel,
            f"Twitch channel #{channel} did not answer within {waited:g} s of JOIN: it does "
            "not exist or is banned (check the name)",
        )


class Routed(NamedTuple):
    """What one line means for a connection with many channels: the channel it belongs to
    (``None``: the connection itself), its items, the lines to answer, and whether it was
    the answer to that channel's JOIN."""

    channel: str | None
    items: list[IngestItem]
    replies: list[str]
    answered: bool = False


def normalize_channel(name: str) -> str:
    """``#SomeChannel`` -> ``somechannel``, or ``ValueError`` for a name Twitch cannot have."""
    channel = name.strip().lstrip("#").lower()
    if not CHANNEL_NAME.match(channel):
        raise ValueError(
            f"{name!r} is not a Twitch channel name (up to 25 letters, digits or underscores)"
        )
    return channel


def anonymous_nick(rng: random.Random | None = None) -> str:
    """``justinfan<digits>``: Twitch's read-only anonymous login."""
    return f"justinfan{(rng or random).randint(10_000, 99_999_999)}"


def login_of(settings: IngestSettings) -> tuple[str, str | None]:
    """``(nick, token)`` to log in with: the token's account, or anonymous without a token."""
    token = settings.twitch_token.get_secret_value() if settings.twitch_token else None
    if token and not settings.twitch_nick:
        raise ValueError("a Twitch --token needs the --nick of the account it belongs to")
    return ((settings.twitch_nick or "").lower() if token else anonymous_nick()), token


class IrcState(StrEnum):
    """Where one IRC connection stands: the adapter reports ``connected`` from ``logged in``."""

    CONNECTING = "connecting"
    LOGGED_IN = "logged in"
    JOINED = "joined"


@dataclass
class TwitchProtocol:
    """The chat protocol of one connection, without I/O.

    ``channel`` is joined by :meth:`hello`; a connection shared by many channels leaves it
    empty and joins each with :meth:`join`. ``receive`` returns ``(items, replies)``; it raises
    :class:`TwitchReconnect` when Twitch asks for a new connection and :class:`AdapterFatal`
    when no retry can help (:class:`ChannelFatal` when only one channel is lost). Lines that do
    not parse or map are counted in ``malformed`` and skipped. Times (``now``) are the caller's
    monotonic clock, so the join timeout is tested without waiting.
    """

    channel: str
    nick: str
    token: str | None = None
    join_timeout: float = 5.0
    state: IrcState = IrcState.CONNECTING
    malformed: int = 0
    last_error: str = ""
    _joined: bool = field(default=False, repr=False)
    _pending: dict[str, float] = field(default_factory=dict, repr=False)
    """Channels whose JOIN went out and Twitch has not answered (no ROOMSTATE yet): when."""

    def hello(self, now: float = 0.0) -> list[str]:
        """The lines to send once the WebSocket is open: capabilities, login, join."""
        lines = [format_line("CAP", "REQ", "twitch.tv/tags twitch.tv/commands")]
        if self.token:
            token = self.token if self.token.startswith("oauth:") else f"oauth:{self.token}"
            lines.append(f"PASS {token}")
        lines.append(f"NICK {self.nick}")
        if self.channel:
            lines.append(self.join(self.channel, now))
        return lines

    def join(self, channel: str, now: float) -> str:
        """The JOIN line for ``channel``; Twitch has ``join_timeout`` seconds to answer it."""
        self._pending[channel] = now
        return f"JOIN #{channel}"

    def part(self, channel: str) -> str:
        """The PART line for ``channel``; an unanswered JOIN of it is forgotten."""
        self._pending.pop(channel, None)
        return f"PART #{channel}"

    def next_deadline(self) -> float | None:
        """When the oldest unanswered JOIN runs out of time, or ``None`` if none waits."""
        if not self._pending:
            return None
        return min(self._pending.values()) + self.join_timeout

    def overdue(self, now: float) -> list[str]:
        """The channels whose JOIN went unanswered for ``join_timeout``: they do not exist.
        They are forgotten, so each is reported once."""
        late = [ch for ch, sent in self._pending.items() if now - sent >= self.join_timeout]
        for channel in late:
            del self._pending[channel]
        return late

    def receive(self, line: str) -> tuple[list[IngestItem], list[str]]:
        """React to one line from Twitch."""
        routed = self.route(line)
        return routed.items, routed.replies

    def route(self, line: str) -> Routed:
        """React to one line from Twitch, saying which channel it belongs to."""
        try:
            message = parse_line(line)
        except IrcParseError as exc:
            self._skip(f"unparsable line ({exc}): {line[:120]!r}")
            return Routed(None, [], [])
        command = message.command
        if command == "PING":
            return Routed(None, [], [format_line("PONG", message.trailing or "tmi.twitch.tv")])
        if command == "RECONNECT":
            raise TwitchReconnect("Twitch asked for a reconnect (server maintenance)")
        channel = _channel_of(message)
        if command == "NOTICE":
            self._notice(message, channel)
            return Routed(channel, [], [])
        answered = False
        if command == "001":
            self.state = IrcState.LOGGED_IN
        elif command == "ROOMSTATE" and channel is not None:
            answered = self._pending.pop(channel, None) is not None
        if command in ("JOIN", "ROOMSTATE") and not self._joined:
            if command == "ROOMSTATE" or (message.nick or "").lower() == self.nick.lower():
                self._joined = True
                self.state = IrcState.JOINED
        try:
            return Routed(channel, to_items(message), [], answered)
        except (ValidationError, ValueError) as exc:
            self._skip(f"{command} skipped ({_first_error(exc)}): {line[:120]!r}")
            return Routed(channel, [], [], answered)

    def _notice(self, message: IrcMessage, channel: str | None) -> None:
        msg_id = message.tags.get("msg-id", "")
        text = message.trailing
        where = channel or self.channel
        if msg_id in FATAL_NOTICES:
            reason = f"Twitch #{where}: {FATAL_NOTICES[msg_id]} ({text})"
            if msg_id == "msg_channel_suspended":
                raise ChannelNotFound(where, reason)
            raise ChannelFatal(where, reason)
        if any(failure in text.lower() for failure in LOGIN_FAILURES):
            how = "with --token/--nick" if self.token else f"anonymously as {self.nick}"
            raise AdapterFatal(
                f"Twitch refused the login {how}: {text}. Check the OAuth token (chat:read "
                "scope) and that --nick is the token's account, or drop --token to read "
                "anonymously."
            )
        self.last_error = f"notice {msg_id or '-'}: {text}"
        log.warning("Twitch #%s notice %s: %s", where, msg_id or "-", text)

    def _skip(self, reason: str) -> None:
        self.malformed += 1
        self.last_error = reason
        log.warning("Twitch #%s: %s", self.channel or "*", reason)


def _channel_of(message: IrcMessage) -> str | None:
    """The channel a line is about: its first ``#name`` parameter that is not the text."""
    params = message.params[:-1] if len(message.params) > 1 else message.params
    for param in params:
        if param.startswith("#"):
            return param[1:].lower()
    return None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'message'}: {first['msg']}"
    return str(exc)


class TwitchChat:
    """Adapter: one channel's chat over IRC-over-WebSocket."""

    platform = Platform.TWITCH

    def __init__(
        self,
        channel: str,
        settings: IngestSettings,
        *,
        idle_timeout: float = 360.0,
    ) -> None:
        self.channel = normalize_channel(channel)
        self.target = f"#{self.channel}"
        self.url = settings.twitch_irc_url
        self.nick, self.token = login_of(settings)
        self.idle_timeout = idle_timeout
        self.join_timeout = settings.twitch_join_timeout
        self.status = AdapterStatus()
        self.protocol: TwitchProtocol | None = None
        self._last_frame = 0.0
        self._idle = False
        self._unanswered: ChannelNotFound | None = None
        self._rejected_before = 0

    @property
    def rejected(self) -> int:
        """Lines skipped on every connection so far (unparsable, or not a valid message)."""
        current = self.protocol.malformed if self.protocol else 0
        return self._rejected_before + current

    async def run(self, emit: Emit) -> None:
        """Connect, log in, join, and emit chat until the connection ends."""
        if self.protocol is not None:
            self._rejected_before += self.protocol.malformed
        protocol = TwitchProtocol(self.channel, self.nick, self.token, self.join_timeout)
        self.protocol = protocol
        self._unanswered = None
        self.status.state = AdapterState.CONNECTING
        self.status.detail = self.url
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.ws_connect(self.url, autoping=True, max_msg_size=1 << 20) as ws,
        ):
            for line in protocol.hello(asyncio.get_running_loop().time()):
                await ws.send_str(line + "\r\n")
            watchdogs = [
                asyncio.create_task(self._watch_idle(ws)),
                asyncio.create_task(self._watch_join(ws, protocol)),
            ]
            try:
                await self._pump(ws, protocol, emit)
            finally:
                for watchdog in watchdogs:
                    watchdog.cancel()
            if self._unanswered is not None:
                raise self._unanswered
            if self._idle:
                raise ConnectionError(f"nothing from Twitch for {self.idle_timeout:.0f} s")
            raise ConnectionError(f"Twitch closed the connection (code {ws.close_code})")

    async def _pump(
        self, ws: aiohttp.ClientWebSocketResponse, protocol: TwitchProtocol, emit: Emit
    ) -> None:
        """Frames in, items out, PONGs back, until the socket closes."""
        text = aiohttp.WSMsgType.TEXT
        seen = ""
        async for frame in ws:  # no per-frame timeout: the watchdog notices silence
            self._last_frame = time.monotonic()
            if frame.type is not text:
                if frame.type is aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"WebSocket error: {ws.exception()}")
                continue
            for line in split_lines(frame.data):
                items, replies = protocol.receive(line)
                for item in items:
                    emit(item)
                for reply in replies:
                    await ws.send_str(reply + "\r\n")
            if protocol.state != seen:
                seen = protocol.state
                self._update_status(protocol)

    async def _watch_idle(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Close the socket when nothing arrived for ``idle_timeout`` (Twitch PINGs ~5 min)."""
        self._idle = False
        self._last_frame = time.monotonic()
        while not ws.closed:
            quiet = time.monotonic() - self._last_frame
            if quiet >= self.idle_timeout:
                self._idle = True
                await ws.close()
                return
            await asyncio.sleep(self.idle_timeout - quiet)

    async def _watch_join(
        self, ws: aiohttp.ClientWebSocketResponse, protocol: TwitchProtocol
    ) -> None:
        """Close the socket when Twitch leaves the JOIN unanswered: the channel does not exist."""
        loop = asyncio.get_running_loop()
        while (deadline := protocol.next_deadline()) is not None:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            late = protocol.overdue(loop.time())
            if late:
                self._unanswered = ChannelNotFound.unanswered(late[0], protocol.join_timeout)
                await ws.close()
                return

    def _update_status(self, protocol: TwitchProtocol) -> None:
        if protocol.state in (IrcState.LOGGED_IN, IrcState.JOINED):
            self.status.state = AdapterState.CONNECTED
            self.status.detail = (
                f"joined #{self.channel} as {self.nick}"
                if protocol.state == IrcState.JOINED
                else f"logged in as {self.nick}, joining #{self.channel}"
            )
