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
