"""Observability: Prometheus metrics, the HTTP endpoints, and the status the service reports."""
