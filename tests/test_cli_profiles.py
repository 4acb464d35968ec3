"""Named login profiles: an artist and a producer identity side by side, ``whoami`` and a
``logout`` that forgets one profile only. Real ``vstudio`` processes against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_remote import Cli, cli, new_name

__all__ = ["cli"]  # the fixture, shared with test_cli_remote

pytestmark = pytest.mark.slow


def test_two_profiles_coexist_and_logout_forgets_one(cli: Cli, tmp_path: Path) -> None:
    artist, producer = new_name("artist"), new_name("producer")
    for name, role in ((artist, "artist"), (producer, "producer")):
        cli.run("user", "add", name, "--role", role, "--password", "s3cret-pw-long")
    server = cli.server.base_url
    cli.run("login", artist, "--password", "s3cret-pw-long", "--server", server)
    saved = cli.json(
        "login", producer, "--password", "s3cret-pw-long", "--server", server,
        "--profile", "producer",
    )  # fmt: skip
    assert saved["profile"] == "producer"
    assert Path(saved["credentials"]).stat().st_mode & 0o077 == 0

    me = cli.json("whoami")
    assert (me["username"], me["role"], me["profile"]) == (artist, "artist", "default")
    other = json.loads(cli.run("--profile", "producer", "whoami", "--json").stdout)
    assert (other["username"], other["role"]) == (producer, "producer")
    cli.env["VSTUDIO_PROFILE"] = "producer"
    assert cli.json("whoami")["username"] == producer  # the environment picks it too
    del cli.env["VSTUDIO_PROFILE"]
    listed = cli.json("whoami", "--all")["profiles"]
    assert [(p["profile"], p["username"]) for p in listed] == [
        ("default", artist),
        ("producer", producer),
    ]
    # a command run under a profile acts as that identity: only the artist may create
    made = cli.run("--profile", "producer", "session", "create", "--title", "t", check=False)
    assert made.returncode == 7, made.stderr

    out = cli.json("logout", "--profile", "producer")
    assert out["profile"] == "producer"
    gone = cli.run("--profile", "producer", "whoami", check=False)
    assert gone.returncode == 3 and "Not logged in (profile producer)" in gone.stderr
    assert cli.json("whoami")["username"] == artist  # the other profile is untouched

    bad = cli.run("--profile", "../etc", "whoami", check=False)
    assert bad.returncode == 2 and "profile" in bad.stderr


def test_whoami_says_when_the_server_refuses_the_token(cli: Cli) -> None:
    name = new_name("viewer")
    cli.run("user", "add", name, "--role", "viewer", "--password", "s3cret-pw-long")
    cli.run("login", name, "--password", "s3cret-pw-long", "--server", cli.server.base_url)
    cli.run("user", "delete", name)
    refused = cli.run("whoami", check=False)
    assert refused.returncode == 3, refused.stdout + refused.stderr
