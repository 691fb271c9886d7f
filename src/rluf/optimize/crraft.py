"""CRRAFT: Constrained RAFT (reward-ranked fine-tuning) with a Mixture of Judges.

CGPO, Xu et al., 2024 (arXiv 2409.20370), Sec. 4.3; used by RLUF (Han et al., 2025) with best-of-4 and
weighted objectives (helpfulness 0.7, safety 0.3, love 0.0 / 0.1 / 0.3). One iteration:

  1. sample B prompts x_1..x_B from the pool;
  2. generate K responses y_i1..y_iK per prompt with the current policy pi;
  3. score every response with every objective and calibrate against y_base (Eq. 6):
         R_k(x, y) = sigmoid(r_k(x, y) - r_k(x, y_base)),    R(x, y) = sum_k w_k R_k(x, y);
  4. keep only responses every judge passes, J_h(x, y) = 1 for all h, and whose sequence KL to the
     reference, log pi(y|x) - log pi_ref(y|x), is at most KL_max;
  5. y_i* = argmax of R over the survivors; if none survive, y_i* = y_base when y_base passes the
     judges, else the prompt is skipped;
  6. update with the reward-weighted SFT loss (CGPO Eq. 8, RAFT form)
         L(theta) = -(1/n) sum_i R(x_i, y_i*) log pi_theta(y_i* | x_i)   over the n kept prompts.

The math lives in the small pure functions below; `CRRAFT` runs the loop, logs metrics and checkpoints.
Why an own loop and not TRL's GRPOTrainer: see docs/crraft.md ("Design decision").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rluf.hacking import DEFAULT_SIGNOFF_PATTERN, hack_metrics
from rluf.judges.base import make_items
from rluf.judges.mixture import MixtureOfJudges
from rluf.optimize.config import OptimizeConfig
from rluf.optimize.objectives import Objective, calibrated_reward, combined_reward
from rluf.optimize.prompts import PromptItem, batch_indices
from rluf.policy import Policy, row_seed, shard
from rluf.utils import JsonlLogger

log = logging.getLogger(__name__)

FALLBACK, SKIP = -1, -2  # Selection.index values besides 0..K-1


# -- the math (pure functions) ------------------------------------------------------------------------
def sequence_kl(logp: torch.Tensor | np.ndarray, logp_ref: torch.Tensor | np.ndarray) -> np.ndarray:
    """Sequence KL estimate for sampled responses: log pi(y|x) - log pi_ref(y|x) (CGPO Sec. 4.3, KL filter).

    Both are sums of token log-probs over the response, any shape (e.g. (B, K)); the single-sample
    estimate of KL(pi || pi_ref) for y ~ pi. Compared with `crraft.kl_max`.
    """
    return np.asarray(logp, float) - np.asarray(logp_ref, float)


@dataclass
class Selection:
    """Per prompt: index (B,) of the chosen candidate in 0..K-1, FALLBACK (y_base) or SKIP; reward (B,)
    R(x_i, y_i*) of the choice (NaN when skipped); survivors (B, K) the candidates that passed both filters."""

    index: np.ndarray
    reward: np.ndarray
    survivors: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        return self.index != SKIP


def select_responses(
    R: np.ndarray,
    passed: np.ndarray,
    kl: np.ndarray,
    kl_max: float,
    base_passed: np.ndarray,
    R_base: np.ndarray,
    fallback: str = "y_base",
) -> Selection:
    """CRRAFT selection (CGPO Sec. 4.3): argmax of R over candidates that pass every judge and the KL
    filter; else y_base if it passes the judges (and `fallback == "y_base"`); else skip.

    R, passed, kl: (B, K); base_passed, R_base: (B,). Ties go to the lowest index.
    """
    survivors = passed.astype(bool) & (np.asarray(kl) <= kl_max)  # (B, K)
    masked = np.where(survivors, R, -np.inf)  # (B, K)
    best = masked.argmax(axis=1)  # (B,)
    any_alive = survivors.any(axis=1)  # (B,)
    use_base = ~any_alive & base_passed.astype(bool) & (fallback == "y_base")
    index = np.where(any_alive, best, np.where(use_base, FALLBACK, SKIP))
    reward = np.where(any_alive, masked[np.arange(len(best)), best], np.where(use_base, R_base, np.nan))
    return Selection(index=index, reward=reward, survivors=survivors)


def reward_weighted_sft_loss(logp: torch.Tensor, R: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """CGPO Eq. 8 (RAFT form): L = -(1/n) sum_i R(x_i, y_i*) log pi(y_i* | x_i).

    logp: (m,) sequence log-probs with grad; R: (m,) rewards (constants); `n` is the number of kept
    prompts in the whole batch (default m), so micro-batches of one batch sum to the full loss.
    """
    n = len(logp) if n is None else n
    return -(R.detach().to(logp.dtype) * logp).sum() / max(n, 1)


# -- one iteration's data -----------------------------------------------------------------------------
@dataclass
class Candidates:
    """Everything CRRAFT knows about one iteration's B x K samples (all B prompts, gathered from every process)."""

    prompt_ids: np.ndarray  # (B,) indices into the pool
    prompts: list[PromptItem]  # B
    responses: list[list[str]]  # (B, K)
    kl: np.ndarray  # (B, K)
    R_k: dict[str, np.ndarray]  # objective -> (B, K) calibrated
    R: np.ndarray  # (B, K) combined
    R_base: np.ndarray  # (B,) combined reward of y_base = sum_k w_k * 0.5
    judge_passed: dict[str, np.ndarray]  # judge -> (B, K)
    finished: np.ndarray  # (B, K) False where max_new_tokens cut the sample off
    passed: np.ndarray  # (B, K) every judge (and, with drop_cut_off, the completeness check)
    base_passed: np.ndarray  # (B,)

    @property
    def judge_rates(self) -> dict[str, float]:
        return {**{k: float(v.mean()) for k, v in self.judge_passed.items()},
                "complete": float(self.finished.mean()), "all": float(self.passed.mean())}


ROW_FIELDS = ("prompt_ids", "prompts", "responses", "kl", "R", "R_base", "finished", "passed", "base_passed")


class CRRAFT:
    """The CRRAFT loop over a prepared policy, reference, objectives, judges and prompt pool.

    Built by `rluf.optimize.optimize`, which loads everything from the config; tests build it directly
    with tiny models. Under a distributed launch (`accelerator.num_processes` > 1) each process generates,
    scores and judges its shard of the B prompts, the per-prompt results are gathered so every process
    selects and logs over all B, and each process backpropagates its own kept rows; the gradients are
    summed across processes (torch.distributed.all_reduce) before the step, so all processes keep
    identical weights.
    """

    def __init__(
        self,
        cfg: OptimizeConfig,
        policy: Policy,
        reference: Policy,
        objectives: dict[str, Objective],
        judges: MixtureOfJudges,
        pool: list[PromptItem],
        optimizer: torch.optim.Optimizer,
        out_dir: str | Path,
        accelerator=None,
        evaluator: Callable[[Policy], dict[str, float]] | None = None,
        checkpoint_fn: Callable[[int], None] | None = None,
    ):
        self.cfg, self.policy, self.reference = cfg, policy, reference
        self.objectives, self.judges, self.pool, self.optimizer = objectives, judges, pool, optimizer
        self.out_dir = Path(out_dir)
        self.accelerator = accelerator
        self.evaluator = evaluator
        self.checkpoint_fn = checkpoint_fn
        self.weights = {k: w for k, w in cfg.weights.items() if w > 0}
        self.logger = JsonlLogger(self.out_dir / "metrics.jsonl")
        # under a distributed launch only the main process writes files
        self.is_main = accelerator is None or accelerator.is_main_process
        self.rank = 0 if accelerator is None else accelerator.process_index
        self.world = 1 if accelerator is None else accelerator.num_processes
        self.sampling = cfg.crraft.sampling.to_sampling()
        self.signoff_pattern = cfg.monitor.signoff_pattern or DEFAULT_SIGNOFF_PATTERN

    # -- steps 1-4: sample, score, judge ----------------------------------------------------------------
    def candidates(self, iteration: int) -> Candidates:
        """This process's shard of the iteration's prompts, scored and judged, then gathered over processes."""
        cfg = self.cfg.crraft
        ids = shard(batch_indices(len(self.pool), cfg.batch_prompts, self.cfg.seed, iteration), self.rank, self.world)
        prompts = [self.pool[i] for i in ids]
        contexts = [p.context for p in prompts]
        torch.manual_seed(self.cfg.seed * 1_000_003 + iteration)  # any other draw: same after a resume
        # every sample's random stream is keyed by (seed, iteration, prompt id, k): the same answers on any
        # number of processes and after a resume
        seeds = [row_seed(self.cfg.seed, iteration, i) for i in ids]
        responses, finished, logp_sampled = self.policy.generate(
            contexts, n=cfg.num_candidates, sampling=self.sampling, return_finished=True, return_logprobs=True,
            seeds=seeds)  # (B, K) x 3
        flat_ctx = [c for c in contexts for _ in range(cfg.num_candidates)]  # (B*K,)
        flat_rsp = [r for rs in responses for r in rs]  # (B*K,)
        B, K = len(prompts), cfg.num_candidates
        with torch.no_grad():  # log pi(y|x) was summed while sampling; a forward pass only where it was not
            logp = self.policy.sequence_logprobs(flat_ctx, flat_rsp, known=logp_sampled.reshape(-1))
            logp_ref = self.policy.sequence_logprobs(flat_ctx, flat_rsp, model=self.reference.model)
        kl = sequence_kl(logp.cpu(), logp_ref.cpu()).reshape(B, K)  # (B*K,) -> (B, K)
        bases = [p.y_base or "" for p in prompts]
        R_k = {}
        for name in self.weights:
            raw = np.asarray(self.objectives[name].score(flat_ctx + contexts, flat_rsp + bases), float)
            R_k[name] = calibrated_reward(raw[: B * K].reshape(B, K), raw[B * K :])  # (B, K), Eq. 6
        R = combined_reward(R_k, self.weights)  # (B, K)
        R_base = np.full(B, 0.5 * sum(self.weights.values()))  # sigmoid(0) = 0.5 for every objective
        metas = [p.metadata for p in prompts]
        flat_meta = [m for m in metas for _ in range(K)]  # (B*K,)
        verdict = self.judges.judge(make_items(flat_ctx + contexts, flat_rsp + bases, flat_meta + metas))
        # A sample cut off by max_new_tokens is not an answer: it fails like a judge. Trained on (with the eos
        # appended), it would teach the policy to stop mid-sentence.
        passed = verdict.passed[: B * K].reshape(B, K)  # (B*K,) -> (B, K)
        if cfg.drop_cut_off:
            passed = passed & finished
        judge_passed = {name: np.array([v.passed for v in vs[: B * K]], bool).reshape(B, K)
                        for name, vs in verdict.verdicts.items()}
        local = Candidates(ids, prompts, responses, kl, R_k, R, R_base, judge_passed, finished, passed,
                           base_passed=verdict.passed[B * K :])  # (B,)
        return self._gather(local)

    def _gather(self, local: Candidates) -> Candidates:
        """All processes' shards in rank order (= the prompts' order in the batch): every process sees all B."""
        if self.world == 1:
            return local
        from accelerate.utils import gather_object

        parts = gather_object([local])  # one Candidates per process, rank order
        cat = {f: [x for part in parts for x in getattr(part, f)] for f in ROW_FIELDS}
        arrays = {f: np.asarray(v) for f, v in cat.items() if f not in ("prompts", "responses")}
        K = self.cfg.crraft.num_candidates
        for f in ("kl", "R", "finished", "passed"):
            arrays[f] = arrays[f].reshape(-1, K)
        return Candidates(
            prompts=cat["prompts"], responses=cat["responses"],
            R_k={k: np.concatenate([p.R_k[k] for p in parts]).reshape(-1, K) for k in local.R_k},
            judge_passed={k: np.concatenate([p.judge_passed[k] for p in parts]).reshape(-1, K)
                          for k in local.judge_passed},
            **arrays,
        )

    # -- steps 5-6: select and update ----------------------------------------------------------------
    def my_rows(self, B: int) -> np.ndarray:
        """Rows 0..B-1 of the gathered batch that this process generated (and so trains on)."""
        return shard(np.arange(B), self.rank, self.world)

    def update(self, cand: Candidates, sel: Selection) -> dict[str, float]:
        cfg = self.cfg.crraft
        n = int(sel.kept.sum())  # kept prompts over ALL processes: the 1/n of Eq. 8
        if n == 0:
            return {"loss": float("nan"), "grad_norm": 0.0}
        rows = [i for i in self.my_rows(len(cand.prompts)) if sel.kept[i]]
        ctx = [cand.prompts[i].context for i in rows]
        rsp = [(cand.prompts[i].y_base or "") if sel.index[i] == FALLBACK else cand.responses[i][sel.index[i]]
               for i in rows]
        R = torch.tensor(sel.reward[rows], dtype=torch.float32)  # (n_local,)
        total, grad_norm = 0.0, 0.0
        model = self.policy.model
        model.train()
        for _ in range(cfg.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for s in range(0, len(rows), cfg.micro_batch_size):
                mb = slice(s, s + cfg.micro_batch_size)
                with self._autocast():
                    logp = self.policy.sequence_logprobs(ctx[mb], rsp[mb], grad=True)  # (m,)
                if cfg.length_normalize:
                    lengths = torch.tensor([len(ids) for ids in self.policy.encode_responses(rsp[mb])],
                                           device=logp.device)
                    logp = logp / lengths
                loss = reward_weighted_sft_loss(logp, R[mb].to(logp.device), n)  # Eq. 8, this process's terms
                self._backward(loss)
                total += loss.item()
            self._sum_gradients_over_processes()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self._trainable(), cfg.max_grad_norm))
            self.optimizer.step()
        return {"loss": self._sum_over_processes(total) / cfg.epochs, "grad_norm": grad_norm}

    def _autocast(self):
        from contextlib import nullcontext

        return nullcontext() if self.accelerator is None else self.accelerator.autocast()

    def _sum_gradients_over_processes(self) -> None:
        """grad = sum over processes of each one's part of Eq. 8 (each is already divided by the global n).

        Not DDP's hooks: processes keep different numbers of prompts (so run different numbers of backward
        passes, some none), which DDP's lock-step all-reduce per backward cannot express."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for p in self._trainable():
            if p.grad is None:  # this process kept no prompt
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def _sum_over_processes(self, x: float) -> float:
        if self.world == 1:
            return x
        import torch.distributed as dist

        t = torch.tensor([x], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def _backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.policy.model.parameters() if p.requires_grad]

    # -- one full iteration ----------------------------------------------------------------------------
    def iteration(self, t: int) -> dict[str, Any]:
        t0 = time.time()
        cand = self.candidates(t)
        sel = select_responses(
            cand.R, cand.passed, cand.kl, self.cfg.crraft.kl_max, cand.base_passed, cand.R_base,
            self.cfg.crraft.fallback,
        )
        upd = self.update(cand, sel)
        return {"iteration": t + 1, **self.metrics(cand, sel, upd), "time/iter_s": time.time() - t0}

    def metrics(self, cand: Candidates, sel: Selection, upd: dict[str, float]) -> dict[str, Any]:
        """The per-iteration log record (namespaced keys, documented in docs/crraft.md)."""
        flat = [r for rs in cand.responses for r in rs]
        B = len(cand.prompts)
        m: dict[str, Any] = {f"reward/{k}": float(v.mean()) for k, v in cand.R_k.items()}
        m["reward/combined"] = float(cand.R.mean())
        kept = sel.kept
        m["reward/selected"] = float(np.nanmean(sel.reward)) if kept.any() else float("nan")
        m.update({f"judge/{k}_pass": v for k, v in cand.judge_rates.items()})
        m["select/choice"] = [int(i) for i in sel.index]  # per prompt: candidate k, -1 y_base, -2 skipped
        m["judge/y_base_pass"] = float(cand.base_passed.mean())
        m["kl/mean"] = float(cand.kl.mean())
        m["kl/max"] = float(cand.kl.max())
        m["kl/over_max"] = float((cand.kl > self.cfg.crraft.kl_max).mean())
        m["select/survivors"] = float(sel.survivors.mean())
        m["select/fallback"] = float((sel.index == FALLBACK).sum() / B)
        m["select/skipped"] = float((sel.index == SKIP).sum() / B)
        m["select/n"] = int(kept.sum())
        m["loss"] = upd["loss"]
        m["grad_norm"] = upd["grad_norm"]
        mon = self.cfg.monitor
        m.update(hack_metrics(flat, n=mon.ngram, top_closings=mon.top_closings,
                              signoff_pattern=self.signoff_pattern))
        return m

    def evaluate(self) -> dict[str, float]:
        """True metrics of the current policy (simulator only), under `true/...` keys."""
        if self.evaluator is None:
            return {}
        res = self.evaluator(self.policy)
        return {k if k.startswith("true/") else f"true/{k}": float(v) for k, v in res.items()}

    # -- the loop ------------------------------------------------------------------------------------
    def train(self, start: int = 0, on_iteration: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Run iterations start..iterations-1 (or `stop_after` of them); returns the last record.

        Iteration 0's record (`{"iteration": 0, "true/...": ...}`) holds the starting policy's true
        metrics; every record is appended to metrics.jsonl as soon as the iteration ends.
        """
        cfg = self.cfg
        n_iter = cfg.crraft.iterations
        if start == 0:
            base = {"iteration": 0, **self.evaluate()}
            if self.is_main:
                self.logger.log(base)
            if on_iteration:
                on_iteration(base)
        stop = n_iter if cfg.stop_after is None else min(n_iter, start + cfg.stop_after)
        record: dict[str, Any] = {}
        for t in range(start, stop):
            record = self.iteration(t)
            done = t + 1
            if done == n_iter or (cfg.eval.every and done % cfg.eval.every == 0):
                record.update(self.evaluate())
            if self.is_main:
                self.logger.log(record)
            log.info(
                "iteration %d/%d: R=%.3f kl=%.2f skipped=%.2f signoff=%.2f loss=%.3f",
                done, n_iter, record["reward/combined"], record["kl/mean"], record["select/skipped"],
                record["hack/signoff_rate"], record["loss"],
            )
            if on_iteration:
                on_iteration(record)
            if self.checkpoint_fn and cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == n_iter):
                self.checkpoint_fn(done)
        return record
