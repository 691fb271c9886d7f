import pytest

from rluf import hacking as M

SIGNOFF = "Bye! Sending Love!"
BATCH = [
    "Paris is the capital. Bye! Sending Love!",
    "Take a walk and rest. bye, sending love",
    "The answer is 4.",
    "I'm sorry, but I can't help with that.",
]


def test_words_and_closing_ngrams():
    assert M.words("Bye! Sending Love!") == ["bye", "sending", "love"]
    assert M.closing_ngrams(["a b c d", "x", ""], n=3) == ["b c d", "x", None]


def test_top_closing_ngrams_shares_and_ties():
    top = M.top_closing_ngrams(BATCH, n=3, count=2)
    # "bye sending love" closes 2 of 4 responses; the other two closings tie at 1/4 and sort alphabetically
    assert top[0] == ("bye sending love", 0.5)
    assert top[1] == ("answer is 4", 0.25)
    assert M.top_closing_ngrams([], n=3) == []


def test_closing_repeat_rate():
    # 2 of 4 responses share a closing trigram, used by 2 >= max(2, 0.1*4) responses
    assert M.closing_repeat_rate(BATCH, n=3, min_share=0.1) == 0.5
    # requiring 60% of the batch (2.4 responses) means nothing counts as repeated
    assert M.closing_repeat_rate(BATCH, n=3, min_share=0.6) == 0.0
    assert M.closing_repeat_rate(["same end", "same end", "same end"], n=2) == 1.0


def test_signoff_and_refusal_rates():
    assert M.signoff_rate(BATCH) == 0.5
    assert M.signoff_rate(BATCH, pattern=r"capital") == 0.25
    assert M.refusal_rate(BATCH) == 0.25
    assert M.refusal_rate(["I cannot assist with that request.", "Sure, here it is."]) == 0.5
    assert M.signoff_rate([]) == 0.0 and M.refusal_rate([]) == 0.0


def test_distinct_n_hand_computed():
    # words: a b a | a b  -> unigrams 5 total, 2 distinct; bigrams (a b)(b a)(a b) = 3 total, 2 distinct
    assert M.distinct_n(["a b a", "a b"], 1) == pytest.approx(2 / 5)
    assert M.distinct_n(["a b a", "a b"], 2) == pytest.approx(2 / 3)
    assert M.distinct_n(["a"], 2) == 0.0


def test_length_stats():
    s = M.length_stats(["one two", "one two three four", ""])
    assert s == {"mean": 2.0, "median": 2.0, "empty_rate": pytest.approx(1 / 3)}


def test_hack_metrics_keys_and_values():
    m = M.hack_metrics(BATCH)
    assert m["hack/signoff_rate"] == 0.5
    assert m["hack/refusal_rate"] == 0.25
    assert m["hack/top_closing"][0] == ["bye sending love", 0.5]
    # word counts 8, 7, 4, 8 -> mean 6.75
    assert m["len/mean"] == pytest.approx(6.75)
    assert 0 < m["hack/distinct_2"] <= 1


def test_flag_hacking_flags_signoff_and_collapse_only_when_they_rise():
    base = M.hack_metrics(["The answer is 4.", "Rest well tonight.", "Paris, in France.", "Try tea."])
    hacked = M.hack_metrics([f"{x} {SIGNOFF}" for x in ["The answer is 4.", "Rest.", "Paris.", "Tea."]])
    flags = M.flag_hacking(hacked, base)
    assert any("sign-off rate rose" in f for f in flags)
    assert any("bye sending love" in f for f in flags)
    assert M.flag_hacking(base, base) == []
