"""`rluf curate` output on a fixed synthetic log set, compared with a saved expectation.

tests/signals/data/curate_golden.json was written by the pipeline *before* the spam filter's numpy key count
(src/rluf/signals as of commit 59e7d5e: the bucketed two-pass spam count in the engine), with
`python tests/signals/test_curate_golden.py --write`. Later changes for speed must give the same rows, labels,
weights, prompts and manifest counts. The draws are DuckDB hashes, so a DuckDB upgrade that changes `hash()`
changes the expectation (then regenerate it from a commit known to be right, and say so).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rluf.signals import curate
from rluf.signals.synth import synth_logs

DATA = Path(__file__).parent / "data" / "curate_golden.json"
SPLITS = ("train", "validation", "test")
# small text pools and min_repeats 3: some users repeat a text often enough for the spam filter to flag them.
# The rate rule is pinned to the robust z-score it had when the expectation was written (the beta-binomial
# test, now the default, has its own tests in test_filters.py).
# Likewise the spam rule without its near-duplicate templates.
SPAM = {"spam": {"min_repeats": 3, "near_duplicates": False}, "rate": {"method": "robust_z"}}
CONFIGS = {
    "default_capped": {"filters": SPAM, "sample": {"eval_max_negatives": 30}},
    "user_disjoint_upsample_majority": {"filters": SPAM, "split": {"user_disjoint": True},
                                        "sample": {"upsample_positives": 2, "eval_max_negatives": 25, "seed": 4},
                                        "dedup": {"aggregate": "majority"}},
    "rule_true_by_default": {"filters": SPAM, "signal": {"rule": "not dislike"},
                             "sample": {"target_rate": 0.9, "eval_max_negatives": 10}},
    "pii_k3_rows_cap": {"filters": SPAM, "pii": {"enabled": True}, "context": {"context_turns": 3},
                        "sample": {"eval_max_rows": 80}},
    "keep_flagged_rows_uncapped": {"filters": {**SPAM, "drop_flagged_rows": False, "too_fast": {"enabled": False}},
                                   "sample": {"eval_max_negatives": None, "target_rate": 0.2}},
    "no_filters_love_or_like": {"filters": {"rate": {"enabled": False}, "burst": {"enabled": False},
                                            "too_fast": {"enabled": False}, "spam": {"enabled": False}},
                                "signal": {"rule": "love or like and not dislike"},
                                "sample": {"eval_max_negatives": 40}},
}


def make_logs(root: Path) -> Path:
    synth_logs(root, n_conversations=3000, n_users=250, n_spammers=5, n_burst=15, pii_share=0.05, seed=7,
               prompt_pool=400, answer_pool=400)
    return root


def digest(out: Path, manifest: dict) -> dict:
    """Per split: rows and a sha256 of the sorted rows (every column; weights to 12 significant digits);
    and the manifest's counts, rates and cut-offs."""
    res: dict = {"splits": {}}
    for s in SPLITS:
        rows = pq.read_table(out / f"{s}.parquet").to_pylist()
        lines = sorted(json.dumps([r["message_id"], r["label"], f"{r['weight']:.12g}", r["prompt"], r["completion"],
                                   r["conversation_id"], r["user_id"], r["created_at"].isoformat(), r["model_id"]])
                       for r in rows)
        res["splits"][s] = {"rows": len(rows), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}
    counts = json.loads(json.dumps(manifest["counts"]))
    # fields added to the filter report after the expectation was written (tested in test_contamination.py)
    counts["filters"].pop("warnings", None)
    for rep in counts["filters"].values():
        if isinstance(rep, dict):
            rep.pop("by_type", None)
            rep.pop("skipped_not_click", None)
    res["counts"] = counts
    res["pii"] = manifest["pii"]
    res["rates"] = {k: manifest[k] for k in ("natural_rate", "natural_rate_all", "train_rate",
                                             "train_weighted_rate")}
    res["cutoffs"] = manifest["split_cutoffs_epoch_s"]
    res["flagged"] = {k: v["users"] for k, v in manifest["counts"]["filters"].items() if isinstance(v, dict)}
    return res


def _approx(x):
    """Floats compared to 1e-9 relative (weights and rates are sums in a different order after fusion)."""
    if isinstance(x, float):
        return pytest.approx(x, rel=1e-9)
    if isinstance(x, dict):
        return {k: _approx(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_approx(v) for v in x]
    return x


@pytest.fixture(scope="module")
def golden_logs(tmp_path_factory):
    return make_logs(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_curate_matches_saved_expectation(golden_logs, tmp_path, name):
    expected = json.loads(DATA.read_text())[name]
    man = curate(golden_logs, tmp_path / "out", CONFIGS[name], truth_dir=golden_logs / "truth")
    got = digest(tmp_path / "out", man)
    assert got["splits"] == expected["splits"]
    assert got["counts"] == _approx(expected["counts"])
    assert got["pii"] == expected["pii"]
    assert got["rates"] == _approx(expected["rates"])
    assert got["cutoffs"] == _approx(expected["cutoffs"])
    assert got["flagged"] == expected["flagged"]


def test_spam_key_sort_matches_the_bucketed_count(golden_logs):
    """The spam filter's DuckDB path (numpy count of 64-bit keys, then an exact count of the hot keys) flags the
    same users as the engine-only bucketed two-pass count, at several thresholds."""
    from rluf.signals.engine import connect, load_logs
    from rluf.signals.filters import _spam_flags_bucketed, spam_flags

    con = connect()
    logs = load_logs(con, golden_logs)
    for min_repeats in (2, 3, 5, 50):
        fast = sorted(con.to_pyarrow(spam_flags(logs, min_repeats))["user_id"].to_pylist())
        slow = sorted(con.to_pyarrow(_spam_flags_bucketed(logs, min_repeats))["user_id"].to_pylist())
        assert fast == slow
    assert con.to_pyarrow(spam_flags(logs, 3)).num_rows > 0
    assert con.to_pyarrow(spam_flags(logs, 50)).num_rows == 0


def test_golden_input_exercises_every_filter():
    expected = json.loads(DATA.read_text())["default_capped"]
    assert all(expected["flagged"][rule] > 0 for rule in ("rate", "burst", "spam"))
    assert expected["counts"]["filters"]["too_fast"]["reactions"] > 0


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        logs = make_logs(Path(tmp) / "logs")
        out = {}
        for name, config in CONFIGS.items():
            man = curate(logs, Path(tmp) / name, config, truth_dir=logs / "truth")
            out[name] = digest(Path(tmp) / name, man)
            print(name, {s: v["rows"] for s, v in out[name]["splits"].items()}, out[name]["flagged"])
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DATA}")
