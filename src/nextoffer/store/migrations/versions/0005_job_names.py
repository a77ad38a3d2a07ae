"""Job names: runs recorded under an old name get the catalogue's name (`train` → `training`).

Created 2026-12-06 04:00.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

# Old name → the name of nextoffer.jobs.catalogue. Written out: a migration must not change
# when the code it was written against does.
RENAMED = {"train": "training"}

_job_runs = sa.table("job_runs", sa.column("job", sa.String))


def upgrade() -> None:
    """Apply this revision."""
    for old, new in RENAMED.items():
        op.execute(_job_runs.update().where(_job_runs.c.job == old).values(job=new))


def downgrade() -> None:
    """Revert this revision: nothing to do.

    The old code read both names (the console's aliases, the alerts' `train|training`), and
    the runs renamed here cannot be told apart from `training` runs any more.
    """
