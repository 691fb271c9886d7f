"""`rluf ingest` as a user runs it: the CLI, a folder of broken files, strict mode's exit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rluf.cli import app, main
from rluf.errors import DataError
from rluf.utils import read_json

from .conftest import DATA, messages, reactions, read_quarantine, write_jsonl


def test_cli_smoke(tmp_path, log_files):
    result = CliRunner().invoke(
        app,
        [
            "ingest",
            *map(str, log_files),
            "--out",
            str(tmp_path / "out"),
            "--now",
            "2025-06-01T00:00:00+00:00",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and "messages" in result.output
    report = read_json(tmp_path / "out" / "ingest.json")
    assert report["tables"]["messages"]["accepted"] == 5 and report["now"] == "2025-06-01T00:00:00+00:00"
    assert pq.read_table(tmp_path / "out" / "reactions.parquet").num_rows == 2


def test_cli_strict_raises_rluf_error(tmp_path):
    msgs = messages()
    msgs[2]["role"] = "robot"
    f = write_jsonl(tmp_path / "messages.jsonl", msgs)
    result = CliRunner().invoke(app, ["ingest", str(f), "--out", str(tmp_path / "out"), "--strict"])
    assert isinstance(result.exception, DataError)
    assert "messages.jsonl line 3" in str(result.exception) and "'role'" in str(result.exception)


def _broken_folder(root: Path) -> dict[str, str]:
    """A folder with one broken thing per file; returns file name -> the reason expected for it."""
    root.mkdir()
    write_jsonl(root / "messages.jsonl", messages())
    write_jsonl(
        root / "reactions.jsonl",
        reactions()
        + [{"message_id": "m1", "type": "love", "user_id": "u1", "created_at": "2025-01-01T10:00:09Z"}],
    )
    (root / "empty.jsonl").write_bytes(b"")
    (root / "fake.parquet").write_text('{"message_id": "x"}\n')
    bad = messages()
    for i, m in enumerate(bad):
        m["message_id"] = f"b{i}"
    bad[0]["created_at"] = "not a time"
    bad[1]["role"] = "bot"
    bad[2]["text"] = ""
    bad[3]["created_at"] = "2999-01-01T00:00:00Z"
    bad[4] = {"conversation_id": "c9"}
    write_jsonl(root / "more_messages.jsonl", bad)
    with (root / "more_messages.jsonl").open("ab") as fh:
        fh.write(b'{"broken": \n' + b'{"text": "\xff\xfe"}\n')
    (root / "README.txt").write_text("not a log")
    return {
        "empty.jsonl": "empty_file",
        "fake.parquet": "wrong_format",
        "reactions.jsonl": "reaction_on_user_message",
    }


def test_folder_of_broken_files_is_quarantined_with_reasons(tmp_path):
    expected_files = _broken_folder(tmp_path / "logs")
    result = CliRunner().invoke(
        app,
        [
            "ingest",
            str(tmp_path / "logs"),
            "--out",
            str(tmp_path / "out"),
            "--now",
            "2025-06-01T00:00:00+00:00",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "files not read" in result.output
    report = read_json(tmp_path / "out" / "ingest.json")
    q = read_quarantine(tmp_path / "out")
    for name, counts in report["tables"].items():
        assert counts["read"] == counts["accepted"] + counts["quarantined"], name
        assert counts["quarantined"] == sum(1 for x in q if x["table"] == name)
    by_file = {}
    for x in q:
        by_file.setdefault(Path(x["source"]).name, []).append(x["reason"])
    for name, reason in expected_files.items():
        assert reason in by_file[name], (name, by_file)
    assert sorted(by_file["more_messages.jsonl"]) == sorted(
        [
            "bad_timestamp",
            "unknown_role",
            "empty_text",
            "future_timestamp",
            "missing_field",
            "invalid_json",
            "not_utf8",
        ]
    )
    assert report["tables"]["messages"] == {
        "read": 12,
        "accepted": 5,
        "quarantined": 7,
        "reasons": {
            "bad_timestamp": 1,
            "unknown_role": 1,
            "empty_text": 1,
            "future_timestamp": 1,
            "missing_field": 1,
            "invalid_json": 1,
            "not_utf8": 1,
        },
    }
    assert report["file_problems"] == 2 and report["skipped_files"][0].endswith("README.txt")
    assert all(x["detail"] for x in q)


def test_entry_point_exits_2_without_traceback(tmp_path, monkeypatch, capsys):
    """rluf.cli.main (the `rluf` console script) prints the error in one line and exits 2. In-process: a
    fresh interpreter imports every stage (torch, transformers) and takes tens of seconds on busy cores."""
    f = tmp_path / "messages.parquet"
    f.write_text(json.dumps({"message_id": "m"}))
    monkeypatch.setattr(sys, "argv", ["rluf", "ingest", str(f), "--out", str(tmp_path / "o"), "--strict"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "looks like JSON" in err


def test_real_sample_through_cli(tmp_path):
    result = CliRunner().invoke(
        app, ["ingest", str(DATA / "oasst_en_25_tree.jsonl"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "o" / "ingest.json")["files"][0]["table"] == "oasst-tree"
