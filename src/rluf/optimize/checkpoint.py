"""Atomic CRRAFT checkpoints: trainable weights, optimizer, RNG states, data position and resolved config.

Layout inside the run directory::

    checkpoints/ckpt-000010.pt   torch.save of the state below (written to a temp file, fsynced, renamed)
    checkpoints/latest.json      {"iteration": 10, "file": "ckpt-000010.pt"} (also atomic, written last)

A kill at any moment leaves either the previous or the new checkpoint complete, never half of one, so
a resumed run loses at most the iteration in flight. The data position is the iteration number: the
prompts of iteration t are a function of (seed, t) only (`prompts.batch_indices`).
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rluf.errors import RlufError
from rluf.utils import atomic_write_bytes, read_json, write_json

log = logging.getLogger(__name__)

LATEST = "latest.json"


class CheckpointError(RlufError, ValueError):
    """A run directory has no usable checkpoint."""


def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[-1], tuple(py[:-1]), None))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters being trained (all of them, or just the LoRA adapters)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    run_dir: str | Path, iteration: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    config: dict[str, Any], keep: int = 2,
) -> Path:
    """Write checkpoint `iteration` atomically, point latest.json at it, and prune to the newest `keep`."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    state = {
        "iteration": iteration,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "config": config,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    path = ckpt_dir / f"ckpt-{iteration:06d}.pt"
    atomic_write_bytes(path, buf.getvalue())
    write_json(ckpt_dir / LATEST, {"iteration": iteration, "file": path.name})
    for old in sorted(ckpt_dir.glob("ckpt-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    log.info("checkpoint: iteration %d -> %s", iteration, path)
    return path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / read_json(pointer)["file"]
    return path if path.is_file() else None


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The newest checkpoint that loads: the one latest.json names, else the older ones, newest first.

    A damaged file (cut short by a full disk, a copy that did not finish) is named in a warning and skipped;
    if none loads, the error names every damaged file."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    newest = latest_checkpoint(run_dir)
    older = sorted(ckpt_dir.glob("ckpt-*.pt"), reverse=True) if ckpt_dir.is_dir() else []
    order = ([newest] if newest else []) + [p for p in older if p != newest]
    if not order:
        raise CheckpointError(
            f"--resume {run_dir}: no checkpoint found (expected {ckpt_dir / LATEST}); "
            "start a fresh run without --resume, or set checkpoint_every > 0"
        )
    damaged = []
    for path in order:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError) as e:  # torch raises RuntimeError on a cut zip
            log.warning("checkpoint %s is damaged (%s); trying the previous one", path, str(e).splitlines()[0])
            damaged.append(path)
            continue
        if damaged:
            log.warning("resuming from %s (iteration %d) instead of the damaged %s", path, state["iteration"],
                        ", ".join(p.name for p in damaged))
        return state
    raise CheckpointError(f"--resume {run_dir}: every checkpoint is damaged ({', '.join(map(str, damaged))}); "
                          "start a fresh run without --resume")


def restore(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load weights, optimizer and RNG states; returns the number of completed iterations."""
    missing = set(state["model"]) - {n for n, _ in model.named_parameters()}
    if missing:
        raise CheckpointError(f"checkpoint has parameters the model lacks (e.g. {sorted(missing)[:3]}); "
                              "was it written with a different model or LoRA setting?")
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return int(state["iteration"])
