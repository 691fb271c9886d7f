"""The `rluf curate` config: one pydantic model, grouped by pipeline step. Mirrors src/rluf/configs/curate.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rluf.config import StrictModel


class SignalSection(StrictModel):
    rule: str = "love"
    """Label rule over reaction types: names joined by `and`, `or`, `not`, parentheses (e.g.
    `love or like and not dislike`), or counts compared (`count(+1) > count(-1)`: net positive). Parsed, never
    eval'd. `--signal` on the command line overrides it."""
    unreacted: Literal["label", "drop"] = "label"
    """Assistant messages that received none of the rule's reaction types: `label` gives them the rule's value
    (false for `love`); `drop` leaves them out (e.g. learn `count(+1) > count(-1)` among voted replies only)."""


class ContextSection(StrictModel):
    context_turns: int = 10
    """Context = the last `context_turns` messages before the assistant message (RLUF: 10-turn context)."""
    renamed_keys = {"k": "context_turns"}

    @model_validator(mode="after")
    def _context_turns_positive(self) -> ContextSection:
        if self.context_turns < 1:
            raise ValueError(f"context.context_turns must be >= 1 (got {self.context_turns}); "
                             "set context_turns: 10 for the RLUF 10-turn context")
        return self


class RateFilter(StrictModel):
    enabled: bool = True
    method: Literal["mixture", "betabinomial", "robust_z"] = "mixture"
    """mixture: each type's counts as normal users' beta-binomial plus an adversarial component, fitted by EM
    with the adversaries' share free; betabinomial: a user's count of each reaction type is tested against a
    beta-binomial fitted to the users (its first fit leaves out a fixed `trim` share); robust_z: the robust
    z-score of the rate."""
    alpha: float = Field(0.01, gt=0, lt=1)
    """betabinomial: the chance of flagging any normal user at all (Bonferroni over users x types)."""
    trim: float = Field(0.05, ge=0, lt=1)
    """betabinomial: the first fit leaves out each type's top `trim` share of rates (an upper bound on the share
    of adversarial users), so that they cannot widen the null that should expose them."""
    posterior: float = Field(0.5, gt=0, lt=1)
    """mixture: flag a user whose posterior probability of the adversarial component exceeds this."""
    min_fold: float = Field(10.0, gt=1)
    """mixture: adversaries react at least this many times the normal users' mean rate (what tells the
    components apart; their share is fitted, not assumed)."""
    z_threshold: float = 3.5
    """robust_z: flag a user whose per-type rate has z = (x - median) / (1.4826 MAD) above this..."""
    min_reactions: int = Field(5, ge=1)
    """robust_z: ...and who left at least this many reactions of that type (rare types make z-scores explode).
    The beta-binomial test needs no such floor: it weighs a count against the messages behind it."""


class BurstFilter(StrictModel):
    enabled: bool = True
    max_account_age_hours: float = 48.0
    """A reaction counts as from a new account if the account is at most this old when it reacts."""
    window_minutes: float = 1440.0
    """Reactions are bucketed into windows of this length."""
    dormant_days: float = Field(14.0, ge=0)
    """An account first seen in the logs at least this long after they begin is new from its first message,
    whatever its creation date (bought or woken-up accounts)."""
    min_accounts: int = 10
    """A burst window has at least this many distinct new accounts reacting (all of them are flagged)..."""
    z_threshold: float = 5.0
    """...and a robust z-score of that count, over all windows with new-account reactions, above this."""


class TooFastFilter(StrictModel):
    enabled: bool = True
    min_seconds: float = 1.0
    """Reactions sooner than this after the message (or before it) are removed (nobody reads that fast)."""


class SpamFilter(StrictModel):
    enabled: bool = True
    min_repeats: int = 10
    """A user who sends the same user-message text at least this many times is flagged as spam..."""
    near_duplicates: bool = True
    """...or this many near-duplicates (the same text once case, punctuation and capitalised words
    such as names are masked) that make up at least `min_share` of their messages (templates with a changing
    name)."""
    min_share: float = Field(0.5, gt=0, le=1)


class FiltersSection(StrictModel):
    rate: RateFilter = RateFilter()
    burst: BurstFilter = BurstFilter()
    too_fast: TooFastFilter = TooFastFilter()
    spam: SpamFilter = SpamFilter()
    drop_flagged_rows: bool = True
    """Also drop the assistant messages of flagged users' conversations (not only their reactions)."""
    warn_removed_share: float = Field(0.9, gt=0, le=1)
    """Warn (log and report) when one filter, or all together, removes at least this share of a reaction type."""


class DedupSection(StrictModel):
    enabled: bool = True
    aggregate: Literal["any", "majority"] = "any"
    """Label of a de-duplicated (context, completion) pair: positive if any copy / most copies were."""


class PiiSection(StrictModel):
    enabled: bool = False
    """Replace emails, phone numbers and card-like numbers in prompts and completions by placeholders."""


class SplitSection(StrictModel):
    method: Literal["time", "conversation", "user"] = "time"
    """time: later conversations are validation and test (RLUF). conversation / user: a seeded random split of
    whole conversations / whole users (a hash of the id), in the same proportions, for logs whose time order
    says little (e.g. a one-off export) or when users must not span splits."""
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    """Conversations are ordered by start time; the last test_fraction go to test, the validation_fraction
    before them to validation. Conversations straddling a cut-off are dropped, so val/test are strictly later."""
    user_disjoint: bool = False
    """time split only: also assign users to splits (by a hash, in the same proportions) so no user appears in
    two splits; rows whose user belongs to another split than their time are dropped (`other_user`). With few
    users per period this can empty a split: `method: user` keeps every row."""
    min_positives: int = Field(10, ge=1)
    """Warn (log and manifest `warnings`) when a split holds fewer positives than this: its AUROC means little."""

    @model_validator(mode="after")
    def _fractions(self) -> SplitSection:
        if self.user_disjoint and self.method != "time":
            raise ValueError(f"split.user_disjoint applies to the time split only (method is {self.method!r}); "
                             "method: user already keeps every user in one split")
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"split.validation_fraction + split.test_fraction must be < 1 (got "
                f"{self.validation_fraction} + {self.test_fraction}); leave room for train, e.g. 0.1 + 0.1"
            )
        return self


class SampleSection(StrictModel):
    target_rate: float | Literal["natural"] = 0.10
    """Positive rate of the resampled train split (RLUF: Love upsampled from ~0.1% to 10%), in (0, 1); or
    `natural`: no resampling. Resampling only raises a rare class: when the natural rate is already at or above
    the target, train keeps its natural rate (logged), it never discards positives."""
    upsample_positives: int = Field(1, ge=1)
    """Copy each train positive this many times (each copy weighs 1/copies); negatives are then downsampled."""
    eval_max_negatives: int | None = Field(20_000, ge=1)
    """Validation/test keep every positive and about this many negatives (a seeded hash draw with probability
    eval_max_negatives / negatives of the split); sampled classes are reweighted by (rows of the class in the
    split) / (rows of the class written), so the weighted positive rate is the split's natural rate. The later
    splits keep the natural ~0.1% rate, so uncapped they are almost all negatives (~1M rows at 10M events);
    20000 is twice the P[Love] trainer's `train.eval_max_negatives`, which scores all positives and 10000
    reweighted negatives. null keeps every row."""
    eval_max_rows: int | None = Field(None, ge=1)
    """Also cap validation/test at this many rows by uniform sampling (natural rate kept); null: no such cap."""
    seed: int = 0
    hash: Literal["native", "md5"] = "native"
    """Hash of the draws (resampling, user-disjoint splits). native: the engine's own, fastest, but it differs
    between engines, so DuckDB and Spark keep different (equally valid) rows. md5: the same rows on every engine
    (MD5 of seed and id, compared as hex), for a pipeline that must give identical files on DuckDB and in the
    warehouse."""

    @model_validator(mode="after")
    def _rate(self) -> SampleSection:
        if self.target_rate == "natural":
            return self
        if not 0 < self.target_rate < 1:
            raise ValueError(
                f"sample.target_rate must be strictly between 0 and 1 (got {self.target_rate}); "
                "RLUF uses 0.10"
            )
        return self


class EngineSection(StrictModel):
    backend: Literal["duckdb"] = "duckdb"
    """Ibis backend. DuckDB in-process here; `rluf.signals.engine.connect` accepts any Ibis backend object."""
    memory_limit: str = "1GB"
    """DuckDB memory_limit; beyond it DuckDB spills to temp_directory."""
    threads: int | None = None
    """DuckDB threads (null = all cores)."""
    temp_directory: str | None = None


class CurateConfig(StrictModel):
    signal: SignalSection = SignalSection()
    context: ContextSection = ContextSection()
    filters: FiltersSection = FiltersSection()
    dedup: DedupSection = DedupSection()
    pii: PiiSection = PiiSection()
    split: SplitSection = SplitSection()
    sample: SampleSection = SampleSection()
    engine: EngineSection = EngineSection()
