"""Ticket ingestion: batches of tickets from another system, applied idempotently."""
