"""Stage 4: offline evaluation (`rluf evaluate`), offline-online agreement, and the reward-hacking monitor.

Imports are lazy: `rluf.judges` imports `rluf.evaluate.monitor`, and the evaluator imports `rluf.judges`,
so this package must not import the evaluator when it is first loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvaluateConfig", "evaluate", "offline_online"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from rluf.evaluate.evaluator import evaluate

        return evaluate
    if name == "offline_online":
        from rluf.evaluate.agreement import offline_online

        return offline_online
    if name == "EvaluateConfig":
        from rluf.evaluate.config import EvaluateConfig

        return EvaluateConfig
    raise AttributeError(f"module 'rluf.evaluate' has no attribute {name!r}")
