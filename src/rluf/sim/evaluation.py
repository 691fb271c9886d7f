"""One way to evaluate a policy in the simulated world: its answers on the world's fixed evaluation sample,
and their truth.

The optimizer's before/after figures, the weight sweep's table, `rluf simulate`'s baseline figures and the
benchmarks all use `PolicyEvaluation`, so the same seed gives the same answers everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rluf.hacking import hack_metrics


class PolicyEvaluation:
    """A policy's `samples` answers to each of the first `n_prompts` prompts of `world.eval_set(items)`."""

    def __init__(self, world, n_prompts: int | None = None, sampling=None, seed: int = 0, samples: int = 1,
                 items: str = "held_out"):
        self.world, self.sampling, self.seed, self.samples = world, sampling, seed, samples
        self.items = world.eval_set(items)[:n_prompts]
        self.contexts = [it["prompt"] for it in self.items]
        self.users = [it.get("user_id") for it in self.items]

    def responses(self, policy, return_logprobs: bool = False):
        """Prompt-major: prompt i's answers at i*samples .. i*samples+samples-1. Under a distributed launch each
        process generates its share of the prompts (`generate_sharded`); every process gets all answers.
        `return_logprobs`: also their (N,) log-probs summed while sampling (NaN where not; `Policy.generate`)."""
        from rluf.policy import generate_sharded

        gens = generate_sharded(policy, self.contexts, self.samples, self.sampling, self.seed,
                                return_logprobs=return_logprobs)
        if return_logprobs:
            gens, logps = gens
            return [r for g in gens for r in g], logps.reshape(-1)
        return [r for g in gens for r in g]

    def metrics(self, policy) -> dict[str, Any]:
        """World.true_metrics of every answer: the population's true Love rate, helpfulness, ..."""
        items = [it for it in self.items for _ in range(self.samples)]
        return self.world.true_metrics(items, self.responses(policy))

    def per_prompt(self, policy, reference) -> dict[str, Any]:
        """Per-prompt truth (each a mean over the prompt's answers) and KL to `reference`, for paired CIs."""
        import torch

        m = self.samples
        ctx = [c for c in self.contexts for _ in range(m)]
        if policy is reference:  # the baseline's row: zero by definition, two log-prob passes saved
            rsp = self.responses(policy)
            kl = np.zeros(len(rsp))
        else:
            rsp, logp = self.responses(policy, return_logprobs=True)  # log pi(y|x) summed while sampling
            with torch.no_grad():
                kl = (policy.sequence_logprobs(ctx, rsp, known=logp)
                      - policy.sequence_logprobs(ctx, rsp, model=reference.model)).cpu().numpy()
        w = self.world

        def mean_per_prompt(v: np.ndarray) -> np.ndarray:  # (n*m,) -> (n,)
            return np.asarray(v, dtype=float).reshape(len(self.contexts), m).mean(1)

        return {
            "responses": rsp,
            "p_love": mean_per_prompt(w.p_love([u for u in self.users for _ in range(m)], ctx, rsp)),
            "helpfulness": mean_per_prompt(w.helpfulness(ctx, rsp)),
            "unsafe": mean_per_prompt(~w.safe(ctx, rsp)),
            "signoff": mean_per_prompt(w.signoff_hack(rsp)),
            "refusal": mean_per_prompt(w.is_refusal(rsp)),
            "kl": mean_per_prompt(kl),
            "monitor": hack_metrics(rsp),
        }
