"""Discord channel chat through discord.py: a bot with the message-content intent.

discord.py does the gateway work (HELLO, IDENTIFY, heartbeats, RESUME, rate limits); this module
only picks the one channel's messages and deletions and maps them with :mod:`ingest.discord_map`.

Pointing discord.py at other endpoints (a proxy, or the local fake in the tests): REST requests
are built from the class attribute ``discord.http.Route.BASE`` and the gateway is opened at
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (a plain ``discord.Client`` does not ask
``GET /gateway/bot``; after READY it resumes at the ``resume_gateway_url`` the gateway sent).
Both are process-wide, so :func:`point_discord_at` sets them before each connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from broker.models import Platform
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit
from ingest.discord_map import DiscordAuthor, DiscordChat, map_deletions, map_item

try:
    import discord
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route
except ImportError:  # pragma: no cover - depends on the install
    discord = None  # type: ignore[assignment]  # None marks discord.py as not installed

__all__ = ["DEFAULT_API_URL", "DiscordAdapter", "chat_of", "point_discord_at"]

log = logging.getLogger("vstudio.ingest.discord")

DEFAULT_API_URL = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"
THREADS_LIMIT = 1000
"""Threads of the channel remembered for their deletions; the set starts over past this."""

FATAL_CLOSE_CODES = {
    4004: "Discord refused the bot token (close 4004); copy the token from the Developer "
    "Portal (Bot > Reset Token)",
    4010: "invalid shard (close 4010)",
    4011: "Discord requires sharding for this bot (close 4011)",
    4012: "invalid gateway API version (close 4012)",
    4013: "invalid intents (close 4013)",
    4014: "the bot may not use the Message Content intent: turn it on in the Developer Portal "
    "(Bot > Privileged Gateway Intents > Message Content Intent)",
}


def point_discord_at(api_url: str, gateway_url: str | None) -> None:
    """Make discord.py use ``api_url`` for REST and ``gateway_url`` (if given) for the gateway."""
    Route.BASE = api_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url or DEFAULT_GATEWAY_URL)


def chat_of(message: Any) -> DiscordChat:
    """Read what we use from a ``discord.Message`` (a guild message, author a Member)."""
    author = message.author
    roles = sorted(getattr(author, "roles", []), key=lambda role: role.position, reverse=True)
    permissions = getattr(author, "guild_permissions", None)
    guild = message.guild
    return DiscordChat(
        id=message.id,
        channel_id=message.channel.id,
        author=DiscordAuthor(
            id=author.id,
            username=author.name,
            display_name=author.display_name,
            bot=author.bot,
            roles=tuple(role.name for role in roles if not role.is_default()),
            can_moderate=bool(
                permissions
                and (
                    permissions.manage_messages
                    or permissions.moderate_members
                    or permissions.administrator
                )
            ),
            is_owner=guild is not None and guild.owner_id == author.id,
            is_booster=getattr(author, "premium_since", None) is not None,
        ),
        content=message.content,
        created_at=int(message.created_at.timestamp() * 1000),
        attachments=tuple(attachment.filename for attachment in message.attachments),
        kind=getattr(message.type, "name", "default"),
        stickers=tuple(sticker.name for sticker in message.stickers),
        mentions=_mentions(message),
        thread=message.channel.name if _in_thread(message) else None,
        reply_to=getattr(message.reference, "message_id", None) if message.reference else None,
    )


def _in_thread(message: Any) -> bool:
    return discord is not None and isinstance(message.channel, discord.Thread)


def _mentions(message: Any) -> dict[str, str]:
    """What each raw mention in the content stands for, from what the gateway sent with it."""
    names = {f"@{user.id}": f"@{user.display_name}" for user in message.mentions}
    names.update({f"@&{role.id}": f"@{role.name}" for role in message.role_mentions})
    names.update({f"#{channel.id}": f"#{channel.name}" for channel in message.channel_mentions})
    return names


class DiscordAdapter:
    """One Discord text channel, read by a bot that is a member of its guild."""

    platform = Platform.DISCORD

    def __init__(
        self,
        *,
        channel_id: int,
        token: str,
        api_url: str = DEFAULT_API_URL,
        gateway_url: str | None = None,
        moderator_roles: Iterable[str] = (),
        subscriber_roles: Iterable[str] = (),
        ready_timeout: float = 2.0,
        catch_up_limit: int = 200,
    ) -> None:
        if discord is None:
            raise RuntimeError("the Discord adapter needs discord.py: pip install discord.py")
        if not token:
            raise ValueError(
                "Discord needs a bot token (--token or VSTUDIO_DISCORD_TOKEN) of a bot that has "
                "joined the channel's server"
            )
        self.channel_id = channel_id
        self.target = f"channel:{channel_id}"
        self.status = AdapterStatus()
        self.token = token
        self.api_url = api_url
        self.gateway_url = gateway_url
        self.moderator_roles = tuple(moderator_roles)
        self.subscriber_roles = tuple(subscriber_roles)
        self.ready_timeout = ready_timeout
        """Seconds discord.py waits for more GUILD_CREATEs after READY before ``on_ready``."""
        self.catch_up_limit = catch_up_limit
        self.last_message_id: int | None = None
        """Newest message seen; after a new session the history after it is read back."""

    async def run(self, emit: Emit) -> None:
        """Connect, read until the connection ends; AdapterFatal when retrying cannot help."""
        point_discord_at(self.api_url, self.gateway_url)
        client = _ChannelClient(self, emit)
        self.status.state = AdapterState.CONNECTING
        try:
            await client.start(self.token, reconnect=True)
        except discord.LoginFailure as exc:
            raise AdapterFatal(f"{FATAL_CLOSE_CODES[4004]} ({exc})") from exc
        except discord.PrivilegedIntentsRequired as exc:
            raise AdapterFatal(FATAL_CLOSE_CODES[4014]) from exc
        except discord.ConnectionClosed as exc:
            if exc.code in FATAL_CLOSE_CODES:
                raise AdapterFatal(FATAL_CLOSE_CODES[exc.code]) from exc
            raise
        finally:
            if not client.is_closed():
                await asyncio.shield(client.close())
        if client.fatal is not None:
            raise client.fatal
        self.status.state = AdapterState.DISCONNECTED


class _ChannelClient(
    discord.Client if discord is not None else object  # type: ignore[misc]  # dynamic base
):
    """A discord.py client that forwards one channel's messages and deletions."""

    def __init__(self, adapter: DiscordAdapter, emit: Emit) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True
        super().__init__(
            intents=intents, max_messages=None, guild_ready_timeout=adapter.ready_timeout
        )
        self.adapter = adapter
        self.emit = emit
        self.fatal: AdapterFatal | None = None
        self.threads: set[int] = set()

    async def on_ready(self) -> None:
        channel = self.get_channel(self.adapter.channel_id)
        if channel is None:
            guilds = ", ".join(guild.name for guild in self.guilds) or "none"
            self.fatal = AdapterFatal(
                f"the bot {self.user} cannot see channel {self.adapter.channel_id} (its servers: "
                f"{guilds}); invite the bot to that server and let it read the channel"
            )
            await self.close()
            return
        if self.adapter.last_message_id is not None:
            await self._catch_up(channel, self.adapter.last_message_id)
        self.adapter.status.state = AdapterState.CONNECTED
        self.adapter.status.detail = f"#{getattr(channel, 'name', channel)} as {self.user}"
        log.info("discord bot %s reading #%s", self.user, getattr(channel, "name", channel))

    async def _catch_up(self, channel: Any, after_id: int) -> None:
        """Read back what was said after ``after_id`` while no session was open (a RESUME
        replays by itself, a new session does not). Overlap is harmless: the bus drops ids it
        has seen."""
        after = discord.Object(id=after_id)
        try:
            async for message in channel.history(
                limit=self.adapter.catch_up_limit, after=after, oldest_first=True
            ):
                self._forward(message)
        except discord.HTTPException as exc:
            log.warning("discord: could not read back missed messages (%s)", exc)

    async def on_resumed(self) -> None:
        self.adapter.status.state = AdapterState.CONNECTED

    async def on_disconnect(self) -> None:
        self.adapter.status.state = AdapterState.RECONNECTING

    async def on_message(self, message: Any) -> None:
        if message.guild is None:
            return
        if message.channel.id == self.adapter.channel_id:
            self._forward(message)
        elif _in_thread(message) and message.channel.parent_id == self.adapter.channel_id:
            # a thread of the channel: its messages are the channel's chat too
            if len(self.threads) >= THREADS_LIMIT:
                self.threads.clear()
            self.threads.add(message.channel.id)
            self._forward(message)

    def _forward(self, message: Any) -> None:
        if message.channel.id == self.adapter.channel_id:
            last = self.adapter.last_message_id
            self.adapter.last_message_id = message.id if last is None else max(last, message.id)
        if self.user is not None and message.author.id == self.user.id:
            return  # the bot's own messages (its replies, announcements) are not fans' chat
        item = map_item(
            chat_of(message),
            moderator_roles=self.adapter.moderator_roles,
            subscriber_roles=self.adapter.subscriber_roles,
        )
        if item is not None:
            self.emit(item)

    def _watched(self, channel_id: int) -> bool:
        return channel_id == self.adapter.channel_id or channel_id in self.threads

    async def on_raw_message_delete(self, payload: Any) -> None:
        if self._watched(payload.channel_id):
            for deletion in map_deletions([payload.message_id]):
                self.emit(deletion)

    async def on_raw_bulk_message_delete(self, payload: Any) -> None:
        if self._watched(payload.channel_id):
            for deletion in map_deletions(payload.message_ids):
                self.emit(deletion)
