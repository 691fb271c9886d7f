import json

import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner

from rluf.signals.cli import register

app = typer.Typer()
register(app)


def test_signals_and_curate_commands(ten_days, tmp_path):
    r = CliRunner().invoke(app, ["signals", str(ten_days), "--out", str(tmp_path / "sig"), "--min-events", "1"])
    assert r.exit_code == 0, r.output
    assert "best signal" in r.output
    assert json.loads((tmp_path / "sig" / "signals.json").read_text())["signals"]
    r = CliRunner().invoke(app, ["curate", str(ten_days.parent), "--out", str(tmp_path / "cur"), "--signal", "love",
                                 "--context-turns", "3", "--target-rate", "0.5"])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "cur" / "manifest.json").read_text())
    assert man["config"]["context"]["context_turns"] == 3 and man["target_rate"] == 0.5
    assert pq.read_table(tmp_path / "cur" / "train.parquet").num_rows == man["counts"]["output"]["train"]["rows"]


def test_shipped_config_loads():
    from importlib.resources import files

    from rluf.config import load_config
    from rluf.signals.config import CurateConfig

    cfg = load_config(CurateConfig, files("rluf") / "configs" / "curate.yaml")
    assert cfg == CurateConfig()  # the YAML spells out the defaults


def test_tables_are_not_cut_when_stdout_is_not_a_terminal(ten_days, tmp_path):
    r = CliRunner().invoke(app, ["signals", str(ten_days), "--min-events", "1"])
    assert r.exit_code == 0, r.output
    assert "…" not in r.output
    for text in ("lift (user) 95% CI", "corr (user)", "continued", "returned_1d"):
        assert text in r.output
    r = CliRunner().invoke(app, ["curate", str(ten_days), "--out", str(tmp_path / "cur"), "--target-rate", "natural"])
    assert r.exit_code == 0, r.output
    assert "…" not in r.output and "reactions removed" in r.output and "(target natural;" in r.output
    assert "warning: the test split holds 1 positive(s)" in r.output
