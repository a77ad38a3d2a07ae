"""Persistence: SQLAlchemy models, engine factory, migrations, bulk upserts, run records."""
