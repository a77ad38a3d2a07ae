"""Row counts and content checksums per table, the same on a live database and its restore.

The checksum of a table is order-independent: each row's canonical text is hashed with
SHA-256 and the first 128 bits of the hashes are summed modulo 2¹²⁸ (as two 64-bit
halves). No ORDER BY is needed, so it is one sequential scan per table, and a row changed,
added or lost changes the sum. Tampering with the stored files is caught by the files'
own SHA-256 in the manifest; this checksum answers "did the restore bring back the data".

PostgreSQL computes it in SQL over `row::text` with the output settings pinned (UTC, ISO
dates, shortest exact floats, hex bytea), so it does not depend on the session. SQLite
computes it in Python over `repr()` of each row as the sqlite3 module returns it. The two
methods are named in the manifest; a checksum is only compared with one of the same method.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from nextoffer.ops.manifest import TableStat
from nextoffer.store import Connection

PG_METHOD = "pg-row-text-sha256-sum/1"
SQLITE_METHOD = "sqlite-row-repr-sha256-sum/1"
_MASK = (1 << 64) - 1
# Settings that change how a row prints as text: pinned so the checksum is a function of
# the data alone.
_PG_OUTPUT_SETTINGS = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
)
_PG_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'
ORDER BY 1, 2
"""


def _checksum(high: int, low: int) -> str:
    return f"{high & _MASK:016x}{low & _MASK:016x}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def postgres_stats(conn: Connection) -> list[TableStat]:
    """Stats of every table, read inside the caller's transaction (one snapshot).

    Call it in a REPEATABLE READ transaction: every table is then read as of one moment,
    the same moment a `pg_dump --snapshot` of that transaction sees.
    """
    for statement in _PG_OUTPUT_SETTINGS:
        conn.exec_driver_sql(statement)
    stats: list[TableStat] = []
    for schema, table in conn.exec_driver_sql(_PG_TABLES).all():
        qualified = f"{_quote(schema)}.{_quote(table)}"
        # The alias is unlikely to be a column name: a column of that name would be read
        # instead of the whole row.
        query = (
            "SELECT count(*), "
            "coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0), "
            "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0) "
            "FROM (SELECT encode(sha256(convert_to(nextoffer_row_::text, 'UTF8')), 'hex') AS h "
            f"FROM {qualified} AS nextoffer_row_) AS hashed"
        )
        rows, high, low = conn.exec_driver_sql(query).one()
        name = table if schema == "public" else f"{schema}.{table}"
        stats.append(TableStat(name=name, rows=int(rows), checksum=_checksum(int(high), int(low))))
    return stats


def sqlite_stats(path: Path) -> list[TableStat]:
    """Stats of every table of the SQLite file `path` (a backup copy: nothing writes to it)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            )
        ]
        stats: list[TableStat] = []
        for table in tables:
            count = high = low = 0
            sha256 = hashlib.sha256
            for row in conn.execute(f"SELECT * FROM {_quote(table)}"):
                digest = sha256(repr(row).encode()).digest()
                high += int.from_bytes(digest[:8], "big")
                low += int.from_bytes(digest[8:16], "big")
                count += 1
            stats.append(TableStat(name=table, rows=count, checksum=_checksum(high, low)))
        return stats
    finally:
        conn.close()


def sqlite_schema_version(path: Path) -> str | None:
    """The Alembic revision recorded in the SQLite file, or None."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if found is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None
    finally:
        conn.close()


def postgres_schema_version(conn: Connection) -> str | None:
    """The Alembic revision recorded in the database the connection is on, or None."""
    exists = conn.exec_driver_sql("SELECT to_regclass('alembic_version') IS NOT NULL").scalar()
    if not exists:
        return None
    value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if value is None else str(value)


def compare_stats(expected: list[TableStat], actual: list[TableStat]) -> list[str]:
    """What differs between the manifest's stats and those of a restored database."""
    problems: list[str] = []
    wanted = {t.name: t for t in expected}
    found = {t.name: t for t in actual}
    for name in sorted(wanted.keys() - found.keys()):
        problems.append(f"{name}: table missing after restore")
    for name in sorted(found.keys() - wanted.keys()):
        problems.append(f"{name}: table not in the backup's manifest")
    for name in sorted(wanted.keys() & found.keys()):
        want, got = wanted[name], found[name]
        if want.rows != got.rows:
            problems.append(f"{name}: {got.rows:,} rows restored, {want.rows:,} at backup time")
        elif want.checksum != got.checksum:
            problems.append(f"{name}: content checksum differs from the one at backup time")
    return problems
