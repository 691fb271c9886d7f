"""Resume survives what a kill or a full disk leaves: a half-written metrics line, a cut checkpoint."""

import json
import logging

import pytest
import torch

from optimize.optimize_helpers import ShareOfA, tiny_config
from rluf.optimize import optimize
from rluf.optimize.checkpoint import CheckpointError, load_checkpoint
from rluf.policy import Policy


def _records(run_dir):
    return [{k: v for k, v in json.loads(ln).items() if not k.startswith("time/")}
            for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_drops_a_cut_metrics_line_and_falls_back_from_a_cut_checkpoint(
        tiny_policy_dir, prompt_file, tmp_path, caplog):
    cfg = tiny_config(tiny_policy_dir, prompt_file).model_copy(update={"checkpoint_every": 1})
    optimize(cfg, tmp_path / "full", objectives={"a": ShareOfA()})
    run = tmp_path / "part"
    optimize(cfg.model_copy(update={"stop_after": 3}), run, objectives={"a": ShareOfA()})
    newest = run / "checkpoints" / "ckpt-000003.pt"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["file"] == newest.name
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # cut short
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 4, "reward/a": 0.5')  # the kill came mid-line
    with caplog.at_level(logging.WARNING):
        resumed = optimize(cfg, run, resume=True, objectives={"a": ShareOfA()})
    assert "ckpt-000003.pt is damaged" in caplog.text and "resuming from" in caplog.text
    assert resumed["finished"]
    assert _records(run) == _records(tmp_path / "full")  # iterations 3 and 4 redone from checkpoint 2
    a = Policy.from_pretrained(tmp_path / "full" / "policy", device="cpu").model.state_dict()
    b = Policy.from_pretrained(run / "policy", device="cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_only_damaged_checkpoints_give_an_error_naming_them(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "ckpt-000001.pt").write_bytes(b"PK\x03\x04 not a whole file")
    (ckpt / "latest.json").write_text(json.dumps({"iteration": 1, "file": "ckpt-000001.pt"}))
    with pytest.raises(CheckpointError, match=r"every checkpoint is damaged \(.*ckpt-000001\.pt\)"):
        load_checkpoint(tmp_path)
