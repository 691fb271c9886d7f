from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rluf.errors import DataError
from rluf.schema import MESSAGES, REACTIONS, USERS, check_table
from rluf.serve import export
from rluf.utils import read_json

from .conftest import ALICE, BOB, FixedClock, ask, counting_ids, make_config

START = datetime(2026, 1, 1, tzinfo=UTC)


def fill(client):
    """Two users, three answers, two reactions, one undone reaction."""
    a1 = ask(client, "alice one").json()
    hist = [{"role": "user", "content": "alice one"},
            {"role": "assistant", "content": a1["choices"][0]["message"]["content"]},
            {"role": "user", "content": "alice two"}]
    a2 = client.post("/v1/chat/completions", headers=ALICE,
                     json={"messages": hist, "conversation_id": a1["conversation_id"]}).json()
    b1 = ask(client, "bob one", headers=BOB, stream=True)
    assert b1.status_code == 200
    for mid, t, h in [(a1["id"], "love", ALICE), (a2["id"], "like", ALICE), (a2["id"], "dislike", ALICE)]:
        assert client.post("/v1/reactions", json={"message_id": mid, "type": t}, headers=h).status_code == 201
    client.request("DELETE", "/v1/reactions", json={"message_id": a2["id"], "type": "dislike"}, headers=ALICE)
    return a1, a2


def test_export_is_canonical_and_exact(make_client, db_url, tmp_path):
    client = make_client(clock_us=FixedClock(), new_id=counting_ids())
    a1, a2 = fill(client)
    counts = export(db_url, tmp_path / "out")
    assert counts == {"messages": 6, "reactions": 2, "users": 2, "assignments": 2}
    assert read_json(tmp_path / "out" / "export.json")["counts"] == counts
    msgs = pq.read_table(tmp_path / "out" / "logs" / "messages.parquet")
    assert msgs.schema.equals(MESSAGES) and check_table(msgs, "messages").num_rows == 6
    reacts = pq.read_table(tmp_path / "out" / "logs" / "reactions.parquet")
    assert reacts.schema.equals(REACTIONS)
    assert pq.read_table(tmp_path / "out" / "logs" / "users.parquet").schema.equals(USERS)
    m = msgs.to_pylist()
    alice = [r for r in m if r["user_id"] == "alice"]
    assert [(r["turn_index"], r["role"]) for r in alice] == [(0, "user"), (1, "assistant"), (2, "user"),
                                                              (3, "assistant")]
    assert alice[3]["message_id"] == a2["id"] and alice[3]["parent_id"] == alice[2]["message_id"]
    # the first clock tick (1000 us steps from 2026-01-01) stamps alice's first user message
    assert alice[0]["created_at"] == START
    assert {r["model_id"] for r in m if r["role"] == "assistant"} <= {"control", "treatment"}
    assert [(r["message_id"], r["type"]) for r in reacts.to_pylist()] == [(a1["id"], "love"), (a2["id"], "like")]


def test_export_passes_ingest_with_nothing_quarantined(make_client, db_url, tmp_path):
    from rluf.ingest import ingest

    fill(make_client())
    export(db_url, tmp_path / "out")
    logs = tmp_path / "out" / "logs"
    counts = ingest([logs], tmp_path / "ing", strict=True)  # strict: any bad record raises
    assert counts["file_problems"] == 0 and counts["skipped_files"] == []
    for name, n in (("messages", 6), ("reactions", 2), ("users", 2)):
        assert counts["tables"][name] == {"read": n, "accepted": n, "quarantined": 0, "reasons": {}}
    for name, n in (("messages", 6), ("reactions", 2), ("users", 2)):
        assert pq.read_table(tmp_path / "ing" / f"{name}.parquet").num_rows == n


def test_export_cli_and_missing_database(make_client, db_url, tmp_path):
    import typer

    from rluf.serve.cli import register

    app = typer.Typer()  # only the serve stage's commands: importing every stage is slow
    register(app)
    ask(make_client())
    runner = CliRunner()
    res = runner.invoke(app, ["export", db_url, "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "messages 2" in res.output
    assert (tmp_path / "cli" / "logs" / "messages.parquet").is_file()
    with pytest.raises(DataError, match=r"nope\.db does not exist"):
        export(str(tmp_path / "nope.db"), tmp_path / "x")
    assert not (tmp_path / "nope.db").exists()


def test_export_of_an_unrelated_database_is_clear(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(DataError, match=r"has no table\(s\) \['messages', 'reactions', 'users', 'assignments'\]"):
        export(f"sqlite:///{path}", tmp_path / "x")


def test_make_config_helper_is_valid(db_url):
    assert make_config(db_url).experiment.arms[1].name == "treatment"


def test_database_passwords_are_never_shown():
    from rluf.serve.store import safe_url

    shown = safe_url("postgresql+psycopg://rluf:hunter2@127.0.0.1:5432/x")
    assert "hunter2" not in shown and "rluf:***@" in shown
