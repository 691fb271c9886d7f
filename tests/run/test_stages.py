from rluf.run.stages import MARKER, run_stage


def test_stage_skipped_when_fingerprint_matches_and_rerun_downstream_when_upstream_changes(tmp_path):
    calls = []

    def make(name):
        def fn(d):
            calls.append(name)
            (d / "out.txt").write_text(name)
            return {"n": len(calls)}

        return fn

    fps: dict[str, str] = {}
    run_stage(tmp_path, "a", {"x": 1}, [], make("a"), fps)
    run_stage(tmp_path, "b", {"y": 1}, ["a"], make("b"), fps)
    assert calls == ["a", "b"]

    fps = {}
    s = run_stage(tmp_path, "a", {"x": 1}, [], make("a"), fps)
    run_stage(tmp_path, "b", {"y": 1}, ["a"], make("b"), fps)
    assert calls == ["a", "b"] and s["n"] == 1  # both skipped, summary restored

    fps = {}
    run_stage(tmp_path, "a", {"x": 2}, [], make("a"), fps)  # changed config
    run_stage(tmp_path, "b", {"y": 1}, ["a"], make("b"), fps)  # same config, changed input
    assert calls == ["a", "b", "a", "b"]


def test_half_written_stage_runs_again(tmp_path):
    calls = []
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "partial.bin").write_text("x")  # a killed stage: outputs but no marker

    def fn(d):
        calls.append(1)
        return {}

    run_stage(tmp_path, "a", {}, [], fn, {})
    assert calls == [1]
    assert (tmp_path / "a" / MARKER).is_file() and not (tmp_path / "a" / "partial.bin").exists()
