"""Raw records on their way to the canonical tables: per-value type checks and the bookkeeping columns.

Every reader turns its input into "raw tables": the canonical columns of one table (messages, reactions,
users), in whatever types the input had, plus bookkeeping columns that say where each record came from
and, when the reader already knows it is bad, why:

  _src     int32   index of the source file (ingest.json "files")
  _row     int64   1-based line (JSON lines) or row (CSV, Parquet, JSON arrays) in that file
  _sub     int32   position of the record among those made from one line (a Langfuse trace gives two
                   messages, an OpenAssistant tree many); orders records inside a line
  _reason  string  quarantine reason found by the reader (invalid JSON, non-UTF-8, ...), else null
  _field   string  the field the reason is about
  _detail  string  human-readable explanation with the value and the rule
  _raw     string  the raw record, truncated (null: rebuilt from the columns if the row is quarantined)

Columnar inputs (Parquet, CSV) are passed through as Arrow columns and checked vectorised in
rluf.ingest.validate; records parsed from JSON go through `Collector`, which checks JSON value types in
Python (JSON has no column types to check once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from rluf.jsonsafe import lone_surrogate, surrogate_detail
from rluf.schema import TABLES

META = pa.schema(
    [
        pa.field("_src", pa.int32()),
        pa.field("_row", pa.int64()),
        pa.field("_sub", pa.int32()),
        pa.field("_reason", pa.string()),
        pa.field("_field", pa.string()),
        pa.field("_detail", pa.string()),
        pa.field("_raw", pa.string()),
    ]
)

# Quarantine reasons (docs/ingest.md lists them with examples).
REASONS = {
    "invalid_json": "the line is not valid JSON",
    "not_an_object": "the JSON value is not an object (a record must be {...})",
    "not_utf8": "the bytes are not valid UTF-8",
    "too_deep": "the JSON value is nested deeper than rluf.jsonsafe.MAX_DEPTH levels",
    "bad_text": "a text value holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode",
    "bad_csv_row": "the CSV row has the wrong number of fields or an unclosed quote",
    "missing_field": "a required field is absent, null or empty",
    "wrong_type": "a field has the wrong JSON/column type",
    "unknown_role": "role is not user, assistant or system (OpenAssistant 'prompter' maps to user)",
    "empty_text": "text is empty or only whitespace",
    "text_too_long": "text is longer than max_text_bytes",
    "bad_timestamp": "a timestamp cannot be parsed as ISO 8601, or its offset is beyond +-14:00",
    "future_timestamp": "a timestamp is later than now + future_tolerance_s",
    "negative_turn_index": "turn_index is below 0",
    "duplicate_message_id": "message_id was already accepted earlier (the first one is kept)",
    "duplicate_user_id": "user_id was already accepted earlier in the users table",
    "duplicate_reaction": "the same user already gave this reaction type to this message (the first is kept)",
    "parent_cycle": "following parent_id from the message comes back to it (or to a cycle above it)",
    "turn_out_of_order": "the message does not follow its parent (conversation, turn_index + 1, time) or "
    "is older than the turn before it",
    "reaction_on_missing_message": "the reaction's message_id is not an accepted message",
    "reaction_on_user_message": "the reaction is on a user or system message, not an assistant message",
    "reaction_before_message": "the reaction is older than the message it reacts to",
    "deleted": "OpenAssistant message flagged deleted (oasst.include_deleted=false)",
    "score_source": "Langfuse score from a source not in langfuse.score_sources (e.g. an LLM judge)",
    "score_not_on_trace": "Langfuse score attached to a session or dataset run, not a trace",
    "empty_file": "the file has no bytes or only whitespace",
    "wrong_format": "the file content does not match its extension or --format",
    "unknown_table": "cannot tell which table the file holds; pass --table",
    "unreadable": "the file cannot be read by its format's reader",
}

# Value kinds: "id" (string; JSON integers accepted and written as decimal strings), "str", "int", "ts",
# "bool".
_TEXT_FIELDS = {"role", "text", "type"}


def field_kinds(table: str) -> dict[str, str]:
    """Canonical field -> value kind, from rluf.schema."""
    kinds = {}
    for f in TABLES[table]:
        if pa.types.is_timestamp(f.type):
            kinds[f.name] = "ts"
        elif pa.types.is_boolean(f.type):
            kinds[f.name] = "bool"
        elif pa.types.is_integer(f.type):
            kinds[f.name] = "int"
        else:
            kinds[f.name] = "str" if f.name in _TEXT_FIELDS else "id"
    return kinds


def required_fields(table: str) -> list[str]:
    return [f.name for f in TABLES[table] if not f.nullable]


_ARROW_OF_KIND = {
    "id": pa.string(),
    "str": pa.string(),
    "int": pa.int64(),
    "ts": pa.string(),
    "bool": pa.bool_(),
}
_KIND_WORD = {
    "id": "a string",
    "str": "a string",
    "int": "an integer",
    "ts": "an ISO-8601 timestamp string",
    "bool": "true or false",
}
_INT64 = range(-(2**63), 2**63)


def _check_value(kind: str, v: Any) -> tuple[Any, bool]:
    """(converted value, ok). None passes (missing fields are found later, vectorised)."""
    if v is None:
        return None, True
    if kind in ("str", "id") and isinstance(v, str):
        return v, True
    if kind == "id" and isinstance(v, int) and not isinstance(v, bool):
        return str(v), True
    if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
        return (v, True) if v in _INT64 else (None, False)
    if kind == "bool" and isinstance(v, bool):
        return v, True
    if kind == "ts" and isinstance(v, str):
        return v, True
    if kind == "ts" and isinstance(v, datetime):
        return v.isoformat(), True
    return None, False


def short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


class Collector:
    """Collects records of one canonical table from one source file, checking JSON value types."""

    def __init__(self, table: str, src: int):
        self.table, self.src = table, src
        self.kinds = field_kinds(table)
        self.cols: dict[str, list] = {name: [] for name in [*self.kinds, *META.names]}

    def __len__(self) -> int:
        return len(self.cols["_src"])

    def add(
        self,
        rec: dict[str, Any],
        row: int,
        sub: int = 0,
        raw: str | None = None,
        reason: str | None = None,
        field: str | None = None,
        detail: str | None = None,
    ) -> None:
        for name, kind in self.kinds.items():
            v, ok = _check_value(kind, rec.get(name))
            if not ok and reason is None:
                reason, field = "wrong_type", name
                got = rec.get(name)
                detail = f"{name} must be {_KIND_WORD[kind]}, got {short(got)} ({type(got).__name__})"
                if kind == "int" and isinstance(got, int) and not isinstance(got, bool):
                    detail = f"{name} {short(got)} is out of range (integers fit in 64 bits)"
            if isinstance(v, str) and (at := lone_surrogate(v)) is not None:
                if reason is None:
                    reason, field, detail = "bad_text", name, surrogate_detail(name, v, at)
                v = None  # Arrow cannot hold it; the record is quarantined
            self.cols[name].append(v)
        for name, v in (
            ("_src", self.src),
            ("_row", row),
            ("_sub", sub),
            ("_reason", reason),
            ("_field", field),
            ("_detail", detail),
            ("_raw", raw),
        ):
            self.cols[name].append(v)

    def bad(
        self, row: int, reason: str, detail: str, raw: str | None, field: str | None = None, sub: int = 0
    ) -> None:
        """A record the reader could not even parse."""
        self.add({}, row, sub, raw, reason, field, detail)

    def to_arrow(self) -> pa.Table:
        arrays = {name: pa.array(self.cols[name], _ARROW_OF_KIND[kind]) for name, kind in self.kinds.items()}
        for f in META:
            arrays[f.name] = pa.array(self.cols[f.name], f.type)
        return pa.table(arrays)


def with_meta(table: pa.Table, src: int, numbers: list[int] | None = None) -> pa.Table:
    """Add bookkeeping columns to a columnar table read as a whole (rows numbered from 1, or `numbers`)."""
    n = table.num_rows
    table = table.append_column("_src", pa.array(np.full(n, src, np.int32)))
    rows = np.arange(1, n + 1, dtype=np.int64) if numbers is None else np.asarray(numbers, np.int64)
    table = table.append_column("_row", pa.array(rows, pa.int64()))
    table = table.append_column("_sub", pa.array(np.zeros(n, np.int32)))
    for name in ("_reason", "_field", "_detail", "_raw"):
        table = table.append_column(name, pa.nulls(n, pa.string()))
    return table
