"""Bad input (issue 3, section 4): each a clear rluf error naming the problem, never a traceback."""

from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer

from rluf.config import load_config
from rluf.errors import ConfigError, DataError, SchemaError
from rluf.signals import curate
from rluf.signals.config import CurateConfig

from .conftest import T0, conversation, reaction, write_logs

OFF = {"rate": {"enabled": False}, "burst": {"enabled": False}, "too_fast": {"enabled": False},
       "spam": {"enabled": False}}


def test_no_reaction_of_chosen_type(tmp_path):
    msgs = conversation("c0", "u0", T0, ["q", "a"])
    logs = write_logs(tmp_path, msgs, [reaction(msgs[1], "like")])
    with pytest.raises(DataError, match=r"has no 'love' reaction.*present: like \(1\)"):
        curate(logs, tmp_path / "out")


def test_unknown_signal_lists_existing(ten_days, tmp_path):
    with pytest.raises(ConfigError, match=r"signal 'lvoe' does not exist.*love \(5\), like \(1\), dislike \(1\)"):
        curate(ten_days, tmp_path / "out", {"signal": {"rule": "lvoe"}})


def test_rule_positive_nowhere_after_filters(ten_days, tmp_path):
    with pytest.raises(DataError, match="no assistant message .* is positive under signal 'love and dislike'"):
        curate(ten_days, tmp_path / "out", {"signal": {"rule": "love and dislike"}, "filters": OFF})


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one(ten_days, tmp_path, k):
    with pytest.raises(ConfigError, match=rf"context.context_turns must be >= 1 \(got {k}\)"):
        curate(ten_days, tmp_path / "out", {"context": {"context_turns": k}})


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1])
def test_target_rate_outside_unit_interval(ten_days, tmp_path, rate):
    with pytest.raises(ConfigError, match=r"sample.target_rate must be strictly between 0 and 1"):
        curate(ten_days, tmp_path / "out", {"sample": {"target_rate": rate}})


def test_empty_split(tmp_path):
    msgs = conversation("c0", "u0", T0, ["q", "a"]) + conversation("c1", "u1", T0 + timedelta(days=1), ["q", "b"])
    logs = write_logs(tmp_path, msgs, [reaction(msgs[1], "love")])
    with pytest.raises(DataError, match=r"the validation split is empty"):
        curate(logs, tmp_path / "out", {"filters": OFF})


def test_all_timestamps_coincide(tmp_path):
    msgs = conversation("c0", "u0", T0, ["q", "a", "q2", "a2"], gap=timedelta(0))
    logs = write_logs(tmp_path, msgs, [reaction(msgs[1], "love", after=timedelta(0))])
    with pytest.raises(DataError, match=r"all 4 messages .* have the same created_at"):
        curate(logs, tmp_path / "out")


def test_missing_column_and_missing_folder(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    pq.write_table(pa.table({"message_id": ["m"]}), logs / "messages.parquet")
    pq.write_table(pa.table({"message_id": ["m"]}), logs / "reactions.parquet")
    with pytest.raises(SchemaError, match=r"messages.parquet is missing column\(s\) \['conversation_id'"):
        curate(logs, tmp_path / "out")
    with pytest.raises(DataError, match="does not exist"):
        curate(tmp_path / "nope", tmp_path / "out")


def test_bad_yaml_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("sample:\n  target_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sample.target_rat'"):
        load_config(CurateConfig, p)


def test_cli_raises_rluf_error(ten_days, tmp_path):
    """The CLI lets RlufError through; rluf.cli.main prints it in one line and exits 2."""
    from typer.testing import CliRunner

    from rluf.errors import RlufError
    from rluf.signals.cli import register

    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["curate", str(ten_days), "--out", str(tmp_path / "o"), "--signal", "lvoe"])
    assert isinstance(r.exception, RlufError) and "does not exist" in str(r.exception)
