import math
from datetime import timedelta

import pytest

from rluf.errors import ConfigError, DataError
from rluf.signals.selection import corr_ci, lift_ci, phi, signals, tradeoff_score, user_lift_ci

from .conftest import T0, conversation, reaction, write_logs

D = timedelta(days=1)


def test_lift_ci_by_hand():
    # a=30 of n1=50 with the signal return, c=200 of n0=500 without: RR = 0.6 / 0.4 = 1.5
    # Katz se = sqrt(1/30 - 1/50 + 1/200 - 1/500) = sqrt(0.0163333) = 0.127802
    rr, lo, hi = lift_ci(30, 50, 200, 500)
    assert rr == pytest.approx(1.5)
    assert lo == pytest.approx(1.5 * math.exp(-1.959964 * 0.127802), rel=1e-5)
    assert hi == pytest.approx(1.5 * math.exp(1.959964 * 0.127802), rel=1e-5)
    assert math.isnan(lift_ci(0, 50, 200, 500)[0])


def test_phi_and_fisher_ci_by_hand():
    # (550*30 - 50*230) / sqrt(50*500*230*320) = 5000 / 42895.22
    assert phi(550, 50, 230, 30) == pytest.approx(0.1165631, rel=1e-6)
    lo, hi = corr_ci(0.5, 103)  # atanh(.5)=0.549306, se=0.1
    assert lo == pytest.approx(math.tanh(0.549306 - 0.1959964), rel=1e-5)
    assert hi == pytest.approx(math.tanh(0.549306 + 0.1959964), rel=1e-5)


def test_user_lift_delta_method():
    import numpy as np

    ever, never = np.array([0.5, 1.0, 0.0, 0.5]), np.array([0.25, 0.25, 0.0, 0.5])
    rr, lo, hi = user_lift_ci(ever, never)
    assert rr == pytest.approx(0.5 / 0.25)
    se = math.sqrt(ever.var(ddof=1) / (4 * 0.25) + never.var(ddof=1) / (4 * 0.0625))
    assert lo == pytest.approx(2 * math.exp(-1.959964 * se), rel=1e-5)


def test_tradeoff_prefers_strong_signal_over_frequent_weak_one():
    weak = tradeoff_score(1.05, 1.02, 1.08)  # frequent, narrow CI, weak: log(1.02)
    strong = tradeoff_score(2.0, 1.3, 3.1)  # rare, wide CI, strong: log(1.3)
    assert weak == pytest.approx(0.0198026, rel=1e-5) and strong == pytest.approx(0.262364, rel=1e-5)
    assert tradeoff_score(0.5, 0.3, 0.8) == pytest.approx(-math.log(0.8))
    assert tradeoff_score(1.2, 0.9, 1.5) == 0.0


@pytest.fixture
def small_logs(tmp_path):
    """u1: A (day 0, loved) then B (day 2) then C (day 20); u2: D (day 1, loved), E (day 15);
    u3: F (day 3), G (day 5); u4: Z (day 30) ends the logs, so days > 23 are not observable."""
    convs = {"A": ("u1", 0), "B": ("u1", 2), "C": ("u1", 20), "D": ("u2", 1), "E": ("u2", 15),
             "F": ("u3", 3), "G": ("u3", 5), "Z": ("u4", 30)}
    msgs = []
    for cid, (user, day) in convs.items():
        msgs += conversation(cid, user, T0 + day * D, ["hi", f"answer {cid}"])
    by_id = {m["message_id"]: m for m in msgs}
    rx = [reaction(by_id["A-1"], "love"), reaction(by_id["D-1"], "love"), reaction(by_id["Z-1"], "like")]
    return write_logs(tmp_path, msgs, rx)


def test_signals_on_hand_built_logs(small_logs, tmp_path):
    res = signals(small_logs, min_events=1, out_dir=tmp_path / "sig")
    assert (tmp_path / "sig" / "signals.json").is_file()
    assert res["assistant_messages"] == 8 and res["observable_messages"] == 7  # Z is within 7 days of the end
    assert res["base_return_rate"] == pytest.approx(2 / 7)  # A (B after 2 days) and F (G after 2 days)
    love = next(s for s in res["signals"] if s["signal"] == "love")
    assert love["availability"]["events"] == 2 and love["availability"]["rate_per_message"] == 0.25
    assert love["availability"]["user_share"] == 0.5
    m = love["message"]  # a=1 of n1=2 loved messages returned; c=1 of n0=5 others
    assert m["lift"] == pytest.approx(2.5)
    assert m["lift_ci"][0] == pytest.approx(2.5 * math.exp(-1.959964 * math.sqrt(1.3)), rel=1e-4)
    assert m["corr"] == pytest.approx(0.3)  # (7*1 - 2*2) / sqrt(2*5*2*5)
    # users: love rates (1/3, 1/2, 0), return rates (1/3, 0, 1/2): r = -13/14
    assert love["user"]["corr"] == pytest.approx(-13 / 14, rel=1e-5)
    assert love["score"] == 0.0  # CI includes 1
    ret = next(s for s in res["signals"] if s["signal"] == "returned_1d")
    assert ret["score"] is None and ret["note"].startswith("circular")
    cont = next(s for s in res["signals"] if s["signal"] == "continued")
    assert cont["availability"]["events"] == 0 and cont["note"].startswith("too rare")


def test_signals_outcome_not_observable(small_logs):
    with pytest.raises(DataError, match="cannot be observed"):
        signals(small_logs, outcome_days=60)


def test_signals_bad_window(small_logs):
    with pytest.raises(ConfigError, match="must be > 0 days"):
        signals(small_logs, outcome_days=0)


def test_signals_synthetic_runs(synth_dir):
    res = signals(synth_dir, min_events=10)
    names = [s["signal"] for s in res["signals"]]
    assert {"love", "like", "dislike", "continued", "returned_1d"} <= set(names)
    ranks = [s["rank"] for s in res["signals"] if "rank" in s]
    assert ranks == list(range(1, len(ranks) + 1))
