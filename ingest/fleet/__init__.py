"""The worker fleet (issue 15): many sources per process, claimed by lease, failing over.

One module per job: :mod:`~ingest.fleet.share` decides (pure), :mod:`~ingest.fleet.lease`
holds one reading's lease, :mod:`~ingest.fleet.reading` runs one source and publishes to every
session that wants it, :mod:`~ingest.fleet.adapters` builds an adapter from a source spec,
:mod:`~ingest.fleet.registry` writes the worker's record and health, and
:mod:`~ingest.fleet.worker` is the I/O shell that wires them together.
"""
