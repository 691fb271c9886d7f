from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from rluf.signals import curate
from rluf.utils import read_json

from .conftest import T0, conversation, reaction, write_logs

D = timedelta(days=1)
OFF = {"rate": {"enabled": False}, "burst": {"enabled": False}, "too_fast": {"enabled": False},
       "spam": {"enabled": False}}
OUT_COLUMNS = ["prompt", "completion", "label", "message_id", "conversation_id", "user_id", "created_at",
               "weight", "model_id"]


def cfg(**sections):
    base = {"filters": OFF, "context": {"context_turns": 2}, "sample": {"target_rate": 0.5}}
    base.update(sections)
    return base


@pytest.fixture(scope="module")
def curated(ten_days, tmp_path_factory):
    """One curate run shared by the tests that only read its output."""
    out = tmp_path_factory.mktemp("curated")
    return curate(ten_days, out, cfg(sample={"target_rate": 0.5, "seed": 3})), out


def test_output_form_context_and_label(curated):
    man, out = curated
    test = pq.read_table(out / "test.parquet")  # c9, not resampled
    assert test.column_names == OUT_COLUMNS
    rows = {r["message_id"]: r for r in test.to_pylist()}
    # k=2: the two messages before turn 3 of c9, as chat messages; completion is the message itself
    assert rows["c9-3"]["prompt"] == [{"role": "assistant", "content": "a9"}, {"role": "user", "content": "q9b"}]
    assert rows["c9-3"]["completion"] == [{"role": "assistant", "content": "a9b"}]
    assert rows["c9-1"]["prompt"] == [{"role": "user", "content": "q9"}]
    assert rows["c9-3"]["label"] is True and rows["c9-1"]["label"] is False
    assert rows["c9-3"]["model_id"] == "arm-a" and rows["c9-3"]["weight"] == 1.0
    assert man["target_rate"] == 0.5 and (out / "manifest.json").is_file()
    assert read_json(out / "manifest.json")["input"]["fingerprint"] == man["input"]["fingerprint"]


def test_time_split_is_strict_and_dedup_merges(curated):
    man, out = curated
    t = {s: pq.read_table(out / f"{s}.parquet").to_pylist() for s in ("train", "validation", "test")}
    # 10 conversation starts at days 0..9: train before day 7.2, validation [7.2, 8.1), test from 8.1
    assert {r["conversation_id"] for r in t["validation"]} == {"c8"}
    assert {r["conversation_id"] for r in t["test"]} == {"c9"}
    assert max(r["created_at"] for r in t["train"]) < min(r["created_at"] for r in t["validation"])
    # assistant rows: c0 3, c1 1, c2 1, c3..c9 2 each = 19; train c0..c7 = 15 (split counts are before dedup)
    assert man["counts"]["split"]["train"] == {"rows": 15, "positives": 3}
    # c1-1 and c2-1 are the same (context, completion): c2-1 is either not drawn or merged into c1-1 (earliest)
    ids = {r["message_id"]: r for r in t["train"]}
    assert "c2-1" not in ids and ids["c1-1"]["label"] is True
    d = man["counts"]["dedup"]
    assert d["scope"] == "kept rows" and d["rows_in"] - d["rows_out"] in (0, 1)
    assert d["rows_out"] == sum(man["counts"]["output"][s]["rows"] for s in ("train", "validation", "test"))


def test_resampling_weights_restore_natural_rate(curated):
    man, out = curated
    train = pq.read_table(out / "train.parquet").to_pylist()
    pos = [r for r in train if r["label"]]
    neg = [r for r in train if not r["label"]]
    assert len(pos) == 3 and all(r["weight"] == 1.0 for r in pos)
    # natural 3/15; negatives kept with q = 3 * (1 - 0.5) / (0.5 * 12) = 1/4, each weighs 12 / kept
    assert man["counts"]["resample"]["plan"]["neg_keep"] == pytest.approx(1 / 4)
    assert all(r["weight"] == pytest.approx(12 / len(neg)) for r in neg)
    w_rate = sum(r["weight"] for r in pos) / sum(r["weight"] for r in train)
    assert w_rate == pytest.approx(3 / 15) == pytest.approx(man["natural_rate"])


def test_rule_over_several_types_with_upsampling(ten_days, tmp_path):
    rule = "love or like and not dislike"
    man = curate(ten_days, tmp_path / "out", cfg(signal={"rule": rule}, sample={"target_rate": 0.5,
                                                                                "upsample_positives": 2}))
    assert man["signal_rule"] == "(love or (like and not dislike))"
    assert man["counts"]["split"]["train"]["positives"] == 4  # c5-1 liked joins the 3 loved
    train = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    pos = [r for r in train if r["label"]]
    assert len(pos) == 8 and all(r["weight"] == 0.5 for r in pos)  # 2 copies each, weight 1/2
    assert man["train_weighted_rate"] == pytest.approx(4 / 15)


def test_rule_true_without_reactions(ten_days, tmp_path):
    """`not dislike` labels every message nobody disliked: the label exceptions are then the negatives."""
    man = curate(ten_days, tmp_path / "out", cfg(signal={"rule": "not dislike"}, sample={"target_rate": 0.5}))
    assert man["counts"]["split"]["train"] == {"rows": 15, "positives": 14}  # c6-3 disliked
    assert man["counts"]["label"] == {"rows": 19, "positives": 18}
    train = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    neg = [r for r in train if not r["label"]]
    assert [r["message_id"] for r in neg] == ["c6-3"]  # natural 14/15 > 0.5: positives downsampled, negative kept
    test = pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()
    assert len(test) == 2 and all(r["label"] for r in test)
    assert man["train_weighted_rate"] == pytest.approx(14 / 15)


def test_dedup_of_kept_rows_across_splits(tmp_path):
    """Identical (context, completion) pairs among the kept rows merge into the earliest, across splits, and
    the weights are computed after the merge, so the weighted train rate stays the natural rate exactly."""
    msgs = []
    for i in range(10):
        texts = {1: ["same q", "same a"], 3: ["same q", "same a"], 9: ["same q", "same a", "q9b", "a9b"]}
        msgs += conversation(f"c{i}", f"u{i}", T0 + i * D, texts.get(i, [f"q{i}", f"a{i}"]))
    by_id = {m["message_id"]: m for m in msgs}
    logs = write_logs(tmp_path, msgs, [reaction(by_id["c1-1"], "love"), reaction(by_id["c5-1"], "love")])
    # train c0..c7: 2 positives, 6 negatives; target 0.25 = the natural rate keeps every row
    man = curate(logs, tmp_path / "out", cfg(sample={"target_rate": 0.25}))
    assert man["counts"]["split"]["train"] == {"rows": 8, "positives": 2}
    assert man["counts"]["split"]["test"] == {"rows": 2, "positives": 0}
    assert man["counts"]["dedup"] == {"scope": "kept rows", "rows_in": 11, "rows_out": 9}  # c3-1, c9-1 merged
    t = {s: pq.read_table(tmp_path / "out" / f"{s}.parquet").to_pylist() for s in ("train", "validation", "test")}
    train = {r["message_id"]: r for r in t["train"]}
    assert "c3-1" not in train and train["c1-1"]["label"] is True
    assert [r["message_id"] for r in t["test"]] == ["c9-3"]  # c9-1 equals train row c1-1: dropped from test
    assert all(r["weight"] == pytest.approx(6 / 5) for r in t["train"] if not r["label"])
    assert man["train_weighted_rate"] == pytest.approx(0.25) == pytest.approx(man["natural_rate"])
    assert man["counts"]["output"]["train"] == {"rows": 7, "positives": 2, "rate": pytest.approx(2 / 7),
                                                "weighted_rate": pytest.approx(0.25)}


def test_completion_is_the_rows_own_message(tmp_path):
    """Regenerated siblings share a turn: each row's completion is its own text, the prompt the turns before."""
    msgs = []
    for i in range(10):
        msgs += conversation(f"c{i}", f"u{i}", T0 + i * D, [f"q{i}", f"a{i}", f"q{i}b", f"a{i}b"])
    sib = dict(msgs[-3], message_id="c9-1r", text="a9 regenerated", created_at=msgs[-3]["created_at"] + D / 100)
    logs = write_logs(tmp_path, msgs + [sib], [reaction(m, "love") for m in msgs if m["message_id"].endswith("-3")])
    curate(logs, tmp_path / "out", cfg(sample={"target_rate": 0.5}))
    rows = {r["message_id"]: r for r in pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()}
    assert rows["c9-1"]["completion"] == [{"role": "assistant", "content": "a9"}]
    assert rows["c9-1r"]["completion"] == [{"role": "assistant", "content": "a9 regenerated"}]
    assert rows["c9-1r"]["prompt"] == [{"role": "user", "content": "q9"}]


def test_pii_scrub_and_counts(tmp_path):
    msgs = []
    for i in range(10):
        msgs += conversation(f"c{i}", f"u{i}", T0 + i * D, [
            f"mail jo{i}@example.com or call +1 415 555 0199", "ok", f"card 4111 1111 1111 111{i} thanks", "done"])
    rx = [reaction(m, "love") for m in msgs if m["message_id"].endswith("-3")]
    logs = write_logs(tmp_path, msgs, rx)
    man = curate(logs, tmp_path / "out", cfg(pii={"enabled": True}, sample={"target_rate": 0.4}))
    rows = pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()  # c9, not resampled
    row = next(r for r in rows if r["message_id"].endswith("-3"))
    assert [m["content"] for m in row["prompt"]] == ["ok", "card [CARD] thanks"]
    first = next(r for r in rows if r["message_id"].endswith("-1"))
    assert first["prompt"][0]["content"] == "mail [EMAIL] or call [PHONE]"
    # texts written for c9: row -1 holds turns 0-1, row -3 turns 1-3: one email, one phone, one card
    assert man["pii"]["test"] == {"pii_email": 1, "pii_card": 1, "pii_phone": 1}


def test_filters_against_planted_adversaries_and_user_disjoint(synth_dir, tmp_path):
    man = curate(synth_dir, tmp_path / "out", {"split": {"user_disjoint": True}}, truth_dir=synth_dir / "truth")
    f = man["counts"]["filters"]
    # the burst accounts Love their one answer: the rate mixture sees them too. The burst rule also flags one
    # normal user: first seen after 14 days (new to the logs, `dormant_days`), reacting in the burst window
    assert f["rate"]["users"] == 20 and f["burst"]["users"] == 16
    assert f["too_fast"]["reactions"] > 0  # the spammers react within half a second
    truth = man["filters_vs_truth"]
    assert truth["all"]["precision"] == pytest.approx(20 / 21) and truth["all"]["recall"] == 1.0
    assert truth["rate"]["recall"] == 1.0 and truth["burst"]["recall"] == pytest.approx(15 / 20)
    users = {s: {r["user_id"] for r in pq.read_table(tmp_path / "out" / f"{s}.parquet", columns=["user_id"])
                 .to_pylist()} for s in ("train", "validation", "test")}
    assert users["train"] and users["validation"] and users["test"]
    assert not (users["train"] & users["validation"]) and not (users["train"] & users["test"])
    assert not (users["validation"] & users["test"])
    assert man["counts"]["split"]["other_user"]["rows"] > 0


def test_spam_filter(tmp_path):
    msgs = []
    for i in range(12):
        msgs += conversation(f"s{i}", "spammer", T0 + i * D, ["BUY CHEAP PILLS", "no"])
        msgs += conversation(f"n{i}", f"u{i}", T0 + i * D, [f"question {i}", f"answer {i}"])
    rx = [reaction(m, "love") for m in msgs if m["role"] == "assistant"][::3]
    logs = write_logs(tmp_path, msgs, rx)
    off = {**OFF, "spam": {"enabled": True, "min_repeats": 10}}
    man = curate(logs, tmp_path / "out", cfg(filters=off, sample={"target_rate": 0.5}))
    assert man["counts"]["filters"]["spam"] == {"users": 1, "reactions": 4, "rows": 12, "by_type": {"love": 4}}


def test_prompts_match_a_plain_range_scan(synth_dir, tmp_path):
    """Every written prompt is exactly the messages at turns t-k..t-1 of the row's conversation (ordered by
    turn), every completion the row's own text: checked against a plain Python scan of the logs."""
    import collections

    man = curate(synth_dir, tmp_path / "out", {"context": {"context_turns": 3}, "sample": {"eval_max_rows": 150}})
    msgs = pq.read_table(synth_dir / "logs" / "messages.parquet").to_pylist()
    by_conv = collections.defaultdict(list)
    for m in msgs:
        by_conv[m["conversation_id"]].append(m)
    text = {m["message_id"]: m for m in msgs}
    for s in ("train", "validation", "test"):
        rows = pq.read_table(tmp_path / "out" / f"{s}.parquet").to_pylist()
        assert rows and len(rows) == man["counts"]["output"][s]["rows"]
        for r in rows:
            t = text[r["message_id"]]["turn_index"]
            ctx = sorted((m for m in by_conv[r["conversation_id"]] if t - 3 <= m["turn_index"] < t),
                         key=lambda m: (m["turn_index"], m["message_id"]))
            assert r["prompt"] == [{"role": m["role"], "content": m["text"]} for m in ctx]
            assert r["completion"] == [{"role": "assistant", "content": text[r["message_id"]]["text"]}]


def test_eval_cap_weights_and_dedup_off(synth_dir, tmp_path):
    man = curate(synth_dir, tmp_path / "out", {"sample": {"eval_max_rows": 100}, "dedup": {"enabled": False}})
    plan, out, split = man["counts"]["resample"]["plan"], man["counts"]["output"], man["counts"]["split"]
    assert man["counts"]["dedup"]["rows_in"] == man["counts"]["dedup"]["rows_out"]
    for s in ("validation", "test"):
        n, p = split[s]["rows"], split[s]["positives"]
        assert plan[f"{s}_pos_keep"] == plan[f"{s}_neg_keep"] == pytest.approx(100 / n)
        kept = pq.read_table(tmp_path / "out" / f"{s}.parquet").to_pylist()
        assert 50 < len(kept) < 150 and len(kept) == out[s]["rows"]
        n_pos = sum(r["label"] for r in kept)
        assert all(r["weight"] == pytest.approx(p / n_pos if r["label"] else (n - p) / (len(kept) - n_pos))
                   for r in kept)
        if n_pos:  # a uniform cap can draw no positive at all; when it draws some, the weights are exact
            w = sum(r["weight"] for r in kept)
            assert sum(r["weight"] for r in kept if r["label"]) / w == pytest.approx(p / n)


@pytest.mark.parametrize("how", ["native", "md5"])
def test_eval_negatives_cap_keeps_every_positive(synth_dir, tmp_path, how):
    """Validation/test keep every positive and ~eval_max_negatives negatives, reweighted to the natural rate."""
    man = curate(synth_dir, tmp_path / "out", {"sample": {"eval_max_negatives": 40, "hash": how},
                                               "dedup": {"enabled": False}})
    plan, out, split = man["counts"]["resample"]["plan"], man["counts"]["output"], man["counts"]["split"]
    assert man["config"]["sample"]["eval_max_negatives"] == 40
    for s in ("validation", "test"):
        n, p = split[s]["rows"], split[s]["positives"]
        assert p > 0 and plan[f"{s}_pos_keep"] == 1.0 and plan[f"{s}_neg_keep"] == pytest.approx(40 / (n - p))
        kept = pq.read_table(tmp_path / "out" / f"{s}.parquet").to_pylist()
        pos = [r for r in kept if r["label"]]
        neg = [r for r in kept if not r["label"]]
        assert len(pos) == p and 15 < len(neg) < 80 and len(kept) == out[s]["rows"]
        assert all(r["weight"] == 1.0 for r in pos)
        assert all(r["weight"] == pytest.approx((n - p) / len(neg)) for r in neg)
        assert out[s]["weighted_rate"] == pytest.approx(p / n)


def test_logs_from_tables_gives_the_same_files(synth_dir, tmp_path):
    """Logs already in an engine's tables (here DuckDB's) curate to the same files as the Parquet folder."""
    import ibis

    from rluf.signals.engine import logs_from_tables, resolve_logs_dir

    con = ibis.duckdb.connect()
    d = resolve_logs_dir(synth_dir)
    t = {k: con.create_table(f"prod_{k}", con.read_parquet(d / f"{k}.parquet"))
         for k in ("messages", "reactions", "users")}
    man = curate(logs_from_tables(t["messages"], t["reactions"], t["users"]), tmp_path / "tables")
    ref = curate(synth_dir, tmp_path / "files")
    assert man["input"]["tables"] == {k: f"prod_{k}" for k in ("messages", "reactions", "users")}
    assert man["counts"] == ref["counts"]
    for s in ("train", "validation", "test"):
        got = pq.read_table(tmp_path / "tables" / f"{s}.parquet")
        assert got.equals(pq.read_table(tmp_path / "files" / f"{s}.parquet"))
    from rluf.signals import signals

    by_tables = signals(logs_from_tables(t["messages"], t["reactions"], t["users"]), min_events=5)
    by_files = signals(synth_dir, min_events=5)
    assert by_tables.pop("input")["tables"]["reactions"] == "prod_reactions"
    by_files.pop("input")
    assert by_tables == by_files


def test_logs_from_tables_bad_input(synth_dir):
    import ibis

    from rluf.errors import DataError, SchemaError
    from rluf.signals.engine import logs_from_tables, resolve_logs_dir

    con = ibis.duckdb.connect()
    d = resolve_logs_dir(synth_dir)
    msgs = con.create_table("m", con.read_parquet(d / "messages.parquet"))
    rx = con.create_table("r", con.read_parquet(d / "reactions.parquet"))
    with pytest.raises(SchemaError, match=r"reactions table <reactions expression> is missing column\(s\) \['type'\]"):
        logs_from_tables(msgs, rx.drop("type"))
    with pytest.raises(DataError, match="must be an Ibis table"):
        logs_from_tables(msgs, d / "reactions.parquet")
    other = ibis.duckdb.connect().read_parquet(d / "reactions.parquet")
    with pytest.raises(DataError, match="another connection"):
        logs_from_tables(msgs, other)
