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
    if kind == "bool":
        if pa.types.is_boolean(t):
            return c, False
        if is_str:
            return f"TRY_CAST({c} AS BOOLEAN)", True
        return "CAST(NULL AS BOOLEAN)", True
    # kind == "ts"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return f"CAST({c} AS TIMESTAMPTZ)", True
    if is_str:  # unparseable, or an offset no time zone has (DuckDB would shift by it) -> bad_timestamp
        return f"CASE WHEN NOT ({_offset_beyond_14h(c)}) THEN TRY_CAST({c} AS TIMESTAMPTZ) END", False
    return "CAST(NULL AS TIMESTAMPTZ)", True


# A UTC offset at the end of a time of day: +HH, +HHMM or +HH:MM (RE2 syntax, for DuckDB)
_OFFSET = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?\s*([+-])([0-9]{2}):?([0-9]{2})?\s*$"


def _offset_beyond_14h(c: str) -> str:
    """SQL: the text timestamp `c` ends in a UTC offset beyond +-14:00 (no time zone has one)."""
    hours = f"TRY_CAST(regexp_extract({c}, '{_OFFSET}', 2) AS INTEGER)"
    minutes = f"coalesce(TRY_CAST(nullif(regexp_extract({c}, '{_OFFSET}', 3), '') AS INTEGER), 0)"
    return f"coalesce({hours} * 60 + {minutes} > 840, false)"


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
            want = {
                "id": "a string",
                "str": "a string",
                "int": "an integer of at most 32 bits",  # turn_index is int32
                "ts": "a timestamp",
                "bool": "true or false",
            }[kind]
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
            f"'created_at ' || {_show('created_at')} || ' is not an ISO-8601 timestamp with a UTC offset "
            "within +-14:00'",
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
    con: duckdb.DuckDBPyConnection,
    t: pa.Table,
    keys: list[str],
    reason: str,
    sources: list[tuple[str, str]],
) -> pa.Table:
    """Quarantine every row whose `keys` were already seen earlier in (_src, _row, _sub) order (t's order),
    among the rows without a reason yet."""
    free = pc.is_null(t["_reason"])
    key = t[keys[0]] if len(keys) == 1 else pc.binary_join_element_wise(*(t[k] for k in keys), "\x1f")
    key = pc.if_else(free, key, pa.scalar(None, pa.string()))
    con.register("ok", pa.table({"k": key}))
    try:
        sql = "SELECT k FROM ok WHERE k IS NOT NULL GROUP BY k HAVING count(*) > 1"
        dup_keys = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("ok")
    if dup_keys.num_rows == 0:
        return t
    idx = np.flatnonzero(pc.is_in(key, value_set=dup_keys["k"]).to_numpy(zero_copy_only=False))
    values, srcs, rows = (c.take(idx).to_pylist() for c in (key, t["_src"], t["_row"]))
    first: dict[str, tuple[int, int]] = {}
    bad, details = [], []
    what = " and ".join(keys)
    for i, k, s, r in zip(idx.tolist(), values, srcs, rows, strict=True):
        if k in first:
            path, unit = sources[first[k][0]]
            shown = " / ".join(repr(v[:60]) for v in k.split("\x1f"))
            bad.append(i)
            details.append(f"{what} {shown} was first accepted from {path} {unit} {first[k][1]}")
        else:
            first[k] = (s, r)
    return _with_reasons(t, bad, reason, keys[0], details)


def _parent_checks(con: duckdb.DuckDBPyConnection, m: pa.Table) -> pa.Table:
    """Messages must follow what they answer (docs/log-schema.md): with a parent_id among the accepted
    messages, the same conversation, turn_index = the parent's + 1 and not older than the parent; without
    one, not older than the earliest message of the previous turn of the conversation. A failing message
    that is on a parent_id cycle quarantines the whole cycle (parent_cycle); else turn_out_of_order."""
    cols = ["message_id", "parent_id", "conversation_id", "turn_index", "created_at", "_reason"]
    con.register("m", m.select(cols).append_column("_pos", pa.array(np.arange(m.num_rows, dtype=np.int64))))
    try:
        rows = con.sql(
            """
            SELECT c._pos,
                   CASE WHEN c.conversation_id <> p.conversation_id THEN 'conversation_id'
                        WHEN c.turn_index <> p.turn_index + 1 THEN 'turn_index' ELSE 'created_at' END,
                   CASE WHEN c.conversation_id <> p.conversation_id
                        THEN 'its parent ' || p.message_id || ' is in conversation ' || p.conversation_id
                             || ', not ' || c.conversation_id
                        WHEN c.turn_index <> p.turn_index + 1
                        THEN 'turn_index is ' || c.turn_index || ' but its parent ' || p.message_id
                             || ' has turn_index ' || p.turn_index
                             || ' (expected ' || (p.turn_index + 1) || ')'
                        ELSE 'created_at ' || CAST(c.created_at AS VARCHAR) || ' is before its parent '
                             || p.message_id || ' at ' || CAST(p.created_at AS VARCHAR) END
            FROM m c JOIN m p ON c.parent_id = p.message_id AND p._reason IS NULL
            WHERE c._reason IS NULL AND (c.conversation_id <> p.conversation_id
                  OR c.turn_index <> p.turn_index + 1 OR c.created_at < p.created_at)
            UNION ALL
            SELECT c._pos, 'created_at', 'created_at ' || CAST(c.created_at AS VARCHAR)
                   || ' is before every message of turn ' || q.turn_index
                   || ' of conversation ' || c.conversation_id
                   || ' (earliest ' || CAST(q.t0 AS VARCHAR) || ')'
            FROM m c JOIN (SELECT conversation_id, turn_index, min(created_at) AS t0 FROM m
                           WHERE _reason IS NULL GROUP BY ALL) q
              ON c.conversation_id = q.conversation_id AND c.turn_index = q.turn_index + 1
            WHERE c._reason IS NULL AND c.parent_id IS NULL AND c.created_at < q.t0
            ORDER BY 1
            """
        ).fetchall()
    finally:
        con.unregister("m")
    if not rows:
        return m
    accepted = [
        (i, mid, pid)
        for i, (mid, pid, reason) in enumerate(
            zip(*(m[c].to_pylist() for c in ("message_id", "parent_id", "_reason")), strict=True)
        )
        if reason is None
    ]
    parent = {mid: pid for _, mid, pid in accepted}
    pos = {mid: i for i, mid, _ in accepted}
    ids = m["message_id"].to_pylist()
    cycles = {pos[mid]: detail for mid, detail in _cycles_from([ids[i] for i, _, _ in rows], parent).items()}
    out_of_order: dict[str, dict[int, str]] = {}  # field -> row -> detail
    for i, fld, detail in rows:
        if i not in cycles:
            out_of_order.setdefault(fld, {})[i] = detail
    for fld, found in out_of_order.items():
        idx = sorted(found)
        m = _with_reasons(m, idx, "turn_out_of_order", fld, [found[i] for i in idx])
    members = sorted(cycles)
    return _with_reasons(m, members, "parent_cycle", "parent_id", [cycles[i] for i in members])


def _cycles_from(starts: list[str], parent: dict[str, str | None]) -> dict[str, str]:
    """message_id -> detail for every member of a parent_id cycle reachable from `starts`. Each message is
    walked once over all starts (linear in the messages, however long the chains)."""
    state: dict[str, bool] = {}  # True: on the current walk; False: walked before
    found: dict[str, str] = {}
    for start in starts:
        path, cur = [], start
        while cur is not None and cur in parent and cur not in state:
            state[cur] = True
            path.append(cur)
            cur = parent[cur]
        if cur is not None and state.get(cur) is True:  # the walk came back onto itself
            cycle = path[path.index(cur) :]
            shown = " -> ".join(repr(x[:40]) for x in [*cycle, cycle[0]][:12])
            for mid in cycle:
                found[mid] = f"parent_id links form a cycle: {shown}"
        for mid in path:
            state[mid] = False
    return found


def orphans(m: pa.Table) -> int:
    """Accepted messages whose parent_id is not an accepted message (kept; their context starts at them)."""
    ok = pc.is_null(m["_reason"])
    ids = m["message_id"].filter(ok)
    has_parent = pc.and_(ok, pc.is_valid(m["parent_id"]))
    return int(pc.sum(pc.invert(pc.is_in(m["parent_id"].filter(has_parent), value_set=ids))).as_py() or 0)


def _fill_trace_users(r: pa.Table, msgs: pa.Table) -> pa.Table:
    """The user of Langfuse scores without userId (TRACE_USER) is the user of the scored message."""
    fill = pc.fill_null(pc.equal(r["user_id"], pa.scalar(TRACE_USER)), False)
    if not pc.any(fill).as_py():
        return r
    pos = pc.index_in(r["message_id"], value_set=msgs["message_id"]).cast(pa.int64())
    users = pc.if_else(fill, msgs["user_id"].take(pos), r["user_id"])
    return r.set_column(r.schema.get_field_index("user_id"), "user_id", users)


def _reaction_checks(r: pa.Table, msgs: pa.Table) -> pa.Table:
    """Reactions must point at an accepted assistant message and not be older than it."""
    # (n_reactions,) row of each reaction's message in msgs, null if absent
    pos = pc.index_in(r["message_id"], value_set=msgs["message_id"]).cast(pa.int64())
    role = msgs["role"].take(pos)
    m_time = msgs["created_at"].take(pos)
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
    msgs = _duplicates(con, ok["messages"], ["message_id"], "duplicate_message_id", sources)
    out = {"messages": _parent_checks(con, msgs)}
    accepted = split(out["messages"])[0]
    reactions = _fill_trace_users(ok["reactions"], accepted)
    reactions = _duplicates(con, reactions, ["message_id", "user_id", "type"], "duplicate_reaction", sources)
    out["reactions"] = _reaction_checks(reactions, accepted)
    out["users"] = _duplicates(con, ok["users"], ["user_id"], "duplicate_user_id", sources)
    return out


def empty_checked(name: str) -> pa.Table:
    """An empty table in check_rows' output layout."""
    fields = list(TABLES[name]) + list(META) + [pa.field("_i", pa.int64())]
    return pa.schema(fields).empty_table()
