"""Curation of logs shaped like real exports (issue 20, section 0): branching trees, counts of votes, reactions
stamped with their message's time, natural rates above the target, thin splits."""

from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from rluf.errors import ConfigError, DataError
from rluf.signals import curate

from .conftest import T0, conversation, reaction, write_logs

OFF = {"rate": {"enabled": False}, "burst": {"enabled": False}, "too_fast": {"enabled": False},
       "spam": {"enabled": False}}
S = timedelta(seconds=1)


def message(cid, mid, parent, turn, role, text, at, user="u0"):
    return dict(conversation_id=cid, message_id=mid, parent_id=parent, turn_index=turn, role=role, text=text,
                created_at=at, user_id=user, model_id="m" if role == "assistant" else None)


def branching_tree(cid, start, user="u0", parents=True):
    """q0 -> {a1, b1}; a1 -> qa2 -> a3; b1 -> {qb2 -> b3, qc2}: siblings share turns 1 and 2."""
    p = (lambda x: x) if parents else (lambda x: None)
    return [message(cid, f"{cid}q0", None, 0, "user", "q0", start, user),
            message(cid, f"{cid}a1", p(f"{cid}q0"), 1, "assistant", "a1", start + 10 * S, user),
            message(cid, f"{cid}b1", p(f"{cid}q0"), 1, "assistant", "b1", start + 20 * S, user),
            message(cid, f"{cid}qa2", p(f"{cid}a1"), 2, "user", "qa2", start + 30 * S, user),
            message(cid, f"{cid}qb2", p(f"{cid}b1"), 2, "user", "qb2", start + 40 * S, user),
            message(cid, f"{cid}qc2", p(f"{cid}b1"), 2, "user", "qc2", start + 50 * S, user),
            message(cid, f"{cid}a3", p(f"{cid}qa2"), 3, "assistant", "a3", start + 60 * S, user),
            message(cid, f"{cid}b3", p(f"{cid}qb2"), 3, "assistant", "b3", start + 70 * S, user)]


def all_rows(out):
    return {r["message_id"]: r for s in ("train", "validation", "test") for r in pq.read_table(out / f"{s}.parquet")
            .to_pylist()}


def contents(row):
    return [m["content"] for m in row["prompt"]]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Twelve branching trees a day apart (the last two without parent ids), a love on each b3 and a3 of the
    first tree."""
    root = tmp_path_factory.mktemp("trees")
    msgs = []
    for i in range(12):
        msgs += branching_tree(f"t{i}", T0 + i * timedelta(days=1), user=f"u{i % 4}", parents=i < 10)
    by_id = {m["message_id"]: m for m in msgs}
    rx = [reaction(by_id[f"t{i}b3"], "love") for i in range(12)] + [reaction(by_id["t0a3"], "love")]
    return write_logs(root, msgs, rx)


def test_contexts_follow_the_parent_chain_in_a_branching_tree(trees, tmp_path):
    out = tmp_path / "out"
    curate(trees, out, {"filters": OFF, "context": {"context_turns": 10}, "sample": {"target_rate": "natural"},
                        "dedup": {"enabled": False}})
    rows = all_rows(out)
    assert contents(rows["t0a3"]) == ["q0", "a1", "qa2"]  # not b1, qb2 or qc2 (other branches)
    assert contents(rows["t0b3"]) == ["q0", "b1", "qb2"]
    assert contents(rows["t0b1"]) == ["q0"]
    # without parent ids: turn order, every message of turns t-k..t-1, at most k of them
    assert contents(rows["t11b3"]) == ["q0", "a1", "b1", "qa2", "qb2", "qc2"]
    assert rows["t11b3"]["prompt"][-1]["role"] == "user"


def test_no_prompt_exceeds_the_context_length(trees, tmp_path):
    out = tmp_path / "out"
    curate(trees, out, {"filters": OFF, "context": {"context_turns": 2}, "sample": {"target_rate": "natural"},
                        "dedup": {"enabled": False}})
    rows = all_rows(out)
    assert contents(rows["t0a3"]) == ["a1", "qa2"]
    assert contents(rows["t11b3"]) == ["qb2", "qc2"]  # turn order: the last k messages of turns 1..2
    assert max(len(r["prompt"]) for r in rows.values()) == 2


def test_dedup_key_follows_the_chain(tmp_path):
    """Two trees with the same chain to b3 but different other branches are one (context, completion) pair."""
    msgs = branching_tree("x", T0) + branching_tree("y", T0 + timedelta(hours=1))
    for m in msgs:
        if m["message_id"] == "ya3":
            m["text"] = "another a3"
        if m["message_id"] == "yqa2":
            m["text"] = "another qa2"
    for i in range(8):  # later conversations for validation and test
        msgs += conversation(f"c{i}", "u9", T0 + (i + 1) * timedelta(days=1), ["q", f"a{i}"])
    by_id = {m["message_id"]: m for m in msgs}
    logs = write_logs(tmp_path, msgs, [reaction(by_id["xb3"], "love"), reaction(by_id["c7-1"], "love"),
                                       reaction(by_id["c6-1"], "love")])
    man = curate(logs, tmp_path / "out", {"filters": OFF, "sample": {"target_rate": "natural"},
                                          "split": {"min_positives": 1}})
    rows = all_rows(tmp_path / "out")
    assert "xb3" in rows and "yb3" not in rows and "ya3" in rows
    assert man["counts"]["dedup"]["rows_in"] - man["counts"]["dedup"]["rows_out"] == 3  # b3, b1, a1 of y


def counted_votes(tmp_path):
    """Forty one-answer conversations a day apart whose answers got +1 / -1 votes as counts."""
    msgs, rx, votes = [], [], {}
    for i in range(40):
        conv = conversation(f"c{i}", f"u{i % 5}", T0 + i * timedelta(days=1), ["q", f"answer {i}"])
        msgs += conv
        ups, downs = (i % 4, (i // 2) % 3) if i % 5 else (0, 0)  # every fifth answer got no vote
        rx += [reaction(conv[1], "+1", user=f"v{i}-{j}") for j in range(ups)]
        rx += [reaction(conv[1], "-1", user=f"w{i}-{j}") for j in range(downs)]
        votes[conv[1]["message_id"]] = (ups, downs)
    return write_logs(tmp_path, msgs, rx), votes


def test_net_positive_rule_among_voted_rows(tmp_path):
    logs, votes = counted_votes(tmp_path)
    out = tmp_path / "out"
    man = curate(logs, out, {"filters": OFF, "signal": {"rule": "count(+1) > count(-1)", "unreacted": "drop"},
                             "sample": {"target_rate": "natural"}, "split": {"min_positives": 1}})
    rows = all_rows(out)
    voted = {m for m, (u, d) in votes.items() if u + d > 0}
    assert set(rows) == voted  # unvoted answers are left out
    assert all(rows[m]["label"] == (votes[m][0] > votes[m][1]) for m in rows)
    assert man["counts"]["label"] == {"rows": len(voted), "positives": sum(u > d for u, d in votes.values()),
                                      "unreacted_dropped": 40 - len(voted)}
    assert man["signal_rule"] == "count(+1) > count(-1)"


def test_count_threshold_rule_keeps_unvoted_rows_as_negatives(tmp_path):
    logs, votes = counted_votes(tmp_path)
    out = tmp_path / "out"
    curate(logs, out, {"filters": OFF, "signal": {"rule": "count(+1) >= 2 and not -1"},
                       "sample": {"target_rate": "natural"}, "split": {"min_positives": 1}})
    rows = all_rows(out)
    assert len(rows) == 40
    assert all(rows[m]["label"] == (votes[m][0] >= 2 and votes[m][1] == 0) for m in rows)


def test_natural_rate_above_target_keeps_every_positive(ten_days, tmp_path):
    man = curate(ten_days, tmp_path / "out",
                 {"filters": OFF, "context": {"context_turns": 2}, "sample": {"target_rate": 0.1}})
    plan = man["counts"]["resample"]["plan"]
    assert man["natural_rate"] == pytest.approx(3 / 15)  # above the target 0.1
    assert plan["pos_keep"] == plan["neg_keep"] == 1.0
    assert man["counts"]["output"]["train"]["positives"] == 3
    assert man["train_rate"] == pytest.approx(man["natural_rate"], abs=0.02)  # 3 of 14 after de-duplication
    assert any("keeps its natural rate" in w and "3 positives" in w for w in man["warnings"])


def test_target_rate_natural_means_no_resampling(ten_days, tmp_path):
    man = curate(ten_days, tmp_path / "out", {"filters": OFF, "sample": {"target_rate": "natural"}})
    plan = man["counts"]["resample"]["plan"]
    assert (plan["pos_keep"], plan["neg_keep"], plan["target_rate"]) == (1.0, 1.0, "natural")
    # every train row is written; only c2-1 is merged into its identical copy c1-1
    assert man["counts"]["output"]["train"]["rows"] == man["counts"]["split"]["train"]["rows"] - 1
    with pytest.raises(ConfigError, match="sample.target_rate"):
        curate(ten_days, tmp_path / "bad", {"sample": {"target_rate": "unnatural"}})


def many_users(tmp_path, n=200):
    """n one-answer conversations 6 hours apart by n // 2 users (each user's two are n / 8 days apart); every
    third answer loved."""
    msgs, rx = [], []
    for i in range(n):
        conv = conversation(f"c{i:03d}", f"u{i % (n // 2):03d}", T0 + i * timedelta(hours=6), ["q", f"a{i}"])
        msgs += conv
        if i % 3 == 0:
            rx.append(reaction(conv[1], "love"))
    return write_logs(tmp_path, msgs, rx)


@pytest.mark.parametrize("method", ["conversation", "user"])
def test_random_grouped_splits_keep_every_row(tmp_path, method):
    logs = many_users(tmp_path)
    out = tmp_path / "out"
    man = curate(logs, out, {"filters": OFF, "split": {"method": method, "validation_fraction": 0.2,
                                                        "test_fraction": 0.2},
                             "sample": {"target_rate": "natural"}})
    split = {s: pq.read_table(out / f"{s}.parquet").to_pylist() for s in ("train", "validation", "test")}
    assert sum(len(v) for v in split.values()) == 200
    assert {k for k in man["counts"]["split"]} == {"train", "validation", "test"}  # nothing dropped
    key = "user_id" if method == "user" else "conversation_id"
    groups = [{r[key] for r in v} for v in split.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    times = {s: [r["created_at"] for r in v] for s, v in split.items()}
    assert min(times["train"]) < max(times["validation"]) and min(times["test"]) < max(times["train"])  # not by time
    assert man["split_method"] == method and man["split_cutoffs_epoch_s"] is None
    assert 80 <= len(split["train"]) <= 160


def test_user_disjoint_time_split_warns_about_the_rows_it_drops(tmp_path):
    logs = many_users(tmp_path)
    with pytest.raises(DataError, match=r"validation split is empty.*dropped 68 rows as other_user.*method: user"):
        curate(logs, tmp_path / "empty", {"filters": OFF, "split": {"user_disjoint": True}})
    man = curate(logs, tmp_path / "out", {"filters": OFF, "split": {"user_disjoint": True, "test_fraction": 0.2,
                                                                     "validation_fraction": 0.2},
                                          "sample": {"target_rate": "natural"}})
    other = man["counts"]["split"]["other_user"]["rows"]
    assert other > 30  # a user's two conversations, 25 days apart, often fall in two periods
    assert any(f"dropped {other} rows" in w and "split.method: user" in w for w in man["warnings"])
    thin = [w for w in man["warnings"] if "positive(s) in" in w]
    assert thin and all("split.min_positives = 10" in w for w in thin)
    with pytest.raises(ConfigError, match="user_disjoint applies to the time split only"):
        curate(logs, tmp_path / "bad", {"split": {"user_disjoint": True, "method": "user"}})


def test_no_positive_error_names_the_filter_that_removed_them(tmp_path):
    """Reactions stamped with their message's time (as an OpenAssistant export is ingested): too_fast removes
    them all, and the error says so."""
    msgs = []
    for i in range(10):
        msgs += conversation(f"c{i}", f"u{i}", T0 + i * timedelta(days=1), ["q", f"a{i}"])
    rx = [reaction(m, "love", after=timedelta(0), user=f"v{j}") for j, m in enumerate(msgs) if m["role"] == "assistant"]
    logs = write_logs(tmp_path, msgs, rx)
    with pytest.raises(DataError, match=r"before the filters 10 rows were positive.*too_fast removed 10 reactions"
                                        r".*filters.too_fast.enabled: false"):
        curate(logs, tmp_path / "out", {"filters": {"rate": {"enabled": False}, "burst": {"enabled": False}}})
