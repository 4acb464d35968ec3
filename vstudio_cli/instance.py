"""The one ``vstudio up`` of a data folder: its lock and its state file.

``up`` holds an exclusive ``flock`` on ``DATA/up.lock`` for as long as it runs; the kernel lets
go of it when the process dies, even on ``kill -9``, so a lock is never stale. Next to it
``DATA/up.json`` says where that ``up`` is (URL, pids, ports, log files), so a second ``up``
can say "already running at URL" and ``status``, ``logs`` and ``down`` can find it. A state
file without a held lock is what a killed ``up`` left behind: it is reported and replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import BrokerSettings, load_settings

__all__ = [
    "AlreadyRunning",
    "Instance",
    "InstanceLock",
    "data_dir_from",
    "find_instance",
    "state_path",
]

LOCK_FILE = "up.lock"
STATE_FILE = "up.json"


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FILE


class AlreadyRunning(Exception):
    """Another ``up`` holds the data folder; ``state`` is what it wrote (may be empty)."""

    def __init__(self, data_dir: Path, state: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.state = state
        where = state.get("url") or f"(starting, pid {state.get('pid', '?')})"
        super().__init__(f"vstudio up is already running at {where} on {data_dir}")


@dataclass
class InstanceLock:
    """The data folder's lock, taken without waiting; released by :meth:`release` or death."""

    data_dir: Path
    stale: dict[str, Any] = field(default_factory=dict)
    """The state file a killed ``up`` left behind, found when the lock was taken."""
    written: dict[str, Any] = field(default_factory=dict)
    """What :meth:`write` wrote last."""
    _fd: int | None = None

    def acquire(self) -> InstanceLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.data_dir, _read(state_path(self.data_dir))) from None
        self._fd = fd
        self.stale = _read(state_path(self.data_dir))
        state_path(self.data_dir).unlink(missing_ok=True)
        return self

    def write(self, state: dict[str, Any]) -> None:
        """Replace the state file in one step (readers never see half of it)."""
        path = state_path(self.data_dir)
        scratch = path.with_suffix(".tmp")
        scratch.unlink(missing_ok=True)
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it names Redis
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps({"pid": os.getpid(), **state}, indent=1))
        scratch.replace(path)
        self.written = dict(state)

    def release(self) -> None:
        if self._fd is None:
            return
        state_path(self.data_dir).unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


@dataclass(frozen=True)
class Instance:
    """What a reader knows of the data folder's ``up``: whether it runs, and its state."""

    data_dir: Path
    running: bool
    state: dict[str, Any]

    @property
    def stale(self) -> bool:
        """A state file with nobody holding the lock: a killed ``up`` left it."""
        return not self.running and bool(self.state)


def find_instance(data_dir: Path) -> Instance:
    """Probe the lock without keeping it, and read the state file."""
    data_dir = Path(data_dir)
    state = _read(state_path(data_dir))
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return Instance(data_dir, False, state)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return Instance(data_dir, True, state)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return Instance(data_dir, False, state)
    finally:
        os.close(fd)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def data_dir_from(flag: Path | None) -> Path:
    """``--data-dir`` if given, else the settings' data folder (VSTUDIO_DATA_DIR, TOML, XDG)."""
    return Path(flag) if flag else load_settings(BrokerSettings).data_dir
