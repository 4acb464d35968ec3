"""The capacity plan's arithmetic, replayed from measured figures (docs/capacity.md).

Reads ``bench/capacity_figures.json``: the figures measured by the benches here (each with the
command that measured it) and the plan's assumptions, and prints for each scenario the server
CPU, memory and server count, the Redis commands per second and shards, and the fleet workers.
``--measure`` runs the benches again at moderate sizes and writes the refreshed figures back
(``--figures`` names another file); ``--json`` prints one object.

    python bench/capacity.py
    python bench/capacity.py --json
    python bench/capacity.py --measure --redis-url redis://127.0.0.1:6379
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from benchkit import ROOT, new_loop

FIGURES = Path(__file__).resolve().parent / "capacity_figures.json"

BENCHES: dict[str, list[str]] = {
    "fanout": ["bench/fanout.py", "--viewers", "2000", "--rate", "50", "--duration", "5"],
    "votes": ["bench/votes.py", "--viewers", "2000", "--servers", "1", "--settle", "5"],
    "reconnect": ["bench/reconnect.py", "--viewers", "2000", "--browser"],
    "limits": ["bench/limits.py", "--calls", "2000"],
    "ingest": ["bench/ingest.py", "--messages", "20000"],
}
"""The benches ``--measure`` runs (each with ``--json``) and the sizes it runs them at."""


def _measure_bench(name: str, redis_url: str | None) -> dict[str, Any]:
    command = [sys.executable, *BENCHES[name], "--json"]
    if redis_url:
        command += ["--redis-url", redis_url]
    print(f"measuring: python {' '.join(command[1:])}", file=sys.stderr)
    run = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=900)
    lines = [line for line in run.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{name} printed no JSON (exit {run.returncode}): {run.stderr[-800:]!r}")
    return dict(orjson.loads(lines[-1]))


async def redis_per_event(redis_url: str | None, events: int = 2000) -> tuple[float, float]:
    """Commands Redis runs per published chat event (the publish script's inner ones
    included) and Redis CPU microseconds per event, publishing one at a time."""
    from broker import Bus, connect
    from broker.bus import OutgoingEvent
    from broker.runtime import redis_url as embedded_or_given
    from config import BrokerSettings

    broker = BrokerSettings(redis_url=redis_url) if redis_url else BrokerSettings()
    with embedded_or_given(broker) as url:
        client = await connect(url)
        try:
            bus = Bus(client)
            session = f"capacity-{os.getpid()}-{int(time.time())}"

            async def calls() -> int:
                stats = await client.info("commandstats")
                return sum(int(entry["calls"]) for entry in stats.values())

            async def cpu() -> float:
                info = await client.info("cpu")
                return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

            before, cpu_before = await calls(), await cpu()
            for n in range(events):
                chat = {"id": f"twitch:cap-{n}", "platform": "twitch", "username": "u", "text": "t"}
                await bus.publish_many(
                    session, "chat", [OutgoingEvent("chat.message", chat, dedupe_id=chat["id"])]
                )
            used = await cpu() - cpu_before
            commands = await calls() - before - 2  # less the two INFOs
            return round(commands / events, 2), round(1e6 * used / events, 1)
        finally:
            await client.aclose()


def measure(redis_url: str | None, current: dict[str, Any]) -> dict[str, Any]:
    """Run every bench and return the figures file with its measured part replaced."""
    out = {name: _measure_bench(name, redis_url) for name in BENCHES}
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def entry(value: float, bench: str, field: str) -> dict[str, Any]:
        return {"value": value, "command": "python " + " ".join(BENCHES[bench]), "field": field}

    with asyncio.Runner(loop_factory=new_loop) as runner:
        per_event, redis_us = runner.run(redis_per_event(redis_url))
    fan, votes, storm = out["fanout"], out["votes"], out["reconnect"]
    per_connect = storm["server_cpu_ms_per_reconnect"] - storm["server_cpu_ms_per_ticket"]
    ingest_rate = out["ingest"]["twitch"]["perCpuSecond"]
    measured = {
        "rss_kb_per_connection": entry(
            fan["rss_per_connection_kb"], "fanout", "rss_per_connection_kb"
        ),
        "cpu_us_per_delivered_frame": entry(
            fan["server_cpu_us_per_frame_per_connection"],
            "fanout",
            "server_cpu_us_per_frame_per_connection",
        ),
        "cpu_ms_per_vote": entry(
            votes["server_cpu_ms_per_vote"], "votes", "server_cpu_ms_per_vote"
        ),
        "cpu_ms_per_ticket": entry(
            storm["server_cpu_ms_per_ticket"], "reconnect", "server_cpu_ms_per_ticket"
        ),
        "cpu_ms_per_connect": entry(
            round(per_connect, 3),
            "reconnect",
            "server_cpu_ms_per_reconnect - server_cpu_ms_per_ticket",
        ),
        "redis_commands_per_reconnect": entry(
            storm["redis_commands_per_reconnect"], "reconnect", "redis_commands_per_reconnect"
        ),
        "redis_commands_per_event": {
            "value": per_event,
            "command": "python bench/capacity.py --measure (INFO commandstats, 2,000 publishes)",
            "field": "redis_commands_per_event",
        },
        "redis_cpu_us_per_event": {
            "value": redis_us,
            "command": "python bench/capacity.py --measure (INFO cpu, 2,000 publishes)",
            "field": "redis_cpu_us_per_event",
        },
        "redis_cpu_ms_per_reconnect": entry(
            storm["redis_cpu_ms_per_reconnect"], "reconnect", "redis_cpu_ms_per_reconnect"
        ),
        "ingest_messages_per_cpu_second": entry(ingest_rate, "ingest", "twitch.perCpuSecond"),
    }
    return {**current, "measured_at": when, "measured": measured}


# --- the arithmetic ---------------------------------------------------------------------------


def plan(figures: dict[str, Any]) -> dict[str, Any]:
    """Servers, Redis shards and fleet workers for every scenario of the figures file."""
    m = {name: float(entry["value"]) for name, entry in figures["measured"].items()}
    a = figures["assumptions"]
    results = {}
    for name, scenario in figures["scenarios"].items():
        viewers = scenario["sessions"] * scenario["viewers_per_session"]
        frames = viewers * a["frames_per_viewer_per_second"]
        steady_cores = frames * m["cpu_us_per_delivered_frame"] / 1e6
        vote_cores = viewers * m["cpu_ms_per_vote"] / 1000 / a["vote_burst_seconds"]
        per_reconnect = (m["cpu_ms_per_ticket"] + m["cpu_ms_per_connect"]) / 1000
        storm_cores = viewers * a["storm_share"] * per_reconnect / a["storm_seconds"]
        peak_cores = max(steady_cores + vote_cores, steady_cores + storm_cores)
        cores = peak_cores / a["cpu_utilisation"]
        memory_gb = (
            viewers * m["rss_kb_per_connection"] / 2**20
            + math.ceil(cores) * a["process_base_mb"] / 1024
        ) / a["memory_utilisation"]
        servers = max(
            math.ceil(cores / a["server_cores"]), math.ceil(memory_gb / a["server_memory_gb"])
        )
        events = scenario["sessions"] * scenario["events_per_session_per_second"]
        votes = viewers / a["vote_burst_seconds"]
        storm = viewers * a["storm_share"] / a["storm_seconds"]
        redis_commands = events * m["redis_commands_per_event"] + max(
            votes * a["redis_commands_per_vote"], storm * m["redis_commands_per_reconnect"]
        )
        redis_cores = events * m["redis_cpu_us_per_event"] / 1e6 + max(
            votes * a["redis_cpu_us_per_vote"] / 1e6,
            storm * m["redis_cpu_ms_per_reconnect"] / 1000,
        )
        shards = max(a["min_shards"], math.ceil(redis_cores / a["redis_utilisation"]))
        channels = scenario["sessions"] * scenario["platform_channels_per_session"]
        chat = channels * scenario["chat_messages_per_channel_per_second"]
        by_channels = math.ceil(channels / a["fleet_channels_per_worker"])
        by_cpu = math.ceil(chat / (m["ingest_messages_per_cpu_second"] * a["cpu_utilisation"]))
        workers = max(by_channels, by_cpu) * a["fleet_redundancy"]
        results[name] = {
            "viewers": viewers,
            "frames_per_second": round(frames),
            "cores_steady": round(steady_cores, 1),
            "cores_vote_burst": round(vote_cores, 1),
            "cores_reconnect_storm": round(storm_cores, 1),
            "cores_provisioned": round(cores, 1),
            "memory_gb": round(memory_gb, 1),
            "servers": servers,
            "redis_commands_per_second_peak": round(redis_commands),
            "redis_cores_peak": round(redis_cores, 1),
            "redis_shards": shards,
            "platform_channels": channels,
            "chat_messages_per_second": round(chat),
            "fleet_workers": workers,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Replay the capacity plan from measured figures: servers, Redis Cluster shards and "
            "fleet workers for each scenario (docs/capacity.md)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--figures", type=Path, default=FIGURES, help="the figures file")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="run the benches again (several minutes) and write the refreshed figures file",
    )
    parser.add_argument("--redis-url", help="the Redis the benches use (default: embedded)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        figures = orjson.loads(args.figures.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        parser.exit(2, f"capacity: cannot read {args.figures}: {exc}\n")
    if args.measure:
        figures = measure(args.redis_url, figures)
        args.figures.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
    try:
        results = plan(figures)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        parser.exit(2, f"capacity: {args.figures} lacks or garbles a figure: {exc!r}\n")
    if args.json:
        print(orjson.dumps({"figures": figures, "plan": results}).decode())
        return
    for name, result in results.items():
        print(f"{name}: {figures['scenarios'][name]['label']}")
        for key, value in result.items():
            print(f"  {key:34} {value:,}")


if __name__ == "__main__":
    main()
