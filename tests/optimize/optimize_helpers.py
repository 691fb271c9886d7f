"""Shared helpers for the optimize tests (a learnable toy objective and a tiny config)."""

import time

import numpy as np


class ShareOfA:
    """A learnable toy objective for tiny random models: 5 x the share of characters that are 'a'."""

    def __init__(self, name: str = "a"):
        self.name = name

    def score(self, contexts, responses):
        assert len(contexts) == len(responses)
        return np.array([5 * r.count("a") / max(len(r), 1) for r in responses], float)


class SlowShareOfA(ShareOfA):
    """ShareOfA that takes 0.3 s per call, so a subprocess can be killed mid-run."""

    def score(self, contexts, responses):
        time.sleep(0.3)
        return super().score(contexts, responses)


def tiny_config(policy_dir, prompt_file, **crraft):
    from rluf.optimize.config import OptimizeConfig

    c = dict(iterations=4, batch_prompts=4, num_candidates=2, lr=1e-2, kl_max=1e3, sampling=dict(max_new_tokens=6))
    c.update(crraft)
    return OptimizeConfig.model_validate(dict(
        policy=str(policy_dir), device="cpu", weights={"a": 1.0}, checkpoint_every=2,
        prompts=dict(source="file", path=str(prompt_file), max_prompts=8),
        judges=[{"type": "length", "min_words": 0, "max_words": 100}], crraft=c,
    ))
