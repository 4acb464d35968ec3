"""Reading a live server's WebSocket the way a client does: the next frame of a type, the close."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

__all__ = ["closed_with", "frames_for", "receive_type"]


async def receive_type(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5
) -> dict[str, Any]:
    """The next frame of type ``kind`` (skipping others, e.g. presence)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame: dict[str, Any] = orjson.loads(message.data)
            if frame["type"] == kind:
                return frame


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> int | None:
    """The close code the server ends the connection with (frames before it are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code


async def frames_for(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    """Every frame ``ws`` receives during ``seconds`` (pings answered by aiohttp)."""
    frames: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            frames.append(await ws.receive_json(timeout=left))
        except TimeoutError:
            break
    return frames
