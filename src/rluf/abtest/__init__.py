"""Stage 5: A/B analysis (user-clustered delta method and bootstrap), sample size, simulated A/B tests."""

from rluf.abtest.analyze import AnalyzeConfig, analyze
from rluf.abtest.power import power
from rluf.abtest.stats import (
    confint_diff,
    confint_ratio,
    delta_compare,
    ratio_of_means,
    sample_size_per_arm,
    two_proportion_ztest,
    user_bootstrap,
    wilson_interval,
)

__all__ = [
    "AnalyzeConfig",
    "analyze",
    "power",
    "confint_diff",
    "confint_ratio",
    "delta_compare",
    "ratio_of_means",
    "sample_size_per_arm",
    "two_proportion_ztest",
    "user_bootstrap",
    "wilson_interval",
]


def simulate(*args, **kwargs):
    """Run an A/B test in the simulated deployment and analyse it (see rluf.abtest.simulated)."""
    from rluf.abtest.simulated import simulate as _simulate

    return _simulate(*args, **kwargs)
