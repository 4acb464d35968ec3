"""Discord channel chat through discord.py: a bot with the message-content intent.

discord.py does the gateway work (HELLO, IDENTIFY, heartbeats, RESUME, rate limits); this module
routes each channel's messages and deletions to its adapter and maps them with
:mod:`ingest.discord_map`.

One gateway connection serves every channel: a :class:`DiscordGateway` holds one discord.py
client per bot token, and ``gateway.adapter(channel_id)`` makes a channel's adapter. The client
starts when the first adapter runs and closes when the last one stops; each adapter gets only
its channel's messages and those of the channel's threads. :class:`DiscordAdapter` is one
channel on a gateway of its own (``vstudio ingest discord``); :class:`GatewayPool` keeps one
gateway per token for a worker that reads many channels.

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
from ingest.base import AdapterFatal, AdapterState, AdapterStatus, Emit, IngestItem
from ingest.discord_map import DiscordAuthor, DiscordChat, map_deletions, map_item

try:
    import discord
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route
except ImportError:  # pragma: no cover - depends on the install
    discord = None  # type: ignore[assignment]  # None marks discord.py as not installed

__all__ = [
    "DEFAULT_API_URL",
    "DiscordAdapter",
    "DiscordChannel",
    "DiscordGateway",
    "GatewayPool",
    "chat_of",
    "point_discord_at",
]

log = logging.getLogger("vstudio.ingest.discord")

DEFAULT_API_URL = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"
THREADS_LIMIT = 1000
"""Threads remembered (with their channel) for their deletions; the map starts over past this."""
CLOSE_WAIT = 5.0
"""Seconds the last adapter leaving waits for the client to close."""

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


class DiscordGateway:
    """One bot token's gateway connection, shared by the adapters of every channel it serves."""

    def __init__(
        self,
        *,
        token: str,
        api_url: str = DEFAULT_API_URL,
        gateway_url: str | None = None,
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
        self.token = token
        self.api_url = api_url
        self.gateway_url = gateway_url
        self.ready_timeout = ready_timeout
        """Seconds discord.py waits for more GUILD_CREATEs after READY before ``on_ready``."""
        self.catch_up_limit = catch_up_limit
        self.clients_started = 0
        """discord.py clients started so far: one per connection, not one per channel."""
        self._listeners: dict[int, list[DiscordChannel]] = {}
        self._threads: dict[int, int] = {}
        self._client: _GatewayClient | None = None
        self._task: asyncio.Task[None] | None = None

    def adapter(
        self,
        channel_id: int,
        *,
        moderator_roles: Iterable[str] = (),
        subscriber_roles: Iterable[str] = (),
    ) -> DiscordChannel:
        """The adapter of one text channel, read over this gateway."""
        return DiscordChannel(
            self,
            channel_id,
            moderator_roles=moderator_roles,
            subscriber_roles=subscriber_roles,
        )

    @property
    def channels(self) -> list[int]:
        """The channels whose adapters are running."""
        return list(self._listeners)

    @property
    def user(self) -> Any:
        return self._client.user if self._client is not None else None

    # --- adapters joining and leaving -----------------------------------------------------------

    def _attach(self, channel: DiscordChannel) -> asyncio.Task[None]:
        """Add a running adapter; start the client if it is the first (or the last one ended)."""
        self._listeners.setdefault(channel.channel_id, []).append(channel)
        if self._task is None or self._task.done() or self._client is None:
            self._client = _GatewayClient(self)
            self._task = asyncio.create_task(self._connect(self._client), name="discord-gateway")
        elif self._client.is_ready():
            channel._start_ready(self._client)
        return self._task

    async def _detach(self, channel: DiscordChannel) -> None:
        """Remove an adapter; close the client when none is left."""
        listeners = self._listeners.get(channel.channel_id, [])
        if channel in listeners:
            listeners.remove(channel)
        if not listeners:
            self._listeners.pop(channel.channel_id, None)
            for thread, parent in list(self._threads.items()):
                if parent == channel.channel_id:
                    del self._threads[thread]
        if self._listeners or self._client is None:
            return
        client, task = self._client, self._task
        self._client = self._task = None  # a channel joining from now on starts a new client
        if not client.is_closed():
            await asyncio.shield(client.close())
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=CLOSE_WAIT)
            if not done:
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: whoever needed it has seen it

    async def _connect(self, client: _GatewayClient) -> None:
        """Run the client until it closes; AdapterFatal when retrying cannot help."""
        point_discord_at(self.api_url, self.gateway_url)
        self.clients_started += 1
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

    # --- what the client routes -----------------------------------------------------------------

    def _all(self) -> list[DiscordChannel]:
        return [channel for listeners in self._listeners.values() for channel in listeners]

    def _route_message(self, message: Any) -> None:
        listeners = self._listeners.get(message.channel.id)
        if listeners is None and _in_thread(message):
            parent = message.channel.parent_id
            listeners = self._listeners.get(parent)
            if listeners:
                # a thread of a channel: its messages are the channel's chat too
                if len(self._threads) >= THREADS_LIMIT:
                    self._threads.clear()
                self._threads[message.channel.id] = parent
        for channel in list(listeners or ()):
            channel._forward(message)

    def _route_deletions(self, channel_id: int, message_ids: Iterable[int]) -> None:
        listeners = self._listeners.get(channel_id)
        if listeners is None and channel_id in self._threads:
            listeners = self._listeners.get(self._threads[channel_id])
        if listeners:
            deletions = map_deletions(list(message_ids))
            for channel in list(listeners):
                channel._emit_all(deletions)


class DiscordChannel:
    """One Discord text channel (and its threads), read over a shared :class:`DiscordGateway`."""

    platform = Platform.DISCORD

    def __init__(
        self,
        gateway: DiscordGateway,
        channel_id: int,
        *,
        moderator_roles: Iterable[str] = (),
        subscriber_roles: Iterable[str] = (),
    ) -> None:
        self.gateway = gateway
        self.channel_id = channel_id
        self.target = f"channel:{channel_id}"
        self.status = AdapterStatus()
        self.moderator_roles = tuple(moderator_roles)
        self.subscriber_roles = tuple(subscriber_roles)
        self.last_message_id: int | None = None
        """Newest message seen; after a new session the history after it is read back."""
        self._emit: Emit | None = None
        self._fatal: AdapterFatal | None = None
        self._ended = asyncio.Event()
        self._ready: asyncio.Task[None] | None = None

    async def run(self, emit: Emit) -> None:
        """Read the channel over the gateway until the connection ends (raise) or this channel
        cannot be read (AdapterFatal); the gateway closes when its last channel stops."""
        self._emit = emit
        self._fatal = None
        self._ended = asyncio.Event()
        self.status.state = AdapterState.CONNECTING
        connection = self.gateway._attach(self)
        ended = asyncio.create_task(self._ended.wait())
        try:
            await asyncio.wait({connection, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if self._ready is not None:
                self._ready.cancel()
            self._emit = None
            await self.gateway._detach(self)
        if self._fatal is not None:
            raise self._fatal
        if connection.done() and not connection.cancelled():
            error = connection.exception()
            if isinstance(error, AdapterFatal):
                raise AdapterFatal(str(error)) from error
            if error is not None:
                raise ConnectionError(f"Discord gateway: {error!r}") from error
        self.status.state = AdapterState.DISCONNECTED

    # --- called by the gateway's client ---------------------------------------------------------

    def _start_ready(self, client: Any) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        self._ready = asyncio.create_task(self._on_ready(client), name=f"discord-{self.target}")

    async def _on_ready(self, client: Any) -> None:
        """A session is open: check the bot sees the channel, read back what was missed."""
        channel = client.get_channel(self.channel_id)
        if channel is None:
            guilds = ", ".join(guild.name for guild in client.guilds) or "none"
            self._fatal = AdapterFatal(
                f"the bot {client.user} cannot see channel {self.channel_id} (its servers: "
                f"{guilds}); invite the bot to that server and let it read the channel"
            )
            self._ended.set()
            return
        if self.last_message_id is not None:
            await self._catch_up(channel, self.last_message_id)
        self.status.state = AdapterState.CONNECTED
        self.status.detail = f"#{getattr(channel, 'name', channel)} as {client.user}"
        log.info("discord bot %s reading #%s", client.user, getattr(channel, "name", channel))

    async def _catch_up(self, channel: Any, after_id: int) -> None:
        """Read back what was said after ``after_id`` while no session was open (a RESUME
        replays by itself, a new session does not). Overlap is harmless: the bus drops ids it
        has seen."""
        after = discord.Object(id=after_id)
        try:
            async for message in channel.history(
                limit=self.gateway.catch_up_limit, after=after, oldest_first=True
            ):
                self._forward(message)
        except discord.HTTPException as exc:
            log.warning("discord: could not read back missed messages (%s)", exc)

    def _forward(self, message: Any) -> None:
        if message.channel.id == self.channel_id:
            last = self.last_message_id
            self.last_message_id = message.id if last is None else max(last, message.id)
        bot = self.gateway.user
        if bot is not None and message.author.id == bot.id:
            return  # the bot's own messages (its replies, announcements) are not fans' chat
        item = map_item(
            chat_of(message),
            moderator_roles=self.moderator_roles,
            subscriber_roles=self.subscriber_roles,
        )
        if item is not None:
            self._emit_all([item])

    def _emit_all(self, items: Iterable[IngestItem]) -> None:
        emit = self._emit
        if emit is not None:
            for item in items:
                emit(item)


class DiscordAdapter(DiscordChannel):
    """One Discord text channel on a gateway connection of its own (``vstudio ingest``)."""

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
        gateway = DiscordGateway(
            token=token,
            api_url=api_url,
            gateway_url=gateway_url,
            ready_timeout=ready_timeout,
            catch_up_limit=catch_up_limit,
        )
        super().__init__(
            gateway,
            channel_id,
            moderator_roles=moderator_roles,
            subscriber_roles=subscriber_roles,
        )


class GatewayPool:
    """One :class:`DiscordGateway` per bot token, for a worker reading many channels."""

    def __init__(self, *, api_url: str = DEFAULT_API_URL, gateway_url: str | None = None) -> None:
        self.api_url = api_url
        self.gateway_url = gateway_url
        self.gateways: dict[str, DiscordGateway] = {}

    def adapter(
        self,
        token: str,
        channel_id: int,
        *,
        moderator_roles: Iterable[str] = (),
        subscriber_roles: Iterable[str] = (),
    ) -> DiscordChannel:
        """The adapter of ``channel_id`` on the gateway of ``token`` (made on first use)."""
        gateway = self.gateways.get(token)
        if gateway is None:
            gateway = DiscordGateway(
                token=token, api_url=self.api_url, gateway_url=self.gateway_url
            )
            self.gateways[token] = gateway
        return gateway.adapter(
            channel_id, moderator_roles=moderator_roles, subscriber_roles=subscriber_roles
        )


class _GatewayClient(
    discord.Client if discord is not None else object  # type: ignore[misc]  # dynamic base
):
    """A discord.py client that hands every guild message and deletion to its gateway."""

    def __init__(self, gateway: DiscordGateway) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True
        super().__init__(
            intents=intents, max_messages=None, guild_ready_timeout=gateway.ready_timeout
        )
        self.gateway = gateway

    async def on_ready(self) -> None:
        for channel in self.gateway._all():
            channel._start_ready(self)

    async def on_resumed(self) -> None:
        for channel in self.gateway._all():
            channel.status.state = AdapterState.CONNECTED

    async def on_disconnect(self) -> None:
        for channel in self.gateway._all():
            channel.status.state = AdapterState.RECONNECTING

    async def on_message(self, message: Any) -> None:
        if message.guild is not None:
            self.gateway._route_message(message)

    async def on_raw_message_delete(self, payload: Any) -> None:
        self.gateway._route_deletions(payload.channel_id, [payload.message_id])

    async def on_raw_bulk_message_delete(self, payload: Any) -> None:
        self.gateway._route_deletions(payload.channel_id, payload.message_ids)
