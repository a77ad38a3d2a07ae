"""Persistence: SQLAlchemy models, engine factory, migrations, bulk upserts, run records.

Only `store` imports SQLAlchemy (an import-linter contract says so). Code elsewhere that
passes an engine or a connection along names these re-exported types, not SQLAlchemy's.
"""

from sqlalchemy import Connection, Engine

__all__ = ["Connection", "Engine"]
