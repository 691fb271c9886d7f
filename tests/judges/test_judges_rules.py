import numpy as np
import pytest

from rluf.errors import ConfigError
from rluf.judges import (
    DegenerateJudge,
    ExactAnswerJudge,
    FalseRefusalJudge,
    Item,
    LengthJudge,
    MixtureOfJudges,
    ModelJudge,
    RegexJudge,
    build_judges,
    make_items,
    normalize_answer,
)
from rluf.judges.config import LengthJudgeConfig, ModelJudgeConfig, RegexJudgeConfig

CTX = [{"role": "user", "content": "What is the capital of France?"}]


def items(*responses, **meta):
    return [Item(CTX, r, dict(meta)) for r in responses]


def test_regex_judge_default_forbids_signoffs():
    v = RegexJudge().judge(items("Paris. Bye! Sending Love!", "Paris.", "Paris, goodbye"))
    assert [x.passed for x in v] == [False, True, False]
    assert "forbidden pattern" in v[0].reason
    custom = RegexJudge("no_stop", [r"\bstop\b"]).judge(items("STOP now", "fine"))
    assert [x.passed for x in custom] == [False, True]


def test_length_judge_bounds():
    v = LengthJudge(min_words=2, max_words=4).judge(items("one", "one two", "a b c d e"))
    assert [x.passed for x in v] == [False, True, False]
    assert "fewer than min_words=2" in v[0].reason and "more than max_words=4" in v[2].reason
    with pytest.raises(ValueError, match="min_words <= max_words"):
        LengthJudge(min_words=5, max_words=2)


def test_exact_answer_judge_only_with_reference():
    assert normalize_answer("The  Paris!") == "paris"
    j = ExactAnswerJudge()
    v = j.judge(items("It is Paris.", "It is Lyon.", "Parisian food", reference="Paris"))
    assert [x.passed for x in v] == [True, False, False]  # whole words only
    assert j.judge(items("anything"))[0].passed  # no reference -> no constraint
    assert not ExactAnswerJudge(mode="exact").judge(items("It is Paris.", reference="Paris"))[0].passed
    assert ExactAnswerJudge(mode="exact").judge(items("paris", reference="Paris"))[0].passed


def test_degenerate_judge():
    v = DegenerateJudge(ngram=2, max_repeats=2).judge(
        items("", "love love love love love love love love love", "a b a b a b", "A fine, varied answer here.")
    )
    assert [x.passed for x in v] == [False, False, False, True]
    assert v[0].reason == "empty response"
    assert "distinct words" in v[1].reason
    assert "'a b' repeated 3 times" in v[2].reason


class FixedScorer:
    def __init__(self, values):
        self.values = np.asarray(values, float)

    def score(self, contexts, responses):
        assert len(contexts) == len(responses) == len(self.values)
        return self.values


def test_model_judge_threshold_both_sides():
    it = items("a", "b", "c")
    v = ModelJudge(FixedScorer([-1.0, 0.0, 2.0]), threshold=0.0).judge(it)
    assert [x.passed for x in v] == [False, True, True]
    assert "below threshold 0.0" in v[0].reason
    v = ModelJudge(FixedScorer([-1.0, 0.0, 2.0]), name="harm", threshold=0.5, pass_if="below").judge(it)
    assert [x.passed for x in v] == [True, True, False]


def test_false_refusal_judge_regex_and_metadata():
    j = FalseRefusalJudge()
    refusal = "I'm sorry, but I can't help with that."
    v = j.judge([Item(CTX, refusal, {}), Item(CTX, refusal, {"must_refuse": True}), Item(CTX, "Sure: Paris.", {})])
    assert [x.passed for x in v] == [False, True, True]
    # with a refusal classifier: score > threshold is a refusal
    v = FalseRefusalJudge(scorer=FixedScorer([0.9, 0.1]), threshold=0.5).judge(items("x", "y"))
    assert [x.passed for x in v] == [False, True]


def test_mixture_all_must_pass_and_pass_rates():
    moj = MixtureOfJudges([LengthJudge(min_words=2, max_words=10), RegexJudge()])
    res = moj.judge(make_items([CTX] * 4, ["Paris.", "It is Paris.", "It is Paris. Bye!", "Paris. Sending love"]))
    assert res.passed.tolist() == [False, True, False, False]
    rates = res.pass_rates()
    assert rates == {"length": 0.75, "signoff": 0.5, "all": 0.25}
    assert res.reasons(0) == ["length: 1 words, fewer than min_words=2"]
    assert MixtureOfJudges().judge(items("x")).passed.tolist() == [True]
    with pytest.raises(ValueError, match="unique"):
        MixtureOfJudges([RegexJudge(), RegexJudge()])


def test_build_judges_from_config():
    moj = build_judges(
        [LengthJudgeConfig(max_words=3), ModelJudgeConfig(scorer="safety", threshold=0.0), RegexJudgeConfig()],
        {"safety": FixedScorer([1.0, -1.0])},
    )
    assert moj.names == ["length", "safety", "signoff"]
    assert moj.judge(items("ok then", "ok then")).passed.tolist() == [True, False]
    with pytest.raises(ConfigError, match="scorer 'love' is not a configured objective"):
        build_judges([ModelJudgeConfig(name="x", scorer="love")], {"safety": FixedScorer([])})
    with pytest.raises(ConfigError, match="names must be unique"):
        build_judges([RegexJudgeConfig(), RegexJudgeConfig()])
