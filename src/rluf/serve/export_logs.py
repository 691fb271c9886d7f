"""`rluf export DB_URL --out DIR`: the gateway's database as canonical Parquet logs.

Writes DIR/logs/messages.parquet, reactions.parquet and users.parquet (docs/log-schema.md; each checked
with rluf.schema.check_table), DIR/assignments.parquet (experiment, user_id, arm, assigned_at) and
DIR/export.json with row counts. Rows are streamed in chunks, so memory stays bounded for large logs.
Rows are sorted (messages by conversation and turn, reactions by time), so SQLite and PostgreSQL holding
the same rows give identical tables. All tables are read in one snapshot, so the export can run while the
gateway serves.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from rluf.errors import DataError
from rluf.schema import MESSAGES, REACTIONS, TS, USERS, check_table
from rluf.serve import store as db
from rluf.utils import write_json

log = logging.getLogger(__name__)
CHUNK = 50_000

ASSIGNMENTS = pa.schema([
    pa.field("experiment", pa.string(), nullable=False),
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("arm", pa.string(), nullable=False),
    pa.field("assigned_at", TS, nullable=False),
])

# (database table, ORDER BY columns, canonical schema, output path inside DIR, canonical table name)
EXPORTS = [
    (db.messages, ["conversation_id", "turn_index"], MESSAGES, "logs/messages.parquet", "messages"),
    (db.reactions, ["created_at", "message_id", "user_id", "type"], REACTIONS, "logs/reactions.parquet",
     "reactions"),
    (db.users, ["user_id"], USERS, "logs/users.parquet", "users"),
    (db.assignments, ["experiment", "user_id"], ASSIGNMENTS, "assignments.parquet", None),
]


def _to_arrow(rows: list, schema: pa.Schema) -> pa.Table:
    cols = {}
    for i, field in enumerate(schema):
        values = [r[i] for r in rows]
        if field.type == TS:  # integer microseconds -> timestamp[us, UTC]
            cols[field.name] = pa.array(values, pa.int64()).cast(TS)
        else:
            cols[field.name] = pa.array(values, field.type)
    return pa.table(cols, schema=schema)


def _export_table(conn, table, order: list[str], schema: pa.Schema, path: Path, name: str | None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    stored = pa.schema([f for f in schema if f.name in table.c])  # check_table adds later columns
    query = select(*[table.c[f.name] for f in stored]).order_by(*[table.c[c] for c in order])
    n = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
        for rows in result.partitions(CHUNK):
            chunk = _to_arrow(rows, stored)
            if name is not None:
                chunk = check_table(chunk, name, source=str(path))
            writer.write_table(chunk)
            n += chunk.num_rows
    tmp.replace(path)  # readers never see a half-written file
    return n


def export(db_url: str, out: str | Path) -> dict[str, int]:
    """Export the gateway database at `db_url` to canonical Parquet under `out`; returns row counts."""
    url = db.database_url(db_url)
    sqlite_path = make_url(url).database if url.startswith("sqlite") else None
    if sqlite_path and sqlite_path != ":memory:" and not Path(sqlite_path).is_file():
        raise DataError(f"SQLite database {sqlite_path} does not exist; give the database.url of the gateway")
    engine = db.make_engine(url)  # no create_all: a wrong URL must not create an empty database
    try:
        missing = [t for t in ("messages", "reactions", "users", "assignments")
                   if not inspect(engine).has_table(t)]
        if missing:
            raise DataError(
                f"database {db.safe_url(url)} has no table(s) {missing}; is this the "
                "database.url of a gateway that has served requests (`rluf serve`)?"
            )
        out = Path(out)
        counts = {}
        with engine.connect() as conn:
            # one snapshot for all tables, so that a gateway writing meanwhile cannot leave a reaction
            # pointing at a message the export does not hold
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            else:
                conn.exec_driver_sql("BEGIN")  # a WAL read transaction sees one snapshot until it ends
            for table, order, schema, rel, name in EXPORTS:
                counts[table.name] = _export_table(conn, table, order, schema, out / rel, name)
    finally:
        engine.dispose()
    write_json(out / "export.json", {"database": db.safe_url(url), "counts": counts})
    log.info("exported %s to %s", counts, out)
    return counts
