"""Every kind of bad input: quarantined with its reason (lenient), or a DataError naming the file, line
and field (strict)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from rluf.errors import DataError
from rluf.ingest import IngestConfig, ingest

from .conftest import NOW, messages, reactions, read_quarantine, write_jsonl


def _messages_with(tmp_path: Path, change: dict, index: int = 1) -> list[Path]:
    msgs = messages()
    msgs[index] = {k: v for k, v in {**msgs[index], **change}.items() if v is not _DROP}
    return [
        write_jsonl(tmp_path / "messages.jsonl", msgs),
        write_jsonl(tmp_path / "reactions.jsonl", reactions()),
    ]


_DROP = object()


def _append_line(tmp_path: Path, line: bytes) -> list[Path]:
    f = write_jsonl(tmp_path / "messages.jsonl", messages())
    with f.open("ab") as fh:
        fh.write(line + b"\n")
    return [f]


def _reaction(tmp_path: Path, message_id: str, created_at: str = "2025-01-03T00:00:00Z") -> list[Path]:
    rs = reactions() + [{"message_id": message_id, "type": "love", "user_id": "u9", "created_at": created_at}]
    return [
        write_jsonl(tmp_path / "messages.jsonl", messages()),
        write_jsonl(tmp_path / "reactions.jsonl", rs),
    ]


# (id, files builder, table, expected line, reason, field, strict-mode message pattern)
CASES = [
    (
        "invalid_json",
        lambda p: _append_line(p, b'{"conversation_id": "c1", "text": '),
        "messages",
        6,
        "invalid_json",
        None,
        r"messages\.jsonl line 6: messages record: the line is not valid JSON \(cut short\?\) "
        r"\(reason invalid_json\)",
    ),
    (
        "not_an_object",
        lambda p: _append_line(p, b"[1, 2]"),
        "messages",
        6,
        "not_an_object",
        None,
        r"line 6: .*JSON list, not an object",
    ),
    (
        "missing_field",
        lambda p: _messages_with(p, {"text": _DROP}),
        "messages",
        2,
        "missing_field",
        "text",
        r"messages\.jsonl line 2: messages record, field 'text': required field text is absent",
    ),
    (
        "wrong_type",
        lambda p: _messages_with(p, {"turn_index": "three"}),
        "messages",
        2,
        "wrong_type",
        "turn_index",
        r"line 2: .*field 'turn_index': turn_index must be an integer, got 'three'",
    ),
    (
        "wrong_type_text",
        lambda p: _messages_with(p, {"text": {"a": 1}}),
        "messages",
        2,
        "wrong_type",
        "text",
        r"field 'text': text must be a string",
    ),
    (
        "unknown_role",
        lambda p: _messages_with(p, {"role": "bot"}),
        "messages",
        2,
        "unknown_role",
        "role",
        r"line 2: .*field 'role': role 'bot' is not one of user, assistant, system",
    ),
    (
        "empty_text",
        lambda p: _messages_with(p, {"text": " \n\t"}),
        "messages",
        2,
        "empty_text",
        "text",
        r"field 'text': text is empty or only whitespace",
    ),
    (
        "duplicate_message_id",
        lambda p: _messages_with(p, {"message_id": "m1"}),
        "messages",
        2,
        "duplicate_message_id",
        "message_id",
        r"line 2: .*message_id 'm1' was first accepted from .*messages\.jsonl line 1",
    ),
    (
        "reaction_on_user_message",
        lambda p: _reaction(p, "m1"),
        "reactions",
        3,
        "reaction_on_user_message",
        "message_id",
        r"reactions\.jsonl line 3: .*message 'm1' has role user",
    ),
    (
        "reaction_on_missing_message",
        lambda p: _reaction(p, "m404"),
        "reactions",
        3,
        "reaction_on_missing_message",
        "message_id",
        r"reactions\.jsonl line 3: .*'m404' is not an accepted message",
    ),
    (
        "reaction_before_message",
        lambda p: _reaction(p, "m2", "2024-12-31T00:00:00Z"),
        "reactions",
        3,
        "reaction_before_message",
        "created_at",
        r"line 3: .*is before its message",
    ),
    (
        "bad_timestamp",
        lambda p: _messages_with(p, {"created_at": "yesterday"}),
        "messages",
        2,
        "bad_timestamp",
        "created_at",
        r"line 2: .*field 'created_at': created_at 'yesterday' is not an ISO-8601 timestamp",
    ),
    (
        "future_timestamp",
        lambda p: _messages_with(p, {"created_at": "2030-01-01T00:00:00Z"}),
        "messages",
        2,
        "future_timestamp",
        "created_at",
        r"line 2: .*created_at 2030-01-01 00:00:00\+00 is in the future",
    ),
    (
        "negative_turn_index",
        lambda p: _messages_with(p, {"turn_index": -1}),
        "messages",
        2,
        "negative_turn_index",
        "turn_index",
        r"turn_index is -1; it must be >= 0",
    ),
    (
        "not_utf8",
        lambda p: _append_line(p, b'{"conversation_id": "c9", "text": "caf\xe9"}'),
        "messages",
        6,
        "not_utf8",
        None,
        r"line 6: .*not UTF-8 \(at byte 38\)",
    ),
    (
        "text_too_long",
        lambda p: _messages_with(p, {"text": "a" * 10_000_000}),
        "messages",
        2,
        "text_too_long",
        "text",
        r"line 2: .*text is 10000000 bytes; max_text_bytes is 1000000",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_record_is_quarantined(tmp_path, case):
    _, build, table, line, reason, field, _ = case
    files = build(tmp_path)
    report = ingest(files, tmp_path / "out", now=NOW)
    bad = [q for q in read_quarantine(tmp_path / "out") if q["reason"] == reason]
    assert len(bad) == 1, read_quarantine(tmp_path / "out")
    q = bad[0]
    assert (q["table"], q["line"], q["field"]) == (table, line, field)
    assert q["source"].endswith(f"{table}.jsonl") and q["raw"] and len(q["raw"]) <= 1000
    t = report["tables"][table]
    assert t["read"] == t["accepted"] + t["quarantined"] and t["reasons"][reason] == 1
    for name, counts in report["tables"].items():
        assert counts["read"] == counts["accepted"] + counts["quarantined"], name


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_record_strict_names_file_line_field(tmp_path, case):
    _, build, *_, pattern = case
    files = build(tmp_path)
    with pytest.raises(DataError, match=pattern):
        ingest(files, tmp_path / "out", strict=True, now=NOW)
    assert not (tmp_path / "out" / "messages.parquet").exists()  # strict writes nothing


def test_max_text_bytes_is_configurable_and_counts_utf8_bytes(tmp_path):
    files = _messages_with(tmp_path, {"text": "é" * 6})  # 6 characters, 12 bytes
    report = ingest(files, tmp_path / "out", now=NOW, config=IngestConfig(max_text_bytes=11))
    assert report["tables"]["messages"]["reasons"] == {"text_too_long": 1}
    report = ingest(files, tmp_path / "out", now=NOW, config=IngestConfig(max_text_bytes=12))
    assert report["tables"]["messages"]["quarantined"] == 0


def test_future_tolerance(tmp_path):
    files = _messages_with(tmp_path, {"created_at": "2025-06-01T00:04:00Z"}, index=4)  # NOW + 4 min
    assert ingest(files, tmp_path / "o", now=NOW)["tables"]["messages"]["quarantined"] == 0
    report = ingest(files, tmp_path / "o", now=NOW, config=IngestConfig(future_tolerance_s=60))
    assert report["tables"]["messages"]["reasons"] == {"future_timestamp": 1}


@pytest.mark.parametrize(
    ("name", "content", "reason", "pattern"),
    [
        ("messages.jsonl", b"", "empty_file", r"messages\.jsonl is empty"),
        ("messages.jsonl", b"\n  \n", "empty_file", r"is empty"),
        (
            "messages.parquet",
            b'{"message_id": "m1"}\n',
            "wrong_format",
            r"messages\.parquet is read as parquet but its content looks like JSON",
        ),
        ("messages.jsonl", b"PAR1\x00\x00garbage", "wrong_format", r"looks like Parquet"),
        ("messages.csv", b'{"message_id": "m1"}\n', "wrong_format", r"looks like JSON, not CSV"),
        (
            "messages.jsonl",
            b"this is not json\nnor this\n",
            "wrong_format",
            r"looks like plain text, not JSON",
        ),
        ("messages.jsonl", b"{oops\n{nope\n", "wrong_format", r"none of its 2 records is valid JSON"),
        ("notes.txt", b"hello", "wrong_format", r"unknown extension '\.txt'"),
        ("stuff.jsonl", b'{"foo": 1}\n', "unknown_table", r"cannot tell which table.*pass --table"),
        ("messages.parquet", b"PAR1 not really parquet PAR1", "unreadable", r"cannot be read as Parquet"),
    ],
)
def test_bad_file(tmp_path, name, content, reason, pattern):
    f = tmp_path / name
    f.write_bytes(content)
    good = write_jsonl(tmp_path / "ok.jsonl", messages())
    report = ingest([f, good], tmp_path / "out", now=NOW)
    (q,) = read_quarantine(tmp_path / "out")
    assert (q["source"], q["reason"], q["table"], q["line"]) == (str(f), reason, None, None)
    assert report["file_problems"] == 1 and report["files"][0]["problem"] == reason
    assert report["tables"]["messages"]["accepted"] == 5  # the good file is still read
    with pytest.raises(DataError, match=pattern):
        ingest([f, good], tmp_path / "out2", strict=True, now=NOW)


def test_csv_bad_bytes_and_ragged_row(tmp_path):
    f = tmp_path / "messages.csv"
    pacsv.write_csv(pa.Table.from_pylist(messages()), f)
    data = f.read_bytes().replace(b"Hello!", b"Hell\xff!") + b'"c3","m9","x"\n'
    f.write_bytes(data)
    report = ingest([f], tmp_path / "out", now=NOW)
    by_reason = {q["reason"]: q for q in read_quarantine(tmp_path / "out")}
    assert set(by_reason) == {"not_utf8", "bad_csv_row"}
    # a malformed row makes the file read line by line: lines of the file, header = line 1
    assert (by_reason["not_utf8"]["line"], by_reason["not_utf8"]["field"]) == (3, "text")
    assert by_reason["bad_csv_row"]["line"] == 7
    assert "m9" in by_reason["bad_csv_row"]["raw"]
    assert report["tables"]["messages"] == {
        "read": 6,
        "accepted": 4,
        "quarantined": 2,
        "reasons": {"not_utf8": 1, "bad_csv_row": 1},
    }


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ingest([tmp_path / "nope.jsonl"], tmp_path / "out")


def test_quarantine_raw_is_the_original_line(tmp_path):
    files = _messages_with(tmp_path, {"role": "bot"})
    ingest(files, tmp_path / "out", now=NOW)
    (q,) = [q for q in read_quarantine(tmp_path / "out") if q["table"] == "messages"]
    assert json.loads(q["raw"])["role"] == "bot"


def test_duplicate_user_id(tmp_path):
    f = write_jsonl(
        tmp_path / "users.jsonl",
        [{"user_id": "u1", "created_at": None}, {"user_id": "u1", "created_at": "2025-01-01T00:00:00Z"}],
    )
    report = ingest([f], tmp_path / "out", now=NOW)
    (q,) = read_quarantine(tmp_path / "out")
    assert (q["line"], q["reason"], q["field"]) == (2, "duplicate_user_id", "user_id")
    assert report["tables"]["users"] == {
        "read": 2,
        "accepted": 1,
        "quarantined": 1,
        "reasons": {"duplicate_user_id": 1},
    }


def test_fast_and_line_by_line_json_paths_agree(tmp_path):
    """A blank line sends a file down the line-by-line path; the tables written must not change."""
    import pyarrow.parquet as pq

    fast = write_jsonl(tmp_path / "messages.jsonl", messages())
    slow = tmp_path / "slow" / "messages.jsonl"
    slow.parent.mkdir()
    slow.write_text(fast.read_text().replace("\n", "\n\n", 1))
    ingest([fast], tmp_path / "a", now=NOW)
    ingest([slow], tmp_path / "b", now=NOW)
    a, b = (pq.read_table(tmp_path / d / "messages.parquet") for d in ("a", "b"))
    assert a.num_rows == 5 and a.equals(b)
