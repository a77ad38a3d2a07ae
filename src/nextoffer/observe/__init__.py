"""Observability: JSON logs with run and request ids, metrics, traces."""
