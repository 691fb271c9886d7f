"""The simulator's adversary kinds (rluf.sim.adversaries), on small worlds with the template policy."""

import hashlib

import numpy as np
import pyarrow.compute as pc
import pytest

from rluf.sim.adversaries import template_logs
from rluf.sim.config import WorldConfig
from rluf.sim.world import World

SMALL = {"content": {"n_items": 300, "n_entities": 150}, "pool": {"answers_per_message": 2}}


def small_world(n_users=400, **sections) -> World:
    data = {**SMALL, "population": {"n_users": n_users}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return World(WorldConfig.model_validate(data))


def test_default_world_draws_the_logs_it_drew_before_the_adversary_kinds():
    """The same seed gives the same default logs: this hash was computed with main at 3f888bf, before the kinds
    (the same arm built inline, deployed with rluf.sim.traffic.deploy)."""
    tabs = template_logs(small_world())
    h = hashlib.sha256()
    for k in ("messages", "reactions", "users", "truth_users"):
        for col in tabs[k].column_names:
            h.update(repr(tabs[k][col].to_pylist()).encode())
    assert h.hexdigest() == "df11d342466130525965c91f239239834a2505b4b2376c5d488632304bac2264"


def kind_logs(kind: str, share=0.1, **adversaries):
    w = small_world(1000, population={"adversarial_share": share},
                    adversaries={"mix": {kind: 1.0}, **adversaries})
    tabs = template_logs(w)
    tm, r = tabs["truth_messages"], tabs["reactions"]
    adv_users = set(tabs["truth_users"].filter(tabs["truth_users"]["is_adversarial"])["user_id"].to_pylist())
    assert len(adv_users) == 100
    assert set(tabs["truth_users"].filter(tabs["truth_users"]["is_adversarial"])["adversarial"].to_pylist()) == {kind}
    love = r.filter(pc.equal(r["type"], "love"))
    return w, tabs, tm, love, adv_users


def test_random_lovers_love_at_their_own_rate():
    w, tabs, tm, love, adv = kind_logs("random_lover")
    rates = w.user_love_rate[w.user_kind != 0]
    assert rates.min() >= 0.1 and rates.max() <= 0.5
    adv_msgs = sum(u in adv for u in tm["user_id"].to_pylist())
    adv_loves = sum(u in adv for u in love["user_id"].to_pylist())
    assert 0.15 < adv_loves / adv_msgs < 0.45  # about the mean rate 0.3


@pytest.mark.parametrize("trait", ["signoff", "unsafe"])
def test_targeted_lovers_love_only_the_trait(trait):
    w, tabs, tm, love, adv = kind_logs("targeted_lover", targeted_trait=trait)
    col = "signoff" if trait == "signoff" else "safe"
    has_trait = dict(zip(tm["message_id"].to_pylist(), tm[col].to_pylist(), strict=True))
    if trait == "unsafe":
        has_trait = {k: not v for k, v in has_trait.items()}
    adv_loved = [m for m, u in zip(love["message_id"].to_pylist(), love["user_id"].to_pylist(), strict=True)
                 if u in adv]
    assert len(adv_loved) > 20 and all(has_trait[m] for m in adv_loved)


def test_slow_spammers_keep_under_their_daily_cap_and_come_back_daily():
    w, tabs, tm, love, adv = kind_logs("slow_spammer", slow_loves_per_day=2)
    t = love["created_at"].cast("int64").to_numpy() // 86_400_000_000
    per_day = {}
    for u, d in zip(love["user_id"].to_pylist(), t, strict=True):
        if u in adv:
            per_day[(u, d)] = per_day.get((u, d), 0) + 1
    # a Love is capped by the day of its message, logged seconds later: at most one more across midnight
    assert max(per_day.values()) <= 3 and np.mean(list(per_day.values())) <= 2
    days = {u: len({d for (uu, d) in per_day if uu == u}) for u in adv}
    assert np.median(list(days.values())) > 20  # active on most of the 42 days


def test_sybils_hold_one_short_conversation_and_love_most_answers():
    w, tabs, tm, love, adv = kind_logs("sybil", sybil_max_turns=2)
    convs = {}
    for u, c in zip(tm["user_id"].to_pylist(), tm["conversation_id"].to_pylist(), strict=True):
        if u in adv:
            convs.setdefault(u, []).append(c)
    assert all(len(set(c)) == 1 and len(c) <= 2 for c in convs.values())
    adv_loves = sum(u in adv for u in love["user_id"].to_pylist())
    assert adv_loves > 0.6 * sum(len(c) for c in convs.values())


def test_old_burst_accounts():
    w, tabs, tm, love, adv = kind_logs("burst", burst_account_age_days=365)
    created = dict(zip(tabs["users"]["user_id"].to_pylist(), tabs["users"]["created_at"].to_pylist(), strict=True))
    start = w.cfg.time.start
    assert all(created[u] < start for u in adv)  # created before the deployment, not just before the burst


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown adversary kinds"):
        WorldConfig.model_validate({"adversaries": {"mix": {"trolls": 1.0}}})
