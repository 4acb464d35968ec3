"""Gated content: gated polls reach token holders and staff only, on every process and
transport; holders-only chat; the holder badge. Real servers, the local JSON-RPC node."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from broker.models import ErrorCode
from tests.support.ethrpc import EthNode
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory
from tests.support.wallet import Wallet
from tests.support.websocket import receive_type
from tests.test_server_sse import SseReader, sse

MARKER = "Public question after the gated one?"


@pytest.fixture
async def node() -> AsyncIterator[EthNode]:
    async with EthNode(chain_id=1) as running:
        yield running


class Tape:
    """A WebSocket whose every frame is kept, whatever the test waited for."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def until(self, kind: str, question: str | None = None) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                frame = await self.ws.receive_json()
                self.frames.append(frame)
                if frame["type"] == kind and (
                    question is None or frame["payload"].get("question") == question
                ):
                    return frame


async def ws_until_marker(ws: aiohttp.ClientWebSocketResponse | Tape) -> list[dict[str, Any]]:
    """Every frame up to the public marker poll's ``poll.create``."""
    tape = ws if isinstance(ws, Tape) else Tape(ws)
    await tape.until("poll.create", MARKER)
    return tape.frames


async def sse_until_marker(reader: SseReader) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        event = await reader.next(10)
        events.append({"type": event.get("event"), "payload": event["data"]})
        if event.get("event") == "poll.create" and event["data"]["question"] == MARKER:
            return events


def mentions(frames: list[dict[str, Any]], poll_id: str) -> list[str]:
    """The types of frames that carry anything about ``poll_id`` (a refusal of the client's own
    vote names it too, and is no frame of the poll)."""
    return [
        frame["type"]
        for frame in frames
        if poll_id in str(frame["payload"]) and frame["type"] != "error"
    ]


@pytest.mark.slow
async def test_gated_poll_frames_never_reach_a_viewer_on_either_process(
    server_factory: ServerFactory, node: EthNode
) -> None:
    env = {"VSTUDIO_ETH_RPC_URL": node.url, "VSTUDIO_POLL_RESULTS_PER_SECOND": "20"}
    first, second = server_factory(**env), server_factory(**env)
    nft = "0x" + secrets.token_hex(20)
    session = await first.live_session(requiredTokens={"contractAddress": nft, "minBalance": 1})
    sid, artist = session["id"], first.token(session["artistId"], "artist")
    holder_token, holder = first.token("gate-holder"), Wallet.new()
    await holder.link(first, holder_token)
    node.erc721(nft, balances={holder.address: 1})
    viewer_token = first.token("gate-viewer")
    ticket = await first.ticket(holder_token, sid, "token_holder")
    viewer_ticket = await first.ticket(viewer_token, sid)
    viewer_ticket_2 = await second.ticket(viewer_token, sid)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{first.ws_url}?ticket={ticket}") as holder_ws,
        http.ws_connect(f"{first.ws_url}?ticket={viewer_ticket}") as viewer_ws_1,
        http.ws_connect(f"{second.ws_url}?ticket={viewer_ticket_2}") as viewer_ws_2,
        sse(second, sid, f"?token={viewer_token}") as viewer_sse,
        sse(second, sid, f"?token={holder_token}") as holder_sse,  # bearer: the gate decides
    ):
        holder_tape, tape_1, tape_2 = Tape(holder_ws), Tape(viewer_ws_1), Tape(viewer_ws_2)
        for tape in (holder_tape, tape_1, tape_2):
            await tape.until("session.state")
        for reader in (viewer_sse, holder_sse):
            await reader.next_of("session.state")

        base = f"/v1/vstudio/sessions/{sid}"
        status, poll = await first.call(
            "POST",
            base + "/polls",
            token=artist,
            json={"question": "Holders: encore?", "options": ["yes", "no"], "gated": True},
        )
        assert status == 200 and poll["gated"] is True, poll
        gated_id = poll["id"]

        late_viewer = await second.ticket(viewer_token, sid)  # joins while the poll is active
        async with http.ws_connect(f"{second.ws_url}?ticket={late_viewer}") as late_ws:
            state = await receive_type(late_ws, "session.state")
            assert state["payload"]["activePoll"] is None
            assert gated_id not in str(state["payload"])
        late_holder = await second.ticket(holder_token, sid, "token_holder")
        async with http.ws_connect(f"{second.ws_url}?ticket={late_holder}") as late_ws:
            state = await receive_type(late_ws, "session.state")
            assert state["payload"]["activePoll"]["id"] == gated_id

        await holder_ws.send_json(
            {
                "type": "poll.vote",
                "payload": {"pollId": gated_id, "optionIndex": 0},
                "requestId": "v1",
            }
        )
        reply = await holder_tape.until("poll.vote")
        assert reply["payload"]["counted"] is True
        await viewer_ws_2.send_json(
            {
                "type": "poll.vote",
                "payload": {"pollId": gated_id, "optionIndex": 1},
                "requestId": "v2",
            }
        )
        error = await tape_2.until("error")
        assert error["payload"]["code"] == ErrorCode.TOKEN_GATE_FAILED
        assert "token holders only" in error["payload"]["message"]
        status, body = await second.call(
            "POST", base + f"/polls/{gated_id}/votes", token=viewer_token, json={"optionIndex": 1}
        )
        assert status == 403 and body["code"] == 4005
        status, listed = await second.call("GET", base + "/polls", token=viewer_token)
        assert status == 200 and gated_id not in str(listed)
        status, listed = await second.call("GET", base + "/polls", token=holder_token)
        assert status == 200 and gated_id in str(listed)
        await asyncio.sleep(0.3)  # the tally goes out
        status, _ = await first.call("POST", base + f"/polls/{gated_id}/end", token=artist)
        assert status == 200
        status, _ = await second.call(
            "POST", base + "/polls", token=artist, json={"question": MARKER, "options": ["a", "b"]}
        )
        assert status == 200

        holder_frames = [f for f in await ws_until_marker(holder_tape) if "id" in f]
        assert mentions(holder_frames, gated_id) == [
            "poll.create",
            "poll.update",
            "poll.end",
            "poll.results",
        ], holder_frames
        holder_events = await sse_until_marker(holder_sse)
        assert mentions(holder_events, gated_id) == mentions(holder_frames, gated_id)
        for frames in (
            await ws_until_marker(tape_1),
            await ws_until_marker(tape_2),
            await sse_until_marker(viewer_sse),
        ):
            assert mentions(frames, gated_id) == [], frames

        # a viewer resuming from before the gated poll gets the public rest, not the gated part
        first_id = holder_frames[0]["id"]
        resumed = await first.ticket(viewer_token, sid)
        async with http.ws_connect(f"{first.ws_url}?ticket={resumed}&since={first_id}") as ws:
            replayed = await ws_until_marker(ws)
            assert replayed[0]["payload"]["recovered"] is True
            assert mentions(replayed, gated_id) == []


async def test_holders_only_chat_and_the_holder_badge(
    server_factory: ServerFactory, node: EthNode
) -> None:
    server: LiveServer = server_factory(VSTUDIO_ETH_RPC_URL=node.url)
    coin = "0x" + secrets.token_hex(20)
    session = await server.live_session(
        requiredTokens={"contractAddress": coin, "minBalance": 10}, producerIds=["gate-prod"]
    )
    sid = session["id"]
    holder_token, holder = server.token("chat-holder"), Wallet.new()
    await holder.link(server, holder_token)
    node.erc20(coin, decimals=6, balances={holder.address: 10 * 10**6})
    ticket = await server.ticket(holder_token, sid, "token_holder")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.ws_url}?ticket={ticket}") as holder_ws,
        server.ws(sid, "gate-prod", "producer") as producer_ws,
        server.ws(sid, "chat-viewer") as viewer_ws,
    ):
        for ws in (holder_ws, producer_ws, viewer_ws):
            await receive_type(ws, "session.state")
        await producer_ws.send_json(
            {"type": "session.update", "payload": {"chatHoldersOnly": True}, "requestId": "u"}
        )
        update = await receive_type(viewer_ws, "session.update")
        assert update["payload"]["chatHoldersOnly"] is True
        await viewer_ws.send_json(
            {"type": "chat.message", "payload": {"text": "me too"}, "requestId": "c1"}
        )
        error = await receive_type(viewer_ws, "error")
        assert error["payload"]["code"] == ErrorCode.TOKEN_GATE_FAILED
        assert "token holders only" in error["payload"]["message"]
        await holder_ws.send_json(
            {"type": "chat.message", "payload": {"text": "gm"}, "requestId": "c2"}
        )
        aggregate = await receive_type(viewer_ws, "chat.aggregate")  # everyone reads it
        [message] = aggregate["payload"]["messages"]
        assert message["text"] == "gm" and message["badges"] == ["holder"]
        assert not message.get("isModerator")
