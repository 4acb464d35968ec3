"""A local TikTok LIVE: the live page, the webcast API, a sign server and a push server.

Everything TikTokLive 7 talks to when it connects, answering with TikTok's own shapes:

- ``GET /@{user}/live``: the page with its ``SIGI_STATE`` JSON (room id and live status);
- ``GET /api-live/user/room/``: the room API it falls back to (``user_not_found``);
- ``GET /webcast/room/check_alive/``: ``{"data": [{"alive": ...}]}``;
- ``GET /sign/webcast/fetch``: the sign server's answer, a protobuf ``ProtoMessageFetchResult``
  (cursor, ``push_server`` pointing at this server, ``route_params``, ``is_first``) with the
  ``X-Set-TT-Cookie`` header;
- ``/webcast/im/push/v2/``: the push WebSocket (subprotocol ``echo-protocol``, a
  ``Handshake-Options`` header with the ping interval), sending ``WebcastPushFrame``s of type
  ``msg`` whose payload is a gzip'd ``ProtoMessageFetchResult``, and reading the client's
  ``im_enter_room``, ``hb`` and ``ack`` frames.

Every frame is built with TikTokLive's own protobuf classes (``TikTokLive.proto``).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from TikTokLive.proto import (
    BadgeStruct,
    CommonMessageData,
    Gift,
    HeartBeatMessage,
    ImageModel,
    PrivilegeLogExtra,
    ProtoMessageFetchResult,
    ProtoMessageFetchResultBaseProtoMessage,
    PushHeader,
    Question,
    User,
    UserAttr,
    UserIdentity,
    WebcastChatMessage,
    WebcastControlMessage,
    WebcastEmoteChatMessage,
    WebcastGiftMessage,
    WebcastImDeleteMessage,
    WebcastImEnterRoomMessage,
    WebcastLikeMessage,
    WebcastPushFrame,
    WebcastQuestionNewMessage,
    WebcastRoomUserSeqMessage,
    WebcastSocialMessage,
    WebcastSubNotifyMessage,
)
from TikTokLiveProto.v3.webcast.model.base.emoji import EmoteModel
from TikTokLiveProto.v3.webcast.model.message.common import Text

from tests.support.loopback import serve_app

__all__ = ["ClientFrame", "FakeTikTok", "badge", "common", "tiktok_user"]

ROOM_ID = 7_300_000_000_000_000_001
CREATED_MS = 1_767_323_045_678


def common(msg_id: int, method: str, display_key: str = "") -> CommonMessageData:
    return CommonMessageData(
        method=method,
        msg_id=msg_id,
        room_id=ROOM_ID,
        create_time=CREATED_MS,
        display_text=Text(key=display_key) if display_key else None,
    )


def badge(scene: int, level: str = "") -> BadgeStruct:
    """A badge as TikTok sends it: the scene type and the privilege's level."""
    return BadgeStruct(
        scene_type=scene,
        display=True,
        privilege_log_extra=PrivilegeLogExtra(level=level, privilege_id="p"),
    )


def tiktok_user(
    user_id: int = 6_900_000_000_000_000_001,
    handle: str = "fan_one",
    nickname: str = "Fan One",
    badges: list[BadgeStruct] | None = None,
    admin: bool = False,
) -> User:
    return User(
        id=user_id,
        display_id=handle,
        nickname=nickname,
        badge_list=badges or [],
        user_attr=UserAttr(is_admin=admin) if admin else None,
    )


@dataclass
class ClientFrame:
    """A frame the client sent on the push socket."""

    payload_type: str
    log_id: int
    payload: bytes
    parsed: Any = None


@dataclass
class FakeTikTok:
    """One user's LIVE room; ``live=False`` makes the page say the user is offline."""

    user: str = "artist"
    live: bool = True
    ping_interval: float = 0.2
    initial: list[tuple[str, Any]] = field(default_factory=list)
    url: str = ""
    sign_url: str = ""
    webcast_url: str = ""
    sign_requests: list[dict[str, str]] = field(default_factory=list)
    sign_times: list[float] = field(default_factory=list)
    """When each sign request arrived (``time.monotonic``)."""
    client_frames: list[ClientFrame] = field(default_factory=list)
    push_queries: list[dict[str, str]] = field(default_factory=list)
    sockets: list[tuple[web.WebSocketResponse, bool]] = field(default_factory=list)
    _log_id: int = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeTikTok]:
        app = web.Application()
        app.router.add_get("/@{user}/live", self._live_page)
        app.router.add_get("/api-live/user/room/", self._user_room)
        app.router.add_get("/webcast/room/check_alive/", self._check_alive)
        app.router.add_get("/sign/webcast/fetch", self._sign_fetch)
        app.router.add_get("/webcast/im/push/v2/", self._push)
        async with serve_app(app) as base:
            self.url = base
            self.sign_url = f"{base}/sign"
            self.webcast_url = f"{base}/webcast"
            try:
                yield self
            finally:
                for ws, _ in self.sockets:
                    await ws.close()

    # --- HTTP -----------------------------------------------------------------------------

    async def _live_page(self, request: web.Request) -> web.Response:
        user = request.match_info["user"].removeprefix("@")
        state: dict[str, Any] = {}
        if user == self.user:
            state["LiveRoom"] = {
                "liveRoomUserInfo": {
                    "user": {
                        "roomId": str(ROOM_ID),
                        "uniqueId": user,
                        "status": 2 if self.live else 4,
                    }
                }
            }
        html = (
            "<html><head></head><body>"
            f'<script id="SIGI_STATE" type="application/json">{json.dumps(state)}</script>'
            "</body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    async def _user_room(self, request: web.Request) -> web.Response:
        """The API TikTokLive falls back to when the page has no room id."""
        if request.query.get("uniqueId") != self.user:
            return web.json_response(
                {"message": "user_not_found", "statusCode": 19881007, "data": {}}
            )
        status = 2 if self.live else 4
        return web.json_response(
            {
                "message": "",
                "statusCode": 0,
                "data": {
                    "user": {"roomId": str(ROOM_ID), "uniqueId": self.user, "status": status},
                    "liveRoom": {"status": status},
                },
            }
        )

    async def _check_alive(self, request: web.Request) -> web.Response:
        ids = request.query.get("room_ids", "").split(",")
        data = [{"alive": self.live and i == str(ROOM_ID), "room_id": int(i)} for i in ids if i]
        return web.json_response({"data": data, "status_code": 0})

    async def _sign_fetch(self, request: web.Request) -> web.Response:
        self.sign_requests.append(dict(request.query))
        self.sign_times.append(time.monotonic())
        if request.query.get("room_id") != str(ROOM_ID):
            return web.json_response({"code": 400, "message": "unknown room"}, status=400)
        ws_base = self.url.replace("http://", "ws://")
        result = ProtoMessageFetchResult(
            messages=[self._wrap(method, message) for method, message in self.initial],
            cursor="cursor-0",
            fetch_interval=1000,
            now=CREATED_MS,
            internal_ext="internal-0",
            route_params={"imprp": "fake", "wrss": "wrss-token"},
            heartbeat_duration=10_000,
            need_ack=False,
            push_server=f"{ws_base}/webcast/im/push/v2/",
            is_first=True,
        )
        return web.Response(
            body=bytes(result),
            content_type="application/protobuf",
            headers={"X-Set-TT-Cookie": "ttwid=fake-ttwid; tt-target-idc=useast1a"},
        )

    # --- push WebSocket -------------------------------------------------------------------

    async def _push(self, request: web.Request) -> web.WebSocketResponse:
        self.push_queries.append(dict(request.query))
        ws = web.WebSocketResponse(protocols=("echo-protocol",))
        ws.headers["Handshake-Options"] = f"ping-interval={self.ping_interval}; ping-timeout=60"
        await ws.prepare(request)
        self.sockets.append((ws, request.query.get("compress") == "gzip"))
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                continue
            frame = WebcastPushFrame().parse(message.data)
            parsed: Any = None
            if frame.payload_type == "im_enter_room":
                parsed = WebcastImEnterRoomMessage().parse(frame.payload)
            elif frame.payload_type == "hb":
                parsed = HeartBeatMessage().parse(frame.payload)
            self.client_frames.append(
                ClientFrame(frame.payload_type, frame.log_id, frame.payload, parsed)
            )
        return ws

    @staticmethod
    def _wrap(method: str, message: Any) -> ProtoMessageFetchResultBaseProtoMessage:
        return ProtoMessageFetchResultBaseProtoMessage(
            method=method, payload=bytes(message), msg_id=message.common.msg_id
        )

    async def push(self, *messages: tuple[str, Any]) -> int:
        """Send one ``msg`` frame carrying ``messages``; its log id (what the ack names)."""
        ws, compress = self.sockets[-1]
        self._log_id += 1
        result = ProtoMessageFetchResult(
            messages=[self._wrap(method, message) for method, message in messages],
            cursor=f"cursor-{self._log_id}",
            internal_ext=f"internal-{self._log_id}",
            need_ack=True,
        )
        payload = bytes(result)
        headers = [PushHeader(key="im-cursor", value=f"cursor-{self._log_id}")]
        if compress:
            payload = gzip.compress(payload)
            headers.append(PushHeader(key="compress_type", value="gzip"))
        frame = WebcastPushFrame(
            seq_id=self._log_id,
            log_id=self._log_id,
            payload_encoding="pb",
            payload_type="msg",
            headers=headers,
            payload=payload,
        )
        await ws.send_bytes(bytes(frame))
        return self._log_id

    async def drop(self) -> None:
        ws, _ = self.sockets[-1]
        await ws.close(code=1011, message=b"server going away")

    def frames(self, payload_type: str) -> list[ClientFrame]:
        return [f for f in self.client_frames if f.payload_type == payload_type]

    # --- messages -------------------------------------------------------------------------

    @staticmethod
    def comment(
        msg_id: int, text: str, user: User | None = None, **identity: bool
    ) -> tuple[str, Any]:
        return "WebcastChatMessage", WebcastChatMessage(
            common=common(msg_id, "WebcastChatMessage"),
            user=user or tiktok_user(),
            content=text,
            user_identity=UserIdentity(**identity) if identity else None,
        )

    @staticmethod
    def emote_chat(msg_id: int, emote_ids: list[str], user: User | None = None) -> tuple[str, Any]:
        """A subscriber-emote-only chat line: each emote an id and an image, no name."""
        emotes = [
            EmoteModel(emote_id=emote, image=ImageModel(url_list=[f"https://p16.tiktok/{emote}"]))
            for emote in emote_ids
        ]
        return "WebcastEmoteChatMessage", WebcastEmoteChatMessage(
            common=common(msg_id, "WebcastEmoteChatMessage"),
            user=user or tiktok_user(),
            emote_list=emotes,
        )

    @staticmethod
    def question(msg_id: int, question_id: int, text: str) -> tuple[str, Any]:
        return "WebcastQuestionNewMessage", WebcastQuestionNewMessage(
            common=common(msg_id, "WebcastQuestionNewMessage"),
            data=Question(question_id=question_id, content=text, user=tiktok_user()),
        )

    @staticmethod
    def viewers(msg_id: int, total: int) -> tuple[str, Any]:
        return "WebcastRoomUserSeqMessage", WebcastRoomUserSeqMessage(
            common=common(msg_id, "WebcastRoomUserSeqMessage"), total=total
        )

    @staticmethod
    def like(msg_id: int, count: int, total: int, user: User | None = None) -> tuple[str, Any]:
        return "WebcastLikeMessage", WebcastLikeMessage(
            common=common(msg_id, "WebcastLikeMessage"),
            user=user or tiktok_user(),
            count=count,
            total=total,
        )

    @staticmethod
    def gift(
        msg_id: int,
        name: str,
        repeat: int,
        end: bool,
        streakable: bool = True,
        user: User | None = None,
    ) -> tuple[str, Any]:
        return "WebcastGiftMessage", WebcastGiftMessage(
            common=common(msg_id, "WebcastGiftMessage"),
            user=user or tiktok_user(),
            gift_id=5655,
            repeat_count=repeat,
            repeat_end=1 if end else 0,
            gift=Gift(id=5655, name=name, type=1 if streakable else 2, diamond_count=1),
        )

    @staticmethod
    def social(msg_id: int, key: str, user: User | None = None, **fields: int) -> tuple[str, Any]:
        return "WebcastSocialMessage", WebcastSocialMessage(
            common=common(msg_id, "WebcastSocialMessage", key),
            user=user or tiktok_user(),
            **fields,
        )

    @staticmethod
    def subscribe(msg_id: int, months: int, user: User | None = None) -> tuple[str, Any]:
        return "WebcastSubNotifyMessage", WebcastSubNotifyMessage(
            common=common(msg_id, "WebcastSubNotifyMessage"),
            user=user or tiktok_user(),
            sub_month=months,
        )

    @staticmethod
    def delete(msg_id: int, messages: list[int], users: list[int] | None = None) -> tuple[str, Any]:
        return "WebcastImDeleteMessage", WebcastImDeleteMessage(
            common=common(msg_id, "WebcastImDeleteMessage"),
            delete_msg_ids=messages,
            delete_user_ids=users or [],
        )

    @staticmethod
    def control(msg_id: int, action: int) -> tuple[str, Any]:
        return "WebcastControlMessage", WebcastControlMessage(
            common=common(msg_id, "WebcastControlMessage"), action=action
        )
