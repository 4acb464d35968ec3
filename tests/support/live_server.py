"""A real ``vstudio serve`` subprocess for tests, and the factory that starts them."""

from __future__ import annotations

import contextlib
import json as _json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from broker.models import Role
from server.identity.auth import mint_token
from tests.support.types import ServerFactory

__all__ = ["LiveServer", "live_servers"]


class LiveServer:
    """A real ``vstudio serve`` subprocess on a free port, against the suite's Redis.

    Use the ``live_server`` fixture (one shared default server) or ``server_factory`` (your own
    server with shrunk limits: ``server_factory(VSTUDIO_CHAT_RATE_LIMIT="2", workers=2)``).
    Settings reach the server as ``VSTUDIO_*`` variables. Helpers::

        token = live_server.token("alice", role="artist")         # a JWT the server accepts
        session = await live_server.live_session("alice")           # created and started
        ticket = await live_server.ticket(token, session["id"])     # single use
        async with live_server.ws(session["id"], "bob") as ws:      # ticket + connect
            state = await ws.receive_json()                         # session.state
        status, body = await live_server.call("POST", "/v1/...", token=token, json={...})
        code, out, err = live_server.stop()                         # SIGTERM, waits

    ``log`` and ``output`` hold what the server wrote to stderr and stdout.
    """

    SECRET = "test-secret-for-the-live-server-fixture"

    def __init__(
        self,
        redis_url: str,
        tmp: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        port: int = 0,
        log_json: bool = True,
    ) -> None:
        """``log_json=False`` starts it as an operator would: no ``VSTUDIO_LOG_JSON``, so the
        server picks the log format itself (JSON lines, as stderr here is a file)."""
        self.secret = (env or {}).get("VSTUDIO_JWT_SECRET", self.SECRET)
        self._tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self._out_path, self._err_path = tmp / "stdout.txt", tmp / "stderr.txt"
        full_env = {
            **os.environ,
            "VSTUDIO_REDIS_URL": redis_url,
            "VSTUDIO_JWT_SECRET": self.secret,
            "VSTUDIO_DATA_DIR": str(tmp / "data"),
            # every test's client is 127.0.0.1, so one address's failed logins would add up
            # across the suite; tests of that limit set it and use addresses of their own
            "VSTUDIO_LOGIN_FAILURES_PER_ADDRESS": "1000",
            # likewise every socket of the suite comes from 127.0.0.1 (load tests open 1,000)
            "VSTUDIO_MAX_CONNECTIONS_PER_ADDRESS": "0",
            "VSTUDIO_MAX_PENDING_CONNECTIONS_PER_ADDRESS": "0",
            **(env or {}),
        }
        full_env.pop("VSTUDIO_CONFIG", None)
        if log_json:
            full_env["VSTUDIO_LOG_JSON"] = "1"
        else:
            full_env.pop("VSTUDIO_LOG_JSON", None)
        command = [sys.executable, "-m", "vstudio_cli.main", "serve", "--port", str(port)]
        command += ["--workers", str(workers)]
        with self._out_path.open("wb") as out, self._err_path.open("wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=full_env)
        deadline = time.monotonic() + 30
        self.base_url = ""
        while time.monotonic() < deadline and not self.base_url:
            if self.process.poll() is not None:
                raise RuntimeError(f"vstudio serve exited {self.process.returncode}: {self.log}")
            for line in self.output.splitlines():
                if "listening on " in line:
                    self.base_url = line.split("listening on ", 1)[1].split()[0]
            time.sleep(0.05)
        if not self.base_url:
            self.stop()
            raise RuntimeError(f"vstudio serve did not start: {self.log}")
        self.port = int(self.base_url.rsplit(":", 1)[1])
        self.ws_url = self.base_url.replace("http://", "ws://") + "/v1/vstudio/ws"
        self._wait_healthy(deadline)

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"vstudio serve never became healthy: {self.log}")

    @property
    def output(self) -> str:
        return self._out_path.read_text(errors="replace")

    @property
    def log(self) -> str:
        return self._err_path.read_text(errors="replace")

    def token(self, user_id: str, role: Role | str = "viewer") -> str:
        """A JWT for ``user_id`` signed with this server's secret (for other claims, call
        ``mint_token`` with ``secret``)."""
        return mint_token(self.secret, user_id=user_id, role=role)

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        source: str | None = None,
        json: object = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One HTTP request: ``(status, body)``; ``source`` = client address.

        The body is the decoded JSON (``Any``, as ``json.loads`` gives it: each test asserts
        the shape it expects), or the text when it is not JSON (``/metrics``, aiohttp's own
        404 and 405 pages).
        """
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.request(
                method, self.base_url + path, headers=sent, json=json, data=data
            ) as response,
        ):
            text = await response.text()
            try:
                return response.status, _json.loads(text)
            except ValueError:
                return response.status, text

    async def live_session(self, artist_id: str | None = None, **fields: object) -> dict[str, Any]:
        """A new session of ``artist_id`` (fresh if not given), started; its record."""
        artist_id = artist_id or f"artist-{uuid.uuid4().hex[:8]}"
        token = self.token(artist_id, "artist")
        status, body = await self.call(
            "POST", "/v1/vstudio/sessions", token=token, json={"title": "Live", **fields}
        )
        assert status == 201, body
        status, body = await self.call(
            "POST", f"/v1/vstudio/sessions/{body['id']}/start", token=token
        )
        assert status == 200, body
        return dict(body)

    async def ticket(self, token: str, session_id: str, role: str = "viewer") -> str:
        status, body = await self.call(
            "POST", "/v1/vstudio/ticket", token=token, json={"sessionId": session_id, "role": role}
        )
        assert status == 200, body
        return str(body["ticket"])

    @contextlib.asynccontextmanager
    async def ws(
        self,
        session_id: str,
        user_id: str,
        role: str = "viewer",
        *,
        since: str | None = None,
        token_role: str | None = None,
        autoping: bool = True,
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket of ``user_id`` in ``session_id`` (ticket fetched first);
        ``autoping=False`` makes a client that never answers the server's pings."""
        ticket = await self.ticket(self.token(user_id, token_role or role), session_id, role)
        url = f"{self.ws_url}?ticket={ticket}" + (f"&since={since}" if since else "")
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, autoping=autoping) as ws,
        ):
            yield ws

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> tuple[int, str, str]:
        """Signal the server, wait for it: ``(exit code, stdout, stderr)``."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode, self.output, self.log


@contextlib.contextmanager
def live_servers(redis_url: str, folder: Path) -> Iterator[ServerFactory]:
    """Start servers of your own under ``folder``: ``start(workers=2, VSTUDIO_MAX_VIEWERS="3")``;
    every server started is stopped when the block ends."""
    started: list[LiveServer] = []

    def start(*, workers: int = 1, port: int = 0, **env: str) -> LiveServer:
        server = LiveServer(
            redis_url, folder / f"server{len(started)}", workers=workers, env=env, port=port
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
