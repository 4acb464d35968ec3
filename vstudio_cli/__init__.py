"""The ``vstudio`` command: one entry point for every part of V Studio realtime."""
