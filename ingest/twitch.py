"""Twitch chat over IRC-over-WebSocket (``wss://irc-ws.chat.twitch.tv:443``).

:class:`TwitchProtocol` is the whole protocol without I/O: the lines to send on connect, and for
each received line the items to emit and the lines to answer (PONG), or an exception (RECONNECT
asks for a new connection; a login failure or a suspended channel is :class:`AdapterFatal`).
:class:`TwitchChat` is the adapter: it only moves lines between an aiohttp WebSocket and the
protocol. Without a token it logs in anonymously as ``justinfan<digits>`` (read-only chat, no
credentials); with ``--token`` and ``--nick`` it logs in as that account.

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

import aiohttp
from pydantic import ValidationError

from broker.models import Platform
from config import IngestSettings
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit, IngestItem
from ingest.irc import IrcMessage, IrcParseError, format_line, parse_line, split_lines
from ingest.twitch_map import to_items

__all__ = [
    "IrcState",
    "TwitchChat",
    "TwitchProtocol",
    "TwitchReconnect",
    "anonymous_nick",
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


class IrcState(StrEnum):
    """Where one IRC connection stands: the adapter reports ``connected`` from ``logged in``."""

    CONNECTING = "connecting"
    LOGGED_IN = "logged in"
    JOINED = "joined"


@dataclass
class TwitchProtocol:
    """The chat protocol of one connection, without I/O.

    ``receive`` returns ``(items, replies)``; it raises :class:`TwitchReconnect` when Twitch asks
    for a new connection and :class:`AdapterFatal` when no retry can help. Lines that do not
    parse or map are counted in ``malformed`` and skipped.
    """

    channel: str
    nick: str
    token: str | None = None
    state: IrcState = IrcState.CONNECTING
    malformed: int = 0
    last_error: str = ""
    _joined: bool = field(default=False, repr=False)

    def hello(self) -> list[str]:
        """The lines to send once the WebSocket is open: capabilities, login, join."""
        lines = [format_line("CAP", "REQ", "twitch.tv/tags twitch.tv/commands")]
        if self.token:
            token = self.token if self.token.startswith("oauth:") else f"oauth:{self.token}"
            lines.append(f"PASS {token}")
        lines.append(f"NICK {self.nick}")
        lines.append(f"JOIN #{self.channel}")
        return lines

    def receive(self, line: str) -> tuple[list[IngestItem], list[str]]:
        """React to one line from Twitch."""
        try:
            message = parse_line(line)
        except IrcParseError as exc:
            self._skip(f"unparsable line ({exc}): {line[:120]!r}")
            return [], []
        command = message.command
        if command == "PING":
            return [], [format_line("PONG", message.trailing or "tmi.twitch.tv")]
        if command == "RECONNECT":
            raise TwitchReconnect("Twitch asked for a reconnect (server maintenance)")
        if command == "NOTICE":
            self._notice(message)
            return [], []
        if command == "001":
            self.state = IrcState.LOGGED_IN
        elif command in ("JOIN", "ROOMSTATE") and not self._joined:
            if command == "ROOMSTATE" or (message.nick or "").lower() == self.nick.lower():
                self._joined = True
                self.state = IrcState.JOINED
        try:
            return to_items(message), []
        except (ValidationError, ValueError) as exc:
            self._skip(f"{command} skipped ({_first_error(exc)}): {line[:120]!r}")
            return [], []

    def _notice(self, message: IrcMessage) -> None:
        msg_id = message.tags.get("msg-id", "")
        text = message.trailing
        if msg_id in FATAL_NOTICES:
            raise AdapterFatal(f"Twitch #{self.channel}: {FATAL_NOTICES[msg_id]} ({text})")
        if any(failure in text.lower() for failure in LOGIN_FAILURES):
            how = "with --token/--nick" if self.token else f"anonymously as {self.nick}"
            raise AdapterFatal(
                f"Twitch refused the login {how}: {text}. Check the OAuth token (chat:read "
                "scope) and that --nick is the token's account, or drop --token to read "
                "anonymously."
            )
        self.last_error = f"notice {msg_id or '-'}: {text}"
        log.warning("Twitch #%s notice %s: %s", self.channel, msg_id or "-", text)

    def _skip(self, reason: str) -> None:
        self.malformed += 1
        self.last_error = reason
        log.warning("Twitch #%s: %s", self.channel, reason)


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
        self.token = settings.twitch_token.get_secret_value() if settings.twitch_token else None
        if self.token and not settings.twitch_nick:
            raise ValueError("a Twitch --token needs the --nick of the account it belongs to")
        self.nick = (settings.twitch_nick or "").lower() if self.token else anonymous_nick()
        self.idle_timeout = idle_timeout
        self.status = AdapterStatus()
        self.protocol: TwitchProtocol | None = None
        self._last_frame = 0.0
        self._idle = False
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
        protocol = TwitchProtocol(self.channel, self.nick, self.token)
        self.protocol = protocol
        self.status.state = AdapterState.CONNECTING
        self.status.detail = self.url
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.ws_connect(self.url, autoping=True, max_msg_size=1 << 20) as ws,
        ):
            for line in protocol.hello():
                await ws.send_str(line + "\r\n")
            watchdog = asyncio.create_task(self._watch_idle(ws))
            try:
                await self._pump(ws, protocol, emit)
            finally:
                watchdog.cancel()
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

    def _update_status(self, protocol: TwitchProtocol) -> None:
        if protocol.state in (IrcState.LOGGED_IN, IrcState.JOINED):
            self.status.state = AdapterState.CONNECTED
            self.status.detail = (
                f"joined #{self.channel} as {self.nick}"
                if protocol.state == IrcState.JOINED
                else f"logged in as {self.nick}, joining #{self.channel}"
            )
