"""Canonical logs in JSONL, CSV, Parquet and as a logs folder round-trip unchanged."""

from __future__ import annotations

import os
import stat
from datetime import datetime

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from rluf.errors import ConfigError
from rluf.ingest import IngestConfig, ingest
from rluf.ingest.readers import detect_kind
from rluf.schema import MESSAGES, REACTIONS, TABLES, USERS, Message, Reaction, User

from .conftest import NOW, messages, reactions, read_quarantine, users, write_jsonl


def _typed(records: list[dict], schema: pa.Schema) -> pa.Table:
    rows = [
        {k: datetime.fromisoformat(v) if k == "created_at" and v else v for k, v in r.items()}
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=schema)


EXPECTED = {"messages": (messages, MESSAGES), "reactions": (reactions, REACTIONS), "users": (users, USERS)}


def _assert_round_trip(out, counts) -> None:
    for name, (make, schema) in EXPECTED.items():
        got = pq.read_table(out / f"{name}.parquet")
        assert got.schema == schema
        assert got.equals(_typed(make(), schema)), name
        assert counts["tables"][name] == {
            "read": len(make()),
            "accepted": len(make()),
            "quarantined": 0,
            "reasons": {},
        }
    assert read_quarantine(out) == []


def test_jsonl_round_trip(tmp_path, log_files):
    report = ingest(log_files, tmp_path / "out", now=NOW)
    _assert_round_trip(tmp_path / "out", report)
    assert [f["table"] for f in report["files"]] == ["messages", "reactions", "users"]
    # every written row is also a valid pydantic row
    for model, name in ((Message, "messages"), (Reaction, "reactions"), (User, "users")):
        for row in pq.read_table(tmp_path / "out" / f"{name}.parquet").to_pylist():
            model(**row)


def test_parquet_round_trip_and_logs_folder(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, (make, schema) in EXPECTED.items():
        pq.write_table(_typed(make(), schema), logs / f"{name}.parquet")
    report = ingest([logs], tmp_path / "out", now=NOW)
    _assert_round_trip(tmp_path / "out", report)
    # the output folder is itself a logs folder: re-ingesting it changes nothing and skips rluf's own files
    again = ingest([tmp_path / "out"], tmp_path / "out2", now=NOW)
    _assert_round_trip(tmp_path / "out2", again)
    assert sorted(p.rsplit("/", 1)[-1] for p in again["skipped_files"]) == ["ingest.json", "quarantine.jsonl"]


def test_csv_round_trip_with_quotes_and_newlines(tmp_path):
    msgs = messages()
    msgs[1]["text"] = 'Hello, "friend"!\nSecond line, with commas.'
    files = []
    for name, records in (("messages", msgs), ("reactions", reactions()), ("users", users())):
        pacsv.write_csv(pa.Table.from_pylist(records), tmp_path / f"{name}.csv")
        files.append(tmp_path / f"{name}.csv")
    ingest(files, tmp_path / "out", now=NOW)
    got = pq.read_table(tmp_path / "out" / "messages.parquet")
    assert got.equals(_typed(msgs, MESSAGES))
    assert pq.read_table(tmp_path / "out" / "users.parquet").equals(_typed(users(), USERS))
    assert read_quarantine(tmp_path / "out") == []


def test_parquet_with_string_and_integer_columns_is_cast(tmp_path):
    """turn_index as text and ids as integers are accepted when the values fit; 'x' is a wrong type."""
    t = pa.table(
        {
            "conversation_id": pa.array([1, 1, 1], pa.int64()),
            "message_id": ["a", "b", "c"],
            "turn_index": ["0", "1", "x"],
            "role": ["user", "assistant", "user"],
            "text": ["q", "a", "q2"],
            "created_at": ["2025-01-01T00:00:00Z", "2025-01-01 00:00:01", "2025-01-01T00:00:02+01:00"],
            "user_id": ["u", "u", "u"],
        }
    )
    pq.write_table(t, tmp_path / "messages.parquet")
    report = ingest([tmp_path / "messages.parquet"], tmp_path / "out", now=NOW)
    got = pq.read_table(tmp_path / "out" / "messages.parquet").to_pylist()
    assert [r["turn_index"] for r in got] == [0, 1]
    assert got[0]["conversation_id"] == "1"
    assert got[1]["created_at"].isoformat() == "2025-01-01T00:00:01+00:00"  # naive = UTC
    (q,) = read_quarantine(tmp_path / "out")
    assert (q["row"], q["reason"], q["field"]) == (3, "wrong_type", "turn_index")
    assert report["tables"]["messages"]["reasons"] == {"wrong_type": 1}


def test_detect_kind_and_explicit_table(tmp_path):
    assert detect_kind({"conversation_id", "message_id", "role", "text"}) == "messages"
    assert detect_kind({"message_id", "type", "user_id", "created_at"}) == "reactions"
    assert detect_kind({"user_id", "created_at"}) == "users"
    assert detect_kind({"message_tree_id", "prompt"}) == "oasst-tree"
    assert detect_kind({"trace_id", "name", "value"}) == "langfuse-scores"
    assert detect_kind({"id", "input", "output"}) == "langfuse-traces"
    assert detect_kind({"foo"}, "users") == "users"
    assert detect_kind({"foo"}) is None
    # --table forces the reading: reactions read as messages lack every message field
    f = write_jsonl(tmp_path / "r.jsonl", reactions())
    report = ingest([f], tmp_path / "out", now=NOW, table="messages")
    assert report["tables"]["messages"]["reasons"] == {"missing_field": 2}
    with pytest.raises(ConfigError, match="--table 'bogus' is not one of"):
        ingest([f], tmp_path / "out", table="bogus")
    with pytest.raises(ConfigError, match="--format 'xml' is not one of"):
        ingest([f], tmp_path / "out", fmt="xml")


def test_config_yaml_and_unknown_key(tmp_path):
    from importlib.resources import files

    from rluf.config import load_config

    shipped = files("rluf") / "configs" / "ingest.yaml"
    cfg = load_config(IngestConfig, str(shipped))
    assert cfg == IngestConfig()  # the YAML documents the defaults
    bad = tmp_path / "c.yaml"
    bad.write_text("max_text_byte: 5\n")
    with pytest.raises(ConfigError, match="unknown key 'max_text_byte'"):
        load_config(IngestConfig, bad)


def test_schema_tables_cover_outputs():
    assert set(TABLES) == {"messages", "reactions", "users"}


def test_time_is_click_given_absent_or_wrong(tmp_path):
    """Reactions may say whether created_at is a click time; files written before the column still load."""
    rs = reactions()
    rs[0]["time_is_click"] = False
    rs[1]["time_is_click"] = "sometimes"
    files = [
        write_jsonl(tmp_path / "messages.jsonl", messages()),
        write_jsonl(tmp_path / "reactions.jsonl", rs),
    ]
    report = ingest(files, tmp_path / "a", now=NOW)
    (q,) = read_quarantine(tmp_path / "a")
    assert (q["line"], q["reason"], q["field"]) == (2, "wrong_type", "time_is_click")
    assert pq.read_table(tmp_path / "a" / "reactions.parquet")["time_is_click"].to_pylist() == [False]
    assert report["tables"]["reactions"]["accepted"] == 1

    old = tmp_path / "old"  # a logs folder from before the column existed: four columns
    old.mkdir()
    pq.write_table(_typed(messages(), MESSAGES), old / "messages.parquet")
    pq.write_table(_typed(reactions(), REACTIONS).drop_columns(["time_is_click"]), old / "reactions.parquet")
    ingest([old], tmp_path / "b", now=NOW)
    assert pq.read_table(tmp_path / "b" / "reactions.parquet")["time_is_click"].to_pylist() == [None, None]
    from rluf.signals.engine import connect, load_logs

    logs = load_logs(connect(), old)
    got = logs.con.to_pyarrow(logs.reactions.order_by("created_at"))
    assert got["time_is_click"].to_pylist() == [None, None] and got["type"].to_pylist() == ["love", "like"]


def test_outputs_follow_the_umask(tmp_path, log_files):
    old = os.umask(0o027)
    try:
        ingest(log_files, tmp_path / "out", now=NOW)
    finally:
        os.umask(old)
    for name in ("ingest.json", "quarantine.jsonl", "messages.parquet"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o640, name
