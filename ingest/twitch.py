"""Twitch chat over IRC-over-WebSocket (``wss://irc-ws.chat.twitch.tv:443``).

:class:`TwitchProtocol` is the whole protocol without I/O: the lines to send on connect, and for
each received line the items to emit and the lines to answer (PONG), or an exception (RECONNECT
asks for a new connection; a login failure or a suspended channel is :class:`AdapterFatal`).
:class:`TwitchChat` is the adapter: it only moves lines between an aiohttp WebSocket and the
protocol. Without a token it logs in anonymously as ``justinfan<digits>`` (read-only chat, no
credentials); with ``--token`` and ``--nick`` it logs in as that account.

A ``CLEARMSG`` becomes ``ChatDelete(message_id="twitch:<id>")``; a ``CLEARCHAT`` naming a user
(ban or timeout) becomes ``ChatDelete(username=..., platform=twitch)``; a ``CLEARCHAT`` without
a user (``/clear``) becomes ``ChatDelete(username="*", platform=twitch)``: every message of the
platform. ``USERNOTICE`` subscriptions, gifts and raids become platform events.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp
from pydantic import ValidationError

from broker.models import ChatDelete, Emote, NormalizedChatMessage, Platform, PlatformEvent, now_ms
from config import IngestSettings
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit, EventKind, IngestItem
from ingest.batching import CLEAR_ALL_USERS
from ingest.irc import IrcMessage, IrcParseError, format_line, parse_line, split_lines

__all__ = [
    "IrcState",
    "TwitchChat",
    "TwitchProtocol",
    "TwitchReconnect",
    "anonymous_nick",
    "normalize_channel",
    "parse_badges",
    "parse_emotes",
    "to_item",
    "twitch_emote_url",
]

log = logging.getLogger("vstudio.ingest.twitch")

EMOTE_CDN = "https://static-cdn.jtvnw.net/emoticons/v2/{id}/default/dark/1.0"
CHANNEL_NAME = re.compile(r"^[a-z0-9_]{1,25}$")
ACTION_START = "\x01ACTION "

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
SUB_PLANS = {"Prime": "Prime", "1000": "Tier 1", "2000": "Tier 2", "3000": "Tier 3"}


class TwitchReconnect(ConnectionError):
    """Twitch sent RECONNECT: it is about to close this connection; open a new one."""


def twitch_emote_url(emote_id: str) -> str:
    """The image of a Twitch emote by its id (dark theme, 1x)."""
    return EMOTE_CDN.format(id=emote_id)


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


def parse_badges(raw: str) -> list[str]:
    """``moderator/1,subscriber/12`` -> ``["moderator", "subscriber"]`` (names, in order)."""
    return [part.split("/", 1)[0] for part in raw.split(",") if part and part.split("/", 1)[0]]


def parse_emotes(raw: str, text: str) -> list[Emote]:
    """``25:0-4,12-16/1902:6-10`` -> emotes with their names cut from ``text``.

    Positions count Unicode code points, as Python strings do. A malformed or out-of-range
    entry is skipped rather than trusted.
    """
    return [Emote.model_validate(fields) for fields in _emote_fields(raw, text)]


def _emote_fields(raw: str, text: str) -> list[dict[str, Any]]:
    """The emotes as plain fields; the message model validates them with the message."""
    if not raw:
        return []
    emotes: list[dict[str, Any]] = []
    for entry in raw.split("/"):
        emote_id, _, ranges = entry.partition(":")
        if not emote_id or not ranges:
            continue
        positions: list[tuple[int, int]] = []
        for span in ranges.split(","):
            start_text, _, end_text = span.partition("-")
            if not (start_text.isdigit() and end_text.isdigit()):
                continue
            start, end = int(start_text), int(end_text)
            if start <= end < len(text):
                positions.append((start, end))
        if not positions:
            continue
        first_start, first_end = positions[0]
        name = text[first_start : first_end + 1]
        if name.strip():
            emotes.append(
                {"name": name[:100], "url": EMOTE_CDN.format(id=emote_id), "positions": positions}
            )
    return emotes


def _flag(tags: dict[str, str], name: str) -> bool:
    return tags.get(name) == "1"


def _timestamp(tags: dict[str, str]) -> int:
    sent = tags.get("tmi-sent-ts", "")
    return int(sent) if sent.isdigit() else now_ms()


def _chat_message(message: IrcMessage) -> NormalizedChatMessage:
    tags = message.tags
    msg_id = tags.get("id")
    if not msg_id:
        raise ValueError("PRIVMSG without an id tag (was twitch.tv/tags acknowledged?)")
    text = message.trailing
    if text.startswith(ACTION_START) and text.endswith("\x01"):
        text = text[len(ACTION_START) : -1]  # "/me waves" arrives as a CTCP ACTION
    badges = parse_badges(tags.get("badges", ""))
    login = (message.nick or tags.get("login") or "").lower()
    emotes = _emote_fields(tags.get("emotes", ""), text) or None
    return NormalizedChatMessage(
        id=f"twitch:{msg_id}",
        platform=Platform.TWITCH,
        username=login,
        display_name=tags.get("display-name") or None,
        text=text,
        badges=badges or None,
        is_subscriber=_flag(tags, "subscriber") or "founder" in badges or "subscriber" in badges,
        is_moderator=_flag(tags, "mod") or "moderator" in badges or "broadcaster" in badges,
        timestamp=_timestamp(tags),
        emotes=emotes,  # type: ignore[arg-type]  # dicts, validated into Emote with the message
        user_id=tags.get("user-id") or None,
    )


def _user_notice(message: IrcMessage) -> PlatformEvent | None:
    tags = message.tags
    kind_of: dict[str, EventKind] = {
        "sub": "subscribe",
        "resub": "subscribe",
        "subgift": "gift",
        "submysterygift": "gift",
        "raid": "raid",
    }
    kind = kind_of.get(tags.get("msg-id", ""))
    if kind is None or not tags.get("id"):
        return None
    count_text = (
        tags.get("msg-param-viewerCount")
        or tags.get("msg-param-mass-gift-count")
        or tags.get("msg-param-cumulative-months")
        or ""
    )
    detail = SUB_PLANS.get(tags.get("msg-param-sub-plan", "")) or None
    recipient = tags.get("msg-param-recipient-display-name")
    if recipient:
        detail = f"{detail or 'sub'} to {recipient}"
    return PlatformEvent(
        id=f"twitch:{tags['id']}",
        platform=Platform.TWITCH,
        kind=kind,
        username=(tags.get("login") or message.nick or "unknown").lower(),
        display_name=tags.get("display-name") or None,
        count=int(count_text) if count_text.isdigit() else None,
        detail=detail,
        timestamp=_timestamp(tags),
    )


def to_item(message: IrcMessage) -> IngestItem | None:
    """The item a Twitch IRC message stands for, or ``None`` when it carries no chat."""
    if message.command == "PRIVMSG":
        return _chat_message(message)
    if message.command == "CLEARMSG":
        target = message.tags.get("target-msg-id")
        if not target:
            raise ValueError("CLEARMSG without a target-msg-id tag")
        return ChatDelete(message_id=f"twitch:{target}", reason="deleted by a moderator")
    if message.command == "CLEARCHAT":
        if len(message.params) >= 2 and message.trailing:
            duration = message.tags.get("ban-duration")
            reason = f"timed out for {duration} s" if duration else "banned"
            return ChatDelete(
                username=message.trailing.lower(), platform=Platform.TWITCH, reason=reason
            )
        return ChatDelete(username=CLEAR_ALL_USERS, platform=Platform.TWITCH, reason="chat cleared")
    if message.command == "USERNOTICE":
        return _user_notice(message)
    return None


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
            item = to_item(message)
        except (ValidationError, ValueError) as exc:
            self._skip(f"{command} skipped ({_first_error(exc)}): {line[:120]!r}")
            return [], []
        return ([item] if item is not None else []), []

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
