"""A tiny CRRAFT run, launched by tests/optimize/test_ddp.py alone or under `torchrun --nproc_per_node N`.

    python ddp_worker.py POLICY_DIR PROMPT_FILE OUT ITERATIONS BATCH_PROMPTS [--resume] [--die-after-iteration T]

Each process appends the pool indices it generated for to OUT/shards.jsonl (one line per iteration and rank),
so the test can check that every prompt of a batch is processed exactly once. With --die-after-iteration,
rank 1 (or the only process) kills itself with SIGKILL right after that iteration's checkpoint.
"""

import json
import os
import signal
import sys
from pathlib import Path

from optimize_helpers import ShareOfA, tiny_config

from rluf.optimize import optimize
from rluf.optimize.crraft import CRRAFT

policy_dir, prompt_file, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
iterations, batch = int(sys.argv[4]), int(sys.argv[5])
resume = "--resume" in sys.argv
die_after = int(sys.argv[sys.argv.index("--die-after-iteration") + 1]) if "--die-after-iteration" in sys.argv else None
rank = int(os.environ.get("RANK", 0))
record_gather = CRRAFT._gather


def gather_and_record(self, local):
    with open(out / "shards.jsonl", "a") as f:
        f.write(json.dumps({"rank": self.rank, "world": self.world, "ids": [int(i) for i in local.prompt_ids]}) + "\n")
    return record_gather(self, local)


CRRAFT._gather = gather_and_record


def maybe_die(record):
    last_rank = min(1, int(os.environ.get("WORLD_SIZE", 1)) - 1)
    if die_after is not None and record["iteration"] == die_after and rank == last_rank:
        os.kill(os.getpid(), signal.SIGKILL)


cfg = tiny_config(policy_dir, prompt_file, iterations=iterations, batch_prompts=batch, num_candidates=2,
                  drop_cut_off=False, sampling=dict(max_new_tokens=6)).model_copy(update={"checkpoint_every": 1})
out.mkdir(parents=True, exist_ok=True)
optimize(cfg, out, resume=resume, objectives={"a": ShareOfA()}, on_iteration=maybe_die)
