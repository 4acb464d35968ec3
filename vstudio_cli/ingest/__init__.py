"""``vstudio ingest``: run one ingestion worker in the foreground, or list the running ones.

:mod:`~vstudio_cli.ingest.group` holds the command group and its shared options,
:mod:`~vstudio_cli.ingest.runner` runs a worker (and shows the status), and the commands in
:mod:`~vstudio_cli.ingest.platforms` and :mod:`~vstudio_cli.ingest.offline` only build their
adapter. They are attached to the group here, in the order ``--help`` lists them.
"""

from __future__ import annotations

from vstudio_cli.ingest.group import app
from vstudio_cli.ingest.offline import replay, simulate
from vstudio_cli.ingest.platforms import discord, tiktok, twitch, youtube
from vstudio_cli.ingest.runner import status

__all__ = ["app"]

for name, command in (
    ("status", status),
    ("simulate", simulate),
    ("twitch", twitch),
    ("replay", replay),
    ("youtube", youtube),
    ("discord", discord),
    ("tiktok", tiktok),
):
    app.command(name)(command)
