"""Vectorised checks of raw tables (DuckDB): each record gets a quarantine reason or none.

Two passes:
  check_rows    per source file: types, required fields, roles, text size, timestamps. Runs on any Arrow
                column types (strings from CSV and JSON, typed columns from Parquet).
  check_tables  across all files, on the rows that passed: duplicate ids, reactions on missing or
                non-assistant messages, reactions older than their message.
The first reason that applies wins, in the order listed in docs/ingest.md.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rluf.ingest.langfuse import TRACE_USER
from rluf.ingest.records import META, field_kinds, required_fields
from rluf.schema import ROLES, TABLES


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")  # naive timestamps in logs are read as UTC (docs/log-schema.md)
    return con


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _show(expr: str) -> str:
    """SQL for a short quoted display of a value in a detail message."""
    return f"'''' || left(CAST({expr} AS VARCHAR), 60) || ''''"


def _decode_binary(table: pa.Table, name: str) -> pa.Table:
    """Binary column -> string column; values that are not UTF-8 become null with reason not_utf8."""
    col = table[name]
    try:
        return table.set_column(table.schema.get_field_index(name), name, col.cast(pa.string()))
    except pa.ArrowInvalid:
        pass
    values, bad = [], []
    for v in col.to_pylist():
        try:
            values.append(None if v is None else v.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError as e:
            values.append(None)
            bad.append(
                f"{name} has bytes that are not UTF-8 (at byte {e.start}: {v[e.start : e.start + 4]!r})"
            )
    table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.string()))
    detail = pa.array([b or None for b in bad], pa.string())
    mask = pc.and_(pc.is_null(table["_reason"]), pc.is_valid(detail))
    for meta, value in (("_reason", "not_utf8"), ("_field", name)):
        i = table.schema.get_field_index(meta)
        table = table.set_column(i, meta, pc.if_else(mask, pa.scalar(value), table[meta]))
    i = table.schema.get_field_index("_detail")
    return table.set_column(i, "_detail", pc.if_else(mask, detail, table["_detail"]))


def _prepare(raw: pa.Table, name: str) -> pa.Table:
    """Add absent canonical columns as nulls, decode dictionaries and binary columns."""
    for f in TABLES[name]:
        if f.name not in raw.column_names:
            raw = raw.append_column(f.name, pa.nulls(raw.num_rows, pa.string()))
            continue
        t = raw.schema.field(f.name).type
        if pa.types.is_dictionary(t):
            raw = raw.set_column(raw.schema.get_field_index(f.name), f.name, raw[f.name].cast(t.value_type))
            t = t.value_type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            raw = _decode_binary(raw, f.name)
    return raw


def _value_expr(name: str, kind: str, t: pa.DataType) -> tuple[str, bool]:
    """(SQL for the typed value, whether a present-but-null result means 'wrong type')."""
    c = _q(name)
    is_str = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
    if kind in ("id", "str"):
        if is_str:
            return c, False
        if kind == "id" and pa.types.is_integer(t):
            return f"CAST({c} AS VARCHAR)", False
        return "CAST(NULL AS VARCHAR)", True
    if kind == "int":
        if pa.types.is_integer(t):
            return f"TRY_CAST({c} AS INTEGER)", True
        if is_str:
            return (
                f"CASE WHEN regexp_full_match(trim({c}), '[+-]?[0-9]+') "
                f"THEN TRY_CAST(trim({c}) AS INTEGER) END",
                True,
            )
        if pa.types.is_floating(t):
            return f"CASE WHEN {c} = floor({c}) THEN TRY_CAST({c} AS INTEGER) END", True
        return "CAST(NULL AS INTEGER)", True
    # kind == "ts"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return f"CAST({c} AS TIMESTAMPTZ)", True
    if is_str:
        return f"TRY_CAST({c} AS TIMESTAMPTZ)", False  # unparseable -> bad_timestamp, checked below
    return "CAST(NULL AS TIMESTAMPTZ)", True


def _conditions(
    name: str, schema: pa.Schema, max_text_bytes: int, latest: datetime
) -> list[tuple[str, str, str, str]]:
    """Ordered (condition, reason, field, detail SQL) for the row checks of table `name`."""
    kinds = field_kinds(name)
    conds = []
    for f in required_fields(name):
        empty = f" OR trim(v__{f}) = ''" if kinds[f] == "id" or f in ("role", "type") else ""
        conds.append(
            (
                f"({_q(f)} IS NULL{empty})",
                "missing_field",
                f,
                _lit(f"required field {f} is absent, null or empty"),
            )
        )
    for f, kind in kinds.items():
        _, typed_null_is_wrong = _value_expr(f, kind, schema.field(f).type)
        if typed_null_is_wrong:
            want = {"id": "a string", "str": "a string", "int": "an integer", "ts": "a timestamp"}[kind]
            conds.append(
                (
                    f"({_q(f)} IS NOT NULL AND v__{f} IS NULL)",
                    "wrong_type",
                    f,
                    f"{_lit(f + ' must be ' + want + ', got ')} || {_show(_q(f))}",
                )
            )
    if name == "messages":
        roles = ", ".join(_lit(r) for r in ROLES)
        conds += [
            (
                f"v__role NOT IN ({roles})",
                "unknown_role",
                "role",
                f"'role ' || {_show('v__role')} || ' is not one of {', '.join(ROLES)}'",
            ),
            (
                "trim(v__text, ' ' || chr(9) || chr(10) || chr(13)) = ''",
                "empty_text",
                "text",
                _lit("text is empty or only whitespace"),
            ),
            (
                f"strlen(v__text) > {int(max_text_bytes)}",
                "text_too_long",
                "text",
                f"'text is ' || strlen(v__text) || ' bytes; max_text_bytes is {int(max_text_bytes)}'",
            ),
            (
                "v__turn_index < 0",
                "negative_turn_index",
                "turn_index",
                "'turn_index is ' || v__turn_index || '; it must be >= 0'",
            ),
        ]
    conds.append(
        (
            "(created_at IS NOT NULL AND v__created_at IS NULL)",
            "bad_timestamp",
            "created_at",
            f"'created_at ' || {_show('created_at')} || ' is not an ISO-8601 timestamp'",
        )
    )
    conds.append(
        (
            f"v__created_at > TIMESTAMPTZ {_lit(latest.isoformat())}",
            "future_timestamp",
            "created_at",
            f"'created_at ' || CAST(v__created_at AS VARCHAR) || ' is in the future (later than "
            f"{latest.isoformat()})'",
        )
    )
    return conds


def _case(conds: list[tuple[str, str, str, str]], pick: int, meta: str) -> str:
    whens = " ".join(f"WHEN {k} THEN {_lit(c[pick]) if pick < 3 else c[3]}" for k, c in enumerate(conds, 1))
    return f"CASE _k WHEN 0 THEN {meta} {whens} END"


def check_rows(
    con: duckdb.DuckDBPyConnection, raw: pa.Table, name: str, *, max_text_bytes: int, latest: datetime
) -> pa.Table:
    """Typed canonical columns + META (+ _i, the row's position in `raw`); `_reason` set on bad rows.

    DuckDB computes only what needs computing (casts, the reason); string columns that are already strings
    are taken from `raw` as they are, so big texts never make a round trip.
    """
    raw = _prepare(raw, name)
    raw = raw.append_column("_i", pa.array(np.arange(raw.num_rows, dtype=np.int64)))
    kinds = field_kinds(name)
    exprs = {f: _value_expr(f, k, raw.schema.field(f).type)[0] for f, k in kinds.items()}
    values = ", ".join(f"{e} AS v__{f}" for f, e in exprs.items())
    conds = _conditions(name, raw.schema, max_text_bytes, latest)
    computed = [f for f, e in exprs.items() if e != _q(f)]
    first = " ".join(f"WHEN {c[0]} THEN {k}" for k, c in enumerate(conds, 1))
    sql = (  # _k: index of the first condition that holds (0: the reader's own reason), computed once
        f"WITH c AS (SELECT *, {values} FROM raw), "
        f"k AS (SELECT *, CASE WHEN _reason IS NOT NULL THEN 0 {first} END AS _k FROM c) "
        f"SELECT {''.join(f'v__{f}, ' for f in computed)}{_case(conds, 1, '_reason')} AS _reason, "
        f"{_case(conds, 2, '_field')} AS _field, {_case(conds, 3, '_detail')} AS _detail, _i FROM k"
    )
    con.register("raw", raw)
    try:
        res = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("raw")
    if not res["_i"].equals(raw["_i"]):  # DuckDB keeps insertion order here; make sure of it
        res = res.sort_by("_i")
    cols = {}
    for f in kinds:
        cols[f] = res[f"v__{f}"] if f in computed else raw[f].cast(pa.string())
    for m in META.names:
        cols[m] = res[m] if m in ("_reason", "_field", "_detail") else raw[m]
    cols["_i"] = raw["_i"]
    return pa.table(cols)


def split(t: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows without a reason, rows with one); no copy when every row passed (the usual case)."""
    if t["_reason"].null_count == t.num_rows:
        return t, t.slice(0, 0)
    return t.filter(pc.is_null(t["_reason"])), t.filter(pc.is_valid(t["_reason"]))


def _with_reasons(t: pa.Table, idx: list[int], reason: str, field: str, details: list[str]) -> pa.Table:
    """Set _reason/_field/_detail on rows `idx` of `t` (few rows; the rest keep theirs)."""
    if not idx:
        return t
    n = t.num_rows
    for meta, values in (
        ("_reason", [reason] * len(idx)),
        ("_field", [field] * len(idx)),
        ("_detail", details),
    ):
        col = t[meta].to_pylist() if t[meta].null_count < n else [None] * n
        for i, v in zip(idx, values, strict=True):
            col[i] = v
        t = t.set_column(t.schema.get_field_index(meta), meta, pa.array(col, pa.string()))
    return t


def _duplicates(
    con: duckdb.DuckDBPyConnection, t: pa.Table, key: str, reason: str, sources: list[tuple[str, str]]
) -> pa.Table:
    """Quarantine every row whose `key` was already seen earlier in (_src, _row, _sub) order (t's order)."""
    con.register("ok", t.select([key]))
    try:
        dup_keys = con.sql(f"SELECT {key} FROM ok GROUP BY {key} HAVING count(*) > 1").to_arrow_table()[key]
    finally:
        con.unregister("ok")
    if len(dup_keys) == 0:
        return t
    idx = np.flatnonzero(pc.is_in(t[key], value_set=dup_keys).to_numpy(zero_copy_only=False))
    keys, srcs, rows = (t[c].take(idx).to_pylist() for c in (key, "_src", "_row"))
    first: dict[str, tuple[int, int]] = {}
    bad, details = [], []
    for i, k, s, r in zip(idx.tolist(), keys, srcs, rows, strict=True):
        if k in first:
            path, unit = sources[first[k][0]]
            bad.append(i)
            details.append(f"{key} {k[:60]!r} was first accepted from {path} {unit} {first[k][1]}")
        else:
            first[k] = (s, r)
    return _with_reasons(t, bad, reason, key, details)


def _reaction_checks(r: pa.Table, msgs: pa.Table) -> pa.Table:
    """Reactions must point at an accepted assistant message and not be older than it. Fills the user of
    Langfuse scores without userId (TRACE_USER) from the message."""
    # (n_reactions,) row of each reaction's message in msgs, null if absent
    pos = pc.index_in(r["message_id"], value_set=msgs["message_id"]).cast(pa.int64())
    role = msgs["role"].take(pos)
    m_time = msgs["created_at"].take(pos)
    fill = pc.fill_null(pc.equal(r["user_id"], pa.scalar(TRACE_USER)), False)
    if pc.any(fill).as_py():
        users = pc.if_else(fill, msgs["user_id"].take(pos), r["user_id"])
        r = r.set_column(r.schema.get_field_index("user_id"), "user_id", users)
    missing = pc.is_null(role)
    not_assistant = pc.fill_null(pc.not_equal(role, pa.scalar("assistant")), False)
    before = pc.fill_null(pc.less(r["created_at"], m_time), False)
    mid, roles = r["message_id"], role
    for mask, reason, field in (
        (missing, "reaction_on_missing_message", "message_id"),
        (not_assistant, "reaction_on_user_message", "message_id"),
        (before, "reaction_before_message", "created_at"),
    ):
        taken = pc.is_valid(r["_reason"])
        idx = pa.array(
            np.flatnonzero(pc.and_(mask, pc.invert(taken)).to_numpy(zero_copy_only=False)), pa.int64()
        )
        if reason == "reaction_on_missing_message":
            details = [f"message_id {m[:60]!r} is not an accepted message" for m in mid.take(idx).to_pylist()]
        elif reason == "reaction_on_user_message":
            details = [
                f"message {m[:60]!r} has role {x}; reactions are only on assistant messages"
                for m, x in zip(mid.take(idx).to_pylist(), roles.take(idx).to_pylist(), strict=True)
            ]
        else:
            details = [
                f"reaction at {a} is before its message at {b}"
                for a, b in zip(
                    r["created_at"].take(idx).to_pylist(), m_time.take(idx).to_pylist(), strict=True
                )
            ]
        r = _with_reasons(r, idx.to_pylist(), reason, field, details)
    return r


def check_tables(
    con: duckdb.DuckDBPyConnection, ok: dict[str, pa.Table], sources: list[tuple[str, str]]
) -> dict[str, pa.Table]:
    """Cross-file checks on the rows that passed `check_rows` (each table in (_src, _row, _sub) order).
    Returns the same tables with `_reason` set on the rows that fail. `sources`: (path, unit) per _src."""
    out = {"messages": _duplicates(con, ok["messages"], "message_id", "duplicate_message_id", sources)}
    msgs = split(out["messages"])[0]
    out["reactions"] = _reaction_checks(ok["reactions"], msgs)
    out["users"] = _duplicates(con, ok["users"], "user_id", "duplicate_user_id", sources)
    return out


def empty_checked(name: str) -> pa.Table:
    """An empty table in check_rows' output layout."""
    fields = list(TABLES[name]) + list(META) + [pa.field("_i", pa.int64())]
    return pa.schema(fields).empty_table()
