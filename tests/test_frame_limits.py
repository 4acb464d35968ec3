"""Malformed frames count toward the 'any message' limit, and blank-looking chat is refused."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import ValidationError

from broker.models import ChatMessageIn, ErrorCode
from tests.support.types import ServerFactory
from tests.support.websocket import receive_type


async def test_malformed_frames_count_toward_the_any_message_limit(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(VSTUDIO_MESSAGE_RATE_LIMIT="5", VSTUDIO_MESSAGE_RATE_WINDOW="60")
    session = await server.live_session()
    async with server.ws(session["id"], f"f-{uuid.uuid4().hex[:6]}") as ws:
        await receive_type(ws, "session.state")
        codes = []
        for garbage in ["{", "[]", '{"type": 5}', "nope", '{"type":"chat.message"}', "{", "{"]:
            await ws.send_str(garbage)
            error = await receive_type(ws, "error")
            codes.append(error["payload"]["code"])
        assert codes[:5] == [ErrorCode.INVALID_MESSAGE] * 5
        assert codes[5:] == [ErrorCode.RATE_LIMITED] * 2
        await ws.send_str(orjson.dumps({"type": "ping"}).decode())  # pings stay free
        await receive_type(ws, "pong")


@pytest.mark.parametrize(
    "text",
    [
        "\u200b\u200b\u200b",  # zero-width spaces
        "\u202e\u202d\u2066",  # bidi controls
        "\u3164\u3164",  # Hangul filler
        "\u2800",  # braille blank
        "\x00\x00",  # NUL
        " \u00a0\u200d\ufeff ",  # spaces, joiner, BOM
    ],
)
def test_blank_looking_chat_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="blank"):
        ChatMessageIn.model_validate({"text": text})


@pytest.mark.parametrize("text", ["hi", "\u200bhi", "🔥", "a\u0301", "ㅋㅋ"])
def test_chat_with_something_to_see_is_kept(text: str) -> None:
    assert ChatMessageIn.model_validate({"text": text}).text == text


async def test_a_declared_body_over_the_limit_gets_413_before_it_is_read(
    server_factory: ServerFactory,
) -> None:
    """A client that announces a huge body is answered at once, not after the upload."""
    import asyncio

    server = server_factory(VSTUDIO_MAX_MESSAGE_BYTES="4096")
    host, port = server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n{"
    )  # only one byte of the fifty million follows
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413"), head
    writer.close()
