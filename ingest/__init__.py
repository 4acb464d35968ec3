"""Ingestion workers: platform chat normalized onto the bus."""
