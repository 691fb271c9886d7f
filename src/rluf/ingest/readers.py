"""Readers: a source file -> raw tables (rluf.ingest.records) per canonical table.

Container formats: JSON lines (.jsonl, .ndjson), JSON (.json: an array, an object with a "data" array as
the Langfuse API returns, or JSON lines), CSV (.csv), Parquet (.parquet, .pq), each also compressed
(.gz, .bz2, .xz). The extension picks the container unless --format says otherwise; a file whose bytes
contradict it is reported, not guessed. A UTF-8 byte-order mark at the start of a text file is skipped.
What the records are (canonical messages/reactions/users, Langfuse traces/scores, OpenAssistant trees or
flat messages) is told from their field names, or set with --table.
"""

from __future__ import annotations

import bz2
import csv
import functools
import gzip
import json
import lzma
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from rluf import jsonsafe
from rluf.ingest import langfuse, oasst
from rluf.ingest.config import IngestConfig
from rluf.ingest.records import Collector, field_kinds, with_meta
from rluf.schema import TABLES

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
FORMATS = ("auto", "jsonl", "json", "csv", "parquet")
BOM = b"\xef\xbb\xbf"
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


def data_format(path: Path) -> str:
    """The format its extension names, under a compression suffix (messages.jsonl.gz -> jsonl); "" if
    none."""
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return next((EXTENSIONS[x] for x in reversed(suffixes) if x in EXTENSIONS), "")


@dataclass
class Source:
    path: Path  # as given; named in quarantine.jsonl and errors
    index: int
    data_path: Path | None = None  # what is read: `path`, or its decompressed copy
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
    s = head.removeprefix(BOM).lstrip()
    if s.startswith(b"PAR1"):
        return "Parquet"
    if s[:1] in (b"{", b"["):
        return "JSON"
    try:
        s[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "CSV or plain text" if b"," in s[:512] else "plain text"


def container_format(path: Path, fmt: str, data: Path) -> str:
    """The container format to read `path` (its bytes at `data`) as; FileProblem if empty or contradicted
    by its bytes."""
    if fmt == "auto":
        fmt = data_format(path)
        if not fmt:
            raise FileProblem(
                "wrong_format",
                f"{path}: unknown extension {path.suffix!r}; expected one of "
                f"{sorted(EXTENSIONS)} (optionally + {sorted(COMPRESSIONS)}) or pass --format",
            )
    with data.open("rb") as f:
        head = f.read(4096)
    if not head.removeprefix(BOM).strip():
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


def _json_problem(e: ValueError, text: str) -> tuple[str, str]:
    """(reason, detail) for a line json refuses."""
    if isinstance(e, jsonsafe.JSONDepthError):
        return "too_deep", str(e)
    if not isinstance(e, json.JSONDecodeError):  # e.g. an integer literal of more than 4300 digits
        return "invalid_json", f"the line is not valid JSON: {e}"
    if e.msg.startswith("Unterminated string") or e.pos >= len(text.rstrip()) - 1:
        return "invalid_json", "the line is not valid JSON (cut short?)"
    return "invalid_json", f"the line is not valid JSON: {e.msg.removesuffix(' at')} at column {e.colno}"


def _iter_json_lines(path: Path, raw_max: int) -> Iterator[tuple[int, Any, str, str | None, str | None]]:
    """(line number, parsed value or None, raw text, reason, detail) per non-blank line."""
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if n == 1:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raw = line[:raw_max].decode("utf-8", errors="replace")
                yield n, None, raw, "not_utf8", f"line has bytes that are not UTF-8 (at byte {e.start})"
                continue
            try:
                yield n, jsonsafe.loads(text), text[:raw_max], None, None
            except ValueError as e:
                yield n, None, text[:raw_max], *_json_problem(e, text)


def _json_document(path: Path, raw_max: int) -> list[tuple[int, Any, str, str | None, str | None]] | None:
    """A .json file as one document: an array, {"data": [...]} (Langfuse API pages) or one object.
    None if it is not one JSON document (then it is read as JSON lines)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
        doc = jsonsafe.loads(text)
    except jsonsafe.JSONDepthError as e:
        return [(1, None, text[:raw_max], "too_deep", str(e))]
    except (UnicodeDecodeError, ValueError):
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
    with src.data_path.open("rb") as f:
        first = f.readline()
    try:
        obj = jsonsafe.loads(first)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    kind = detect_kind(keys, src.path.stem.split(".")[0]) if kind == "auto" else kind
    if kind not in CANONICAL or not keys <= set(TABLES[kind].names):
        return None
    # every field as its JSON type (strings for timestamps too): any other value fails the C++ reader
    json_type, kinds = {"int": pa.int64(), "bool": pa.bool_()}, field_kinds(kind)
    want = pa.schema([(f.name, json_type.get(kinds[f.name], pa.string())) for f in TABLES[kind]])
    try:
        table = pajson.read_json(
            src.data_path,
            parse_options=pajson.ParseOptions(explicit_schema=want, unexpected_field_behavior="error"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    data = src.data_path.read_bytes()
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
    items = _json_document(src.data_path, raw_max) if src.fmt == "json" else None
    src.unit = "line" if items is None else "row"
    if items is None:
        items = list(_iter_json_lines(src.data_path, raw_max))
    good = [
        (n, _snake_record(o), raw) for n, o, raw, reason, _ in items if reason is None and isinstance(o, dict)
    ]
    if items and not good and all(reason in ("invalid_json", "not_utf8") for *_, reason, _ in items):
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


CsvRead = tuple[pa.Table, list[int] | None, list[tuple[int, str, str]]]


def _read_csv(src: Source, cfg: IngestConfig) -> CsvRead:
    """(table, line of each row or None, malformed rows as (line, detail, raw)). All columns as bytes
    (UTF-8 checked per column later). pyarrow reads a well-formed file; when it finds a malformed row, or
    the file has an odd number of quote characters (an unclosed quote swallows the rows after it into one
    value), `_csv_by_lines` reads the file instead and numbers lines."""
    block = cfg.csv_block_mb << 20
    data = src.data_path.read_bytes()
    if data.count(b'"') % 2 == 0:
        bad_rows: list[Any] = []
        try:
            with pacsv.open_csv(
                src.data_path,
                read_options=pacsv.ReadOptions(block_size=block),
                parse_options=pacsv.ParseOptions(
                    invalid_row_handler=lambda r: "skip", newlines_in_values=True
                ),
                convert_options=pacsv.ConvertOptions(check_utf8=False),
            ) as reader:
                names = reader.schema.names
            table = pacsv.read_csv(
                src.data_path,
                read_options=pacsv.ReadOptions(block_size=block),
                parse_options=pacsv.ParseOptions(
                    invalid_row_handler=lambda r: bad_rows.append(r) or "skip", newlines_in_values=True
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.binary() for n in names},
                    null_values=[""],
                    strings_can_be_null=True,
                    check_utf8=False,
                ),
            )
            if not bad_rows:
                return table, None, []
        except pa.ArrowInvalid:
            pass  # e.g. a value larger than the block: the line reader has no such limit
    return _csv_by_lines(data.removeprefix(BOM))


def _csv_by_lines(data: bytes) -> CsvRead:
    """Parse CSV record by record with line numbers. A record with the wrong number of fields, or one that
    runs to the end of the file inside quotes, is refused as its first line only, and parsing resumes on
    the next line: an unclosed quote costs one row, not the rest of the file."""
    lines = data.decode("utf-8", errors="surrogateescape").splitlines(keepends=True)
    if not lines:
        raise FileProblem("empty_file", "the CSV file has no header row")
    names = next(csv.reader([lines[0]]))
    pos = 1

    def feed() -> Iterator[str]:
        nonlocal pos
        while pos < len(lines):
            pos += 1
            yield lines[pos - 1]

    rows: list[list[str]] = []
    numbers: list[int] = []
    bad: list[tuple[int, str, str]] = []
    reader = csv.reader(feed(), strict=True)
    while pos < len(lines):
        start = pos
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            fields, problem = None, f"the CSV row cannot be parsed ({e}; an unclosed quote?)"
        else:
            problem = None if len(fields) == len(names) or fields == [] else (
                f"the CSV row has {len(fields)} fields; the header has {len(names)}"
                + (" (an unclosed quote joins lines?)" if pos - start > 1 else "")
            )
        if problem is not None:
            bad.append((start + 1, problem, lines[start].encode("utf-8", "surrogateescape").decode(
                "utf-8", "replace")))
            pos = start + 1  # resume on the line after the first line of the refused record
            reader = csv.reader(feed(), strict=True)
        elif fields:
            rows.append(fields)
            numbers.append(start + 1)
    cols = {
        name: pa.array(
            [r[i].encode("utf-8", "surrogateescape") if r[i] != "" else None for r in rows], pa.binary()
        )
        for i, name in enumerate(names)
    }
    return pa.table(cols), numbers, bad


def read_columnar(src: Source, cfg: IngestConfig, kind: str) -> dict[str, pa.Table]:
    bad_rows: list[tuple[int, str, str]] = []
    lines = None
    if src.fmt == "parquet":
        try:
            table = pq.read_table(src.data_path)
        except (pa.ArrowInvalid, OSError) as e:
            raise FileProblem("unreadable", f"{src.path} cannot be read as Parquet: {e}") from None
    else:
        table, lines, bad_rows = _read_csv(src, cfg)
        if lines is not None:
            src.unit = "line"
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
    numbered = with_meta(table, src.index, lines)
    if kind in CANONICAL and not bad_rows:
        return {kind: numbered}
    main = Collector(_MAIN_TABLE[kind], src.index)
    for number, detail, text in bad_rows:
        main.bad(number, "bad_csv_row", detail, text[: cfg.raw_max_chars])
    if kind in CANONICAL:
        merged = pa.concat_tables([numbered, _align(main.to_arrow(), table)], promote_options="permissive")
        return {kind: merged.sort_by("_row")}
    rows = [
        (i, _decode_row(r), json.dumps(_decode_row(r), default=str)[: cfg.raw_max_chars])
        for i, r in zip(numbered["_row"].to_pylist(), table.to_pylist(), strict=True)
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
    opener = COMPRESSIONS.get(src.path.suffix.lower())
    try:
        if opener is None and jsonsafe.lone_surrogate(str(src.path)) is None:
            src.data_path = src.path
            return _read_plain(src, cfg, fmt, kind)
        # compressed, or a name that is not UTF-8 (which pyarrow cannot open): read a plain copy
        with tempfile.TemporaryDirectory(prefix="rluf-ingest-") as tmp:
            name = jsonsafe.printable(src.path.stem if opener else src.path.name)  # a.jsonl.gz -> a.jsonl
            src.data_path = Path(tmp) / name
            try:
                with (opener or open)(src.path, "rb") as f, src.data_path.open("wb") as out:
                    shutil.copyfileobj(f, out, 1 << 20)
            except (EOFError, lzma.LZMAError, gzip.BadGzipFile, OSError) as e:
                if opener is None:
                    raise
                raise FileProblem(
                    "unreadable", f"{src.path} cannot be decompressed ({src.path.suffix}): {e}"
                ) from None
            return _read_plain(src, cfg, fmt, kind)
    except OSError as e:  # no read permission, a folder named like a file, a disk error
        raise FileProblem("unreadable", f"{src.path} cannot be read: {e.strerror or e}") from None


def _read_plain(src: Source, cfg: IngestConfig, fmt: str, kind: str) -> dict[str, pa.Table]:
    src.fmt = container_format(src.path, fmt, src.data_path)
    if src.fmt in ("jsonl", "json"):
        return read_json(src, cfg, kind)
    return read_columnar(src, cfg, kind)
