"""bench/capacity.py replays the plan's arithmetic from a figures file, by hand-checkable rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _figures() -> dict[str, Any]:
    def m(value: float) -> dict[str, Any]:
        return {"value": value, "command": "by hand", "field": "-"}

    return {
        "measured": {
            "rss_kb_per_connection": m(16.0),
            "cpu_us_per_delivered_frame": m(4.0),
            "cpu_ms_per_vote": m(0.5),
            "cpu_ms_per_ticket": m(1.0),
            "cpu_ms_per_connect": m(0.5),
            "redis_commands_per_reconnect": m(20),
            "redis_cpu_ms_per_reconnect": m(0.1),
            "redis_commands_per_event": m(10),
            "redis_cpu_us_per_event": m(20),
            "ingest_messages_per_cpu_second": m(10_000),
        },
        "assumptions": {
            "frames_per_viewer_per_second": 5,
            "vote_burst_seconds": 10,
            "storm_seconds": 30,
            "storm_share": 1.0,
            "cpu_utilisation": 0.5,
            "memory_utilisation": 1.0,
            "process_base_mb": 0,
            "server_cores": 8,
            "server_memory_gb": 64,
            "redis_commands_per_vote": 4,
            "redis_cpu_us_per_vote": 40,
            "redis_utilisation": 0.5,
            "min_shards": 3,
            "fleet_channels_per_worker": 500,
            "fleet_redundancy": 2,
        },
        "scenarios": {
            "one": {
                "label": "by hand",
                "sessions": 100,
                "viewers_per_session": 10_000,
                "events_per_session_per_second": 50,
                "platform_channels_per_session": 1,
                "chat_messages_per_channel_per_second": 50,
            }
        },
    }


def _plan(tmp_path: Path, figures: dict[str, Any]) -> subprocess.CompletedProcess[bytes]:
    path = tmp_path / "figures.json"
    path.write_bytes(orjson.dumps(figures))
    command = [sys.executable, str(BENCH / "capacity.py"), "--figures", str(path), "--json"]
    return subprocess.run(command, capture_output=True, timeout=60)


def test_the_plan_follows_the_documented_arithmetic(tmp_path: Path) -> None:
    run = _plan(tmp_path, _figures())
    assert run.returncode == 0, run.stderr
    one = orjson.loads(run.stdout)["plan"]["one"]
    # 1e6 viewers x 5 frames/s x 4 us = 20 cores; votes 1e5/s x 0.5 ms = 50; storm
    # 33,333/s x 1.5 ms = 50; peak 20 + 50 = 70 cores at 50% -> 140 -> 18 servers of 8 cores
    assert one["cores_steady"] == 20.0
    assert one["cores_vote_burst"] == 50.0
    assert one["cores_reconnect_storm"] == 50.0
    assert one["cores_provisioned"] == 140.0
    assert one["servers"] == 18
    # Redis: 5,000 events/s x 20 us = 0.1 core + max(1e5 votes/s x 40 us = 4, 33,333 x 0.1 ms
    # = 3.33) = 4.1 cores at 50% -> 9 shards
    assert one["redis_cores_peak"] == 4.1
    assert one["redis_shards"] == 9
    # commands: 50,000 for events + max(1e5 x 4, 33,333 x 20 = 666,667)
    assert one["redis_commands_per_second_peak"] == 50_000 + 666_667
    # 100 channels -> 1 worker by channels; 5,000 msg/s / (10,000 x 50%) -> 1; read twice
    assert one["fleet_workers"] == 2


def test_memory_can_size_the_servers(tmp_path: Path) -> None:
    figures = _figures()
    figures["measured"]["rss_kb_per_connection"]["value"] = 2**20  # 1 GB per connection
    figures["scenarios"]["one"]["viewers_per_session"] = 10
    run = _plan(tmp_path, figures)
    one = orjson.loads(run.stdout)["plan"]["one"]
    assert one["memory_gb"] == 1000.0
    assert one["servers"] == 16  # 1,000 GB / 64 GB


def test_a_figures_file_without_a_figure_is_refused_clearly(tmp_path: Path) -> None:
    figures = _figures()
    del figures["measured"]["cpu_ms_per_vote"]
    run = _plan(tmp_path, figures)
    assert run.returncode == 2
    assert b"cpu_ms_per_vote" in run.stderr


def test_the_committed_figures_give_a_plan(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCH / "capacity.py"), "--json"]
    run = subprocess.run(command, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    plan = orjson.loads(run.stdout)["plan"]
    assert set(plan) == {"hundred_sessions", "million_on_one_platform"}
    assert all(result["servers"] >= 1 and result["redis_shards"] >= 3 for result in plan.values())
