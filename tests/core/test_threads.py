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
