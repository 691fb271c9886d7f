"""Paths and column names with quotes reach DuckDB as parameters or quoted identifiers, never as SQL text."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rluf.abtest.analyze import AnalyzeConfig, analyze
from rluf.abtest.simulated import flagged_users
from rluf.signals.engine import connect, load_logs, reaction_type_counts

from .conftest import write_logs

AWKWARD = "it's \"quoted\"; DROP TABLE x; --"


def test_truth_users_read_from_a_folder_with_quotes(tmp_path):
    logs = write_logs(tmp_path / AWKWARD, users=20)
    pq.write_table(pa.table({"user_id": ["u3", "u7"]}), logs.parent / "truth" / "adversarial.parquet")
    assert flagged_users(logs, "truth") == ["u3", "u7"]


def test_analyze_and_signals_with_quotes_in_path_and_segment_column(tmp_path):
    logs = write_logs(tmp_path / AWKWARD, users=60)
    side = pq.read_table(logs.parent / "truth" / "conversations.parquet")
    renamed = side.rename_columns(["conversation_id", 'fam"ily'])
    pq.write_table(renamed, logs.parent / "truth" / "conversations.parquet")
    res = analyze(logs, "A", "B", segment_by='fam"ily', config=AnalyzeConfig(bootstrap_reps=0))
    assert sorted(res["segments"]) == ["advice", "chat", "factual"]
    counts = reaction_type_counts(load_logs(connect(), logs))
    reactions = pq.read_table(logs / "reactions.parquet")
    assert counts["love"] == pc.sum(pc.equal(reactions["type"], "love")).as_py() > 0
