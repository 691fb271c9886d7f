"""Thread counts come from the CPUs the process may use and the ones other jobs keep busy."""

import os

import pytest

from rluf import threads


def _stat(rows):
    # user nice system idle iowait irq softirq steal
    return "cpu  0 0 0 0 0 0 0 0\n" + "".join(f"cpu{i} {u} 0 0 {idle} 0 0 0 0\n" for i, (u, idle) in enumerate(rows))


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == pytest.approx(1.5)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == pytest.approx(1.0)
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def test_quota_caps_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.5)
    assert threads.available_cpus() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.3)
    assert threads.available_cpus() == 1


def test_busy_cpus_reads_the_share_of_non_idle_time(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    samples = iter([_stat([(100, 100), (100, 100)]), _stat([(200, 100), (110, 190)])])
    monkeypatch.setattr(threads.time, "sleep", lambda s: stat.write_text(next(samples)))
    stat.write_text(next(samples))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    # cpu0 fully busy (100 of 100 ticks), cpu1 busy 10 of 100
    assert threads.busy_cpus(stat=stat) == pytest.approx(1.1)


@pytest.mark.parametrize(("cpus", "busy", "expected"),
                         [(2, 0.0, 2), (2, 0.4, 2), (2, 1.1, 1), (2, 2.0, 1), (8, 3.0, 5)])
def test_choose_threads(cpus, busy, expected):
    assert threads.choose_threads(cpus, busy) == expected


def test_environment_overrides(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("RLUF_NUM_THREADS", "1")
        assert threads.configure_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _train_steps(thread_counts: list[int]) -> bytes:
    """A Llama reward model of the default run's width, one AdamW step per entry of `thread_counts`, each on
    that many threads; returns its weights' bytes."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_labels=1, pad_token_id=0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(1)
    before = torch.get_num_threads()
    try:
        for n in thread_counts:
            torch.set_num_threads(n)
            ids = torch.randint(1, 512, (64, 64), generator=data)
            r = model(input_ids=ids).logits[:, 0]
            loss = -torch.nn.functional.logsigmoid(r[:32] - r[32:]).mean()  # Bradley-Terry
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(before)
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


def test_training_gives_the_same_weights_on_any_thread_count():
    # rluf sets MKL's strict reproducible mode on import: a stage may take a second core mid-training
    # (rluf.parallel.claim_free_cores) and a run repeats exactly on a busier or quieter machine.
    import rluf  # noqa: F401

    assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    one = _train_steps([1, 1, 1, 1])
    assert _train_steps([2, 2, 2, 2]) == one
    assert _train_steps([1, 1, 2, 2]) == one
