"""``bench/ws_floor.py`` as people run it: real floor servers, real voters over loopback.

The floor is what ``bench/votes.py``'s figure is read against (``docs/benchmarks.md``), so its
``--tally`` must make the writes a vote makes in ``vstudio serve``: the ack, and a tally to every
connection once a vote is ``--tally`` seconds unseen. The write counts come from ``/proc``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "ws_floor.py"


def floor(server: str, tally: float) -> dict[str, object]:
    command = [sys.executable, str(BENCH), "--viewers", "200", "--servers", "1"]
    command += ["--server", server, "--tally", str(tally)]
    command += ["--spread", "0.5", "--settle", "0.5", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.parametrize("server", ["aiohttp", "bare"])
def test_a_tally_goes_to_every_connection_as_the_server_sends_it(server: str) -> None:
    alone = floor(server, 0)
    assert alone["answered"] == 200
    # the acks only (a write that finds the last one still buffered joins it in one call)
    assert 0.9 <= float(alone["server_writes_per_vote"]) <= 1.05
    # the first tally 0.3 s after the first vote, inside the 0.5 s of votes; the next one
    # would come after the last vote is answered
    tallied = floor(server, 0.3)
    assert tallied["answered"] == 200
    assert tallied["tally_seconds"] == 0.3
    # and one tally to each of the 200
    assert 1.85 <= float(tallied["server_writes_per_vote"]) <= 2.1
