"""Sample size for an A/B test on a rare rate (`rluf abtest power`).

At the paper's natural Love rate (about 0.1% of responses) a +28% lift needs on the order of 10^5
responses per arm even before clustering; `design_effect` (reported by `rluf abtest analyze` on a previous
experiment: clustered variance / per-response variance) scales that up for users who see many responses.
"""

from __future__ import annotations

import math

from rluf.abtest.stats import sample_size_per_arm
from rluf.errors import ConfigError


def _check(name: str, value: float, low: float, high: float, example: str) -> None:
    if not low < value < high:
        raise ConfigError(f"{name} = {value}: must be strictly between {low} and {high}, e.g. {example}")


def power(
    base_rate: float,
    lift: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    design_effect: float = 1.0,
    responses_per_user: float | None = None,
) -> dict[str, float | int | None]:
    """Responses (and users) per arm to detect a relative `lift` over `base_rate` with a two-sided test.

    ``responses_per_arm`` is the plain two-proportion formula (see stats.sample_size_per_arm);
    ``responses_per_arm_clustered`` multiplies it by `design_effect`; ``users_per_arm`` divides that by
    `responses_per_user` when given.
    """
    _check("base_rate", base_rate, 0.0, 1.0, "0.001")
    _check("alpha", alpha, 0.0, 1.0, "0.05")
    _check("power", power, 0.0, 1.0, "0.8")
    if lift <= -1 or lift == 0:
        raise ConfigError(f"lift = {lift}: must be a relative change other than 0 and above -1, e.g. 0.28 for +28%")
    if base_rate * (1 + lift) >= 1:
        raise ConfigError(
            f"base_rate * (1 + lift) = {base_rate * (1 + lift):.4g}: the treatment rate must stay below 1"
        )
    if design_effect < 1:
        raise ConfigError(f"design_effect = {design_effect}: must be >= 1 (1 means responses are independent)")
    if responses_per_user is not None and responses_per_user < 1:
        raise ConfigError(f"responses_per_user = {responses_per_user}: must be >= 1")
    n = sample_size_per_arm(base_rate, lift, alpha, power)
    n_clustered = math.ceil(n * design_effect)
    users = math.ceil(n_clustered / responses_per_user) if responses_per_user else None
    return {
        "base_rate": base_rate,
        "treatment_rate": base_rate * (1 + lift),
        "lift": lift,
        "alpha": alpha,
        "power": power,
        "design_effect": design_effect,
        "responses_per_arm": n,
        "responses_per_arm_clustered": n_clustered,
        "responses_total": 2 * n_clustered,
        "users_per_arm": users,
    }
