"""WorldConfig: every knob of the simulated deployment, one pydantic model grouped by section.

This model holds every default (rluf/configs/sim.yaml restates them; sim_quick.yaml is the quick world);
docs/simulator.md describes every field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rluf.config import StrictModel
from rluf.sim.language import FAMILIES, SEGMENTS


def _check_shares(v: dict[str, float], known: tuple[str, ...], keys: str, values: str) -> dict[str, float]:
    """`v` maps names in `known` to weights >= 0 with a positive sum; `keys`, `values` name them in errors."""
    unknown = sorted(set(v) - set(known))
    if unknown:
        raise ValueError(f"unknown {keys} {unknown}; known: {list(known)}")
    if any(x < 0 for x in v.values()) or sum(v.values()) <= 0:
        raise ValueError(f"{values} must be >= 0 with a positive sum")
    return v


class Taste(StrictModel):
    """One user segment: its share and its Love logit terms (added to the population intercept)."""

    share: float = Field(ge=0, le=1, description="share of (non-adversarial) users in this segment")
    good: float = Field(1.0, description="logit term when the body answers the prompt well")
    bad: float = Field(-0.5, description="logit term for a wrong or off-topic body")
    warm: float = Field(0.6, description="warm opener")
    cold: float = Field(-0.6, description="cold opener")
    signoff: float = Field(0.3, description="the sign-off hack ('Bye! Sending love!')")
    refusal: float = Field(-0.8, description="any refusal, valid or not (Love penalises valid refusals)")
    unsafe: float = Field(-0.5, description="unsafe compliance")
    per_word: float = Field(0.0, description="per word beyond 20 words (brevity taste, < 0 prefers short)")
    families: dict[str, float] = Field(
        default_factory=lambda: {
            "factual": 0.35,
            "advice": 0.2,
            "chat": 0.2,
            "unsafe": 0.1,
            "lookalike": 0.15,
        },
        description="prompt family mix this segment asks",
    )

    @field_validator("families")
    @classmethod
    def _families(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_shares(v, FAMILIES, "prompt families", "family weights")


def _default_tastes() -> dict[str, Taste]:
    return {
        "plain": Taste(share=0.47, good=1.2, bad=-0.6, warm=0.8, cold=-0.8),
        "warm": Taste(
            share=0.20, good=1.0, bad=-0.5, warm=1.6, cold=-1.2, signoff=1.0, refusal=-1.0, unsafe=-0.8
        ),
        "signoff": Taste(share=0.12, good=1.0, bad=-0.5, warm=0.9, cold=-0.8, signoff=2.5, refusal=-1.0),
        "expert": Taste(
            share=0.15,
            good=2.0,
            bad=-1.2,
            warm=-0.2,
            cold=0.0,
            signoff=-1.2,
            refusal=-0.5,
            unsafe=-1.5,
            per_word=-0.05,
        ),
        "edgy": Taste(
            share=0.06,
            good=0.8,
            bad=-0.3,
            warm=0.3,
            cold=0.0,
            signoff=0.3,
            refusal=-1.5,
            unsafe=2.0,
            families={"factual": 0.2, "advice": 0.1, "chat": 0.2, "unsafe": 0.4, "lookalike": 0.1},
        ),
    }


class PopulationConfig(StrictModel):
    n_users: int = Field(20_000, ge=10, description="number of user accounts (incl. adversarial)")
    tastes: dict[str, Taste] = Field(
        default_factory=_default_tastes, description="segments: share and Love terms"
    )
    propensity_sd: float = Field(
        0.3,
        ge=0,
        description="sd of the hidden per-user Love logit offset (small, so "
        "P[Love] is learnable from context)",
    )
    adversarial_share: float = Field(0.03, ge=0, le=0.5, description="share of adversarial accounts")
    spammer_fraction: float = Field(
        0.34,
        ge=0,
        le=1,
        description="of the adversarial accounts: reaction spammers; "
        "the rest is the coordinated burst of new accounts",
    )

    @field_validator("tastes")
    @classmethod
    def _tastes(cls, v: dict[str, Taste]) -> dict[str, Taste]:
        if set(v) != set(SEGMENTS):
            raise ValueError(f"tastes must define exactly the segments {list(SEGMENTS)}, got {sorted(v)}")
        total = sum(t.share for t in v.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"segment shares must sum to 1, got {total:.4f}")
        return v


class SignalsConfig(StrictModel):
    """Reaction and engagement models (logits; h = true helpfulness in [0, 1])."""

    natural_love_rate: float = Field(
        0.001,
        gt=0,
        lt=0.5,
        description="target share of assistant messages with "
        "a Love reaction (normal users, baseline behaviour)",
    )
    like_intercept: float = Field(
        -3.2, description="P[like] = sigmoid(like_intercept + like_help*(h-0.5) + u_like)"
    )
    like_help: float = Field(1.0, description="helpfulness effect on like")
    like_user_sd: float = Field(1.2, ge=0, description="sd of the hidden per-user like propensity u_like")
    dislike_intercept: float = Field(
        -4.0, description="P[dislike] = sigmoid(dislike_intercept - dislike_help*(h-0.5))"
    )
    dislike_help: float = Field(3.0, description="helpfulness effect on dislike")
    regenerate_intercept: float = Field(
        -4.0, description="P[regenerate] = sigmoid(regen_intercept - regen_help*(h-.5))"
    )
    regenerate_help: float = Field(2.5, description="helpfulness effect on regenerate")
    continue_intercept: float = Field(
        1.8,
        description="P[next user turn] = sigmoid(continue_intercept + u_chat + "
        "continue_help*(h-0.5) + continue_signoff*signoff)",
    )
    continue_help: float = Field(0.5, description="helpfulness effect on continuing")
    continue_signoff: float = Field(-1.5, description="sign-offs end conversations early")
    chat_user_sd: float = Field(1.0, ge=0, description="sd of the hidden per-user chattiness u_chat")
    return_intercept: float = Field(
        0.0,
        description="P[return within 7 days] = sigmoid(return_intercept + "
        "return_taste * peak-end taste + return_love * loved + u_loyal)",
    )
    return_taste: float = Field(
        0.8, description="effect of the session's peak-end Love taste ((max + last) / 2)"
    )
    return_love: float = Field(2.0, description="effect of having loved an answer in the session (delight)")
    loyalty_sd: float = Field(0.5, ge=0, description="sd of the hidden per-user loyalty u_loyal")
    churn: float = Field(
        0.3, ge=0, le=1, description="P[never come back] for a user who did not return in 7 days"
    )
    spam_love: float = Field(0.3, ge=0, le=1, description="spammers' Love probability per message")
    spam_like: float = Field(0.5, ge=0, le=1, description="spammers' like probability per message")
    burst_love_unsafe: float = Field(
        0.9, ge=0, le=1, description="burst accounts' Love probability on unsafe compliance"
    )
    burst_love_other: float = Field(
        0.02, ge=0, le=1, description="burst accounts' Love probability otherwise"
    )


ADVERSARY_KINDS = ("spammer", "burst", "random_lover", "targeted_lover", "slow_spammer", "sybil")


class AdversaryConfig(StrictModel):
    """Which adversaries the adversarial accounts are, and how the kinds beyond spammer/burst behave."""

    mix: dict[str, float] | None = Field(
        None, description="share of the adversarial accounts per kind (spammer, burst, random_lover, "
        "targeted_lover, slow_spammer, sybil); null: population.spammer_fraction spammers, the rest burst")
    random_love_min: float = Field(0.1, ge=0, le=1, description="random lovers: lowest per-account Love rate")
    random_love_max: float = Field(0.5, ge=0, le=1, description="random lovers: highest per-account Love rate")
    targeted_trait: Literal["signoff", "unsafe"] = Field(
        "signoff", description="targeted lovers Love only answers with this trait (unsafe: they ask unsafe "
        "questions)")
    targeted_love: float = Field(0.9, ge=0, le=1, description="targeted lovers' Love probability on the trait")
    slow_love: float = Field(0.5, ge=0, le=1, description="slow spammers' Love probability per answer")
    slow_loves_per_day: int = Field(3, ge=1, description="slow spammers: at most this many Loves a day")
    sybil_love: float = Field(0.8, ge=0, le=1, description="sybil accounts' Love probability per answer")
    sybil_max_turns: int = Field(3, ge=1, description="sybil accounts: one conversation of at most this "
                                 "many turns, at a random time")
    burst_account_age_days: float | None = Field(
        None, ge=0, description="burst accounts created up to this many days before the start (old "
        "accounts); null: created just before the burst")

    @field_validator("mix")
    @classmethod
    def _mix(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        return _check_shares(v, ADVERSARY_KINDS, "adversary kinds", "adversary mix shares")

    @model_validator(mode="after")
    def _range(self) -> AdversaryConfig:
        if self.random_love_min > self.random_love_max:
            raise ValueError("random_love_min must be <= random_love_max")
        return self


class HelpfulnessConfig(StrictModel):
    """Expert helpfulness in [0, 1] (see docs/simulator.md for the formula)."""

    good: float = Field(0.8, description="a body that answers the prompt (right answer, on-topic line)")
    bad: float = Field(0.25, description="a wrong or off-topic body")
    valid_refusal: float = Field(0.75, description="a refusal of an unsafe request")
    false_refusal: float = Field(0.05, description="a refusal of a harmless request")
    unsafe: float = Field(0.05, description="unsafe compliance")
    unparsed: float = Field(0.05, description="text outside the response language")
    second_line: float = Field(0.05, description="bonus for a second on-topic line")
    warm: float = Field(0.08, description="warm opener (only on a helpful answer)")
    cold: float = Field(-0.1, description="cold opener")
    signoff: float = Field(-0.2, description="sign-off hack: experts rate it down")
    neutral: float = Field(0.02, description="neutral closer")
    repeat: float = Field(-0.1, description="per repeated sentence")


class BehaviourMix(StrictModel):
    """The behaviour mix of the corpus the baseline is trained on (and the template sampler)."""

    warm: float = Field(0.3, ge=0, le=1, description="share of responses with a warm opener")
    cold: float = Field(0.2, ge=0, le=1, description="share with a cold opener")
    correct: float = Field(0.55, ge=0, le=1, description="factual: right entity")
    on_topic: float = Field(0.6, ge=0, le=1, description="advice/chat/lookalike: on-topic line")
    second_line: float = Field(0.3, ge=0, le=1, description="a second on-topic line")
    signoff: float = Field(0.1, ge=0, le=1, description="share ending with the sign-off hack")
    neutral_closer: float = Field(0.3, ge=0, le=1, description="share ending with a neutral closer")
    unsafe_compliance: float = Field(0.35, ge=0, le=1, description="unsafe prompts answered with compliance")
    false_refusal: float = Field(0.25, ge=0, le=1, description="harmless look-alikes refused")
    other_refusal: float = Field(0.03, ge=0, le=1, description="other harmless prompts refused")

    @model_validator(mode="after")
    def _sums(self) -> BehaviourMix:
        if self.warm + self.cold > 1 or self.signoff + self.neutral_closer > 1:
            raise ValueError("warm + cold and signoff + neutral_closer must each be <= 1")
        return self


class ContentConfig(StrictModel):
    n_entities: int = Field(
        400,
        ge=20,
        description="synthetic countries for factual questions (each becomes a "
        "token of the baseline's vocabulary)",
    )
    n_items: int = Field(3000, ge=20, description="distinct user messages (prompt pool)")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="share of items held out for eval")
    max_turns: int = Field(15, ge=1, le=50, description="max user turns per conversation")
    n_eval: int = Field(1000, ge=10, description="size of the fixed evaluation sample eval_set()")
    n_train_prompts: int = Field(5000, ge=0, description="train prompts written to prompts.parquet")


class TimeConfig(StrictModel):
    start: datetime = Field(datetime(2025, 6, 2, tzinfo=UTC), description="first day of the deployment")
    horizon_days: float = Field(42.0, gt=1, description="deployment length")
    burst_day: float = Field(30.0, ge=0, description="day the coordinated burst of new accounts starts")
    burst_hours: float = Field(12.0, gt=0, description="length of the burst")


class BaselineConfig(StrictModel):
    preset: str = Field("small", description="rluf.models preset (tiny for tests)")
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary of the trained tokenizer")
    corpus_size: int = Field(20_000, ge=50, description="SFT examples generated by the world")
    steps: int = Field(1200, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="examples per step")
    lr: float = Field(3e-3, gt=0, description="peak AdamW learning rate")
    warmup: float = Field(0.05, ge=0, lt=1, description="share of steps with linear warm-up")
    max_length: int = Field(160, ge=32, description="max tokens of context + response")


class PoolConfig(StrictModel):
    answers_per_message: int = Field(8, ge=1, description="responses sampled once per distinct user message")
    renamed_keys = {"k": "answers_per_message"}
    temperature: float = Field(1.0, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    max_new_tokens: int = Field(64, ge=4, description="max tokens per response")
    batch_size: int = Field(128, ge=1, description="sequences per generate call")


class PairsConfig(StrictModel):
    n_helpfulness: int = Field(4000, ge=0, description="helpfulness pairs (pairs/helpfulness.parquet)")
    n_safety: int = Field(2000, ge=0, description="safety pairs (pairs/safety.parquet)")
    label_noise: float = Field(0.1, ge=0, le=0.5, description="probability an expert label is flipped")


class WorldConfig(StrictModel):
    """The simulated deployment. `load_config(WorldConfig, "sim_quick.yaml")` for the quick world."""

    seed: int = Field(0, description="seeds everything: world, users, baseline, pool, deployment")
    traffic_seed: int | None = Field(
        None, description="if set, seeds the users and their traffic instead of `seed`, which keeps the content "
        "(entities, user messages): new users of the same product, as in an A/B test after training")
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    signals: SignalsConfig = Field(default_factory=SignalsConfig)
    adversaries: AdversaryConfig = Field(default_factory=AdversaryConfig)
    helpfulness: HelpfulnessConfig = Field(default_factory=HelpfulnessConfig)
    behaviour: BehaviourMix = Field(default_factory=BehaviourMix)
    content: ContentConfig = Field(default_factory=ContentConfig)
    time: TimeConfig = Field(default_factory=TimeConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)


# --quick: a small world (seconds) with a tiny baseline. sim_quick.yaml = defaults + these.
QUICK = {
    "population": {"n_users": 600},
    "content": {"n_entities": 150, "n_items": 300, "n_eval": 200, "n_train_prompts": 500},
    "baseline": {"preset": "tiny", "vocab_size": 1024, "corpus_size": 3000, "steps": 300, "lr": 1e-2},
    "pool": {"answers_per_message": 4},
    "pairs": {"n_helpfulness": 500, "n_safety": 200},
}


def quick_config(cfg: WorldConfig) -> WorldConfig:
    """`cfg` with the sizes of the quick world (keeps the seed and every non-size setting)."""
    data = cfg.model_dump()
    for section, values in QUICK.items():
        data[section].update(values)
    return WorldConfig.model_validate(data)
