"""``vstudio session sources`` and ``session apply``'s ``[[ingest]]`` tables, as real processes
against a real server (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.support.live_server import LiveServer


class Cli:
    """``vstudio`` as a user runs it, with --server and a token of ``user``'s."""

    def __init__(self, server: LiveServer, home: Path, user: str, role: str = "artist") -> None:
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "COLUMNS": "200"}
        for name in ("VSTUDIO_SERVER", "VSTUDIO_TOKEN", "VSTUDIO_CONFIG"):
            self.env.pop(name, None)
        self.auth = ["--server", server.base_url, "--token", server.token(user, role)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vstudio_cli.main", *args, *self.auth],
            capture_output=True, text=True, env=self.env, timeout=60,
        )  # fmt: skip

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)


async def test_add_list_remove_and_exit_codes(live_server: LiveServer, tmp_path: Path) -> None:
    artist = f"artist-{uuid.uuid4().hex[:8]}"
    sid = (await live_server.live_session(artist))["id"]
    cli = Cli(live_server, tmp_path, artist)
    added = cli.json("session", "sources", "add", "twitch:#Shroud", "--session", sid)
    assert added["created"] is True and added["source"]["id"] == "twitch:shroud"
    flags = ["--platform", "youtube", "--target", "@somechannel", "--redundancy", "2"]
    cli.json("session", "sources", "add", "--session", sid, *flags)
    replaced = cli.run("session", "sources", "add", "twitch:shroud", "--session", sid,
                       "--credentials", "second")  # fmt: skip
    assert replaced.returncode == 0 and "replaced twitch:shroud" in replaced.stdout

    listed = cli.json("session", "sources", "list", "--session", sid)
    rows = {row["id"]: row for row in listed}
    assert rows["twitch:shroud"]["credentials"] == "second"
    assert rows["youtube:@somechannel"]["redundancy"] == 2
    assert rows["twitch:shroud"]["state"] == "unclaimed"  # no worker runs in this test
    table = cli.run("session", "sources", "list", "--session", sid).stdout
    assert "twitch:shroud" in table and "none (0/1)" in table

    bad = cli.run("session", "sources", "add", "discord:general", "--session", sid)
    assert bad.returncode == 2 and "not a Discord channel id" in bad.stderr
    wrong = cli.run("session", "sources", "add", "myspace:x", "--session", sid)
    assert wrong.returncode == 2 and "not a platform to read chat from" in wrong.stderr
    neither = cli.run("session", "sources", "add", "--session", sid)
    assert neither.returncode == 2 and "say which source" in neither.stderr

    removed = cli.json("session", "sources", "remove", "twitch:#SHROUD", "--session", sid)
    assert removed["removed"] == "twitch:shroud"
    again = cli.run("session", "sources", "remove", "twitch:shroud", "--session", sid)
    assert again.returncode == 4 and "no source 'twitch:shroud'" in again.stderr

    fan = Cli(live_server, tmp_path, "fan-1", "viewer")
    refused = fan.run("session", "sources", "list", "--session", sid)
    assert refused.returncode == 7  # forbidden
    cli.run("session", "end", sid)
    ended = cli.run("session", "sources", "add", "twitch:other", "--session", sid)
    assert ended.returncode == 5 and "has ended" in ended.stderr


async def test_apply_declares_the_ingest_tables_and_is_idempotent(
    live_server: LiveServer, tmp_path: Path
) -> None:
    artist = f"artist-{uuid.uuid4().hex[:8]}"
    cli = Cli(live_server, tmp_path, artist)
    spec = tmp_path / "show.toml"
    spec.write_text(
        '[session]\ntitle = "Fleet show"\nlive = true\n\n'
        '[[ingest]]\nplatform = "twitch"\nchannel = "band"\n\n'
        '[[ingest]]\nplatform = "tiktok"\ntarget = "@bandlive"\nredundancy = 2\n'
    )
    planned = cli.json("session", "apply", str(spec), "--dry-run")
    steps = [
        "create session 'Fleet show'",
        "declare source twitch:band",
        "declare source tiktok:bandlive",
        "start it (scheduled -> live)",
    ]
    assert planned["steps"] == steps
    applied = cli.json("session", "apply", str(spec))
    assert applied["steps"] == steps
    assert applied["changed"][1:3] == [
        "declared source twitch:band",
        "declared source tiktok:bandlive",
    ]
    sid = applied["session"]["id"]
    listed = cli.json("session", "sources", "list", "--session", sid)
    assert {row["id"]: row["redundancy"] for row in listed} == {
        "twitch:band": None,
        "tiktok:bandlive": 2,
    }
    assert cli.json("session", "apply", str(spec))["changed"] == []

    cli.json("session", "sources", "add", "youtube:dQw4w9WgXcQ", "--session", sid)
    spec.write_text(spec.read_text().replace("redundancy = 2", "redundancy = 3"))
    replanned = cli.json("session", "apply", str(spec), "--dry-run")
    assert replanned["steps"] == [
        "declare source tiktok:bandlive",
        "withdraw source youtube:dQw4w9WgXcQ",
    ]
    assert cli.json("session", "apply", str(spec))["changed"] == [
        "declared source tiktok:bandlive",
        "withdrew source youtube:dQw4w9WgXcQ",
    ]
    listed = cli.json("session", "sources", "list", "--session", sid)
    assert {row["id"]: row["redundancy"] for row in listed} == {
        "twitch:band": None,
        "tiktok:bandlive": 3,
    }
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[session]\ntitle = "x"\n[[ingest]]\nplatform = "discord"\nchannel = "general"\n'
    )
    refused = cli.run("session", "apply", str(bad))
    assert refused.returncode == 2 and "ingest.0" in refused.stderr
