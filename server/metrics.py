"""Prometheus metrics of one server process (each process counts its own connections).

With ``--workers N`` every process has its own registry; a scrape reaches one of them (the
kernel picks), so dashboards sum over instances labelled by ``process``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from broker.fleet_view import FleetView, fleet_view, read_fleet
from broker.sources import SourceStore

__all__ = ["Metrics"]

log = logging.getLogger("vstudio.server.metrics")

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 150, 250, 500, 1000, 2500, 5000)


class Metrics:
    """The seed's metric names, in a registry of this process."""

    def __init__(self, process_id: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"process": process_id}
        self.ws_connections = Gauge(
            "ws_connections_total",
            "active WebSocket connections of this process (the seed's name: a gauge)",
            registry=self.registry,
        )
        self.sse_connections = Gauge(
            "sse_connections", "active SSE connections of this process", registry=self.registry
        )
        self.connections_by_session = Gauge(
            "ws_connections_by_session",
            "open connections of this process per session",
            ["session"],
            registry=self.registry,
        )
        self.messages_sent = Counter(
            "ws_messages_sent_total", "frames written to clients", registry=self.registry
        )
        self.fanout_writes = Counter(
            "ws_fanout_writes_total",
            "socket writes of fan-out frames (a client that is behind gets several in one)",
            registry=self.registry,
        )
        self.messages_received = Counter(
            "ws_messages_received_total", "frames received from clients", registry=self.registry
        )
        self.errors = Counter(
            "ws_errors_total",
            "errors reported to clients or dropped clients",
            ["reason"],
            registry=self.registry,
        )
        self.front_requests = Counter(
            "vstudio_front_requests_total",
            "first requests on their connection answered without aiohttp (server/transport/"
            "front.py), by kind: websocket upgrades and tickets",
            ["kind"],
            registry=self.registry,
        )
        self.latency_ms = Histogram(
            "ws_latency_ms",
            "delay from an event's publish timestamp to its write to the clients, ms",
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self.info = Gauge(
            "vstudio_process", "this server process", ["process"], registry=self.registry
        )
        self.info.labels(**labels).set(1)
        # issue 15: the worker fleet's health, read from Redis at scrape time
        self.ingest_sources = Gauge(
            "vstudio_ingest_sources",
            "chat sources wanted by each session, by platform and state (unclaimed: no worker)",
            ["session", "platform", "state"],
            registry=self.registry,
        )
        self.ingest_source_owners = Gauge(
            "vstudio_ingest_source_owners",
            "workers holding a lease on each wanted source (below its redundancy: at risk)",
            ["source"],
            registry=self.registry,
        )

    def show_fleet(self, view: FleetView) -> None:
        """Set the fleet gauges to ``view`` (sources no longer wanted disappear)."""
        self.ingest_sources.clear()
        self.ingest_source_owners.clear()
        for row in view.sources:
            self.ingest_source_owners.labels(row.id).set(len(row.owners))
            for session in row.sessions:
                self.ingest_sources.labels(session, row.platform, row.state).inc()

    async def observe_fleet(self, redis: Any, fleet: str) -> None:
        """Read the fleet (one hash, one read per declaring session, three more commands) and
        show it; when Redis does not answer, the last values stay and the scrape goes on."""
        try:
            wanted = await SourceStore(redis, fleet).wanted(int(time.time() * 1000))
            self.show_fleet(fleet_view(await read_fleet(redis, fleet, wanted)))
        except Exception as exc:
            log.warning("fleet metrics not refreshed: %s", exc)

    def connections(self, transport: str) -> Gauge:
        """The gauge of open connections of ``transport`` (``ws`` or ``sse``)."""
        return self.sse_connections if transport == "sse" else self.ws_connections

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
