import numpy as np
import pytest

from rluf.errors import ConfigError
from rluf.signals.rules import evaluate_rule, parse_rule, rule_names, rule_text


def test_precedence_not_and_or():
    rule = parse_rule("love or like and not dislike")
    assert rule_text(rule) == "(love or (like and not dislike))"
    assert rule_names(rule) == ["love", "like", "dislike"]


def test_parentheses_and_odd_names():
    assert rule_text(parse_rule("(love or +1) and not red_flag")) == "((love or +1) and not red_flag)"


def test_evaluate_on_arrays():
    cols = {"love": np.array([1, 0, 0, 0, 1], bool), "like": np.array([0, 1, 1, 0, 0], bool),
            "dislike": np.array([0, 0, 1, 1, 1], bool)}
    got = evaluate_rule(parse_rule("love or like and not dislike"), cols.__getitem__)
    assert got.tolist() == [True, True, False, False, True]


@pytest.mark.parametrize(
    "text, match",
    [
        ("love or", r"expected a reaction name at token 3, got end of rule"),
        ("love like", r"expected 'and', 'or' or end of rule at token 2, got 'like'"),
        ("(love or like", r"expected '\)'"),
        ("love; import os", r"unexpected character ';'"),
        ("", r"signal rule is empty"),
        ("count(+1)", r"expected a comparison .* after count\(\+1\)"),
        ("count(+1) > ", r"expected count\(NAME\) or an integer"),
        ("2 > 3", r"expected count\(NAME\) on one side"),
        ("count(and) > 1", r"expected a reaction name in count"),
    ],
)
def test_syntax_errors_are_clear(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_rule(text)


def test_count_comparisons():
    rule = parse_rule("count(+1) > count(-1) and not red_flag")
    assert rule_text(rule) == "(count(+1) > count(-1) and not red_flag)"
    assert rule_names(rule) == ["+1", "-1", "red_flag"]
    counts = {"+1": np.array([3, 1, 0, 2]), "-1": np.array([1, 1, 0, 0]), "red_flag": np.array([0, 0, 0, 1])}
    got = evaluate_rule(rule, lambda n: counts[n] > 0, counts.__getitem__)
    assert got.tolist() == [True, False, False, False]
    assert evaluate_rule(parse_rule("2 <= count(like)"), None, lambda n: np.array([1, 2, 5])).tolist() == [
        False, True, True]
