import hashlib

from rluf.serve.arms import ArmAssigner, assignment_point


def test_assignment_point_is_the_documented_hash():
    # u = int(sha256("exp1\0alice")[:8], big-endian) / 2**64, computed here independently
    digest = hashlib.sha256(b"exp1\x00alice").hexdigest()
    expected = int(digest[:16], 16) / 2**64
    assert assignment_point("exp1", "alice") == expected
    assert 0.0 <= expected < 1.0


def test_arm_is_first_cumulative_share_above_u():
    arms = [("a", 0.2), ("b", 0.3), ("c", 0.5)]  # bounds 0.2, 0.5, 1.0
    assign = ArmAssigner("exp1", arms)
    for user in [f"u{i}" for i in range(200)]:
        u = assignment_point("exp1", user)
        expected = "a" if u < 0.2 else "b" if u < 0.5 else "c"
        assert assign(user) == expected


def test_sticky_across_instances_and_depends_on_experiment():
    users = [f"user-{i}" for i in range(500)]
    first = [ArmAssigner("exp1", [("c", 0.5), ("t", 0.5)])(u) for u in users]
    again = [ArmAssigner("exp1", [("c", 0.5), ("t", 0.5)])(u) for u in users]  # a "restart"
    other = [ArmAssigner("exp2", [("c", 0.5), ("t", 0.5)])(u) for u in users]
    assert first == again
    assert first != other  # a new experiment re-draws users


def test_shares_within_binomial_tolerance():
    n = 20_000
    assign = ArmAssigner("exp-shares", [("a", 0.1), ("b", 0.3), ("c", 0.6)])
    counts = {"a": 0, "b": 0, "c": 0}
    for i in range(n):
        counts[assign(f"user-{i}")] += 1
    for arm, share in [("a", 0.1), ("b", 0.3), ("c", 0.6)]:
        sd = (share * (1 - share) / n) ** 0.5  # binomial standard error of the observed share
        assert abs(counts[arm] / n - share) < 4 * sd, (arm, counts)
