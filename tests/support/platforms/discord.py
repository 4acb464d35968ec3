"""A local Discord: the REST calls a bot makes at login and a gateway that speaks v10.

REST (``/api/v10``): ``GET /users/@me``, ``GET /oauth2/applications/@me``,
``GET /gateway/bot`` and a channel's history ``GET /channels/{id}/messages?after=``, answering
401 to a wrong ``Authorization: Bot <token>``.

Gateway (``/gateway``, JSON encoding, the ``compress=zlib-stream`` or ``zstd-stream``
transport compression discord.py asks for, flushed at the end of each message): HELLO (op 10)
with a heartbeat interval, IDENTIFY (op 2) checked for the token (close 4004) and the
message-content intent (close 4014 when the bot is not allowed it), heartbeats (op 1)
acknowledged (op 11), READY and GUILD_CREATE dispatches, RESUME (op 6) answered with RESUMED.
Tests push MESSAGE_CREATE, MESSAGE_DELETE and MESSAGE_DELETE_BULK with
:meth:`FakeDiscord.dispatch`, drop connections (the client resumes) or invalidate the session
(the client identifies anew), and add to ``history`` what was said meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.support.loopback import serve_app

__all__ = ["BACKSTAGE_CHANNEL_ID", "FakeDiscord", "GatewayConnection", "snowflake"]

MESSAGE_CONTENT_INTENT = 1 << 15
GUILD_ID = "100000000000000001"
CHANNEL_ID = "200000000000000002"
OTHER_CHANNEL_ID = "200000000000000003"
BACKSTAGE_CHANNEL_ID = "200000000000000004"
"""A third text channel, for gateways that serve several channels at once."""
BOT_ID = "300000000000000003"
OWNER_ID = "400000000000000004"
MOD_ROLE_ID = "500000000000000005"
VIP_ROLE_ID = "500000000000000006"
THREAD_ID = "200000000000000009"
"""A public thread of the live-chat channel, known to the guild from READY."""
MANAGE_MESSAGES = 1 << 13
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
READ_HISTORY = 1 << 16


def discord_json(body: Any, status: int = 200) -> web.Response:
    """JSON the way Discord sends it: discord.py parses only ``application/json`` exactly."""
    return web.Response(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json"}
    )


DISCORD_EPOCH_MS = 1_420_070_400_000


def snowflake(ms: int, increment: int = 0) -> str:
    """A real snowflake id: the creation time lives in its top bits (discord.py reads it)."""
    return str(((ms - DISCORD_EPOCH_MS) << 22) | (increment & 0xFFF))


def snowflake_time(ms: int) -> str:
    """An ISO time as Discord writes it."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def zstd_stream() -> Any:
    """A zstd compressor flushed per message, from the module discord.py would decode with."""
    try:
        import zstandard

        compressor = zstandard.ZstdCompressor().compressobj()
        return lambda data: (
            compressor.compress(data) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        )
    except ImportError:
        zstd = importlib.import_module("compression.zstd")  # the standard library from 3.14

        compressor = zstd.ZstdCompressor()
        return lambda data: compressor.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)


def zlib_stream() -> Any:
    """One zlib stream for the connection, each message ending in a ``Z_SYNC_FLUSH``."""
    compressor = zlib.compressobj()
    return lambda data: compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@dataclass
class GatewayConnection:
    """One client's gateway socket and the transport compression it asked for."""

    ws: web.WebSocketResponse
    compression: str
    sequence: int = 0
    identify: dict[str, Any] | None = None
    heartbeats: int = 0

    def __post_init__(self) -> None:
        streams = {"zlib-stream": zlib_stream, "zstd-stream": zstd_stream}
        self._compress = streams[self.compression]() if self.compression in streams else None

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload)
        if self._compress is not None:
            await self.ws.send_bytes(self._compress(data.encode()))
        else:
            await self.ws.send_str(data)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.sequence += 1
        await self.send({"op": 0, "t": event, "s": self.sequence, "d": data})


@dataclass
class FakeDiscord:
    """A guild with one text channel that the bot can read, and users that write in it."""

    token: str = "BOT.TOKEN"
    allow_message_content: bool = True
    heartbeat_interval_ms: int = 300
    url: str = ""
    api_url: str = ""
    gateway_url: str = ""
    connections: list[GatewayConnection] = field(default_factory=list)
    rest_calls: list[str] = field(default_factory=list)
    resumes: int = 0
    identifies: int = 0
    """IDENTIFY payloads received: one per gateway session a client opened."""
    history: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeDiscord]:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_get("/api/v10/gateway/bot", self._gateway_bot)
        app.router.add_get("/api/v10/channels/{channel_id}/messages", self._history)
        app.router.add_get("/gateway", self._gateway)
        async with serve_app(app) as base:
            self.url = base
            self.api_url = f"{base}/api/v10"
            self.gateway_url = f"{base.replace('http://', 'ws://', 1)}/gateway"
            try:
                yield self
            finally:
                for connection in self.connections:
                    await connection.ws.close()

    # --- REST -----------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        self.rest_calls.append(f"{request.method} {request.path}")
        return request.headers.get("Authorization") == f"Bot {self.token}"

    @staticmethod
    def _unauthorized() -> web.Response:
        return discord_json({"message": "401: Unauthorized", "code": 0}, status=401)

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "username": "vstudio-bot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
        }

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return discord_json(self.bot_user())

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        owner = {"id": OWNER_ID, "username": "artist", "discriminator": "0", "avatar": None}
        return discord_json(
            {
                "id": BOT_ID,
                "name": "vstudio-bot",
                "icon": None,
                "description": "",
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": owner,
                "verify_key": "00" * 32,
                "team": None,
                "flags": 1 << 18 if self.allow_message_content else 0,
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return discord_json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _history(self, request: web.Request) -> web.Response:
        """``GET /channels/{id}/messages?after=&limit=``: the oldest ``limit`` messages after
        the id, newest first, as Discord answers."""
        if not self._authorized(request):
            return self._unauthorized()
        channel_id = request.match_info["channel_id"]
        after = int(request.query.get("after", "0"))
        limit = min(int(request.query.get("limit", "50")), 100)
        found = sorted(
            (m for m in self.history if m["channel_id"] == channel_id and int(m["id"]) > after),
            key=lambda m: int(m["id"]),
        )[:limit]
        page = [{key: value for key, value in m.items() if key != "member"} for m in found]
        return discord_json(page[::-1])

    # --- gateway --------------------------------------------------------------------------

    def guild(self) -> dict[str, Any]:
        everyone = {
            "id": GUILD_ID,
            "name": "@everyone",
            "permissions": str(VIEW_CHANNEL | SEND_MESSAGES | READ_HISTORY),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        moderators = {
            **everyone,
            "id": MOD_ROLE_ID,
            "name": "Mods",
            "position": 2,
            "permissions": str(MANAGE_MESSAGES | VIEW_CHANNEL | SEND_MESSAGES),
        }
        vips = {**everyone, "id": VIP_ROLE_ID, "name": "VIP", "position": 1}
        channel = {
            "id": CHANNEL_ID,
            "type": 0,
            "guild_id": GUILD_ID,
            "name": "live-chat",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }
        other = {**channel, "id": OTHER_CHANNEL_ID, "name": "general", "position": 1}
        backstage = {**channel, "id": BACKSTAGE_CHANNEL_ID, "name": "backstage", "position": 2}
        thread = {
            "id": THREAD_ID,
            "type": 11,
            "guild_id": GUILD_ID,
            "parent_id": CHANNEL_ID,
            "owner_id": OWNER_ID,
            "name": "setlist-requests",
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": snowflake_time(1_700_000_000_000),
                "locked": False,
            },
        }
        bot_member = {
            "user": self.bot_user(),
            "roles": [],
            "joined_at": snowflake_time(1_700_000_000_000),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }
        return {
            "id": GUILD_ID,
            "name": "Artist Fans",
            "icon": None,
            "owner_id": OWNER_ID,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [everyone, moderators, vips],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_flags": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "large": False,
            "unavailable": False,
            "member_count": 4,
            "joined_at": snowflake_time(1_700_000_000_000),
            "voice_states": [],
            "members": [bot_member],
            "channels": [channel, other, backstage],
            "threads": [thread],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"only json encoding here")
            return ws
        connection = GatewayConnection(ws, request.query.get("compress", ""))
        self.connections.append(connection)
        await connection.send(
            {
                "op": 10,
                "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                "s": None,
                "t": None,
            }
        )
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                break
            payload = json.loads(message.data)
            await self._client_op(connection, payload)
        return ws

    async def _client_op(self, connection: GatewayConnection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data: Any = payload.get("d")  # an object, a sequence number or null, by op
        if op == 1:
            connection.heartbeats += 1
            await connection.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            self.identifies += 1
            connection.identify = data
            if data.get("token") != self.token:
                await connection.ws.close(code=4004, message=b"Authentication failed.")
                return
            intents = int(data.get("intents") or 0)
            if intents & MESSAGE_CONTENT_INTENT and not self.allow_message_content:
                await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
                return
            await connection.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": self.bot_user(),
                    "guilds": [{"id": GUILD_ID, "unavailable": True}],
                    "session_id": f"session-{len(self.connections)}",
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": BOT_ID, "flags": 0},
                    "shard": [0, 1],
                },
            )
            await connection.dispatch("GUILD_CREATE", self.guild())
            self.ready.set()
        elif op == 6:
            self.resumes += 1
            connection.identify = data
            connection.sequence = int(data.get("seq") or 0)
            await connection.dispatch("RESUMED", {})
            self.ready.set()

    # --- what tests do ---------------------------------------------------------------------

    @property
    def live(self) -> GatewayConnection:
        """The newest connection that identified or resumed."""
        for connection in reversed(self.connections):
            if connection.identify is not None and not connection.ws.closed:
                return connection
        raise AssertionError("no client is connected to the fake gateway")

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        if event == "MESSAGE_CREATE":
            self.history.append(data)
        await self.live.dispatch(event, data)

    async def invalidate_session(self) -> None:
        """INVALID_SESSION (op 9, not resumable): the client must IDENTIFY anew."""
        self.ready.clear()
        await self.live.send({"op": 9, "d": False, "s": None, "t": None})

    async def drop(self, code: int = 4000) -> None:
        """Close the live connection the way Discord does when it wants a resume."""
        self.ready.clear()
        await self.live.ws.close(code=code, message=b"Unknown error")

    def member(
        self, user_id: str, name: str, roles: list[str], premium: bool = False
    ) -> dict[str, Any]:
        return {
            "roles": roles,
            "joined_at": snowflake_time(1_700_000_000_000),
            "premium_since": snowflake_time(1_700_000_000_000) if premium else None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
        }

    def message(
        self,
        message_id: str,
        content: str,
        *,
        user_id: str = "600000000000000006",
        username: str = "fan",
        global_name: str | None = "Fan",
        roles: list[str] | None = None,
        premium: bool = False,
        channel_id: str = CHANNEL_ID,
        timestamp_ms: int = 1_767_323_045_678,
        attachments: list[str] | None = None,
        type_: int = 0,
        stickers: list[str] | None = None,
        mentions: list[dict[str, Any]] | None = None,
        mention_roles: list[str] | None = None,
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        """A MESSAGE_CREATE payload of a guild message (``type_`` 0 is a plain message; 7 a
        member joining, 8 a boost, 6 a pin, 19 a reply; ``stickers`` their names)."""
        extra: dict[str, Any] = {}
        if stickers:
            extra["sticker_items"] = [
                {"id": str(800 + i), "name": name, "format_type": 1}
                for i, name in enumerate(stickers)
            ]
        if reply_to:
            extra["message_reference"] = {
                "message_id": reply_to,
                "channel_id": channel_id,
                "guild_id": GUILD_ID,
            }
        return extra | {
            "id": message_id,
            "type": type_,
            "channel_id": channel_id,
            "guild_id": GUILD_ID,
            "author": {
                "id": user_id,
                "username": username,
                "discriminator": "0",
                "global_name": global_name,
                "avatar": None,
            },
            "member": self.member(user_id, username, roles or [], premium),
            "content": content,
            "timestamp": snowflake_time(timestamp_ms),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions or [],
            "mention_roles": mention_roles or [],
            "attachments": [
                {
                    "id": str(900 + i),
                    "filename": name,
                    "size": 10,
                    "url": f"https://x/{name}",
                    "proxy_url": f"https://x/{name}",
                }
                for i, name in enumerate(attachments or [])
            ],
            "embeds": [],
            "pinned": False,
            "flags": 0,
        }
