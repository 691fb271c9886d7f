"""Readers: a source file -> raw tables (rluf.ingest.records) per canonical table.

Container formats: JSON lines (.jsonl, .ndjson), JSON (.json: an array, an object with a "data" array as
the Langfuse API returns, or JSON lines), CSV (.csv), Parquet (.parquet, .pq). The extension picks the
container unless --format says otherwise; a file whose bytes contradict it is reported, not guessed.
What the records are (canonical messages/reactions/users, Langfuse traces/scores, OpenAssistant trees or
flat messages) is told from their field names, or set with --table.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from rluf.ingest import langfuse, oasst
from rluf.ingest.config import IngestConfig
from rluf.ingest.records import Collector, with_meta
from rluf.schema import TABLES

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMATS = ("auto", "jsonl", "json", "csv", "parquet")
CANONICAL = ("messages", "reactions", "users")
KINDS = (*CANONICAL, "langfuse-traces", "langfuse-scores", "oasst")
# the table a record lands in when it cannot be parsed at all
_MAIN_TABLE = {
    "messages": "messages",
    "reactions": "reactions",
    "users": "users",
    "langfuse-traces": "messages",
    "langfuse-scores": "reactions",
    "oasst-tree": "messages",
    "oasst-flat": "messages",
}


class FileProblem(Exception):
    """A whole file cannot be read (empty, wrong format, unknown table). Quarantined as one entry."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class Source:
    path: Path
    index: int
    fmt: str = ""  # container format actually read
    kind: str = ""  # messages | reactions | users | langfuse-* | oasst-tree | oasst-flat
    unit: str = "row"  # "line" for JSON lines, else "row"
    notes: dict[str, int] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)
def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def detect_kind(keys: set[str], stem: str = "") -> str | None:
    """Which table/export a set of (snake_case) field names belongs to, or None."""
    if "message_tree_id" in keys and "prompt" in keys:
        return "oasst-tree"
    if "message_tree_id" in keys or "emojis" in keys or "replies" in keys:
        return "oasst-flat" if "replies" not in keys else "oasst-tree"
    if "trace_id" in keys and "name" in keys and ({"value", "string_value", "data_type"} & keys):
        return "langfuse-scores"
    if "id" in keys and ({"input", "output"} & keys):
        return "langfuse-traces"
    if {"text", "role", "conversation_id", "turn_index"} & keys:
        return "messages"
    if "type" in keys and "message_id" in keys:
        return "reactions"
    if "user_id" in keys and not ({"message_id", "type"} & keys):
        return "users"
    return stem if stem in CANONICAL else None


def _looks_like(head: bytes) -> str:
    s = head.lstrip()
    if s.startswith(b"PAR1"):
        return "Parquet"
    if s[:1] in (b"{", b"["):
        return "JSON"
    try:
        s[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "CSV or plain text" if b"," in s[:512] else "plain text"


def container_format(path: Path, fmt: str) -> str:
    """The container format to read `path` as; FileProblem if empty or contradicted by its bytes."""
    if fmt == "auto":
        suffixes = [s.lower() for s in path.suffixes]
        fmt = next((EXTENSIONS[s] for s in reversed(suffixes) if s in EXTENSIONS), "")
        if not fmt:
            raise FileProblem(
                "wrong_format",
                f"{path}: unknown extension {path.suffix!r}; expected one of "
                f"{sorted(EXTENSIONS)} or pass --format",
            )
    with path.open("rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise FileProblem("empty_file", f"{path} is empty (no records); remove it or fill it")
    looks = _looks_like(head)
    claimed = {"parquet": "Parquet", "json": "JSON", "jsonl": "JSON", "csv": "CSV or plain text"}[fmt]
    if (
        (fmt == "parquet") != (looks == "Parquet")
        or (fmt in ("json", "jsonl") and looks != "JSON")
        or (fmt == "csv" and looks == "JSON")
    ):
        raise FileProblem(
            "wrong_format",
            f"{path} is read as {fmt} but its content looks like {looks}, not "
            f"{claimed}; rename it to the right extension or pass --format",
        )
    return fmt


# ---------------------------------------------------------------------------------------------- JSON


def _iter_json_lines(path: Path, raw_max: int) -> Iterator[tuple[int, Any, str, str | None, str | None]]:
    """(line number, parsed value or None, raw text, reason, detail) per non-blank line."""
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raw = line[:raw_max].decode("utf-8", errors="replace")
                yield n, None, raw, "not_utf8", f"line has bytes that are not UTF-8 (at byte {e.start})"
                continue
            try:
                yield n, json.loads(text), text[:raw_max], None, None
            except json.JSONDecodeError as e:
                yield n, None, text[:raw_max], "invalid_json", f"invalid JSON: {e.msg} at column {e.colno}"


def _json_document(path: Path, raw_max: int) -> list[tuple[int, Any, str, str | None, str | None]] | None:
    """A .json file as one document: an array, {"data": [...]} (Langfuse API pages) or one object.
    None if it is not one JSON document (then it is read as JSON lines)."""
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    items = doc if isinstance(doc, list) else [doc]
    return [(i, item, json.dumps(item, default=str)[:raw_max], None, None) for i, item in enumerate(items, 1)]


def _snake_record(obj: dict) -> dict:
    return {_snake(k) if isinstance(k, str) else k: v for k, v in obj.items()}


def _fast_jsonl(src: Source, kind: str) -> dict[str, pa.Table] | None:
    """Canonical JSON lines read by pyarrow's C++ reader, when that is exactly equivalent to the line-by-line
    path: every line a JSON object, no blank lines, column types as the schema wants. Else None."""
    with src.path.open("rb") as f:
        first = f.readline()
    try:
        obj = json.loads(first)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    kind = detect_kind(keys, src.path.stem.split(".")[0]) if kind == "auto" else kind
    if kind not in CANONICAL or not keys <= set(TABLES[kind].names):
        return None
    # every field as its JSON type (strings for timestamps too): any other value fails the C++ reader
    want = pa.schema(
        [(f.name, pa.int64() if pa.types.is_integer(f.type) else pa.string()) for f in TABLES[kind]]
    )
    try:
        table = pajson.read_json(
            src.path,
            parse_options=pajson.ParseOptions(explicit_schema=want, unexpected_field_behavior="error"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    data = src.path.read_bytes()
    if table.num_rows not in (data.count(b"\n"), data.count(b"\n") + 1):  # blank lines would shift numbers
        return None
    try:
        data.decode("utf-8")  # pyarrow's JSON reader does not check UTF-8
    except UnicodeDecodeError:
        return None
    src.kind, src.unit = kind, "line"
    return {kind: with_meta(table, src.index)}


def read_json(src: Source, cfg: IngestConfig, kind: str) -> dict[str, pa.Table]:
    raw_max = cfg.raw_max_chars
    if src.fmt == "jsonl" and kind in ("auto", *CANONICAL):
        fast = _fast_jsonl(src, kind)
        if fast is not None:
            return fast
    items = _json_document(src.path, raw_max) if src.fmt == "json" else None
    src.unit = "line" if items is None else "row"
    if items is None:
        items = list(_iter_json_lines(src.path, raw_max))
    good = [
        (n, _snake_record(o), raw) for n, o, raw, reason, _ in items if reason is None and isinstance(o, dict)
    ]
    if items and not good and all(reason is not None for *_, reason, _ in items):
        raise FileProblem(
            "wrong_format",
            f"{src.path}: none of its {len(items)} records is valid JSON; is it really JSON lines?",
        )
    if kind == "auto":
        keys: set[str] = set()
        for _, o, _raw in good[:50]:
            keys |= set(o)
        kind = detect_kind(keys, src.path.stem.split(".")[0])
        if kind is None:
            raise FileProblem(
                "unknown_table",
                f"{src.path}: cannot tell which table these records belong "
                f"to (fields {sorted(keys)[:12]}); pass --table (docs/ingest.md)",
            )
    elif kind == "oasst":
        kind = "oasst-tree" if any("prompt" in o for _, o, _ in good[:50]) else "oasst-flat"
    src.kind = kind
    main = Collector(_MAIN_TABLE[kind], src.index)
    for n, o, raw, reason, detail in items:
        if reason is not None:
            main.bad(n, reason, detail, raw)
        elif not isinstance(o, dict):
            main.bad(n, "not_an_object", f"the record is a JSON {type(o).__name__}, not an object", raw)
    return _convert(src, kind, good, main, cfg)


def _convert(
    src: Source, kind: str, good: list[tuple[int, dict, str]], main: Collector, cfg: IngestConfig
) -> dict[str, pa.Table]:
    """Canonical records pass through; foreign ones are mapped by rluf.ingest.oasst / .langfuse."""
    if kind in CANONICAL:
        for n, o, raw in good:
            main.add(o, n, raw=raw)
        collectors = {kind: main}
    elif kind == "oasst-tree":
        collectors = oasst.from_trees(good, src, cfg.oasst, main)
    elif kind == "oasst-flat":
        collectors = oasst.from_flat(good, src, cfg.oasst, main)
    elif kind == "langfuse-traces":
        collectors = langfuse.from_traces(good, src, main)
    else:
        collectors = langfuse.from_scores(good, src, cfg.langfuse, main)
    return {name: c.to_arrow() for name, c in collectors.items() if len(c)}


# ---------------------------------------------------------------------------------------- CSV, Parquet


def _read_csv(src: Source, cfg: IngestConfig) -> tuple[pa.Table, list[tuple[int | None, str]]]:
    """All columns as bytes (UTF-8 checked per column later); malformed rows collected, not fatal."""
    block = cfg.csv_block_mb << 20
    bad_rows: list[tuple[int | None, str]] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append((row.number, row.text))
        return "skip"

    try:
        with pacsv.open_csv(
            src.path,
            read_options=pacsv.ReadOptions(block_size=block),
            parse_options=pacsv.ParseOptions(invalid_row_handler=lambda r: "skip", newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(check_utf8=False),
        ) as reader:
            names = reader.schema.names
        table = pacsv.read_csv(
            src.path,
            read_options=pacsv.ReadOptions(block_size=block),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.binary() for n in names},
                null_values=[""],
                strings_can_be_null=True,
                check_utf8=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as e:
        raise FileProblem("unreadable", f"{src.path} cannot be read as CSV: {e}") from None
    return table, bad_rows


def read_columnar(src: Source, cfg: IngestConfig, kind: str) -> dict[str, pa.Table]:
    bad_rows: list[tuple[int | None, str]] = []
    if src.fmt == "parquet":
        try:
            table = pq.read_table(src.path)
        except (pa.ArrowInvalid, OSError) as e:
            raise FileProblem("unreadable", f"{src.path} cannot be read as Parquet: {e}") from None
    else:
        table, bad_rows = _read_csv(src, cfg)
    table = table.rename_columns([_snake(c) for c in table.column_names])
    if kind == "auto":
        kind = detect_kind(set(table.column_names), src.path.stem.split(".")[0])
        if kind is None:
            raise FileProblem(
                "unknown_table",
                f"{src.path}: cannot tell which table the columns "
                f"{table.column_names[:12]} belong to; pass --table (docs/ingest.md)",
            )
    elif kind == "oasst":
        kind = "oasst-tree" if "prompt" in table.column_names else "oasst-flat"
    src.kind = kind
    if kind in CANONICAL and not bad_rows:
        return {kind: with_meta(table, src.index)}
    main = Collector(_MAIN_TABLE[kind], src.index)
    for number, text in bad_rows:
        # pyarrow cannot number rows when values may hold newlines (chat text does): row 0 = unknown
        main.bad(
            number or 0,
            "bad_csv_row",
            "a CSV row has the wrong number of fields (see raw)",
            text[: cfg.raw_max_chars],
        )
    out: dict[str, pa.Table] = {}
    if kind in CANONICAL:
        out[kind] = pa.concat_tables(
            [with_meta(table, src.index), _align(main.to_arrow(), table)], promote_options="permissive"
        )
        return out
    rows = [
        (i, _decode_row(r), json.dumps(_decode_row(r), default=str)[: cfg.raw_max_chars])
        for i, r in enumerate(table.to_pylist(), start=1)
    ]
    return _convert(src, kind, rows, main, cfg)


def _decode_row(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        out[k] = v
    return out


def _align(bad: pa.Table, like: pa.Table) -> pa.Table:
    """Give collector rows (all-null canonical columns) the column set of a CSV table."""
    cols = {}
    for name in like.column_names:
        cols[name] = pa.nulls(bad.num_rows, like.schema.field(name).type)
    for name in bad.column_names:
        if name.startswith("_"):
            cols[name] = bad[name]
    return pa.table(cols)


def read_source(src: Source, cfg: IngestConfig, fmt: str, kind: str) -> dict[str, pa.Table]:
    """Raw tables of one file, per canonical table. Raises FileProblem for a file that cannot be read."""
    src.fmt = container_format(src.path, fmt)
    if src.fmt in ("jsonl", "json"):
        return read_json(src, cfg, kind)
    return read_columnar(src, cfg, kind)
