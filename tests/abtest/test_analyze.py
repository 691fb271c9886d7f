import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from statsmodels.stats.proportion import proportions_ztest

from rluf.abtest import AnalyzeConfig, analyze
from rluf.config import load_config
from rluf.errors import ConfigError, DataError, SchemaError

from .conftest import write_logs


@pytest.fixture(scope="module")
def result(ab_logs):
    return analyze(ab_logs, "A", "B", config=AnalyzeConfig(bootstrap_reps=500, filters=False))  # counts as logged


def test_rates_match_a_direct_count(ab_logs, result):
    con = duckdb.connect()
    m, r = str(ab_logs / "messages.parquet"), str(ab_logs / "reactions.parquet")
    for arm, role in (("A", "control"), ("B", "treatment")):
        n, y, users = con.execute(
            "SELECT count(*), count(DISTINCT r.message_id), count(DISTINCT m.user_id) FROM read_parquet(?) m "
            "LEFT JOIN (SELECT * FROM read_parquet(?) WHERE type = 'love') r USING (message_id) "
            "WHERE m.model_id = ?", [m, r, arm]).fetchone()
        assert (result[role]["responses"], result[role]["events"], result[role]["users"]) == (n, y, users)
        assert result[role]["rate"] == pytest.approx(y / n)
    assert result["lift"] == pytest.approx(result["treatment"]["rate"] / result["control"]["rate"] - 1)


def test_plain_test_matches_statsmodels(result):
    t, c = result["treatment"], result["control"]
    z, p = proportions_ztest([t["events"], c["events"]], [t["responses"], c["responses"]])
    assert result["plain"]["z"] == pytest.approx(z, abs=1e-9)
    assert result["plain"]["p_value"] == pytest.approx(p, abs=1e-9)


def test_delta_and_bootstrap_agree(result):
    d, b = result["delta"]["lift_ci"], result["bootstrap"]["lift_ci"]
    width = d[1] - d[0]
    assert abs(d[0] - b[0]) < 0.25 * width and abs(d[1] - b[1]) < 0.35 * width
    assert result["bootstrap"]["lift_se"] == pytest.approx(result["delta"]["lift_se"], rel=0.25)
    # heavy-tailed users: the clustered variance exceeds the per-response one
    assert result["design_effect"] > 1.2


def test_signal_is_any_reaction_type(ab_logs):
    res = analyze(ab_logs, "A", "B", signal="like", config=AnalyzeConfig(bootstrap_reps=0, filters=False))
    assert res["signal"] == "like" and "bootstrap" not in res
    assert 0.2 < res["control"]["rate"] < 0.4  # likes are written at 30% in the fixture


def test_segment_from_messages_column(ab_logs):
    res = analyze(ab_logs, "A", "B", segment_by="text", config=AnalyzeConfig(bootstrap_reps=0, filters=False))
    assert list(res["segments"]) == ["hello"]  # assistant messages all say "hello"
    assert res["segments"]["hello"]["treatment"]["responses"] == res["treatment"]["responses"]


def test_segment_from_truth_side_table(ab_logs, result):
    res = analyze(ab_logs, "A", "B", segment_by="family", config=AnalyzeConfig(bootstrap_reps=0, filters=False))
    segs = res["segments"]
    assert sorted(segs) == ["advice", "chat", "factual"]
    for role in ("control", "treatment"):
        assert sum(s[role]["responses"] for s in segs.values()) == result[role]["responses"]
        assert sum(s[role]["events"] for s in segs.values()) == result[role]["events"]
    # overall numbers do not depend on segmenting
    assert res["delta"]["lift_ci"] == pytest.approx(result["delta"]["lift_ci"])


def test_writes_json(ab_logs, tmp_path):
    out = tmp_path / "ab.json"
    res = analyze(ab_logs.parent, "A", "B", config=AnalyzeConfig(bootstrap_reps=0), out=out)  # run dir works
    assert json.loads(out.read_text())["lift"] == pytest.approx(res["lift"])


def test_arm_with_no_rows(ab_logs):
    with pytest.raises(DataError, match=r"arm 'C' has no assistant messages.*found, with counts: "
                                        r"[AB] \(\d+\), [AB] \(\d+\).*--treatment"):
        analyze(ab_logs, "A", "C")


def test_same_arm_twice(ab_logs):
    with pytest.raises(ConfigError, match="both 'A'"):
        analyze(ab_logs, "A", "A")


def test_signal_absent(ab_logs):
    with pytest.raises(DataError, match=r"signal 'heart' does not occur.*like \(\d+\), love \(\d+\).*--signal"):
        analyze(ab_logs, "A", "B", signal="heart")


def test_users_in_both_arms(tmp_path):
    logs = write_logs(tmp_path, users=20)
    t = pq.read_table(logs / "messages.parquet").to_pylist()
    for row in t:  # user u0 (arm A) also gets one response from arm B
        if row["user_id"] == "u0" and row["role"] == "assistant":
            row["model_id"] = "B"
            break
    from rluf.schema import MESSAGES

    pq.write_table(pa.Table.from_pylist(t, schema=MESSAGES), logs / "messages.parquet")
    with pytest.raises(DataError, match=r"1 user\(s\) received responses from both arms 'A' and 'B'.*e\.g\. u0"):
        analyze(logs, "A", "B")


def test_missing_files_and_columns(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        analyze(tmp_path / "nope", "A", "B")
    (tmp_path / "logs").mkdir()
    with pytest.raises(DataError, match=r"messages\.parquet not found"):
        analyze(tmp_path / "logs", "A", "B")
    pq.write_table(pa.table({"message_id": ["m"], "role": ["assistant"]}), tmp_path / "logs" / "messages.parquet")
    pq.write_table(pa.table({"message_id": ["m"], "type": ["love"]}), tmp_path / "logs" / "reactions.parquet")
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['user_id', 'model_id'\]"):
        analyze(tmp_path / "logs", "A", "B")


def test_unknown_segment_column(ab_logs):
    with pytest.raises(DataError, match=r"segment column 'country' is not a column of .*--segment-table"):
        analyze(ab_logs, "A", "B", segment_by="country")


def test_too_many_segments(ab_logs):
    with pytest.raises(DataError, match=r"distinct values \(more than max_segments = 50\)"):
        analyze(ab_logs, "A", "B", segment_by="user_id", config=AnalyzeConfig(bootstrap_reps=0, filters=False))


def test_config_errors(tmp_path):
    p = tmp_path / "ab.yaml"
    p.write_text("bootstrap_reps: 10\nalpha: 1.5\n")
    with pytest.raises(ConfigError, match=r"alpha = 1\.5: .*less than 1[\s\S]*bootstrap_reps = 10: .*at least 100"):
        load_config(AnalyzeConfig, p)


def test_no_lift_when_control_has_no_events(tmp_path):
    logs = write_logs(tmp_path, users=40, rate_c=0.0, lift=0.0)
    r = pq.read_table(logs / "reactions.parquet").to_pylist()
    r.append({"message_id": "c1_0_1", "type": "love", "user_id": "u1", "created_at": r[0]["created_at"]})  # arm B
    from rluf.schema import REACTIONS

    pq.write_table(pa.Table.from_pylist(r, schema=REACTIONS), logs / "reactions.parquet")
    res = analyze(logs, "A", "B", config=AnalyzeConfig(bootstrap_reps=200, filters=False))
    assert res["lift"] is None and res["control"]["events"] == 0 and res["treatment"]["events"] == 1
    assert res["bootstrap"]["lift_ci"] == [None, None]
    assert np.isfinite(res["delta"]["diff"])
    assert any("arm 'control' has only 0 event(s)" in w for w in res["warnings"])
    assert any("arm 'treatment' has only 1 event(s)" in w for w in res["warnings"])


def test_signal_only_outside_the_arms(tmp_path):
    logs = write_logs(tmp_path, users=20, arms=("A", "B"))
    msgs = pq.read_table(logs / "messages.parquet").to_pylist()
    for row in msgs:  # a third arm C for user u0's first response, which gets the only 'heart'
        if row["message_id"] == "c0_0_1":
            row["model_id"] = "C"
    from rluf.schema import MESSAGES, REACTIONS

    pq.write_table(pa.Table.from_pylist(msgs, schema=MESSAGES), logs / "messages.parquet")
    r = pq.read_table(logs / "reactions.parquet").to_pylist()
    r.append({"message_id": "c0_0_1", "type": "heart", "user_id": "u0", "created_at": r[0]["created_at"]})
    pq.write_table(pa.Table.from_pylist(r, schema=REACTIONS), logs / "reactions.parquet")
    with pytest.raises(DataError, match=r"signal 'heart' occurs in the logs but on no response of arms 'A' or 'B'"):
        analyze(logs, "A", "B", signal="heart")


def test_exclude_users_from_a_file(tmp_path, ab_logs, result):
    users = tmp_path / "flagged.csv"
    users.write_text("user_id\nu0\nu1\nu2\n")
    res = analyze(ab_logs, "A", "B", exclude_users=users, config=AnalyzeConfig(bootstrap_reps=0, filters=False))
    assert res["excluded_users"] == 3
    before = result["control"]["users"] + result["treatment"]["users"]
    assert res["control"]["users"] + res["treatment"]["users"] == before - 3
    with pytest.raises(SchemaError, match="has no user_id column"):
        (tmp_path / "bad.csv").write_text("id\nu0\n")
        analyze(ab_logs, "A", "B", exclude_users=tmp_path / "bad.csv")
