"""The fleet view's rules, as pure functions over what Redis holds (issue 15)."""

from __future__ import annotations

from broker.fleet_view import UNCLAIMED, FleetRaw, fleet_view, lease_owner
from broker.models import Platform
from broker.sources import SourceHealth, SourceSpec, Wanted, WorkerRecord


def _wanted(
    *specs: tuple[str, str, int | None], sessions: tuple[str, ...] = ("s1",)
) -> dict[str, Wanted]:
    out = {}
    for platform, target, redundancy in specs:
        spec = SourceSpec(platform=Platform(platform), target=target, redundancy=redundancy)
        out[spec.id] = Wanted(spec, ("s1",))
    return out


def _worker(worker: str, host: str = "h1", load: int = 1) -> str:
    return WorkerRecord(
        id=worker, host=host, pid=7, capacity=10, load=load, started=1, seen=2
    ).model_dump_json()


def _health(source: str, owner: str, state: str, **fields: object) -> tuple[str, str]:
    report = SourceHealth(
        source=source, owner=owner, state=state, sessions=["s1"], seen=1, **fields
    )  # type: ignore[arg-type]
    return f"{source}|{owner}", report.model_dump_json()


def test_the_lease_token_names_its_worker() -> None:
    assert lease_owner("w-1/4f3a2b") == "w-1"
    assert lease_owner("host/pid/4f3a2b") == "host/pid"  # the random part is the last one
    assert lease_owner("w-1") == "w-1"


def test_owners_state_and_the_best_of_their_reports() -> None:
    raw = FleetRaw(
        wanted=_wanted(("twitch", "a", 2), ("twitch", "b", None), ("youtube", "dQw4w9WgXcQ", None)),
        workers={"w1": _worker("w1"), "w2": _worker("w2", "h2")},
        alive=frozenset({"w1"}),
        health=dict(
            [
                _health("twitch:a", "w1", "connected", msg_per_s=5.0, lag_ms=300, last_error="old"),
                _health("twitch:a", "w2", "reconnecting", msg_per_s=0.5, lag_ms=80),
                _health("twitch:b", "w9", "failed", msg_per_s=9.0, last_error="no creds"),
            ]
        ),
        leases={"twitch:a": ["w1/x", "w2/y"], "twitch:b": ["w2/z"]},
    )
    view = fleet_view(raw, default_redundancy=1)
    rows = {row.id: row for row in view.sources}
    a = rows["twitch:a"]
    assert a.owners == ["w1", "w2"] and a.redundancy == 2
    assert a.state == "connected/reconnecting"
    assert (a.msg_per_s, a.lag_ms, a.last_error) == (5.0, 80, "old")
    b = rows["twitch:b"]
    assert b.owners == ["w2"] and b.state == "claimed"  # w9 does not own it: not its state
    assert b.msg_per_s == 0.0 and b.redundancy == 1
    assert b.last_error == "no creds"  # but why w9 failed to read it is worth showing
    yt = rows["youtube:dQw4w9WgXcQ"]
    assert yt.unclaimed and yt.state == UNCLAIMED
    assert [row.id for row in view.unclaimed] == ["youtube:dQw4w9WgXcQ"]
    assert [(w.id, w.alive, w.host) for w in view.workers] == [
        ("w1", True, "h1"),
        ("w2", False, "h2"),
    ]
    wire = view.wire()
    assert wire["unclaimed"] == ["youtube:dQw4w9WgXcQ"]
    assert wire["sources"][0]["msgPerS"] == 5.0 and wire["sources"][0]["sessions"] == ["s1"]


def test_the_latest_error_wins_and_broken_records_are_skipped() -> None:
    first = SourceHealth(
        source="twitch:a", owner="w1", state="failed", sessions=[], last_error="first", seen=10
    )
    later = SourceHealth(
        source="twitch:a", owner="w2", state="failed", sessions=[], last_error="later", seen=20
    )
    raw = FleetRaw(
        wanted=_wanted(("twitch", "a", 2)),
        workers={"w1": _worker("w1"), "bad": "{not json"},
        alive=frozenset(),
        health={"a|w2": later.model_dump_json(), "a|w1": first.model_dump_json(), "x": "[]"},
        leases={"twitch:a": ["w1/1", "w2/2"]},
    )
    view = fleet_view(raw)
    assert view.sources[0].last_error == "later"
    assert [w.id for w in view.workers] == ["w1"]
