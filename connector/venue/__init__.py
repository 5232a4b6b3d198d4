"""Adapters to the venue: authentication, the order stream, and the REST search (backfill)."""
