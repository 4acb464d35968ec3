"""``vstudio ingest simulate|replay``: chat that needs no platform, made up or recorded.

Like the platform commands, each hands the building of its adapter to
:func:`~vstudio_cli.ingest.runner.run_worker`, which refuses a bad flag with exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ingest.base import Adapter
from vstudio_cli.ingest.group import DurationOption, JsonOption, RedisUrlOption, SessionOption
from vstudio_cli.ingest.runner import run_worker

__all__ = ["replay", "simulate"]


def simulate(
    session: SessionOption,
    rate: Annotated[float, typer.Option("--rate", min=0.01, help="Messages per second.")] = 20.0,
    duration: DurationOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable chat.")] = None,
    bursts: Annotated[bool, typer.Option(help="Bursts of 4x the rate now and then.")] = True,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish realistic synthetic chat from all four platforms at --rate messages/s."""

    def build() -> Adapter:
        from ingest.simulate import SimulatedChat

        return SimulatedChat(rate, seed=seed, bursts=bursts)

    run_worker(
        build, session, redis_url_flag=redis_url_flag, json_output=as_json, duration=duration
    )


def replay(
    file: Annotated[
        Path, typer.Argument(help="JSON lines, one NormalizedChatMessage each.", dir_okay=False)
    ],
    session: SessionOption,
    speed: Annotated[
        float, typer.Option("--speed", min=0, help="Recorded timing sped up X times; 0: no waits.")
    ] = 1.0,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.01, help="A fixed rate instead, messages/s.")
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish a recorded chat file at its recorded speed (or --speed X / --rate R).

    Bad lines are reported with their line number and skipped; the rest plays on.
    """

    def build() -> Adapter:
        from ingest.replay import ReplayFile

        return ReplayFile(file, speed=speed, rate=rate)

    run_worker(
        build, session, redis_url_flag=redis_url_flag, json_output=as_json, duration=duration
    )
