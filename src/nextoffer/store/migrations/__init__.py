"""Alembic migrations shipped inside the package (`env.py`, `versions/`) and their helpers."""
