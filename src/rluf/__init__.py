"""rluf: Reinforcement Learning from User Feedback."""
import os

# MKL's strict conditional numerical reproducibility: its matrix products give the same bits whatever the
# number of threads (the other ops rluf trains with already do), so training gives the same weights on one
# thread or two, and a stage may take a second core mid-training (rluf.parallel.claim_free_cores). MKL reads
# this at its first call, so it holds even if torch was imported first; a user's own setting wins.
# Measured: no slower on the default run's training steps (docs/decisions/2026-12-06-thread-independent-training.md).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
