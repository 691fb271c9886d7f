"""End to end: `rluf run --quick` with even shorter training, then resume, then the report in Chromium."""

import json

import pytest

from helpers.browser import CHROMIUM, inspect_page
from rluf.run.config import load_run_config
from rluf.run.pipeline import run

STAGES = ["simulate", "signals", "curate", "reward_helpfulness", "reward_safety", "reward_love", "sweep",
          "evaluate", "abtest"]


@pytest.mark.slow
def test_quick_loop_runs_resumes_and_reports(tmp_path):
    cfg = load_run_config(None, quick=True)
    cfg = cfg.model_copy(update={
        "optimize": {**cfg.optimize, "crraft": {"iterations": 2, "batch_prompts": 4},
                     "eval": {"n_prompts": 16, "items": "deployment"}},
        "evaluate": {"prompts": {"n_prompts": 16}, "bootstrap_reps": 100},
    })
    events: list[tuple[str, str]] = []
    summary = run(cfg, tmp_path, on_event=lambda s, e: events.append((s, e)))
    for stage in STAGES:
        assert (tmp_path / stage / "_stage.json").is_file(), stage
    assert (tmp_path / "report.html").is_file()
    assert len(json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]) == 5
    assert json.loads((tmp_path / "evaluate" / "agreement" / "offline_online.json").read_text())["n_policies"] >= 6
    ab = json.loads((tmp_path / "abtest" / "abtest.json").read_text())
    assert ab["control"]["responses"] > 0 and ab["treatment"]["responses"] > 0
    assert summary["report"].endswith("report.html")
    love_meta = json.loads((tmp_path / "reward_love" / "rluf_reward.json").read_text())
    assert love_meta["backbone"]["backbone"].endswith("/reward_helpfulness")  # started from the run's helpfulness model
    html = (tmp_path / "report.html").read_text()
    assert "curate/test.parquet, conversations later in time" in html  # offline evaluation's prompt set
    assert "deployment&#x27;s own questions" in html  # the sweep's evaluation population
    assert "love 0.1 lifts true Love by at least +28%" in html  # the paper's findings, one row each

    events.clear()
    run(cfg, tmp_path, on_event=lambda s, e: events.append((s, e)))  # resume: nothing left to do
    assert events == [(s, "skipped") for s in STAGES]

    if CHROMIUM and __import__("pathlib").Path(CHROMIUM).is_file():
        info = inspect_page(tmp_path / "report.html")
        assert info["images"] and all(i["ok"] for i in info["images"]), info["images"]
        for table in ("signals-table", "sweep-table", "claims-table", "ranking-table", "agreement-table", "abtest-table"):
            assert table in info["tables"]
