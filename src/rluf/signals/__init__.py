"""Stage 1, signal selection: `signals` ranks candidate feedback signals, `curate` builds the training set."""

from rluf.signals.curate import curate
from rluf.signals.selection import signals

__all__ = ["curate", "signals"]
