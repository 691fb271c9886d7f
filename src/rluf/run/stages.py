"""Resumable stages: a stage whose outputs exist with the same config fingerprint is skipped.

Each stage writes `<run>/<stage>/_stage.json` last, after all its outputs, so a killed stage has no
marker and runs again. A stage's fingerprint covers its own config and its inputs' fingerprints, so a
change upstream re-runs everything downstream.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rluf.utils import fingerprint, read_json, write_json

log = logging.getLogger(__name__)
MARKER = "_stage.json"


def stage_done(stage_dir: Path, fp: str) -> dict[str, Any] | None:
    """The stored summary if `stage_dir` finished with fingerprint `fp`, else None."""
    marker = stage_dir / MARKER
    if not marker.is_file():
        return None
    info = read_json(marker)
    return info.get("summary", {}) if info.get("fingerprint") == fp else None


def run_stage(
    run_dir: Path,
    name: str,
    config: Any,
    inputs: list[str],
    fn: Callable[[Path], dict[str, Any]],
    fingerprints: dict[str, str],
    on_event: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Run `fn(stage_dir)` unless a finished stage with the same fingerprint exists. Records the fingerprint."""
    fp = fingerprint(name, config, [fingerprints[i] for i in inputs])
    fingerprints[name] = fp
    stage_dir = run_dir / name
    done = stage_done(stage_dir, fp)
    if done is not None:
        log.info("stage %s: up to date (fingerprint %s), skipped", name, fp)
        if on_event:
            on_event(name, "skipped")
        return done
    if stage_dir.exists():  # stale or half-written: start this stage afresh
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    if on_event:
        on_event(name, "running")
    t0 = time.time()
    summary = fn(stage_dir) or {}
    summary = {**summary, "wall_s": round(time.time() - t0, 2)}
    write_json(stage_dir / MARKER, {"fingerprint": fp, "finished_at": time.time(), "summary": summary})
    if on_event:
        on_event(name, f"done in {summary['wall_s']:.0f}s")
    return summary


def start_stage(
    pool,
    run_dir: Path,
    name: str,
    config: Any,
    inputs: list[str],
    fn: Callable[[Path], dict[str, Any]],
    fingerprints: dict[str, str],
    on_event: Callable[[str, str], None] | None = None,
) -> Callable[[], dict[str, Any]]:
    """`run_stage` in a worker of `pool` (rluf.parallel.Workers; `fn` must pickle: a top-level function or a
    functools.partial of one), while this process goes on. Returns a `wait()` that gives the stage's summary.
    A stage that is up to date, or no pool, runs here and now."""
    fp = fingerprint(name, config, [fingerprints[i] for i in inputs])
    if pool is None or stage_done(run_dir / name, fp) is not None:
        summary = run_stage(run_dir, name, config, inputs, fn, fingerprints, on_event)
        return lambda: summary
    fingerprints[name] = fp
    if on_event:
        on_event(name, "running beside")
    future = pool.submit(run_stage, run_dir, name, config, inputs, fn, dict(fingerprints))

    def wait() -> dict[str, Any]:
        summary = future.result()
        if on_event:
            on_event(name, f"done in {summary['wall_s']:.0f}s")
        return summary

    return wait
