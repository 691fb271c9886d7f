"""`--set` overrides that shrink a run on your own logs to a test's size: two CRRAFT iterations, tiny reward
models, short answers, few bootstrap draws (tests/run/test_run_real.py, tests/serve/test_real_loop.py)."""

TINY_RUN = [
    "optimize.crraft.iterations=2",
    "optimize.crraft.batch_prompts=4",
    "optimize.crraft.num_candidates=2",
    "optimize.crraft.sampling.max_new_tokens=16",
    "evaluate.prompts.n_prompts=12",
    "evaluate.bootstrap_reps=100",
    "evaluate.generation.max_new_tokens=16",
    *[f"reward_{k}.{v}" for k in ("love", "helpfulness", "safety")
      for v in ("train.epochs=1", "model.backbone=tiny", "model.max_length=64")],
    "curate.split.method=conversation",
    "curate.split.test_fraction=0.3",
    "curate.sample.target_rate=natural",
]
