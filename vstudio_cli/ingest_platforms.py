"""``vstudio ingest youtube|discord|tiktok``: registered onto the ``ingest`` command group."""
