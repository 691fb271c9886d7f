"""Filters that do not assume how many adversaries there are: the rate mixture on a contaminated sample with
a known answer, each simulated adversary kind at 8% of the accounts, template spam, and reactions whose time
is not a click time."""

import dataclasses
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rluf.signals.config import FiltersSection
from rluf.signals.engine import connect, open_logs
from rluf.signals.filters import apply_filters, betabinomial_flags, fit_rate_mixture, template_spam_flags
from rluf.signals.synth import synth_logs
from rluf.sim.adversaries import template_logs
from rluf.sim.config import WorldConfig
from rluf.sim.world import World


def contaminated(seed=0, normal=6000, share=0.2):
    """Normal users love at ~0.1% (small spread), a `share` of accounts at 10-50%; 5-60 messages each."""
    rng = np.random.default_rng(seed)
    n_adv = int(round(share / (1 - share) * normal))
    n = rng.integers(5, 60, normal + n_adv)
    p = np.r_[0.001 * np.exp(rng.normal(0, 0.3, normal)), rng.uniform(0.1, 0.5, n_adv)]
    return rng.binomial(n, p), n, np.r_[np.zeros(normal, bool), np.ones(n_adv, bool)]


@pytest.mark.parametrize("share", [0.0, 0.03, 0.2, 0.4, 0.5])
def test_mixture_recovers_the_share_of_a_contaminated_sample_and_flags_by_posterior(share):
    c, n, adv = contaminated(share=share)
    mix = fit_rate_mixture(c, n)
    normal_rate = c[~adv].sum() / n[~adv].sum()
    if share <= 0.2:  # the normal rate, not widened by the adversaries
        assert mix.p == pytest.approx(normal_rate, rel=0.15)
    # at 40% this sample's most likely EM start gives the normal component p 6x too high and a wide spread;
    # the flags below hold all the same (docs/signals.md)
    assert mix.adversarial_share == pytest.approx(share, abs=0.03)
    flag = (mix.posterior(c, n) > 0.5) & (c > n * mix.p)
    seen = adv & (c > 0)  # an adversary who never loved cannot be told from a normal user
    if share:
        assert flag[seen].mean() > 0.9
    assert flag[~adv].mean() < 0.01


def test_beyond_the_breakdown_point_normal_users_are_the_minority_and_the_fit_breaks():
    c, n, adv = contaminated(share=0.6)
    mix = fit_rate_mixture(c, n)
    assert mix.adversarial_share == pytest.approx(0.5)  # capped at MAX_ADVERSARIAL_SHARE
    assert mix.p > 10 * c[~adv].sum() / n[~adv].sum()


def test_fixed_trim_is_masked_where_the_mixture_is_not():
    """At 20% adversaries the beta-binomial whose first fit trims a fixed 5% misses many; the mixture does not."""
    c, n, adv = contaminated(share=0.2)
    users = [f"u{i}" for i in range(len(c))]
    g = pa.table({"user_id": users, "type": ["love"] * len(c), "c": c, "n": n, "x": c / n})
    import ibis

    con = connect()
    old = set(con.to_pyarrow(betabinomial_flags(con, ibis.memtable(g), alpha=0.01, trim=0.05))["user_id"].to_pylist())
    seen = {u for u, a, cc in zip(users, adv, c, strict=True) if a and cc > 0}
    mix = fit_rate_mixture(c, n)
    new = {u for u, f in zip(users, (mix.posterior(c, n) > 0.5) & (c > n * mix.p), strict=True) if f}
    assert len(old & seen) < 0.9 * len(seen) < len(new & seen)


def small_world_logs(tmp_path, kind, share=0.08, **adversaries):
    cfg = WorldConfig.model_validate({
        "population": {"n_users": 2500, "adversarial_share": share},
        "pool": {"answers_per_message": 2},
        "adversaries": {"mix": {kind: 1.0}, **adversaries}})
    tabs = template_logs(World(cfg))
    (tmp_path / "logs").mkdir()
    for name in ("messages", "reactions", "users"):
        pq.write_table(tabs[name], tmp_path / "logs" / f"{name}.parquet")
    return tabs


# kind (and its settings) -> the rule that must catch it
KINDS = [("random_lover", {}, "rate"), ("targeted_lover", {}, "rate"),
         ("targeted_lover", {"targeted_trait": "unsafe"}, "rate"), ("slow_spammer", {}, "rate"),
         ("sybil", {}, "rate"), ("burst", {}, "burst"), ("burst", {"burst_account_age_days": 365}, "burst"),
         ("spammer", {}, "rate")]


@pytest.mark.parametrize(("kind", "settings", "rule"), KINDS)
def test_each_adversary_kind_is_caught_at_8_percent(tmp_path, kind, settings, rule):
    tabs = small_world_logs(tmp_path, kind, **settings)
    logs = open_logs(tmp_path / "logs")
    m = logs.messages
    fr = apply_filters(logs, m.filter(m.role == "assistant"), FiltersSection())
    tu = tabs["truth_users"]
    adv = set(tu.filter(tu["is_adversarial"])["user_id"].to_pylist())
    lovers = {}
    r = tabs["reactions"]
    for u, t in zip(r["user_id"].to_pylist(), r["type"].to_pylist(), strict=True):
        if t == "love" and u in adv:
            lovers[u] = lovers.get(u, 0) + 1
    loud = {u for u, k in lovers.items() if k >= 2}  # adversaries with two Loves or more: the bulk of their Loves
    caught = set(fr.flagged[rule])
    assert len(loud) > 20 and len(caught & loud) >= 0.9 * len(loud)
    active = set(tabs["truth_messages"]["user_id"].to_pylist())
    normal = active - adv
    assert len(set(fr.bad_users) & normal) <= 0.01 * len(normal)


def test_template_spam_with_a_changing_name_is_flagged(tmp_path):
    synth_logs(tmp_path, n_conversations=600, n_users=100, seed=1)
    logs_dir = tmp_path / "logs"
    msgs = pq.read_table(logs_dir / "messages.parquet")
    names = ["Alice", "Bob", "Carla", "Dmitri", "Eve", "Farid", "Gina", "Hugo", "Ines", "Jon", "Kim", "Lou"]
    rows = {c: [] for c in msgs.column_names}
    for i, name in enumerate(names):  # one template, twelve names: no two texts are the same
        for c, v in {"conversation_id": f"tpl{i}", "message_id": f"tpl{i}", "parent_id": None, "turn_index": 0,
                     "role": "user", "text": f"Hi, I am {name}! Rate this 5 stars, {name} says.",
                     "created_at": msgs["created_at"][0].as_py(), "user_id": "templater", "model_id": None}.items():
            rows[c].append(v)
    pq.write_table(pa.concat_tables([msgs, pa.table(rows, schema=msgs.schema)]), logs_dir / "messages.parquet")
    logs = open_logs(logs_dir)
    flagged = set(logs.con.to_pyarrow(template_spam_flags(logs, 10, 0.5))["user_id"].to_pylist())
    assert flagged == {"templater"}


def with_reaction_column(logs_dir, time_is_click):
    r = pq.read_table(logs_dir / "reactions.parquet")
    if "time_is_click" in r.column_names:
        r = r.drop_columns(["time_is_click"])
    r = r.append_column("time_is_click", pa.array([time_is_click] * r.num_rows, pa.bool_()))
    pq.write_table(r, logs_dir / "reactions.parquet")


def run_filters(logs_dir, cfg=None):
    logs = open_logs(logs_dir)
    path = logs_dir / "reactions.parquet"
    if "time_is_click" in pq.read_schema(path).names and "time_is_click" not in logs.reactions.columns:
        # the reactions as the engine reads them once the column is in the canonical schema (rluf.schema)
        r = logs.con.read_parquet(path)
        created_at = r.created_at.cast(logs.reactions.created_at.type())
        logs = dataclasses.replace(logs, reactions=r.mutate(created_at=created_at))
    m = logs.messages
    return apply_filters(logs, m.filter(m.role == "assistant"), cfg or FiltersSection())


def test_reactions_without_click_times_are_skipped_by_the_time_rules_and_said_so(tmp_path, caplog):
    synth_logs(tmp_path, n_conversations=800, n_users=120, n_spammers=3, seed=2)
    logs_dir = tmp_path / "logs"
    before = run_filters(logs_dir)
    assert before.report["too_fast"]["reactions"] > 0  # the planted spammers react within half a second
    assert before.report["too_fast"].get("skipped_not_click", 0) == 0  # no column: every time is a click
    with_reaction_column(logs_dir, None)  # null: a real click time
    assert run_filters(logs_dir).report["too_fast"]["reactions"] == before.report["too_fast"]["reactions"]
    with_reaction_column(logs_dir, False)
    with caplog.at_level(logging.WARNING, logger="rluf.signals.filters"):
        after = run_filters(logs_dir)
    n = pq.read_metadata(logs_dir / "reactions.parquet").num_rows
    assert after.report["too_fast"]["reactions"] == 0
    assert after.report["too_fast"]["skipped_not_click"] == n == after.report["burst"]["skipped_not_click"]
    assert "too_fast" in caplog.text and "time_is_click = false" in caplog.text


def test_a_filter_that_removes_a_whole_signal_is_named(tmp_path, caplog):
    synth_logs(tmp_path, n_conversations=800, n_users=120, seed=3)
    cfg = FiltersSection.model_validate({"too_fast": {"min_seconds": 3600}})  # every reaction is "too fast"
    with caplog.at_level(logging.WARNING, logger="rluf.signals.filters"):
        fr = run_filters(tmp_path / "logs", cfg)
    warnings = fr.report["warnings"]
    assert {w.split(" reactions")[0].split()[-1] for w in warnings} == {"'love'", "'like'", "'dislike'"}
    assert all("filter 'too_fast' removed" in w for w in warnings)
    assert "filter 'too_fast' removed" in caplog.text
    by_type = fr.report["too_fast"]["by_type"]
    assert sum(by_type.values()) == fr.report["too_fast"]["reactions"] > 0


def test_signals_report_what_the_filters_removed_the_rate_gap_and_a_loved_trait(tmp_path):
    from rluf.signals.selection import signals, trait_concentration

    small_world_logs(tmp_path, "targeted_lover", share=0.08)
    res = signals(tmp_path / "logs", min_events=20, rate_gap_factor=3.0)
    love = next(s for s in res["signals"] if s["signal"] == "love")
    raw, filtered = love["availability"]["raw_rate_per_message"], love["availability"]["filtered_rate_per_message"]
    assert raw > 3 * filtered  # the targeted lovers' Loves, most of them removed
    assert any(w.startswith("'love': raw rate") for w in res["warnings"])
    assert res["filters_removed"]["rate"]["by_type"]["love"] > 0 and "too_fast" in res["filters_removed"]
    quiet = signals(tmp_path / "logs", min_events=20, rate_gap_factor=100.0)
    assert not any(w.startswith("'love': raw rate") for w in quiet["warnings"])
    # without the filters, the Loves concentrate on the sign-off ("Bye! Sending love!") the adversaries target
    logs = open_logs(tmp_path / "logs")
    traits = trait_concentration(logs, logs.reactions, "love")
    assert traits and all("love" in t["trait"] or "bye" in t["trait"] for t in traits)
    assert traits[0]["share_positive"] > 3 * traits[0]["share_all"]
    assert trait_concentration(logs, logs.reactions, "like") == []  # likes follow helpfulness, no one trait
