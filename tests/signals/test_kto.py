"""The curated train file feeds TRL's KTOTrainer as it is (issue 3, section 2)."""

import copy

import pyarrow.parquet as pq
import pytest

from rluf.models import build_causal_lm, train_tokenizer
from rluf.signals import curate


@pytest.mark.slow
def test_kto_one_step_on_curated_train(ten_days, tmp_path):
    import torch
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    curate(ten_days, tmp_path / "cur", {"context": {"context_turns": 4}, "sample": {"target_rate": 0.4}})
    table = pq.read_table(tmp_path / "cur" / "train.parquet")
    ds = Dataset(table)  # the Parquet file as it is: prompt, completion, label + metadata
    texts = [m["content"] for row in table["prompt"].to_pylist() for m in row] + ["a b c"] * 5
    tok = train_tokenizer(texts, vocab_size=300)
    model = build_causal_lm(tok, preset="tiny", max_positions=128)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    n_pos = sum(table["label"].to_pylist())
    n_neg = table.num_rows - n_pos
    # TRL's advice: desirable_weight * n_desirable / (undesirable_weight * n_undesirable) in [1, 4/3]
    desirable_weight = n_neg / n_pos
    args = KTOConfig(
        output_dir=str(tmp_path / "kto"), per_device_train_batch_size=len(ds), max_steps=1, learning_rate=1e-2,
        desirable_weight=desirable_weight, undesirable_weight=1.0, report_to=[], max_length=128,
        logging_steps=1, save_strategy="no", use_cpu=True,
    )
    ref = copy.deepcopy(model)  # an in-memory model has no hub path for TRL to load the reference from
    trainer = KTOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    assert 1.0 <= desirable_weight * n_pos / n_neg <= 4 / 3
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "one KTO step must change the parameters"
