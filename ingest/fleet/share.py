"""Who reads what: the fair-share decision of one worker, with no I/O.

A *reading* is one replica of a source (``twitch:shroud`` replica 0, 1, ...): a source with
redundancy r has r readings, each under its own lease. Every reconcile tick a worker looks at
what is wanted, who is alive and who holds which lease, and :func:`decide` says what it should
claim and hand back. Every worker runs the same rule, so the fleet converges without a leader:

- the fair share is ``ceil(wanted readings / live workers)``, capped by the worker's capacity;
- readings no longer wanted (their sessions ended) are released at once;
- readings over the share are handed back (a worker joined), the ones this worker ranks lowest;
- unowned readings are claimed up to the share, never two replicas of one source (so r
  different workers read it), preferring a worker on another host than the other replicas'.

The rank is rendezvous hashing of ``(worker, reading)``: workers racing for unowned readings
mostly want different ones, and a worker keeps the same readings across ticks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Plan", "Reading", "View", "decide", "fair_share", "rank"]


class Reading(NamedTuple):
    """One replica of one source: the unit a lease covers."""

    source: str
    replica: int


@dataclass(frozen=True)
class View:
    """What one worker knows at a tick.

    ``wanted``: source id -> redundancy. ``hosts``: live worker id -> host (this worker
    included). ``owners``: reading -> the worker holding its lease (any worker, alive or not:
    a dead worker's lease still blocks until it expires).
    """

    me: str
    capacity: int
    wanted: Mapping[str, int]
    hosts: Mapping[str, str]
    owners: Mapping[Reading, str]


@dataclass(frozen=True)
class Plan:
    """What to do: claim these readings, release those (stop them first), and the share."""

    claim: list[Reading] = field(default_factory=list)
    release: list[Reading] = field(default_factory=list)
    share: int = 0


def fair_share(readings: int, workers: int, capacity: int) -> int:
    """``ceil(readings / workers)`` capped by ``capacity`` (one worker when none is known)."""
    return min(capacity, math.ceil(readings / max(workers, 1)))


def rank(worker: str, reading: Reading) -> bytes:
    """Rendezvous-hash order: lower sorts first (claimed first, handed back last)."""
    text = f"{worker}|{reading.source}|{reading.replica}".encode()
    return hashlib.blake2b(text, digest_size=8).digest()


def decide(view: View) -> Plan:
    """The claims and releases that move this worker towards its fair share."""
    me = view.me
    load: dict[str, int] = {worker: 0 for worker in view.hosts}
    readers: dict[str, set[str]] = {}
    for reading, owner in view.owners.items():
        load[owner] = load.get(owner, 0) + 1
        if owner in view.hosts:
            readers.setdefault(reading.source, set()).add(owner)
    mine = {reading for reading, owner in view.owners.items() if owner == me}
    gone = sorted(r for r in mine if view.wanted.get(r.source, 0) <= r.replica)
    keep = sorted(mine - set(gone), key=lambda r: rank(me, r))
    total = sum(view.wanted.values())
    share = fair_share(total, len(view.hosts), view.capacity)

    def takers(source: str) -> list[str]:
        """Other live workers under the share that could read ``source``."""
        others = readers.get(source, set())
        return [w for w in view.hosts if w != me and load[w] < share and w not in others]

    release = list(gone)
    while len(keep) > view.capacity:
        release.append(keep.pop())
    while len(keep) > share:
        # the lowest-ranked reading some worker under the share could take: the last one may
        # be of a source every such worker already reads, while another is not
        movable = next((r for r in reversed(keep) if takers(r.source)), None)
        if movable is None:
            break
        keep.remove(movable)
        release.append(movable)
        load[takers(movable.source)[0]] += 1  # one taker per handed-back reading
    room = share - len(keep)
    held = {r.source for r in keep}
    unowned = [
        Reading(source, replica)
        for source, redundancy in view.wanted.items()
        for replica in range(redundancy)
        if Reading(source, replica) not in view.owners
    ]
    claims: list[Reading] = []
    for reading in sorted(unowned, key=lambda r: (r.replica, rank(me, r))):
        if reading.source in held:
            continue
        others = readers.get(reading.source, set())
        if room > 0:
            if _better_elsewhere(view, others, load, share):
                continue
            room -= 1
        elif len(keep) + len(claims) >= view.capacity or takers(reading.source) or claims:
            continue  # a worker with room can take it; else one over the share, one a tick
        claims.append(reading)
        held.add(reading.source)
    return Plan(claims, release, share)


def _better_elsewhere(view: View, readers: set[str], load: Mapping[str, int], share: int) -> bool:
    """Whether a live worker on a host none of the source's ``readers`` is on has room for
    it, while a reader already runs on this worker's host: leave the reading to that one."""
    used_hosts = {view.hosts[owner] for owner in readers}
    if view.hosts.get(view.me) not in used_hosts:
        return False
    return any(
        host not in used_hosts and load.get(worker, 0) < share
        for worker, host in view.hosts.items()
    )
