"""Langfuse trace and score exports (JSONL, a JSON API page, CSV) map onto messages and reactions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rluf.ingest import IngestConfig, LangfuseConfig, ingest
from rluf.ingest.langfuse import extract_text

from .conftest import DATA, NOW, read_quarantine

TRACES, SCORES = DATA / "langfuse_traces.jsonl", DATA / "langfuse_scores.jsonl"


def test_traces_and_scores(tmp_path):
    # scores first: a score's user comes from its trace, which may be in a later file
    report = ingest([SCORES, TRACES], tmp_path / "out", now=NOW)
    msgs = {m["message_id"]: m for m in pq.read_table(tmp_path / "out" / "messages.parquet").to_pylist()}
    assert set(msgs) == {
        "tr-1:input",
        "tr-1:output",
        "tr-2:input",
        "tr-2:output",
        "tr-3:input",
        "tr-3:output",
        "tr-4:input",
    }
    # session s-1: two traces, turns 0..3, linked by parent_id
    assert [
        (msgs[f"tr-{i}:{io}"]["turn_index"], msgs[f"tr-{i}:{io}"]["parent_id"])
        for i in (1, 2)
        for io in ("input", "output")
    ] == [(0, None), (1, "tr-1:input"), (2, "tr-1:output"), (3, "tr-2:input")]
    assert (
        msgs["tr-1:input"]["text"] == "What is the capital of France?"
    )  # last user message, not the system one
    assert msgs["tr-2:output"]["text"] == "Madrid."  # OpenAI choices form
    assert msgs["tr-3:input"]["conversation_id"] == "tr-3"  # no session: the trace is the conversation
    # timestamp + latency 1.5 s
    assert msgs["tr-1:output"]["created_at"] == datetime(2025, 3, 1, 10, 0, 1, 500000, tzinfo=UTC)
    assert [msgs[k]["model_id"] for k in ("tr-1:output", "tr-3:output", "tr-4:input")] == [
        "arm-a",
        "2025.03",
        None,
    ]
    reacts = pq.read_table(tmp_path / "out" / "reactions.parquet").to_pylist()
    assert [(r["message_id"], r["type"], r["user_id"]) for r in reacts] == [
        ("tr-1:output", "user-feedback:1", "u-ana"),  # user from the trace
        ("tr-2:output", "reaction:love", "u-ana"),
        ("tr-3:output", "user-feedback:0", "u-ben"),
    ]
    q = read_quarantine(tmp_path / "out")
    assert [(x["source"].rsplit("/", 1)[-1], x["line"], x["reason"]) for x in q] == [
        ("langfuse_scores.jsonl", 4, "score_source"),
        ("langfuse_scores.jsonl", 5, "score_not_on_trace"),
        ("langfuse_scores.jsonl", 6, "reaction_on_missing_message"),
        ("langfuse_traces.jsonl", 4, "missing_field"),  # tr-4 has no output
    ]
    assert report["tables"]["messages"] == {
        "read": 8,
        "accepted": 7,
        "quarantined": 1,
        "reasons": {"missing_field": 1},
    }
    assert report["tables"]["reactions"]["read"] == 6


def test_score_types_mapping_and_sources(tmp_path):
    cfg = IngestConfig(
        langfuse=LangfuseConfig(
            score_types={"reaction:love": "love", "user-feedback:1": "like"}, score_sources=["API", "EVAL"]
        )
    )
    ingest([TRACES, SCORES], tmp_path / "out", now=NOW, config=cfg)
    types = [r["type"] for r in pq.read_table(tmp_path / "out" / "reactions.parquet").to_pylist()]
    assert types == ["like", "love", "user-feedback:0", "helpfulness:0.9"]


def test_api_page_json_and_csv_export(tmp_path):
    traces = [json.loads(line) for line in TRACES.read_text().splitlines()]
    (tmp_path / "traces.json").write_text(json.dumps({"data": traces, "meta": {"page": 1}}))
    r1 = ingest([tmp_path / "traces.json"], tmp_path / "a", now=NOW)
    assert r1["files"][0]["table"] == "langfuse-traces" and r1["tables"]["messages"]["accepted"] == 7
    # the UI's CSV export holds input/output as JSON text
    rows = [
        {
            k: json.dumps(v) if k in ("input", "output", "metadata") and v is not None else v
            for k, v in t.items()
            if k != "tags"
        }
        for t in traces
    ]
    keys = sorted({k for r in rows for k in r})
    pacsv.write_csv(
        pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), tmp_path / "traces.csv"
    )
    ingest([tmp_path / "traces.csv"], tmp_path / "b", now=NOW)
    a = pq.read_table(tmp_path / "a" / "messages.parquet")
    b = pq.read_table(tmp_path / "b" / "messages.parquet")
    assert a.drop_columns(["created_at"]).equals(b.drop_columns(["created_at"]))


def test_extract_text_forms():
    assert extract_text("hi", "user") == "hi"
    assert (
        extract_text(
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": [{"type": "text", "text": "c"}]},
            ],
            "user",
        )
        == "c"
    )
    assert extract_text({"messages": [{"role": "assistant", "content": "x"}]}, "assistant") == "x"
    assert extract_text({"question": "why?"}, "user") == "why?"
    assert extract_text({"weird": 1}, "user") == '{"weird": 1}'  # kept verbatim as JSON text
    assert extract_text(None, "user") is None
