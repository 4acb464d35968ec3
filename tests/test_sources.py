"""The fleet's desired state: sources declared per session, wanted while a session is live."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from broker import Bus
from broker.models import NormalizedChatMessage, Platform, Session, SessionStatus
from broker.sources import SourceKind, SourceSpec, SourceStore, is_wanted
from server.interactions.sessions import SessionStore


@pytest.fixture
def fleet() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


def spec(platform: str, target: str, **more: object) -> SourceSpec:
    return SourceSpec.model_validate({"platform": platform, "target": target, **more})


@pytest.mark.parametrize(
    ("platform", "given", "canonical"),
    [
        ("twitch", "#Shroud", "shroud"),
        ("tiktok", "@Some.User", "some.user"),
        ("youtube", "dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("youtube", "UCuAXFkgsw1L7xaCfnd5JJOw", "UCuAXFkgsw1L7xaCfnd5JJOw"),
        ("discord", "81384788765712384", "81384788765712384"),
        ("simulate", "3.0", "3"),
        ("simulate", " 0.5", "0.5"),
        ("simulate", "10000", "10000"),
    ],
)
def test_targets_have_one_spelling(platform: str, given: str, canonical: str) -> None:
    assert spec(platform, given).id == f"{platform}:{canonical}"


@pytest.mark.parametrize(
    ("platform", "target"),
    [
        ("twitch", "no spaces"),
        ("twitch", "a" * 26),
        ("youtube", "short"),
        ("discord", "#general"),
        ("audifi", "anything"),
        ("simulate", "0"),
        ("simulate", "0.000"),
        ("simulate", "10000.5"),
        ("simulate", "-3"),
        ("simulate", "fast"),
        ("simulate", "1e3"),
    ],
)
def test_bad_targets_are_refused_with_what_was_expected(platform: str, target: str) -> None:
    with pytest.raises(ValidationError):
        spec(platform, target)


def test_simulate_is_a_source_kind_and_never_a_platform_on_the_wire() -> None:
    """Demo chat is declared like any source, but no message may say it came from it: the
    seed's platforms (and ``audifi``) are the only ones a message or platform event carries."""
    assert spec("simulate", "3").platform == SourceKind.SIMULATE
    assert "simulate" not in {str(p) for p in Platform}
    with pytest.raises(ValidationError):
        NormalizedChatMessage(
            id="simulate:1", platform="simulate", username="u", text="hi", timestamp=1
        )


def test_redundancy_and_credentials_are_checked() -> None:
    with pytest.raises(ValidationError):
        spec("twitch", "shroud", redundancy=4)
    with pytest.raises(ValidationError):
        spec("twitch", "shroud", credentials="has space")
    with pytest.raises(ValidationError):
        spec("twitch", "shroud", token="secret")  # credentials never live in the record


@pytest.mark.parametrize(
    ("record", "now", "lead", "wanted"),
    [
        ({"status": "live"}, 0, 0, True),
        ({"status": "ended"}, 0, 10_000, False),
        (None, 0, 10_000, False),
        ({"status": "scheduled", "scheduledStart": 100_000}, 95_000, 0, False),
        ({"status": "scheduled", "scheduledStart": 100_000}, 89_999, 10_000, False),
        ({"status": "scheduled", "scheduledStart": 100_000}, 90_000, 10_000, True),
        ({"status": "scheduled", "scheduledStart": None}, 90_000, 10_000, False),
    ],
)
def test_a_session_wants_its_sources_while_live_or_about_to_be(
    record: dict[str, object] | None, now: int, lead: int, wanted: bool
) -> None:
    assert is_wanted(record, now, lead) is wanted


async def test_one_channel_for_two_sessions_is_one_wanted_source(bus: Bus, fleet: str) -> None:
    sessions = SessionStore(bus)
    ids = [f"s{uuid.uuid4().hex[:10]}" for _ in range(3)]
    for sid, status in zip(ids, ["live", "live", "ended"], strict=True):
        await sessions.create(
            Session(id=sid, artist_id="a", title="t", status=SessionStatus(status))
        )
    store = SourceStore(bus.redis, fleet)
    for sid in ids:
        assert await store.add(sid, spec("twitch", "#Shroud"))
    assert not await store.add(ids[0], spec("twitch", "shroud", redundancy=2))
    await store.add(ids[2], spec("youtube", "dQw4w9WgXcQ"))

    wanted = await store.wanted(now_ms=0)
    assert list(wanted) == ["twitch:shroud"]
    assert wanted["twitch:shroud"].sessions == tuple(sorted(ids[:2]))
    assert [s.id for s in await store.of_session(ids[2])] == [
        "twitch:shroud",
        "youtube:dQw4w9WgXcQ",
    ]
    assert (await store.of_session(ids[0]))[0].redundancy == 2

    assert await store.remove(ids[0], "twitch:shroud")
    assert not await store.remove(ids[0], "twitch:shroud")
    assert (await store.wanted(now_ms=0))["twitch:shroud"].sessions == (ids[1],)
    assert await store.remove_session(ids[2]) == 2
    assert await store.of_session(ids[2]) == []


async def test_fleets_do_not_see_each_other(bus: Bus, fleet: str, session_record: str) -> None:
    await SourceStore(bus.redis, fleet).add(session_record, spec("twitch", "shroud"))
    assert await SourceStore(bus.redis, fleet + "x").wanted(now_ms=0) == {}
    assert list(await SourceStore(bus.redis, fleet).wanted(now_ms=0)) == ["twitch:shroud"]
