"""A Python client of the V Studio server: REST calls and a live WebSocket that resumes.

Used by the CLI, the producer console, ``vstudio up`` and the benchmarks, so they all speak the
real protocol. The live connection reconnects with the seed's backoff (1 s initial, factor 2,
30 s max, 10 retries, jitter 0.3), asks for a fresh single-use ticket each time, and resumes
from the last event id it saw (``since``), so its reader sees every event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from broker.models import is_poll_tally, now_ms

__all__ = [
    "FATAL_CLOSE_CODES",
    "ApiError",
    "Backoff",
    "LiveConnection",
    "VStudioClient",
    "is_poll_tally",
]
# is_poll_tally(payload): a poll.update frame is a live tally {pollId, results, totalVotes}
# or an edit carrying the whole poll; poll.results is only the final tally

log = logging.getLogger("vstudio.vstudio_cli.client")

UNAVAILABLE = 4009
"""The server's Redis was unreachable and nothing was done: the same request may be sent again."""
OUTAGE_RETRIES = 5
"""How many times a request refused with 4009 is sent again (same id, after ``retryAfter``)."""
MAX_OUTAGE_WAIT = 10.0
"""The longest ``retryAfter`` honoured between two tries, in seconds."""


def _outage_wait(error: ApiError, attempt: int) -> float | None:
    """Seconds to wait before sending a refused request again, or ``None`` to give up."""
    if error.code != UNAVAILABLE or attempt >= OUTAGE_RETRIES:
        return None
    return min(float(error.retry_after or 1.0), MAX_OUTAGE_WAIT)


FATAL_CLOSE_CODES = {
    4001: "session not found",
    4002: "session ended",
    4004: "forbidden",
    4005: "token gate failed",
}
"""Close codes after which reconnecting cannot help."""


class ApiError(Exception):
    """An error answer of the server: HTTP status (or 0 for WebSocket), code, message."""

    def __init__(
        self, status: int, code: int | None, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{message} (code {code})" if code else message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with proportional jitter: the seed's reconnection schedule."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0
    retries: int = 10
    jitter: float = 0.3

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), never over ``maximum``.

        The jitter spreads ``base`` by +/- ``jitter``, but the upper end stops at ``maximum``,
        so at the cap the delays still spread (30 s: 21..30 s) without ever passing it.
        """
        base = min(self.maximum, self.initial * self.factor**attempt)
        spread = base * self.jitter
        low, high = max(0.0, base - spread), min(self.maximum, base + spread)
        return (rng or random).uniform(low, high)


class VStudioClient:
    """REST calls with a Bearer token; one aiohttp session shared by everything it opens."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = http
        self._owns_http = http is None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> VStudioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """One REST call; the decoded JSON answer, or :class:`ApiError`. A call that is safe
        to repeat (GET, or one with an ``Idempotency-Key``) is sent again while the server
        answers 4009 (its Redis is unreachable for a moment)."""
        sent = dict(headers or {})
        if auth and self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        repeatable = method == "GET" or "Idempotency-Key" in sent
        attempt = 0
        while True:
            try:
                return await self._call_once(method, path, body, params, sent)
            except ApiError as error:
                wait = _outage_wait(error, attempt) if repeatable else None
                if wait is None:
                    raise
            attempt += 1
            await asyncio.sleep(wait)

    async def _call_once(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        sent: dict[str, str],
    ) -> Any:
        async with self.http.request(
            method, self.base_url + path, json=body, params=params, headers=sent
        ) as response:
            text = await response.text()
            data: Any = orjson.loads(text) if text else None
            if response.status >= 400:
                detail = data if isinstance(data, dict) else {}
                raise ApiError(
                    response.status,
                    detail.get("code"),
                    detail.get("message") or text or response.reason or "request failed",
                    detail.get("retryAfter"),
                )
            return data

    # --- identity -----------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in and keep the token for later calls."""
        answer = await self.call(
            "POST", "/v1/auth/login", {"username": username, "password": password}, auth=False
        )
        self.token = answer["token"]
        return answer

    async def logout(self) -> dict[str, Any]:
        """Revoke this client's token on the server (every process refuses it from now on)."""
        answer = await self.call("POST", "/v1/auth/logout", {})
        self.token = None
        return answer

    async def guest(self, session_id: str) -> dict[str, Any]:
        """A guest viewer token for a session that allows guests."""
        answer = await self.call("POST", "/v1/auth/guest", {"sessionId": session_id}, auth=False)
        self.token = answer["token"]
        return answer

    async def ticket(self, session_id: str, role: str = "viewer") -> str:
        answer = await self.call(
            "POST", "/v1/vstudio/ticket", {"sessionId": session_id, "role": role}
        )
        return str(answer["ticket"])

    # --- sessions -----------------------------------------------------------------------------

    async def create_session(self, **fields: Any) -> dict[str, Any]:
        return await self.call("POST", "/v1/vstudio/sessions", fields)

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/vstudio/sessions/{session_id}")

    async def list_sessions(
        self, *, artist_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"artistId": artist_id, "status": status}.items() if v}
        answer = await self.call("GET", "/v1/vstudio/sessions", params=params)
        return answer["sessions"] if isinstance(answer, dict) else answer

    async def start_session(self, session_id: str) -> dict[str, Any]:
        return await self.call("POST", f"/v1/vstudio/sessions/{session_id}/start")

    async def end_session(self, session_id: str) -> dict[str, Any]:
        return await self.call("POST", f"/v1/vstudio/sessions/{session_id}/end")

    async def update_session(self, session_id: str, **fields: Any) -> dict[str, Any]:
        return await self.call("PATCH", f"/v1/vstudio/sessions/{session_id}", fields)

    # --- interactions over REST ---------------------------------------------------------------

    def _session_path(self, session_id: str, tail: str) -> str:
        return f"/v1/vstudio/sessions/{session_id}{tail}"

    async def create_poll(
        self,
        session_id: str,
        question: str,
        options: list[str],
        *,
        duration: int | None = None,
        allow_multiple: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "question": question,
            "options": options,
            "allowMultiple": allow_multiple,
        }
        if duration:
            body["duration"] = duration
        return await self.call("POST", self._session_path(session_id, "/polls"), body)

    async def end_poll(self, session_id: str, poll_id: str) -> dict[str, Any]:
        return await self.call("POST", self._session_path(session_id, f"/polls/{poll_id}/end"))

    async def list_polls(self, session_id: str) -> list[dict[str, Any]]:
        answer = await self.call("GET", self._session_path(session_id, "/polls"))
        return answer["polls"] if isinstance(answer, dict) else answer

    async def vote(self, session_id: str, poll_id: str, option_index: int) -> dict[str, Any]:
        path = self._session_path(session_id, f"/polls/{poll_id}/votes")
        return await self.call("POST", path, {"optionIndex": option_index}, headers=_once())

    async def chat(self, session_id: str, text: str) -> dict[str, Any]:
        """Send a fan message; retried through an outage, it is still published once."""
        path = self._session_path(session_id, "/chat")
        return await self.call("POST", path, {"text": text}, headers=_once())

    def live(self, session_id: str, role: str = "viewer", **options: Any) -> LiveConnection:
        """A reconnecting WebSocket to the session (use ``async with``)."""
        return LiveConnection(self, session_id, role, **options)


def _once() -> dict[str, str]:
    """An ``Idempotency-Key`` that makes a POST safe to send again."""
    return {"Idempotency-Key": _request_id()}


def _request_id() -> str:
    """A request id no other client or run uses, since the server may dedupe by it."""
    return secrets.token_hex(8)


class LiveConnection:
    """A session's WebSocket that reconnects, resumes by event id and pairs replies.

    Iterate it for frames. Besides the server's frames it yields ``connection.state`` frames
    (``{"state": "live"|"reconnecting"|"closed", "recovered"?: bool}``) so a UI can show them.
    """

    def __init__(
        self,
        client: VStudioClient,
        session_id: str,
        role: str = "viewer",
        *,
        backoff: Backoff | None = None,
        heartbeat: float = 30.0,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.role = role
        self.backoff = backoff or Backoff()
        self.heartbeat = heartbeat
        self.last_id: str | None = None
        self.state = "connecting"
        self.reconnects = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.closed_reason: str | None = None

    async def __aenter__(self) -> LiveConnection:
        self._runner = asyncio.create_task(self._run())
        await self.wait_connected()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_connected(self, timeout: float = 30.0) -> None:
        """Wait for the first connection, or raise what stopped it."""
        waiter = asyncio.create_task(self._connected.wait())
        assert self._runner is not None
        done, _ = await asyncio.wait(
            {waiter, self._runner}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if self._runner in done:
                self._runner.result()
                raise ApiError(0, None, self.closed_reason or "connection closed")
            raise TimeoutError("the WebSocket did not connect in time")

    async def close(self) -> None:
        """Leave cleanly and stop reconnecting."""
        runner, self._runner = self._runner, None
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.send_bytes(orjson.dumps(_frame("session.leave", {})))
                await self._ws.close()
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        self.state = "closed"

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            frame = await self._frames.get()
            if frame is None:
                return
            yield frame

    async def next_frame(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame, or ``TimeoutError``; ``ApiError`` once the connection is over."""
        frame = await asyncio.wait_for(self._frames.get(), timeout)
        if frame is None:
            self._frames.put_nowait(None)
            raise ApiError(0, None, self.closed_reason or "connection closed")
        return frame

    async def wait_for(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """Skip frames until one of ``type_`` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next_frame(timeout)
                if frame.get("type") == type_:
                    return frame

    async def send(self, type_: str, payload: dict[str, Any] | None = None) -> None:
        """Send without waiting for a reply."""
        if self._ws is None or self._ws.closed:
            raise ApiError(0, None, "not connected")
        await self._ws.send_bytes(orjson.dumps(_frame(type_, payload or {})))

    async def request(
        self, type_: str, payload: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send with a ``requestId`` and wait for its one reply; errors raise :class:`ApiError`.
        A request refused with 4009 (the server's Redis unreachable) is sent again with the same
        id after ``retryAfter``, a few times, so it still counts once."""
        request_id = _request_id()
        attempt = 0
        while True:
            try:
                return await self._request_once(type_, payload, timeout, request_id)
            except ApiError as error:
                wait = _outage_wait(error, attempt)
                if wait is None:
                    raise
            attempt += 1
            await asyncio.sleep(wait)

    async def _request_once(
        self, type_: str, payload: dict[str, Any] | None, timeout: float, request_id: str
    ) -> dict[str, Any]:
        if self._ws is None or self._ws.closed:
            raise ApiError(0, None, "not connected")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._ws.send_bytes(
                orjson.dumps(_frame(type_, payload or {}, requestId=request_id))
            )
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            body = reply.get("payload", {})
            raise ApiError(0, body.get("code"), body.get("message", ""), body.get("retryAfter"))
        return reply.get("payload", {})

    async def _run(self) -> None:
        attempt = 0
        try:
            while True:
                try:
                    close_code = await self._connect_once()
                    attempt = 0
                except ApiError as exc:
                    if exc.status in (401, 403, 404):
                        self.closed_reason = exc.message
                        return
                    close_code = None
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.info("connection to %s failed: %s", self.client.base_url, exc)
                    close_code = None
                if close_code in FATAL_CLOSE_CODES:
                    self.closed_reason = FATAL_CLOSE_CODES[close_code]
                    return
                if attempt >= self.backoff.retries:
                    self.closed_reason = f"gave up after {attempt} reconnection attempts"
                    return
                self.state = "reconnecting"
                self._frames.put_nowait(_frame("connection.state", {"state": "reconnecting"}))
                delay = 0.05 if close_code == 1012 and attempt == 0 else self.backoff.delay(attempt)
                attempt += 1
                self.reconnects += 1
                await asyncio.sleep(delay)
        finally:
            self.state = "closed"
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ApiError(0, None, self.closed_reason or "closed"))
            self._frames.put_nowait(None)

    async def _connect_once(self) -> int | None:
        """One connection's life; returns its close code."""
        ticket = await self.client.ticket(self.session_id, self.role)
        params = {"ticket": ticket}
        if self.last_id:
            params["since"] = self.last_id
        url = self.client.base_url.replace("http", "ws", 1) + "/v1/vstudio/ws"
        async with self.client.http.ws_connect(
            url, params=params, heartbeat=self.heartbeat, max_msg_size=1 << 22
        ) as ws:
            self._ws = ws
            first = True
            async for message in ws:
                if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                frame = orjson.loads(message.data)
                if first:
                    first = False
                    self.state = "live"
                    self._connected.set()
                self._deliver(frame)
            self._ws = None
            return ws.close_code

    def _deliver(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("requestId")
        if request_id and request_id in self._pending:
            future = self._pending.pop(request_id)
            if not future.done():
                future.set_result(frame)
            return
        if frame.get("id"):
            self.last_id = frame["id"]
        self._frames.put_nowait(frame)


def _frame(type_: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": type_, "payload": payload, "timestamp": now_ms(), **extra}
