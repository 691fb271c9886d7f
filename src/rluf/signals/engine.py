"""Where stage 1 runs: an Ibis backend (DuckDB in-process by default) and the logs read as lazy tables.

Every step of `signals` and `curate` is an Ibis expression over these tables, so the same code can run on
any Ibis backend that holds the canonical log tables (DuckDB here; Spark or a warehouse where a company's
logs live). Nothing here loads the logs into Python objects: tables are scanned by the engine.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import pyarrow.parquet as pq

from rluf.errors import DataError, SchemaError
from rluf.schema import LATER_COLUMNS, MESSAGES, REACTIONS, USERS
from rluf.utils import file_fingerprint

log = logging.getLogger(__name__)


@dataclass
class Logs:
    """The canonical log tables as lazy Ibis tables, and the files they came from."""

    con: Any
    messages: ibis.Table
    reactions: ibis.Table
    users: ibis.Table | None
    files: list[Path]
    logs_dir: Path
    n_messages: int | None = None  # rows of messages.parquet (from its footer), when known
    tables: dict[str, str] | None = None  # logs given as backend tables (`logs_from_tables`): kind -> name

    def where(self, kind: str) -> str:
        """Where the `kind` table ("messages", "reactions", "users") comes from, for error messages."""
        if self.tables is not None:
            return f"table {self.tables[kind]}"
        return f"{self.logs_dir}/{kind}.parquet"

    def source(self) -> dict[str, Any]:
        """The input as manifests record it: the folder and a fingerprint of its files, or the backend's tables."""
        if self.tables is not None:
            return {"backend": self.con.name, "tables": self.tables, "messages": self.n_messages}
        return {"logs_dir": str(self.logs_dir), "files": [p.name for p in self.files],
                "fingerprint": file_fingerprint(self.files)}


def connect(memory_limit: str = "1GB", threads: int | None = None, temp_directory: str | None = None):
    """An in-process DuckDB connection through Ibis, bounded to `memory_limit` (spills to disk beyond it)."""
    config: dict[str, Any] = {"memory_limit": memory_limit, "preserve_insertion_order": False}
    if threads:
        config["threads"] = threads
    if temp_directory:
        config["temp_directory"] = temp_directory
    return ibis.duckdb.connect(**config)


def resolve_logs_dir(logs_dir: str | Path) -> Path:
    """Accept a logs folder or a simulator/run folder holding `logs/`."""
    path = Path(logs_dir)
    if not path.exists():
        raise DataError(f"logs folder {path} does not exist; give a folder with messages.parquet and reactions.parquet")
    if not (path / "messages.parquet").is_file() and (path / "logs" / "messages.parquet").is_file():
        return path / "logs"
    return path


_LATER = {c for cols in LATER_COLUMNS.values() for c in cols}


def _check_columns(path: Path, schema) -> int:
    """Check that the Parquet file at `path` has the canonical columns; return its row count (footer only)."""
    try:
        meta = pq.read_metadata(path)
        names = meta.schema.to_arrow_schema().names
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for non-Parquet files
        raise SchemaError(f"{path} is not a readable Parquet file ({e}); write logs with `rluf ingest`") from None
    missing = [n for n in schema.names if n not in names and n not in _LATER]
    if missing:
        raise SchemaError(
            f"{path} is missing column(s) {missing}; expected {schema.names} (see docs/log-schema.md)"
        )
    return meta.num_rows


def _typed(table: ibis.Table, schema) -> ibis.Table:
    """Select the canonical columns and cast timestamps to UTC (logs written by other tools may differ)."""
    cols = {}
    for f in schema:
        if f.name in _LATER and f.name not in table.columns:  # logs written before the column existed
            cols[f.name] = ibis.null().cast(ibis.dtype(f.type))
            continue
        col = table[f.name]
        if f.name == "created_at" and not col.type().is_timestamp():
            raise SchemaError(f"column created_at has type {col.type()}, expected a timestamp")
        if f.name == "turn_index":
            col = col.cast("int64")
        cols[f.name] = col
    return table.select(**cols)


def _check_table_columns(table: ibis.Table, kind: str, name: str, schema) -> None:
    missing = [n for n in schema.names if n not in table.columns and n not in _LATER]
    if missing:
        raise SchemaError(f"{kind} table {name} is missing column(s) {missing}; expected {schema.names} "
                          "(see docs/log-schema.md)")


def logs_from_tables(messages: ibis.Table, reactions: ibis.Table, users: ibis.Table | None = None) -> Logs:
    """Logs that already live in a backend: Ibis tables of one connection (Spark, a warehouse, DuckDB) holding
    the canonical columns (docs/log-schema.md), e.g. `con.table("messages", database="prod")`. Pass the result
    to `curate` in place of a folder; the pipeline then runs in that engine and only the kept rows come back."""
    con = messages.get_backend()
    given = {"messages": messages, "reactions": reactions} | ({"users": users} if users is not None else {})
    names = {}
    for kind, table in given.items():
        if not isinstance(table, ibis.Table):
            raise DataError(f"logs_from_tables: {kind} must be an Ibis table, got {type(table).__name__}")
        if table.get_backend() is not con:
            raise DataError(f"logs_from_tables: {kind} comes from another connection than messages; "
                            "give tables of one backend")
        op = table.op()
        names[kind] = getattr(op, "name", None) or f"<{kind} expression>"
    _check_table_columns(messages, "messages", names["messages"], MESSAGES)
    _check_table_columns(reactions, "reactions", names["reactions"], REACTIONS)
    if users is not None:
        _check_table_columns(users, "users", names["users"], USERS)
    n_messages = int(con.to_pyarrow(messages.count()).as_py())
    return Logs(con=con, messages=_typed(messages, MESSAGES), reactions=_typed(reactions, REACTIONS),
                users=_typed(users, USERS) if users is not None else None, files=[], logs_dir=Path("."),
                n_messages=n_messages, tables=names)


def open_logs(logs: str | Path | Logs, con=None, **connect_kw) -> Logs:
    """`logs` as given (`logs_from_tables`), or a folder read by `con` (a new `connect(**connect_kw)` if None)."""
    if isinstance(logs, Logs):
        return logs
    return load_logs(con if con is not None else connect(**connect_kw), logs)


def load_logs(con, logs_dir: str | Path) -> Logs:
    """Register the canonical log files of `logs_dir` with the backend `con` (lazy; nothing is read yet)."""
    path = resolve_logs_dir(logs_dir)
    msg_path, rx_path, users_path = path / "messages.parquet", path / "reactions.parquet", path / "users.parquet"
    if not msg_path.is_file():
        raise DataError(f"{path} has no messages.parquet; produce it with `rluf ingest` or `rluf simulate`")
    if not rx_path.is_file():
        raise DataError(f"{path} has no reactions.parquet: there is no feedback signal to curate")
    n_messages = _check_columns(msg_path, MESSAGES)
    _check_columns(rx_path, REACTIONS)
    messages = _typed(con.read_parquet(msg_path), MESSAGES)
    reactions = _typed(con.read_parquet(rx_path), REACTIONS)
    users = None
    files = [msg_path, rx_path]
    if users_path.is_file():
        _check_columns(users_path, USERS)
        users = _typed(con.read_parquet(users_path), USERS)
        files.append(users_path)
    return Logs(con=con, messages=messages, reactions=reactions, users=users, files=files, logs_dir=path,
                n_messages=n_messages)


def reaction_type_counts(logs: Logs) -> dict[str, int]:
    """Reaction types present in the logs with their counts (small: one row per type)."""
    r = logs.reactions
    df = logs.con.to_pyarrow(r.group_by("type").agg(n=r.count()).order_by(ibis.desc("n")))
    return dict(zip(df["type"].to_pylist(), df["n"].to_pylist(), strict=True))


@ibis.udf.scalar.builtin(name="hash")
def raw_hash(value: str) -> int:
    """The backend's own HASH(value), as it comes: DuckDB's unsigned 64-bit hash, Spark's signed 32-bit one.

    `value.hash()` in Ibis reinterprets DuckDB's unsigned hash as a signed one through a BIT cast, which costs
    about a third of the hash itself on every row. Callers reduce it modulo a constant and add the constant
    before reducing again (`((h % m) + m) % m`), so the sign never matters and no cast is needed.
    """


_counter = itertools.count()


def materialize(con, expr: ibis.Table, stem: str) -> ibis.Table:
    """Compute `expr` once into a temporary table of the backend (reused by later steps, never fetched)."""
    if con.name != "duckdb":  # e.g. Spark: no temp tables, but a cached DataFrame behind a temp view
        # Ibis' PySpark cache() compiles without registering the memtables in `expr` (flagged users, thresholds),
        # which then fail as missing views; executing the expression once (no rows) registers them.
        con.to_pyarrow(expr.limit(0))
        return expr.cache()
    name = f"_rluf_{stem}_{next(_counter)}"
    return con.create_table(name, expr, temp=True)


def release(con, *tables: ibis.Table | None) -> None:
    """Free tables made by `materialize` that later steps no longer need (DuckDB keeps temp tables in memory)."""
    for t in tables:
        if t is None:
            continue
        if con.name != "duckdb":
            release_cached = getattr(t, "release", None)
            if release_cached is not None:
                release_cached()
            continue
        op = t.op()
        con.raw_sql(f'DROP TABLE IF EXISTS "{op.namespace.catalog}"."{op.namespace.database}"."{op.name}"')
