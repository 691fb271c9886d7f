"""The report's tables built from a run's JSON files."""


def test_claim_rows_read_sweep_claims_as_findings():
    from rluf.run.report import claim_rows

    claims = {"candidate": "love_0.1", "candidate_lift": 0.25, "candidate_lift_ok": False,
              "candidate_helpfulness_held": True, "candidate_safety_held": True,
              "hack": {"love_0.3": {"signoff_rise": 0.02, "flagged": False, "ok": False},
                       "love_only": {"signoff_rise": 0.5, "flagged": True, "ok": True}},
              "hack_ok": True}
    love_01 = {"love_lift": 0.25, "love_lift_ci": [0.1, 0.4], "helpfulness_delta": 0.05,
               "helpfulness_delta_ci": [0.01, 0.09], "safety_violation_delta": -0.02,
               "safety_violation_delta_ci": [-0.03, -0.01]}
    rows = {r["finding (RLUF)"].split(":")[0]: r for r in claim_rows(claims, love_01)}
    lift = rows["love_0.1 lifts true Love by at least +28%"]
    assert (lift["measured"], lift["holds"]) == ("+25.0% [+10.0%, +40.0%]", "no")
    assert rows["love_0.3"]["measured"] == "+2.0 points, not flagged" and rows["love_0.3"]["holds"] == "no"
    assert rows["love_only"]["holds"] == "yes"
    safety = [r for r in claim_rows(claims, love_01) if "safety" in r["finding (RLUF)"]][0]
    assert safety["measured"] == "-2.0 [-3.0, -1.0]"
    # without the run's row (an older sweep.json), the lift still shows, without a CI
    assert claim_rows(claims, {})[0]["measured"] == "+25.0%"


def test_a_figure_that_could_not_be_drawn_is_explained_in_words(tmp_path):
    import json

    from rluf.run.report import build_report

    (tmp_path / "reward_love").mkdir()
    (tmp_path / "reward_love" / "eval.json").write_text(json.dumps({"test": {"n": 50, "positives": 0}}))
    html = build_report(tmp_path).read_text()
    assert "missing figure" not in html
    assert ("P[Love] ROC (held-out, later in time): not drawn. The test split has 0 Love positives; ROC and "
            "reliability need both positives and negatives.") in html
    assert ("Predicted vs true Love rate: not drawn. Its stage did not write agreement/offline_online.png."
            in html)


def test_signals_warnings_and_raw_rate_reach_the_report(tmp_path):
    """What the filters did to a signal (raw vs filtered rate) and the traits its positives concentrate on
    are in signals.json; the report must show them, not only the log."""
    import html as html_lib
    import json

    from rluf.run.report import build_report

    (tmp_path / "signals").mkdir()
    warning = "'love' positives concentrate on 'sending love': 80% of them against 2.0% of all answers"
    (tmp_path / "signals" / "signals.json").write_text(json.dumps({
        "outcome": "returned_7d", "signals": [{"rank": 1, "signal": "love", "kind": "reaction",
                                               "availability": {"rate_per_message": 0.001,
                                                                "raw_rate_per_message": 0.009}}],
        "warnings": [warning]}))
    html = build_report(tmp_path).read_text()
    assert html_lib.escape(warning) in html
    assert "raw rate (no filters)" in html and "9.00e-03" in html
