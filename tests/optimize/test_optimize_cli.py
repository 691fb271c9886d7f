"""`rluf optimize` / `rluf sweep` from the command line, and a real kill -9 + --resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rluf.cli import app
from rluf.errors import ConfigError, RlufError

TESTS = Path(__file__).resolve().parents[1]


def _yaml(tmp_path, policy_dir, prompt_file, objective="ShareOfA", **crraft):
    c = dict(iterations=2, batch_prompts=4, num_candidates=2, lr=1e-2, kl_max=1000.0, sampling=dict(max_new_tokens=6))
    c.update(crraft)
    cfg = dict(policy=str(policy_dir), device="cpu", objectives={"a": f"py:optimize.optimize_helpers:{objective}"},
               weights={"a": 1.0}, checkpoint_every=2, judges=[{"type": "degenerate", "max_repeats": 50}],
               prompts=dict(source="file", path=str(prompt_file), max_prompts=8), crraft=c)
    path = tmp_path / "opt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_optimize_writes_the_run(tiny_policy_dir, prompt_file, tmp_path):
    cfg = _yaml(tmp_path, tiny_policy_dir, prompt_file)
    res = CliRunner().invoke(app, ["optimize", "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert '"finished": true' in res.output
    run = tmp_path / "run"
    assert (run / "policy" / "config.json").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((run / "summary.json").read_text())["iterations_done"] == 2


def test_cli_errors_are_config_errors(tmp_path, tiny_policy_dir, prompt_file):
    res = CliRunner().invoke(app, ["optimize"])
    assert isinstance(res.exception, ConfigError) and "exactly one of --out DIR" in str(res.exception)
    res = CliRunner().invoke(app, ["optimize", "--resume", str(tmp_path / "nothing")])
    assert isinstance(res.exception, RlufError) and "not an rluf optimize run" in str(res.exception)
    cfg = _yaml(tmp_path, tiny_policy_dir, prompt_file)
    res = CliRunner().invoke(app, ["optimize", "--config", str(cfg), "--weight", "lov=0.1",
                                   "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, ConfigError) and "unknown objective 'lov'" in str(res.exception)
    res = CliRunner().invoke(app, ["optimize", "--config", str(cfg), "--weight", "a=lots",
                                   "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, ConfigError) and "'lots' is not a number" in str(res.exception)


def _rluf(*args):
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))  # keep the caller's rluf
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rluf", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _final(run):
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in recs]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tiny_policy_dir, prompt_file, tmp_path):
    cfg = _yaml(tmp_path, tiny_policy_dir, prompt_file, objective="SlowShareOfA", iterations=6)
    full = _rluf("optimize", "--config", str(cfg), "--out", str(tmp_path / "full"))
    killed = _rluf("optimize", "--config", str(cfg), "--out", str(tmp_path / "killed"))
    latest = tmp_path / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 600
    while not latest.is_file() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "policy").exists()
    resumed = _rluf("optimize", "--resume", str(tmp_path / "killed"))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out.decode()[-2000:]
    assert full.wait(timeout=600) == 0
    assert _final(tmp_path / "killed") == _final(tmp_path / "full")
