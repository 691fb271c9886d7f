"""Stage 4: offline evaluation (`rluf evaluate`) and offline-online agreement.

Exports load lazily (rluf.lazy), so `import rluf.evaluate` does not import torch.
"""

from __future__ import annotations

from rluf.lazy import lazy_exports

_EXPORTS = {"EvaluateConfig": "config", "evaluate": "evaluator", "offline_online": "agreement"}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
