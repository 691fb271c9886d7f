import json
import sys
from importlib.resources import files

from typer.testing import CliRunner

from rluf.abtest import AnalyzeConfig, power
from rluf.cli import app
from rluf.config import load_config

runner = CliRunner()


def test_cli_analyze_prints_and_writes(ab_logs, tmp_path):
    out = tmp_path / "ab.json"
    r = runner.invoke(app, ["abtest", "analyze", str(ab_logs), "--control", "A", "--treatment", "B",
                            "--segment", "family", "--bootstrap-reps", "200", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "delta method, clustered by user" in r.output and "user bootstrap (200 reps)" in r.output
    assert "per family" in r.output and "advice" in r.output
    res = json.loads(out.read_text())
    assert res["bootstrap"]["reps"] == 200 and set(res["segments"]) == {"advice", "chat", "factual"}


def test_cli_power_matches_library():
    r = runner.invoke(app, ["abtest", "power", "--base-rate", "0.001", "--lift", "0.28"])
    assert r.exit_code == 0, r.output
    assert "227,997" in r.output
    assert power(0.001, 0.28)["responses_per_arm"] == 227997


def test_power_with_design_effect_and_users():
    res = power(0.001, 0.28, design_effect=1.5, responses_per_user=10)
    assert res["responses_per_arm_clustered"] == 341996  # ceil(227997 * 1.5) = ceil(341995.5)
    assert res["users_per_arm"] == 34200


def test_power_errors():
    import pytest

    from rluf.errors import ConfigError

    with pytest.raises(ConfigError, match=r"base_rate = 0: must be strictly between 0\.0 and 1\.0"):
        power(0, 0.28)
    with pytest.raises(ConfigError, match=r"lift = 0: .*e\.g\. 0\.28"):
        power(0.001, 0)
    with pytest.raises(ConfigError, match=r"treatment rate must stay below 1"):
        power(0.9, 0.5)
    with pytest.raises(ConfigError, match=r"design_effect = 0\.5: must be >= 1"):
        power(0.001, 0.28, design_effect=0.5)


def test_cli_error_is_one_line_exit_2(ab_logs, monkeypatch, capsys):
    import pytest

    from rluf.cli import main

    monkeypatch.setattr(sys, "argv", ["rluf", "abtest", "analyze", str(ab_logs), "--control", "A", "--treatment", "Z"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "arm 'Z' has no assistant messages" in err and "Traceback" not in err


def test_shipped_yaml_loads():
    cfg = load_config(AnalyzeConfig, files("rluf") / "configs" / "abtest.yaml")
    assert cfg == AnalyzeConfig()  # the shipped file spells out the defaults
