"""Speed levers of the loop, each measured alone on the default run's own models (a finished `rluf run` folder):
reward-model training steps and policy sampling, with 1 or 2 threads, fp32 or bf16 autocast, one process or
two side by side, and sampling with transformers' `generate` (what rluf used before its own decode loop).

    python benchmarks/levers.py --run runs/default [--steps 30] [--only sample] [--write]

Each setting runs in a fresh process (`python -c`), so thread counts and imports do not leak between them.
"2 processes" runs the same workload in two processes at once with one thread each and reports the time per
unit of work of the pair (how much the second core adds). With --write, writes benchmarks/results/levers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One reward-model training step: Bradley-Terry on 32 of the run's helpfulness pairs (64 tokens), as `rluf run`
# trains it. Prints seconds per step.
TRAIN = """
import sys, time, torch, numpy as np
run, steps, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(int(sys.argv[4]))
from rluf.rewards.backbone import load_backbone
from rluf.rewards.config import RewardConfig
from rluf.rewards.data import Encoder, read_pairs
from rluf.rewards.losses import bradley_terry_loss
from rluf.rewards.scorer import pad_right
cfg = RewardConfig(objective="helpfulness", model={"backbone": run + "/simulate/policy", "max_length": 64,
                   "tokenizer": run + "/simulate/policy"})
pairs = read_pairs(run + "/simulate/pairs/helpfulness.parquet")
model, tok, _ = load_backbone(cfg.model, [], seed=0)
enc = Encoder(tok, 64)
n = 32 * (steps + 3)
ch, rj = enc.encode_many(pairs.contexts[:n], pairs.chosen[:n]), enc.encode_many(pairs.contexts[:n], pairs.rejected[:n])
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
model.train()
def step(i):
    seqs = ch[32 * i: 32 * i + 32] + rj[32 * i: 32 * i + 32]
    ids, mask = pad_right(seqs, tok.pad_token_id)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        r = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
    loss = bradley_terry_loss(r[:32], r[32:])
    opt.zero_grad(); loss.backward(); opt.step()
for i in range(3): step(i)
t = time.perf_counter()
for i in range(3, 3 + steps): step(i)
print((time.perf_counter() - t) / steps)
"""

# Log-probs of answers with a real model's vocabulary: a "small" Llama with a 32,000-token vocabulary, 32
# contexts of ~120 tokens with 20-token answers. `response`: Policy.sequence_logprobs (the LM head on the answer
# positions only); `every`: the LM head and softmax on every position. Prints seconds per call, then peak MB.
LOGPROBS = """
import resource, sys, time, torch
mode, steps = sys.argv[3], int(sys.argv[2])
torch.set_num_threads(int(sys.argv[4]))
from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy
tok = train_tokenizer([f"word{i} other{i % 97} thing{i % 13}" for i in range(40000)], vocab_size=32000)
p = Policy(build_causal_lm(tok, "small"), tok, device="cpu")
ctx = [[{"role": "user", "content": " ".join(f"word{j}" for j in range(i, i + 120))}] for i in range(32)]
rsp = [" ".join(f"other{j}" for j in range(i, i + 20)) for i in range(32)]
def every():
    c, r = [p.encode_context(x) for x in ctx], p.encode_responses(rsp)
    ids, mask = p._left_pad([a + b for a, b in zip(c, r)])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logp = torch.log_softmax(p.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, :-1].float(), -1)
    tok_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]
    keep = torch.zeros_like(tok_logp)
    for i, x in enumerate(r):
        keep[i, ids.shape[1] - 1 - len(x):] = 1
    return (tok_logp * keep).sum(-1)
run = (lambda: p.sequence_logprobs(ctx, rsp, batch_size=32)) if mode == "response" else every
with torch.no_grad():
    run()
    t = time.perf_counter()
    for _ in range(steps):
        run()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, (time.perf_counter() - t) / steps)
"""

# Sampling: 48 new tokens for 64 contexts (8 questions x 8 answers) of the world's deployment questions, as
# CRRAFT and the evaluation draw them. Prints seconds per batch.
SAMPLE = """
import sys, time, torch
run, steps, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(int(sys.argv[4]))
from rluf.policy import Policy, Sampling, row_seed
from rluf.sim.world import World
world = World.load(run + "/simulate")
policy = Policy.from_pretrained(run + "/simulate/policy", device="cpu")
if dtype == "bf16":
    policy.model.to(torch.bfloat16)
if dtype == "int8":
    policy.model = torch.ao.quantization.quantize_dynamic(policy.model, {torch.nn.Linear}, dtype=torch.qint8)
if dtype == "hf_generate":  # the same batches and draws through transformers' generate (the same tokens)
    from rluf.policy import sampling_processors
    eos = policy.tokenizer.eos_token_id
    def decode(ids, mask, sampling, generators, copy_of, return_logprobs=False):
        ids, mask = ids[copy_of], mask[copy_of]
        out = policy.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=sampling.max_new_tokens,
                                    do_sample=False, logits_processor=sampling_processors(sampling, generators),
                                    pad_token_id=policy.tokenizer.pad_token_id, eos_token_id=eos)
        new = out[:, ids.shape[1]:]
        return new, (new == eos).any(1), None
    policy._decode = decode
ctx = [it["prompt"] for it in world.eval_set("deployment")[: 8 * (steps + 1)]]
s = Sampling(max_new_tokens=48)
policy.generate(ctx[:8], n=8, sampling=s, seeds=list(range(8)))
t = time.perf_counter()
for i in range(1, steps + 1):
    policy.generate(ctx[8 * i: 8 * i + 8], n=8, sampling=s, seeds=[row_seed(i, j) for j in range(8)])
print((time.perf_counter() - t) / steps)
"""


def measure(code: str, run: str, steps: int, dtype: str, threads: int, processes: int = 1) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RLUF_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    procs = [subprocess.Popen([sys.executable, "-c", code, run, str(steps), dtype, str(threads)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(processes)]
    outs = [float(p.communicate()[0].split()[-1]) for p in procs]
    return max(outs) / processes  # seconds per unit of work of the whole machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished `rluf run` folder (its simulate/ is used)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--only", choices=["train", "sample", "logprobs"], default=None)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/levers.json (other keys kept)")
    a = ap.parse_args()
    settings = [("fp32", 2, 1), ("fp32", 1, 1), ("fp32", 1, 2), ("bf16", 2, 1), ("bf16", 1, 2)]
    # the file's top-level load and step count describe the training and sampling workloads
    results = {} if a.only == "logprobs" else {"load_avg_at_start": os.getloadavg(), "cpus": os.cpu_count(),
                                               "steps": a.steps}
    sample_extra = [("int8", 2, 1), ("hf_generate", 2, 1), ("hf_generate", 1, 1), ("hf_generate", 1, 2)]
    for only, name, code, extra in (("train", "reward_train_step_s", TRAIN, []),
                                    ("sample", "sample_batch_s", SAMPLE, sample_extra)):
        if a.only not in (None, only):
            continue
        results[name] = {}
        for dtype, threads, processes in settings + extra:
            key = f"{dtype}, {threads} thread{'s' * (threads > 1)}, {processes} process{'es' * (processes > 1)}"
            t0 = time.time()
            results[name][key] = round(measure(code, a.run, a.steps, dtype, threads, processes), 4)
            print(f"{name:22} {key:36} {results[name][key]:.4f} s  ({time.time() - t0:.0f} s)", flush=True)
    if a.only in (None, "logprobs"):  # one thread, one process; the figure is seconds per call
        results["logprobs_32k_vocab"] = {"load_avg_at_start": os.getloadavg(), "calls": min(a.steps, 5)}
        for mode in ("response", "every"):
            out = subprocess.run([sys.executable, "-c", LOGPROBS, a.run, str(min(a.steps, 5)), mode, "1"], text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")},
                                 capture_output=True, check=True)
            peak_mb, secs = (float(x) for x in out.stdout.split()[-2:])
            results["logprobs_32k_vocab"][mode] = {"s": round(secs, 3), "peak_mb": round(peak_mb)}
            print(f"log-probs, 32k vocabulary, LM head on {mode:8} positions: {secs:.3f} s, peak {peak_mb:.0f} MB",
                  flush=True)
    print(json.dumps(results, indent=1))
    if a.write:
        out = ROOT / "benchmarks" / "results" / "levers.json"
        kept = json.loads(out.read_text()) if out.is_file() and a.only else {}
        out.write_text(json.dumps({**kept, **results}, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
