"""Persistence: SQLAlchemy models, engine factory, migrations, bulk upserts, run records.

Only `store` imports SQLAlchemy (an import-linter contract says so). Code elsewhere that
passes an engine or a connection along, or catches the database's errors, names these
re-exported types, not SQLAlchemy's.
"""

from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import SQLAlchemyError as DatabaseError

__all__ = ["URL", "Connection", "DatabaseError", "Engine", "OperationalError"]
