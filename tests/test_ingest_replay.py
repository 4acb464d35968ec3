"""Replay of recorded chat files: bad lines named and skipped, timing, through a real worker."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from broker import Bus
from config import IngestSettings
from ingest.replay import ReplayFile, ReplayLineError, Schedule, parse_replay_line
from ingest.runtime import Worker
from ingest.simulate import ChatGenerator


def write_recording(
    path: Path, count: int, gap_ms: int = 50, bad: dict[int, bytes] | None = None
) -> list[str]:
    """``count`` good messages, ``bad[n]`` inserted after the n-th; returns the good ids."""
    generator = ChatGenerator(seed=11, deletion_share=0, event_share=0)
    lines: list[bytes] = []
    ids: list[str] = []
    for n in range(count):
        message = generator.message(1_700_000_000_000 + n * gap_ms)
        ids.append(message.id)
        lines.append(orjson.dumps(message.wire()))
        if bad and n in bad:
            lines.append(bad[n])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return ids


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "line 3: not valid JSON"),
        (b"[1, 2]", "line 3: expected a JSON object, got list"),
        (b'{"id": "twitch:1", "platform": "twitch"}', "line 3: username: Field required"),
        (
            b'{"id": "youtube:1", "platform": "twitch", "username": "a", "text": "t", '
            b'"timestamp": 1}',
            "line 3: message: Value error, id must start with 'twitch:'",
        ),
    ],
)
def test_bad_lines_are_named(line: bytes, reason: str) -> None:
    with pytest.raises(ReplayLineError) as caught:
        parse_replay_line(line, 3)
    assert str(caught.value).startswith(reason)


def test_schedule_recorded_speed_rate_and_no_wait() -> None:
    recorded = Schedule(speed=2.0)
    assert [recorded.due(ts) for ts in (1000, 1500, 3000)] == [0.0, 0.25, 1.0]
    fixed = Schedule(rate=4.0)
    assert [fixed.due(ts) for ts in (9, 1, 5)] == [0.0, 0.25, 0.5]
    assert Schedule(speed=0).due(123) == 0.0


def test_refuses_a_missing_file_and_bad_speeds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ReplayFile(tmp_path / "nope.jsonl")
    (tmp_path / "x.jsonl").write_text("")
    with pytest.raises(ValueError):
        ReplayFile(tmp_path / "x.jsonl", speed=-1)


async def test_replay_skips_bad_lines_and_publishes_the_rest(
    bus: Bus, session_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "chat.jsonl"
    ids = write_recording(path, 30, bad={4: b'{"broken": ', 20: b'{"id": "x"}'})
    adapter = ReplayFile(path, speed=0)
    worker = Worker(adapter, bus, session_id, IngestSettings(batch_interval_ms=5))
    await worker.run()
    events = (await bus.replay(session_id, "0-0")).events
    assert [event.payload["id"] for event in events] == ids
    assert len(adapter.errors) == 2 and worker.stats.rejected == 2
    assert adapter.errors[0].startswith("line 6: not valid JSON")
    assert adapter.errors[1].startswith("line 23: ")
    assert worker.stats.state == "stopped"


async def test_recorded_timing_is_followed(bus: Bus, session_id: str, tmp_path: Path) -> None:
    path = tmp_path / "timed.jsonl"
    write_recording(path, 11, gap_ms=40)  # 400 ms recorded
    started = time.monotonic()
    await Worker(ReplayFile(path, speed=2), bus, session_id, IngestSettings()).run()
    assert 0.18 <= time.monotonic() - started < 1.5  # 200 ms at twice the speed
    started = time.monotonic()
    other = f"{session_id}b"
    await Worker(ReplayFile(path, rate=20), bus, other, IngestSettings()).run()
    assert 0.45 <= time.monotonic() - started < 2.0  # 10 gaps at 20/s
