"""What pipelines and serving share: offer scoring of a block, champion loading, churn frames.

Below both `pipelines` and `serving` (which must not import each other); imports nothing
heavier than numpy and SQLAlchemy at module level, so the serving process stays light.
"""
