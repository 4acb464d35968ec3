"""The scripted-setup commands against a real server: login, session, poll, apply.

Each command runs as a real ``vstudio`` process; the credentials file lives in a temporary
config folder, as it would in the user's home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import LiveServer

pytestmark = pytest.mark.slow


class Cli:
    def __init__(self, live_server: LiveServer, redis_url: str, home: Path) -> None:
        self.server = live_server
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(home / "config"),
            "VSTUDIO_REDIS_URL": redis_url,
            "VSTUDIO_DATA_DIR": str(home / "data"),
        }
        for name in ("VSTUDIO_SERVER", "VSTUDIO_TOKEN", "VSTUDIO_CONFIG"):
            self.env.pop(name, None)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "vstudio_cli.main", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def cli(live_server: LiveServer, redis_url: str, tmp_path: Path) -> Cli:
    return Cli(live_server, redis_url, tmp_path)


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def login(cli: Cli, role: str) -> str:
    name = new_name(role)
    cli.run("user", "add", name, "--role", role, "--password", "s3cret-pw-long")
    answer = cli.json(
        "login", name, "--password", "s3cret-pw-long", "--server", cli.server.base_url
    )
    assert answer["server"] == cli.server.base_url
    assert Path(answer["credentials"]).stat().st_mode & 0o077 == 0  # only the user reads it
    return name


def test_without_login_the_exit_code_says_so(cli: Cli) -> None:
    result = cli.run("session", "list", check=False)
    assert result.returncode == 3
    assert "vstudio login" in result.stderr


def test_a_wrong_password_is_refused(cli: Cli) -> None:
    name = new_name("artist")
    cli.run("user", "add", name, "--role", "artist", "--password", "right-pw-long")
    result = cli.run(
        "login", name, "--password", "wrong-pw", "--server", cli.server.base_url, check=False
    )
    assert result.returncode == 3
    assert "wrong password" in result.stderr


def test_an_unreachable_server_is_exit_6(cli: Cli) -> None:
    cli.env["VSTUDIO_TOKEN"] = "x.y.z"
    result = cli.run("session", "list", "--server", "http://127.0.0.1:1", check=False)
    assert result.returncode == 6
    assert "Cannot reach the server" in result.stderr


def test_session_lifecycle_and_polls_from_the_command_line(cli: Cli) -> None:
    artist = login(cli, "artist")
    session = cli.json("session", "create", "--title", "Show", "--allow-guests")
    assert session["status"] == "scheduled" and session["artistId"] == artist
    sid = session["id"]
    assert cli.json("session", "start", sid)["status"] == "live"
    shown = cli.json("session", "show", sid)
    assert shown["allowGuests"] is True and shown["actualStart"] and "startedAt" not in shown
    assert "actualStart" in cli.run("session", "show", sid).stdout  # the seed's name, for people
    assert [s["id"] for s in cli.json("session", "list", "--artist", artist)] == [sid]

    second = cli.json("session", "create", "--title", "Other")
    refused = cli.run("session", "start", second["id"], check=False)
    assert refused.returncode == 5  # 409: one live session per artist
    assert "already has a live session" in refused.stderr

    poll = cli.json(
        "poll", "create", sid, "--question", "Encore?", "--option", "Yes", "--option", "No"
    )
    poll_id = poll.get("poll", poll).get("id") or poll.get("pollId")
    [listed] = cli.json("poll", "results", sid)
    assert listed["question"] == "Encore?" and listed["results"] == [0, 0]
    cli.json("poll", "end", sid, poll_id)
    assert cli.json("poll", "results", sid)[0]["status"] == "ended"
    human = cli.run("poll", "results", sid).stdout
    assert "Encore?" in human and "Yes" in human

    assert cli.json("session", "end", sid)["status"] == "ended"
    missing = cli.run("session", "show", "doesnotexist", check=False)
    assert missing.returncode == 4


def test_session_apply_twice_changes_nothing_the_second_time(cli: Cli, tmp_path: Path) -> None:
    login(cli, "artist")
    spec = tmp_path / "show.toml"
    spec.write_text(
        '[session]\ntitle = "Applied show"\nallowGuests = true\nlive = true\n\n'
        '[[ingest]]\nplatform = "twitch"\nchannel = "band"\n\n'
        '[[polls]]\nquestion = "First?"\noptions = ["A", "B"]\n'
    )
    first = cli.json("session", "apply", str(spec))
    assert first["changed"][0].startswith("created session")
    assert "started (live)" in first["changed"] and "opened poll 'First?'" in first["changed"]
    sid = first["session"]["id"]
    assert "declared source twitch:band" in first["changed"]  # issue 15: read by the fleet

    second = cli.json("session", "apply", str(spec))
    assert second["changed"] == []
    assert second["session"]["id"] == sid
    assert "unchanged" in cli.run("session", "apply", str(spec)).stdout

    spec.write_text(spec.read_text().replace("allowGuests = true", "allowGuests = false"))
    third = cli.json("session", "apply", str(spec))
    assert third["changed"] == ["updated allowGuests"]
    assert cli.json("session", "show", sid)["allowGuests"] is False


def readme_session_file() -> str:
    """The session file the README shows, word for word."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("<!-- session-file-example", 1)[1].split("```toml\n", 1)[1]
    return block.split("```", 1)[0]


def test_the_readme_session_file_next_to_a_live_demo(cli: Cli, tmp_path: Path) -> None:
    """As after ``vstudio up``: the artist's demo session is live. Apply refuses before it
    changes anything, dry run and real run alike; once the demo ended both print the same
    steps, and a second apply changes nothing."""
    artist = login(cli, "artist")
    demo = cli.json("session", "create", "--title", "V Studio demo", "--start")
    spec = tmp_path / "friday.toml"
    spec.write_text(readme_session_file())

    for extra in (["--dry-run"], []):
        refused = cli.run("session", "apply", str(spec), *extra, check=False)
        assert refused.returncode == 5, refused.stdout + refused.stderr
        assert "nothing changed" in refused.stderr and f"session end {demo['id']}" in refused.stderr
    assert [s["id"] for s in cli.json("session", "list", "--artist", artist)] == [demo["id"]]

    cli.run("session", "end", demo["id"])
    planned = cli.json("session", "apply", str(spec), "--dry-run")
    assert planned["steps"] == [
        "create session 'Friday night live'",
        "declare source twitch:yourchannel",
        "start it (scheduled -> live)",
        "open poll 'Which song next?'",
    ]
    assert planned["changed"] == [] and planned["session"] is None
    human = cli.run("session", "apply", str(spec), "--dry-run").stdout
    assert "would create session 'Friday night live'" in human and "unchanged" not in human

    applied = cli.json("session", "apply", str(spec))
    assert applied["steps"] == planned["steps"] and len(applied["changed"]) == 4
    sid = applied["session"]["id"]
    assert applied["session"]["status"] == "live"
    assert [p["question"] for p in cli.json("poll", "results", sid)] == ["Which song next?"]

    again = cli.json("session", "apply", str(spec), "--dry-run")
    assert again["steps"] == [] and again["session"]["id"] == sid
    assert "unchanged" in cli.run("session", "apply", str(spec)).stdout


def test_a_scheduled_session_gets_no_poll_and_says_so(cli: Cli, tmp_path: Path) -> None:
    """``live = false``: polls wait for the session to go live, and the scheduled session
    left behind is reported."""
    login(cli, "artist")
    spec = tmp_path / "later.toml"
    spec.write_text(
        '[session]\ntitle = "Later show"\nlive = false\n\n'
        '[[polls]]\nquestion = "Timed?"\noptions = ["A", "B"]\nduration = 30\n'
    )
    planned = cli.json("session", "apply", str(spec), "--dry-run")
    applied = cli.json("session", "apply", str(spec))
    assert planned["steps"] == applied["steps"] == ["create session 'Later show'"]
    sid = applied["session"]["id"]
    assert applied["session"]["status"] == "scheduled"
    assert cli.json("poll", "results", sid) == []
    assert planned["notes"] == applied["notes"]
    notes = " ".join(applied["notes"])
    assert "'Timed?' waits until the session is live" in notes
    assert "the session is left scheduled" in notes
    assert applied["start"] == f"vstudio session start {sid}"

    cli.run("session", "start", sid)
    opened = cli.json("session", "apply", str(spec))
    assert opened["changed"] == ["opened poll 'Timed?'"]


def test_narrow_piped_output_keeps_ids_whole(cli: Cli) -> None:
    """Piped output is as wide as COLUMNS says (80 without it); ids and commands in it are
    never cut or wrapped, so they can be copied."""
    login(cli, "artist")
    session = cli.json("session", "create", "--title", "A title long enough to need wrapping")
    cli.env["COLUMNS"] = "40"
    listed = cli.run("session", "list").stdout
    assert session["id"] in listed, listed
