"""A script the node serving its keys does not know still runs, and is taught to that node only.

CI once failed ``test_cluster_failover`` with ``NoScriptError`` from redis-py's own retry: after
a failover its ``SCRIPT LOAD`` went to the primaries of a stale view, which left out the new
primary, so the ``EVALSHA`` that followed was refused again. :class:`broker.scripts.Script`
sends the script whole (``EVAL``) to wherever its keys live instead; these tests pin that down.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from broker import connect
from broker.connection import is_cluster
from broker.scripts import Script
from tests.support.cluster import LocalCluster

SOURCE = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[object]:
    client = await connect(redis_cluster.url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_script_no_node_has_seen_runs_and_is_then_called_by_sha(
    redis_url: str, session_id: str
) -> None:
    client = await connect(redis_url)
    try:
        script = Script(client, f"-- {session_id}\n{SOURCE}")  # unknown to Redis: NOSCRIPT
        key = f"vstudio:test:{{{session_id}}}:n"
        assert await script(keys=[key], args=[2]) == 2
        assert await script(keys=[key], args=[3]) == 5
        if not is_cluster(client):  # a cluster's SCRIPT EXISTS asks every primary
            assert await client.script_exists(script.sha) == [True]
        await client.delete(key)
    finally:
        await client.aclose()


@pytest.mark.cluster
async def test_the_script_is_taught_only_to_the_node_that_runs_it(
    redis_cluster: LocalCluster, cluster_client: object, session_id: str
) -> None:
    key = f"vstudio:test:{{{session_id}}}:n"
    source = f"-- {session_id}\n{SOURCE}"  # a script no node has seen
    script = Script(cluster_client, source)  # type: ignore[arg-type]
    assert await script(keys=[key], args=[4]) == 4
    owner = redis_cluster.owner_of(key)
    knows = {}
    for port in redis_cluster.primaries():
        with contextlib.closing(redis_cluster.node(port)) as node:
            knows[port] = node.script_exists(script.sha) == [True]
            if port == owner:
                node.delete(key)
    # redis-py's own script object loads it on every primary it believes in; a stale belief
    # after a failover is how a call came to fail. Only the owner needs it.
    assert knows == {port: port == owner for port in knows}
