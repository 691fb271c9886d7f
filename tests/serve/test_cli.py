import importlib.util
from pathlib import Path

import typer
from typer.testing import CliRunner

from rluf.errors import ConfigError
from rluf.serve.cli import register


def make_app():
    app = typer.Typer()  # only this stage's commands: importing every stage is slow
    register(app)
    return app


def test_serve_without_a_model_folder_names_the_fix(tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("database: {url: 'sqlite:///%s'}\n" % (tmp_path / "gw.db"))
    res = CliRunner().invoke(make_app(), ["serve", "--config", str(cfg), "--policy", str(tmp_path / "none")])
    assert isinstance(res.exception, ConfigError)  # rluf's main() prints it in one line and exits 2
    assert "backends.baseline.path" in str(res.exception) and "rluf simulate" in str(res.exception)
    assert not (tmp_path / "gw.db").exists()  # nothing touched the database


def test_serve_rejects_a_bad_config(tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("experiment: {arms: [{name: a, backend: nope, share: 1}]}\n")
    res = CliRunner().invoke(make_app(), ["serve", "--config", str(cfg)])
    assert isinstance(res.exception, ConfigError) and "is not a key of backends" in str(res.exception)


def test_load_benchmark_writes_results_only_when_asked(tmp_path):
    """benchmarks/serve.py must not overwrite the committed benchmarks/results/serve.json on a trial run."""
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("benchmark_serve", root / "benchmarks" / "serve.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.parse_args([]).out is None
    assert bench.parse_args(["--seconds", "5"]).out is None
    assert bench.parse_args(["--write"]).out == root / "benchmarks" / "results" / "serve.json"
    assert bench.parse_args(["--out", str(tmp_path / "s.json")]).out == tmp_path / "s.json"
