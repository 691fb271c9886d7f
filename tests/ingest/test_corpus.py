"""A corpus of malformed log files, one kind each, run through the `rluf` entry point with and without
--strict: no traceback, exit code 0 or 2, read = accepted + quarantined, the expected reason, and every
good row of a mixed file kept with its values unchanged."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from rluf.cli import main
from rluf.ingest.records import REASONS
from rluf.utils import read_json

from .conftest import messages, reactions, read_quarantine, write_jsonl

NOW = "2025-06-01T00:00:00+00:00"
GOOD_IDS = [m["message_id"] for m in messages()]


@dataclass
class Case:
    """One kind of malformed input: `write(folder)` makes the files; the rest is what ingest must do."""

    write: Callable[[Path], None]
    reason: str | None  # in quarantine.jsonl (record or file); None: the input is good, nothing quarantined
    kept: list[str] = field(default_factory=lambda: list(GOOD_IDS))  # message ids accepted unchanged
    args: list[str] = field(default_factory=list)
    strict: str | None = None  # a regex the --strict message must match
    accepted: dict[str, int] = field(default_factory=dict)  # table -> accepted rows, when not just `kept`
    orphans: int = 0


def _lines(folder: Path, name: str, records: list, extra: list[bytes] = ()) -> None:
    data = "".join(json.dumps(r) + "\n" for r in records).encode() + b"".join(x + b"\n" for x in extra)
    (folder / name).write_bytes(data)


def _mixed(extra: list[bytes], name: str = "messages.jsonl") -> Callable[[Path], None]:
    """The good fixture messages and reactions, plus raw lines appended to the messages file."""

    def write(folder: Path) -> None:
        _lines(folder, name, messages(), extra)
        write_jsonl(folder / "reactions.jsonl", reactions())

    return write


def _bad_message(**change) -> bytes:
    """A message of its own conversation (so it touches no good row) with `change` applied."""
    m = {
        "conversation_id": "bad",
        "message_id": "bad1",
        "parent_id": None,
        "turn_index": 0,
        "role": "user",
        "text": "a bad row",
        "created_at": "2025-01-05T00:00:00Z",
        "user_id": "u9",
        "model_id": None,
        **change,
    }
    return json.dumps(m).encode()


def _with_reactions(extra: list[dict]) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        write_jsonl(folder / "messages.jsonl", messages())
        write_jsonl(folder / "reactions.jsonl", reactions() + extra)

    return write


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _csv(folder: Path, name: str = "messages.csv") -> Path:
    pacsv.write_csv(pa.Table.from_pylist(messages()), folder / name)
    return folder / name


def _csv_with_row(folder: Path, row: dict) -> None:
    """The good messages as CSV plus `row`, its values as text in the header's column order."""
    path = _csv(folder)
    header = path.read_bytes().splitlines()[0].decode().replace('"', "").split(",")
    values = ["" if row[c] is None else f'"{row[c]}"' for c in header]
    path.write_bytes(path.read_bytes() + ",".join(values).encode() + b"\n")


def _csv_lines(folder: Path) -> list[bytes]:
    return _csv(folder).read_bytes().splitlines(keepends=True)


def _csv_unclosed_quote(folder: Path, at: int) -> None:
    lines = _csv_lines(folder)
    lines.insert(at, b'"bad","bad1",,0,"user","an unclosed quote,"2025-01-05T00:00:00Z","u9",\n')
    (folder / "messages.csv").write_bytes(b"".join(lines))


def _oasst(mid: str, parent: str | None, role: str, text: str = "some text", **more) -> dict:
    return {
        "message_id": mid,
        "parent_id": parent,
        "message_tree_id": "t1",
        "role": role,
        "text": text,
        **more,
    }


def _oasst_good() -> list[dict]:
    return [
        _oasst("p1", None, "prompter", "What is 2+2?", user_id="v1"),
        _oasst("a1", "p1", "assistant", "4", emojis={"+1": 2}),
        _oasst("a2", "p1", "assistant", "Four.", emojis={"-1": 1}),
    ]


def _oasst_flat(extra: list[dict]) -> Callable[[Path], None]:
    return lambda folder: _lines(folder, "oasst.jsonl", _oasst_good() + extra)


def _chain(n: int) -> list[dict]:
    """A prompter and n - 1 assistant messages, each answering the one before, listed child first."""
    rows = [_oasst("c0", None, "prompter", "start", message_tree_id="t2")]
    rows += [
        _oasst(f"c{i}", f"c{i - 1}", "assistant", f"step {i}", message_tree_id="t2") for i in range(1, n)
    ]
    return rows[::-1]


def _tree(depth: int) -> bytes:
    """An OpenAssistant tree line: one thread `depth` replies deep (written as text: json.dumps would
    itself hit the recursion limit)."""
    role = ("prompter", "assistant")
    opens = [
        f'{{"message_id": "n{d}", "role": "{role[d % 2]}", "text": "x", "replies": [' for d in range(depth)
    ]
    leaf = f'{{"message_id": "n{depth}", "role": "assistant", "text": "deep"}}'
    return f'{{"message_tree_id": "t{depth}", "prompt": {"".join(opens)}{leaf}{"]}" * depth}}}'.encode()


def _trace(tid: str, **more) -> dict:
    return {
        "id": tid,
        "timestamp": "2025-01-01T10:00:00Z",
        "session_id": "s1",
        "user_id": "u1",
        "input": "hi",
        "output": "hello",
        **more,
    }


def _score(tid: str, **more) -> dict:
    return {
        "trace_id": tid,
        "name": "user-feedback",
        "value": 1,
        "data_type": "NUMERIC",
        "timestamp": "2025-01-01T10:01:00Z",
        "source": "API",
        **more,
    }


def _langfuse(traces: list[dict], scores: list[dict] = ()) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        _lines(folder, "traces.jsonl", traces)
        if scores:
            _lines(folder, "scores.jsonl", list(scores))

    return write


def _file_and_good(name: str, content: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / name).write_bytes(content)
        write_jsonl(folder / "messages.jsonl", messages())

    return write


def _unreadable(folder: Path) -> None:
    write_jsonl(folder / "messages.jsonl", messages())
    target = folder / "secret_reactions.jsonl"
    if os.geteuid() == 0:  # root reads any file: a file whose read fails with EIO stands in
        target.symlink_to("/proc/self/mem")
    else:
        write_jsonl(target, reactions())
        target.chmod(0)


def _compressed(opener: Callable, name: str, csv: bool = False) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        data = (
            _csv(folder, "tmp.csv").read_bytes()
            if csv
            else "".join(json.dumps(m) + "\n" for m in messages()).encode()
        )
        (folder / "tmp.csv").unlink(missing_ok=True)
        with opener(folder / name, "wb") as f:
            f.write(data)

    return write


def _bom(name: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        if name.endswith(".csv"):
            data = _csv(folder, "tmp.csv").read_bytes()
            (folder / "tmp.csv").unlink()
        elif name.endswith(".json"):
            data = json.dumps(messages()).encode()
        else:
            data = "".join(json.dumps(m) + "\n" for m in messages()).encode()
        (folder / name).write_bytes(b"\xef\xbb\xbf" + data)

    return write


def _name_not_utf8(folder: Path) -> None:
    write_jsonl(folder / "messages.jsonl", messages())
    rs = reactions() + [{**reactions()[0], "message_id": "m404"}]
    write_jsonl(folder / os.fsdecode(b"reactions-\xff.jsonl"), rs)  # a Latin-1 name on a UTF-8 system


def _flat_cycle(folder: Path) -> None:
    cyc = [
        json.loads(_bad_message(message_id="x1", parent_id="x3", turn_index=0)),
        json.loads(_bad_message(message_id="x2", parent_id="x1", turn_index=1, role="assistant")),
        json.loads(_bad_message(message_id="x3", parent_id="x2", turn_index=2)),
    ]
    write_jsonl(folder / "messages.jsonl", messages() + cyc)


OUT_OF_RANGE = 2**70  # 1180591620717411303424

CASES: dict[str, Case] = {
    # --- the kinds of docs/ingest.md
    "invalid_json": Case(
        _mixed([b'{"conversation_id": "c9", "text": 1,,}']),
        "invalid_json",
        strict=r"messages\.jsonl line 6: messages record: the line is not valid JSON",
    ),
    "not_an_object": Case(_mixed([b"[1, 2]"]), "not_an_object", strict=r"line 6: .*JSON list, not an object"),
    "not_utf8": Case(
        _mixed([b'{"conversation_id": "c9", "text": "caf\xe9"}']), "not_utf8", strict=r"line 6: .*not UTF-8"
    ),
    "missing_field": Case(
        _mixed([_bad_message(text=None)]),
        "missing_field",
        strict=r"line 6: messages record, field 'text': required field text",
    ),
    "wrong_type": Case(
        _mixed([_bad_message(turn_index="three")]),
        "wrong_type",
        strict=r"field 'turn_index': turn_index must be an integer, got 'three'",
    ),
    "unknown_role": Case(_mixed([_bad_message(role="robot")]), "unknown_role", strict=r"field 'role'"),
    "empty_text": Case(_mixed([_bad_message(text=" \t\n")]), "empty_text", strict=r"field 'text'"),
    "text_too_long": Case(
        _mixed([_bad_message(text="a" * 5000)]),
        "text_too_long",
        args=["--max-text-bytes", "1000"],
        strict=r"text is 5000 bytes",
    ),
    "negative_turn_index": Case(
        _mixed([_bad_message(turn_index=-2)]), "negative_turn_index", strict=r"turn_index is -2"
    ),
    "bad_timestamp": Case(
        _mixed([_bad_message(created_at="yesterday")]),
        "bad_timestamp",
        strict=r"field 'created_at': created_at 'yesterday' is not an ISO-8601",
    ),
    "future_timestamp": Case(
        _mixed([_bad_message(created_at="2031-01-01T00:00:00Z")]),
        "future_timestamp",
        strict=r"is in the future",
    ),
    "duplicate_message_id": Case(
        _mixed([_bad_message(message_id="m5")]),
        "duplicate_message_id",
        strict=r"line 6: .*message_id 'm5' was first accepted from .* line 5",
    ),
    "duplicate_user_id": Case(
        lambda f: (
            write_jsonl(f / "messages.jsonl", messages()),
            write_jsonl(f / "users.jsonl", [{"user_id": "u1"}, {"user_id": "u1"}]),
        ),
        "duplicate_user_id",
        accepted={"users": 1},
        strict=r"users\.jsonl line 2: .*user_id 'u1'",
    ),
    "reaction_on_missing_message": Case(
        _with_reactions([{"message_id": "m404", "type": "love", "user_id": "u1", "created_at": NOW[:19]}]),
        "reaction_on_missing_message",
        accepted={"reactions": 2},
        strict=r"'m404' is not an accepted message",
    ),
    "reaction_on_user_message": Case(
        _with_reactions([{"message_id": "m1", "type": "love", "user_id": "u1", "created_at": NOW[:19]}]),
        "reaction_on_user_message",
        accepted={"reactions": 2},
        strict=r"message 'm1' has role user",
    ),
    "reaction_before_message": Case(
        _with_reactions([{"message_id": "m2", "type": "love", "user_id": "u7", "created_at": "2024-01-01"}]),
        "reaction_before_message",
        accepted={"reactions": 2},
        strict=r"is before its message",
    ),
    "deleted_oasst_message": Case(
        _oasst_flat([_oasst("a3", "p1", "assistant", deleted=True)]),
        "deleted",
        kept=[],
        accepted={"messages": 3, "reactions": 3},
        strict=r"flagged deleted",
    ),
    "score_source": Case(
        _langfuse([_trace("t1")], [_score("t1"), _score("t1", source="EVAL")]),
        "score_source",
        kept=[],
        accepted={"messages": 2, "reactions": 1},
        strict=r"score source 'EVAL'",
    ),
    "score_not_on_trace": Case(
        _langfuse([_trace("t1")], [_score("t1"), _score(None, session_id="s1")]),
        "score_not_on_trace",
        kept=[],
        accepted={"messages": 2, "reactions": 1},
        strict=r"attached to a session",
    ),
    "empty_file": Case(_file_and_good("reactions.jsonl", b"\n \n"), "empty_file", strict=r"is empty"),
    "wrong_format": Case(
        _file_and_good("reactions.parquet", b'{"a": 1}\n'), "wrong_format", strict=r"looks like JSON"
    ),
    "unknown_table": Case(
        _file_and_good("stuff.jsonl", b'{"foo": 1}\n'), "unknown_table", strict=r"cannot tell which table"
    ),
    "truncated_parquet": Case(
        _file_and_good("reactions.parquet", b"PAR1 cut PAR1"),
        "unreadable",
        strict=r"cannot be read as Parquet",
    ),
    "ragged_csv_row": Case(
        lambda f: (f / "messages.csv").write_bytes(_csv(f).read_bytes() + b'"c3","m9","x"\n'),
        "bad_csv_row",
        strict=r"messages\.csv line 7: .*3 fields; the header has 9",
    ),
    # --- issue 22: inputs that crashed ingest or misled
    "int_beyond_int64": Case(
        _mixed([_bad_message(turn_index=OUT_OF_RANGE)]),
        "wrong_type",
        strict=r"field 'turn_index': turn_index 1180591620717411303424 is out of range",
    ),
    "int_beyond_int64_reaction_count": Case(
        _oasst_flat([_oasst("a3", "p1", "assistant", emojis={"+1": OUT_OF_RANGE})]),
        "wrong_type",
        kept=[],
        accepted={"messages": 4, "reactions": 3},
        strict=r"field 'emojis': emoji '\+1' count must be an integer",
    ),
    "int_beyond_int32": Case(
        _mixed([_bad_message(turn_index=2**40)]),
        "wrong_type",
        strict=r"field 'turn_index': turn_index must be an integer of at most 32 bits, got '1099511627776'",
    ),
    "int_beyond_int64_csv": Case(
        lambda f: _csv_with_row(f, json.loads(_bad_message(turn_index=OUT_OF_RANGE))),
        "wrong_type",
        strict=r"messages\.csv row 6: messages record, field 'turn_index': .*got '1180591620717411303424'",
    ),
    "int_of_5000_digits": Case(
        _mixed([b'{"conversation_id": "c9", "turn_index": ' + b"7" * 5000 + b"}"]),
        "invalid_json",
        strict=r"line 6: messages record: the line is not valid JSON",
    ),
    "deep_json_message": Case(
        _mixed([b'{"message_id": "d", "text": ' + _nested(1000).encode() + b"}"]),
        "too_deep",
        strict=r"line 6: messages record: the JSON value is nested more than",
    ),
    "deep_json_100k": Case(_mixed([_nested(100_000).encode()]), "too_deep", strict=r"nested more than 200"),
    "deep_json_reaction": Case(
        lambda f: (
            write_jsonl(f / "messages.jsonl", messages()),
            _lines(
                f,
                "reactions.jsonl",
                reactions(),
                [b'{"message_id": "m2", "type": ' + _nested(1500).encode() + b"}"],
            ),
        ),
        "too_deep",
        accepted={"reactions": 2},
        strict=r"reactions\.jsonl line 3: .*nested more than",
    ),
    "deep_json_langfuse_input": Case(
        lambda f: (f / "traces.jsonl").write_bytes(
            (json.dumps(_trace("t1")) + "\n").encode()
            + b'{"id": "t2", "timestamp": "2025-01-01T11:00:00Z", "session_id": "s2", "user_id": "u1", '
            b'"output": "x", "input": ' + _nested(1000).encode() + b"}\n"
        ),
        "too_deep",
        kept=[],
        accepted={"messages": 2},
        strict=r"traces\.jsonl line 2: .*nested more than",
    ),
    "deep_json_langfuse_csv_input": Case(
        lambda f: pacsv.write_csv(
            pa.Table.from_pylist([_trace("t1"), _trace("t2", input=_nested(1000))]), f / "traces.csv"
        ),
        "too_deep",
        kept=[],
        accepted={"messages": 3},
        orphans=1,
        strict=r"field 'input': input holds JSON text",
    ),
    "deep_json_document": Case(
        _file_and_good("reactions.json", _nested(5000).encode()),
        "too_deep",
        strict=r"reactions\.json row 1: .*nested more than",
    ),
    "deep_oasst_tree": Case(
        lambda f: _lines(f, "oasst_trees.jsonl", [], [_tree(3), _tree(600)]),
        "too_deep",
        kept=[],
        accepted={"messages": 4},
        strict=r"line 2: .*nested more than",
    ),
    "lone_surrogate_text": Case(
        _mixed(
            [
                b'{"conversation_id": "c9", "message_id": "s1", "turn_index": 0, '
                b'"role": "user", "text": "hi \\ud800", "created_at": "2025-01-05", '
                b'"user_id": "u9"}'
            ]
        ),
        "bad_text",
        strict=r"field 'text': text holds a lone surrogate '\\ud800'",
    ),
    "lone_surrogate_id": Case(
        _mixed([_bad_message(user_id="u\udc00")]), "bad_text", strict=r"field 'user_id'"
    ),
    "lone_surrogate_oasst": Case(
        _oasst_flat([_oasst("a3", "p1", "assistant", "bad \ud83d text")]),
        "bad_text",
        kept=[],
        accepted={"messages": 3, "reactions": 3},
        strict=r"field 'text'",
    ),
    "lone_surrogate_score_name": Case(
        _langfuse([_trace("t1")], [_score("t1"), _score("t1", name="\udfff")]),
        "bad_text",
        kept=[],
        accepted={"messages": 2, "reactions": 1},
        strict=r"field 'type'",
    ),
    "lone_surrogate_json_document": Case(
        _file_and_good("users.json", json.dumps([{"user_id": "ok"}, {"user_id": "\ud800"}]).encode()),
        "bad_text",
        accepted={"users": 1},
        strict=r"users\.json row 2: users record, field 'user_id'",
    ),
    "oasst_parent_cycle": Case(
        _oasst_flat(
            [_oasst("x1", "x2", "assistant"), _oasst("x2", "x1", "prompter"), _oasst("x3", "x1", "assistant")]
        ),
        "parent_cycle",
        kept=[],
        accepted={"messages": 4, "reactions": 3},
        orphans=1,
        strict=r"field 'parent_id': parent_id links form a cycle",
    ),
    "oasst_self_parent": Case(
        _oasst_flat([_oasst("x1", "x1", "assistant")]),
        "parent_cycle",
        kept=[],
        accepted={"messages": 3, "reactions": 3},
        strict=r"form a cycle: 'x1' -> 'x1'",
    ),
    "oasst_chain_2000_child_first": Case(
        lambda f: _lines(f, "oasst.jsonl", _oasst_good() + _chain(2000)),
        None,
        kept=[],
        accepted={"messages": 2003, "reactions": 3},
    ),
    "oasst_orphan": Case(
        _oasst_flat([_oasst("a9", "gone", "assistant", emojis={"+1": 1})]),
        None,
        kept=[],
        accepted={"messages": 4, "reactions": 4},
        orphans=1,
    ),
    "unreadable_file": Case(_unreadable, "unreadable", strict=r"secret_reactions\.jsonl cannot be read"),
    "bom_jsonl": Case(_bom("messages.jsonl"), None),
    "bom_csv": Case(_bom("messages.csv"), None),
    "bom_json_document": Case(_bom("messages.json"), None),
    "csv_unclosed_quote_middle": Case(
        lambda f: _csv_unclosed_quote(f, 3), "bad_csv_row", strict=r"messages\.csv line 4: .*unclosed quote"
    ),
    "csv_unclosed_quote_last": Case(
        lambda f: _csv_unclosed_quote(f, 6), "bad_csv_row", strict=r"messages\.csv line 7: .*unclosed quote"
    ),
    "csv_quote_closed_rows_later": Case(
        lambda f: (f / "messages.csv").write_bytes(
            b"".join(
                (ln := _csv_lines(f))[:2]
                + [b'"bad","bad1",,0,"user","opens here,"2025-01-05","u9",\n']
                + ln[2:4]
                + [b'"bad","bad2",,0,"user","closes" here","2025-01-05","u9",\n']
                + ln[4:]
            )
        ),
        "bad_csv_row",
        strict=r"messages\.csv line 3: ",
    ),
    "offset_beyond_14h": Case(
        _mixed([_bad_message(created_at="2025-01-05T10:00:00+25:00")]),
        "bad_timestamp",
        strict=r"created_at '2025-01-05T10:00:00\+25:00' is not an ISO-8601 timestamp with",
    ),
    "offset_minus_15h": Case(
        _mixed([_bad_message(created_at="2025-01-05 10:00:00-1500")]),
        "bad_timestamp",
        strict=r"within \+-14:00",
    ),
    "truncated_line": Case(
        _mixed([b'{"conversation_id": "c9", "text": "cut sho']),
        "invalid_json",
        strict=r"line 6: messages record: the line is not valid JSON \(cut short\?\) \(reason",
    ),
    "truncated_line_in_value": Case(
        _mixed([b'{"conversation_id": "c9", "turn_index": 1']), "invalid_json", strict=r"\(cut short\?\)"
    ),
    "gzip_jsonl": Case(_compressed(gzip.open, "messages.jsonl.gz"), None),
    "gzip_csv": Case(_compressed(gzip.open, "messages.csv.gz", csv=True), None),
    "bz2_jsonl": Case(_compressed(bz2.open, "messages.jsonl.bz2"), None),
    "corrupt_gzip": Case(
        _file_and_good("reactions.jsonl.gz", b"\x1f\x8b\x08\x00 not gzip"),
        "unreadable",
        strict=r"reactions\.jsonl\.gz cannot be decompressed",
    ),
    "turn_index_out_of_order": Case(
        _mixed([_bad_message(message_id="b2", parent_id="m2", conversation_id="c1", turn_index=7)]),
        "turn_out_of_order",
        strict=r"field 'turn_index': turn_index is 7 but its parent m2 has turn_index 1",
    ),
    "turn_older_than_parent": Case(
        _mixed(
            [
                _bad_message(
                    message_id="b2",
                    parent_id="m4",
                    conversation_id="c1",
                    turn_index=4,
                    created_at="2024-01-01T00:00:00Z",
                )
            ]
        ),
        "turn_out_of_order",
        strict=r"field 'created_at': .* is before its parent m4",
    ),
    "turn_older_than_previous_turn": Case(
        _mixed([_bad_message(message_id="b2", conversation_id="c2", turn_index=1, created_at="2025-01-01")]),
        "turn_out_of_order",
        strict=r"is before every message of turn 0 of conversation c2",
    ),
    "parent_in_other_conversation": Case(
        _mixed([_bad_message(message_id="b2", parent_id="m5", turn_index=1)]),
        "turn_out_of_order",
        strict=r"its parent m5 is in conversation c2",
    ),
    "flat_parent_cycle": Case(
        _flat_cycle, "parent_cycle", strict=r"form a cycle: 'x1' -> 'x3' -> 'x2' -> 'x1'"
    ),
    "duplicate_reaction": Case(
        _with_reactions([{**reactions()[0], "created_at": "2025-01-01T10:00:40Z"}]),
        "duplicate_reaction",
        accepted={"reactions": 2},
        strict=r"reactions\.jsonl line 3: .*message_id and user_id and type 'm2' / 'u1' / "
        r"'love' was first accepted from .* line 1",
    ),
    "langfuse_latency_out_of_range": Case(
        _langfuse([_trace("t1"), _trace("t2", session_id="s2", latency=1e300)]),
        "wrong_type",
        kept=[],
        accepted={"messages": 3},
        strict=r"field 'latency': latency 1e\+300 s",
    ),
    "file_name_not_utf8": Case(
        _name_not_utf8,
        "reaction_on_missing_message",
        accepted={"reactions": 2},
        strict=r"reactions-\\udcff\.jsonl line 3: reactions record, field 'message_id'",
    ),
    "orphan_message": Case(
        _mixed([_bad_message(message_id="b2", parent_id="gone", turn_index=3)]),
        None,
        kept=[*GOOD_IDS, "b2"],
        orphans=1,
    ),
}


def _expected_good() -> dict[str, dict]:
    out = {}
    for m in messages():
        out[m["message_id"]] = {**m, "created_at": datetime.fromisoformat(m["created_at"])}
    return out


def _run(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["rluf", *argv])
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps lines to the terminal width
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out + out.err


def test_corpus_has_every_kind():
    assert len(CASES) >= 40
    assert set(REASONS) <= {c.reason for c in CASES.values()}


@pytest.mark.parametrize("kind", list(CASES))
def test_malformed_input(kind, tmp_path, monkeypatch, capsys):
    case = CASES[kind]
    folder = tmp_path / "logs"
    folder.mkdir()
    case.write(folder)
    out = tmp_path / "out"
    base = ["ingest", str(folder), "--out", str(out), "--now", NOW, *case.args]

    code, text = _run(base, monkeypatch, capsys)
    assert code == 0 and "Traceback" not in text, text
    report = read_json(out / "ingest.json")
    quarantine = read_quarantine(out)
    for name, t in report["tables"].items():
        assert t["read"] == t["accepted"] + t["quarantined"], (name, t)
        assert t["quarantined"] == sum(1 for q in quarantine if q["table"] == name)
    reasons = {q["reason"] for q in quarantine}
    assert reasons == ({case.reason} if case.reason else set()), quarantine
    accepted = {m["message_id"]: m for m in pq.read_table(out / "messages.parquet").to_pylist()}
    good = _expected_good()
    for mid in case.kept:
        if mid in good:
            assert accepted[mid] == good[mid], mid  # every value as written
        else:
            assert mid in accepted
    for name, n in case.accepted.items():
        assert report["tables"][name]["accepted"] == n, (name, report["tables"][name])
    if not case.accepted:
        assert report["tables"]["messages"]["accepted"] == len(case.kept)
    assert report["orphan_messages"] == case.orphans

    code, text = _run([*base, "--strict"], monkeypatch, capsys)
    assert "Traceback" not in text, text
    flat = re.sub(r"\s*\n\s*", " ", text)
    if case.reason is None:
        assert code == 0, text
    else:
        assert code == 2, text
        assert f"reason {case.reason}" in flat, flat
        assert re.search(case.strict, flat), flat
        assert "field 'None'" not in flat and " at at " not in flat
