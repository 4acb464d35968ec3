"""``session apply``'s file and plan, without a server: what it would change, and that a
second run changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from vstudio_cli.client import ApiError
from vstudio_cli.session_cmd import _partly_applied
from vstudio_cli.session_file import SessionFileError, plan_changes, read_session_file

BAND = [{"id": "twitch:band", "credentials": "default", "redundancy": None}]
"""The source FILE declares, as ``GET .../sources`` lists it once declared."""

FILE = """
[session]
title = "Friday live"
streamUrl = "https://www.twitch.tv/band"
streamPlatform = "twitch"
allowGuests = true
producerIds = ["sam"]
live = true

[[ingest]]
platform = "twitch"
channel = "band"

[[polls]]
question = "Which song next?"
options = ["Intro", "Outro"]
duration = 120

[[polls]]
question = "Encore?"
options = ["Yes", "No"]
"""


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "session.toml"
    path.write_text(FILE)
    return path


def test_a_new_session_is_created_started_and_gets_the_first_poll(spec_path: Path) -> None:
    plan = plan_changes(read_session_file(spec_path), None, [])
    assert plan.create == {
        "title": "Friday live",
        "streamUrl": "https://www.twitch.tv/band",
        "streamPlatform": "twitch",
        "chatEnabled": True,
        "reactionsEnabled": True,
        "allowGuests": True,
        "producerIds": ["sam"],
    }
    assert plan.start is True
    assert plan.open_poll == {
        "question": "Which song next?",
        "options": ["Intro", "Outro"],
        "duration": 120,
        "allowMultiple": False,
    }


def test_applying_again_to_the_same_state_changes_nothing(spec_path: Path) -> None:
    spec = read_session_file(spec_path)
    existing = {**plan_changes(spec, None, []).create, "id": "s1", "status": "live"}
    polls = [{"question": "Which song next?", "status": "active"}]
    plan = plan_changes(spec, existing, polls, sources=BAND)
    assert plan.changes_nothing
    assert plan.notes == ["poll 'Encore?' waits until the active poll ends"]


def test_changed_toggles_are_updated_and_fixed_fields_reported(spec_path: Path) -> None:
    spec = read_session_file(spec_path)
    existing = {
        **plan_changes(spec, None, []).create,
        "status": "live",
        "allowGuests": False,
        "producerIds": ["someone-else"],
    }
    polls = [{"question": "Which song next?", "status": "ended"}]
    plan = plan_changes(spec, existing, polls)
    assert plan.update == {"allowGuests": True}
    assert plan.open_poll and plan.open_poll["question"] == "Encore?"
    assert any("producerIds is fixed" in note for note in plan.notes)


def test_a_bad_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[session]\ntitle = ""\ncolour = "red"\n')
    with pytest.raises(SessionFileError) as caught:
        read_session_file(path)
    assert "session.title" in str(caught.value) and "session.colour" in str(caught.value)


def test_going_live_next_to_another_live_session_is_blocked(spec_path: Path) -> None:
    other = {"id": "demo1", "title": "V Studio demo", "status": "live"}
    plan = plan_changes(read_session_file(spec_path), None, [], live_elsewhere=other)
    assert plan.blocked and "vstudio session end demo1" in plan.blocked
    unblocked = plan_changes(read_session_file(spec_path), None, [])
    assert unblocked.blocked is None


def test_a_session_that_stays_scheduled_opens_no_poll(tmp_path: Path) -> None:
    path = tmp_path / "later.toml"
    path.write_text(FILE.replace("live = true", "live = false"))
    spec = read_session_file(path)
    plan = plan_changes(spec, None, [], live_elsewhere={"id": "x", "status": "live"})
    assert plan.open_poll is None and plan.start is False and plan.blocked is None
    assert plan.notes == [
        "the session is left scheduled: fans see it once it is started",
        "poll 'Which song next?' waits until the session is live (start it, then apply again)",
    ]
    assert plan.steps() == ["create session 'Friday live'", "declare source twitch:band"]
    scheduled = {**plan.create, "id": "s1", "status": "scheduled"}
    assert plan_changes(spec, scheduled, []).open_poll is None
    live = {**scheduled, "status": "live"}
    assert plan_changes(spec, live, [], sources=BAND).steps() == ["open poll 'Which song next?'"]


def test_the_steps_name_every_change_in_order(spec_path: Path) -> None:
    plan = plan_changes(read_session_file(spec_path), None, [])
    assert plan.steps() == [
        "create session 'Friday live'",
        "declare source twitch:band",
        "start it (scheduled -> live)",
        "open poll 'Which song next?'",
    ]


def test_a_refusal_part_way_says_what_was_done_and_what_is_left() -> None:
    """The server refusing a step after the session was created (another session went live
    in between, say) must not leave a scheduled session behind without saying so."""
    refused = ApiError(409, 4004, "artist already has a live session")
    result = {
        "changed": ["created session s1"],
        "session": {"id": "s1", "status": "scheduled"},
    }
    said = _partly_applied(refused, result)
    assert said.status == 409 and said.message.startswith("artist already has a live session")
    assert "already done: created session s1; session s1 is left scheduled" in said.message
    assert _partly_applied(refused, {"changed": [], "session": None}) is refused


def test_ingest_tables_are_the_sessions_whole_list_of_sources(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        '[session]\ntitle = "t"\n'
        '[[ingest]]\nplatform = "twitch"\nchannel = "#Band"\n'
        '[[ingest]]\nplatform = "youtube"\ntarget = "dQw4w9WgXcQ"\nredundancy = 2\n'
        '[[ingest]]\nplatform = "simulate"\nrate = 3\n'
    )
    spec = read_session_file(path)
    existing = {"id": "s1", "title": "t", "status": "live", "chatEnabled": True}
    existing |= {"reactionsEnabled": True, "allowGuests": False}
    declared = [
        {"id": "twitch:band", "credentials": "default", "redundancy": None},
        {"id": "youtube:dQw4w9WgXcQ", "credentials": "default", "redundancy": None},
        {"id": "tiktok:old", "credentials": "default", "redundancy": None},
    ]
    plan = plan_changes(spec, existing, [], sources=declared)
    assert plan.add_sources == [
        {"platform": "youtube", "target": "dQw4w9WgXcQ", "credentials": "default", "redundancy": 2},
        {"platform": "simulate", "target": "3", "credentials": "default"},
    ]
    assert plan.remove_sources == ["tiktok:old"]
    assert plan.steps() == [
        "declare source youtube:dQw4w9WgXcQ",
        "declare source simulate:3",
        "withdraw source tiktok:old",
    ]
    declared[1]["redundancy"] = 2
    declared.append({"id": "simulate:3", "credentials": "default", "redundancy": None})
    del declared[2]
    assert plan_changes(spec, existing, [], sources=declared).changes_nothing


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('platform = "discord"\nchannelId = "general"', "is not a Discord channel id"),
        ('platform = "twitch"', "give the twitch source's target once"),
        ('platform = "twitch"\ntarget = "a"\nchannel = "b"', "(found target, channel)"),
        ('platform = "twitch"\ntarget = "a"\ncolour = 1', "unknown key(s) colour"),
        ('platform = "twitch"\ntarget = "a"\nredundancy = 7', "ingest.0"),
        ('platform = "simulate"\nrate = 20000', "is not a rate in messages per second"),
    ],
)
def test_a_bad_ingest_table_names_the_problem(tmp_path: Path, table: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[session]\ntitle = "t"\n[[ingest]]\n{table}\n')
    with pytest.raises(SessionFileError) as caught:
        read_session_file(path)
    assert problem in str(caught.value) and "ingest.0" in str(caught.value)
