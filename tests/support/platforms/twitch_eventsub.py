"""A local server speaking the parts of Twitch that twitchio's EventSub WebSocket mode uses.

``/id/oauth2/token`` (client credentials) and ``/id/oauth2/validate`` like id.twitch.tv,
``/helix/users`` and ``/helix/eventsub/subscriptions`` like the Helix API, and ``/ws`` like
eventsub.wss.twitch.tv: ``session_welcome``, ``session_keepalive`` every second, and once the
five chat subscriptions of a session are created, the scripted ``notification`` messages.
Message shapes follow Twitch's EventSub reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.support.loopback import serve_app

CHAT_SUBSCRIPTIONS = 5


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def chat_event(
    message_id: str,
    fragments: list[dict[str, Any]],
    *,
    user: str = "viewer32",
    user_id: str = "4145994",
    badges: Sequence[tuple[str, str]] = (),
    bits: int = 0,
    reply_to: tuple[str, str, str] | None = None,
    message_type: str = "text",
    source: tuple[str, str, Sequence[tuple[str, str]]] | None = None,
    reward: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A ``channel.chat.message`` event as Twitch documents it: ``bits`` makes it a cheer,
    ``reply_to`` is (parent id, parent login, parent body), ``source`` is (source channel id,
    source message id, source badges) for shared chat."""
    extra: dict[str, Any] = {}
    if reply_to:
        parent_id, parent_login, body = reply_to
        extra["reply"] = {
            "parent_message_id": parent_id,
            "parent_message_body": body,
            "parent_user_id": "777",
            "parent_user_name": parent_login.title(),
            "parent_user_login": parent_login,
            "thread_message_id": parent_id,
            "thread_user_id": "777",
            "thread_user_name": parent_login.title(),
            "thread_user_login": parent_login,
        }
    if source:
        room, source_id, source_badges = source
        extra |= {
            "source_broadcaster_user_id": room,
            "source_broadcaster_user_login": f"room{room}",
            "source_broadcaster_user_name": f"Room{room}",
            "source_message_id": source_id,
            "source_badges": [{"set_id": s, "id": i, "info": ""} for s, i in source_badges],
            "is_source_only": False,
        }
    return "channel.chat.message", extra | {
        "broadcaster_user_id": "1337",
        "broadcaster_user_login": "dallas",
        "broadcaster_user_name": "Dallas",
        "chatter_user_id": user_id,
        "chatter_user_login": user,
        "chatter_user_name": user.title(),
        "message_id": message_id,
        "message": {"text": "".join(f["text"] for f in fragments), "fragments": fragments},
        "color": "#00FF7F",
        "badges": [{"set_id": s, "id": i, "info": ""} for s, i in badges],
        "message_type": message_type,
        "cheer": {"bits": bits} if bits else None,
        "reply": extra.get("reply"),
        "channel_points_custom_reward_id": reward,
        "channel_points_animation_id": None,
        "source_broadcaster_user_id": extra.get("source_broadcaster_user_id"),
        "source_broadcaster_user_login": extra.get("source_broadcaster_user_login"),
        "source_broadcaster_user_name": extra.get("source_broadcaster_user_name"),
        "source_message_id": extra.get("source_message_id"),
        "source_badges": extra.get("source_badges"),
        "is_source_only": extra.get("is_source_only"),
    }


NOTICE_FIELDS = (
    "sub resub sub_gift community_sub_gift gift_paid_upgrade prime_paid_upgrade raid unraid "
    "pay_it_forward announcement bits_badge_tier charity_donation watch_streak modiversary "
    "shared_chat_sub shared_chat_resub shared_chat_sub_gift shared_chat_community_sub_gift "
    "shared_chat_gift_paid_upgrade shared_chat_prime_paid_upgrade shared_chat_raid "
    "shared_chat_pay_it_forward shared_chat_announcement shared_chat_modiversary"
).split()


def notification_event(
    message_id: str,
    notice_type: str,
    detail: dict[str, Any] | None,
    *,
    user: str = "viewer32",
    text: str = "",
    anonymous: bool = False,
    source: tuple[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """A ``channel.chat.notification`` event as Twitch's EventSub reference shows it: every
    notice object is present and null except the one ``notice_type`` names. ``source`` is
    (source channel id, source message id) for a notice of a shared chat session."""
    event: dict[str, Any] = {
        **_room(),
        "chatter_user_id": "4145994",
        "chatter_user_login": user,
        "chatter_user_name": user.title(),
        "chatter_is_anonymous": anonymous,
        "color": "#00FF7F",
        "badges": [],
        "system_message": f"{user} did {notice_type}",
        "message_id": message_id,
        "message": {"text": text, "fragments": [text_fragment(text)] if text else []},
        "notice_type": notice_type,
        "source_broadcaster_user_id": None,
        "source_broadcaster_user_login": None,
        "source_broadcaster_user_name": None,
        "source_message_id": None,
        "source_badges": None,
        "is_source_only": None,
    }
    if source:
        room, source_id = source
        event |= {
            "source_broadcaster_user_id": room,
            "source_broadcaster_user_login": f"room{room}",
            "source_broadcaster_user_name": f"Room{room}",
            "source_message_id": source_id,
            "source_badges": [],
            "is_source_only": False,
        }
    event |= {name: None for name in NOTICE_FIELDS}
    if notice_type in NOTICE_FIELDS:
        event[notice_type] = detail
    return "channel.chat.notification", event


def text_fragment(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value, "cheermote": None, "emote": None, "mention": None}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value, "cheermote": None, "emote": None, "mention": None}


def emote(name: str, emote_id: str) -> dict[str, Any]:
    return {
        "type": "emote",
        "text": name,
        "cheermote": None,
        "emote": {"id": emote_id, "emote_set_id": "0", "owner_id": "0", "format": ["static"]},
        "mention": None,
    }


def delete_event(message_id: str, user: str = "viewer32") -> tuple[str, dict[str, Any]]:
    return "channel.chat.message_delete", {
        **_room(),
        "target_user_id": "4145994",
        "target_user_login": user,
        "target_user_name": user.title(),
        "message_id": message_id,
    }


def clear_user_event(user: str) -> tuple[str, dict[str, Any]]:
    return "channel.chat.clear_user_messages", {
        **_room(),
        "target_user_id": "4145994",
        "target_user_login": user,
        "target_user_name": user.title(),
    }


def clear_event() -> tuple[str, dict[str, Any]]:
    return "channel.chat.clear", _room()


def _room() -> dict[str, str]:
    return {
        "broadcaster_user_id": "1337",
        "broadcaster_user_login": "dallas",
        "broadcaster_user_name": "Dallas",
    }


@dataclass
class EventSubServer:
    client_id: str = "app-client-id"
    client_secret: str = "app-secret"
    user_tokens: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"user-token": ("999", "mybot")}
    )
    channels: dict[str, str] = field(default_factory=lambda: {"dallas": "1337"})
    script: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    base: str = ""
    _served: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def api_url(self) -> str:
        return f"{self.base}/helix/"

    @property
    def auth_url(self) -> str:
        return f"{self.base}/id/"

    @property
    def eventsub_url(self) -> str:
        return f"{self.base.replace('http', 'ws', 1)}/ws"

    async def __aenter__(self) -> EventSubServer:
        app = web.Application()
        app.router.add_post("/id/oauth2/token", self._token)
        app.router.add_get("/id/oauth2/validate", self._validate)
        app.router.add_get("/helix/users", self._users)
        app.router.add_post("/helix/eventsub/subscriptions", self._subscribe)
        app.router.add_get("/ws", self._socket)
        self.base = await self._served.enter_async_context(serve_app(app))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for ws in list(self.sessions.values()):
            await ws.close()
        await self._served.aclose()

    async def _token(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != self.client_id or (
            query.get("client_secret") != self.client_secret
        ):
            return web.json_response(
                {"status": 403, "message": "invalid client secret"}, status=403
            )
        if query.get("grant_type") == "refresh_token":
            return web.json_response(
                {"status": 400, "message": "Invalid refresh token"}, status=400
            )
        return web.json_response(
            {"access_token": "app-token", "expires_in": 5_011_271, "token_type": "bearer"}
        )

    async def _validate(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("OAuth ").removeprefix("Bearer ")  # Twitch takes both
        if token == "app-token":
            return web.json_response(
                {"client_id": self.client_id, "scopes": [], "expires_in": 5_000_000}
            )
        if token in self.user_tokens:
            user_id, login = self.user_tokens[token]
            return web.json_response(
                {
                    "client_id": self.client_id,
                    "login": login,
                    "scopes": ["user:read:chat", "user:bot"],
                    "user_id": user_id,
                    "expires_in": 14_000,
                }
            )
        return web.json_response({"status": 401, "message": "invalid access token"}, status=401)

    async def _users(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response(
                {"status": 401, "message": "OAuth token is missing"}, status=401
            )
        data = [
            {
                "id": self.channels[login],
                "login": login,
                "display_name": login.title(),
                "type": "",
                "broadcaster_type": "partner",
                "description": "",
                "profile_image_url": "",
                "offline_image_url": "",
                "view_count": 0,
                "created_at": "2016-12-14T20:32:28Z",
            }
            for login in request.query.getall("login", [])
            if login in self.channels
        ]
        return web.json_response({"data": data})

    async def _subscribe(self, request: web.Request) -> web.Response:
        body = await request.json()
        session_id = body["transport"]["session_id"]
        if session_id not in self.sessions:
            return web.json_response(
                {"status": 400, "message": "websocket transport session does not exist"},
                status=400,
            )
        subscription = {
            "id": str(uuid.uuid4()),
            "status": "enabled",
            "type": body["type"],
            "version": body["version"],
            "condition": body["condition"],
            "created_at": _now(),
            "transport": {"method": "websocket", "session_id": session_id, "connected_at": _now()},
            "cost": 0,
        }
        self.subscriptions.append(subscription)
        mine = [s for s in self.subscriptions if s["transport"]["session_id"] == session_id]
        if len(mine) == CHAT_SUBSCRIPTIONS:
            task = asyncio.create_task(self._play(session_id))
            self._tasks.add(task)
        return web.json_response(
            {"data": [subscription], "total": len(mine), "total_cost": 0, "max_total_cost": 10},
            status=202,
        )

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session_id = f"AgoQ{uuid.uuid4().hex}"
        self.sessions[session_id] = ws
        keepalive = int(request.query.get("keepalive_timeout_seconds", "10"))
        await ws.send_json(
            {
                "metadata": {
                    "message_id": str(uuid.uuid4()),
                    "message_type": "session_welcome",
                    "message_timestamp": _now(),
                },
                "payload": {
                    "session": {
                        "id": session_id,
                        "status": "connected",
                        "connected_at": _now(),
                        "keepalive_timeout_seconds": keepalive,
                        "reconnect_url": None,
                        "recovery_url": None,
                    }
                },
            }
        )
        beat = asyncio.create_task(self._keepalive(ws))
        try:
            async for _ in ws:
                pass
        finally:
            beat.cancel()
            self.sessions.pop(session_id, None)
        return ws

    async def _keepalive(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(1)
            await ws.send_json(
                {
                    "metadata": {
                        "message_id": str(uuid.uuid4()),
                        "message_type": "session_keepalive",
                        "message_timestamp": _now(),
                    },
                    "payload": {},
                }
            )

    async def _play(self, session_id: str) -> None:
        ws = self.sessions[session_id]
        by_type = {
            s["type"]: s for s in self.subscriptions if s["transport"]["session_id"] == session_id
        }
        for sub_type, event in self.script:
            subscription = by_type[sub_type]
            await ws.send_json(
                {
                    "metadata": {
                        "message_id": str(uuid.uuid4()),
                        "message_type": "notification",
                        "message_timestamp": _now(),
                        "subscription_type": sub_type,
                        "subscription_version": subscription["version"],
                    },
                    "payload": {"subscription": subscription, "event": event},
                }
            )
