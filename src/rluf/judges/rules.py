"""Rule judges: regex (forbidden or repeated sign-offs), length bounds, exact answer, degenerate output.

CGPO (Xu et al., 2024, Sec. 3.2) uses rule-based judges for format, exact answers and forbidden patterns.
Each judge here is a small class with a ``name`` and a batched ``judge(items) -> list[Verdict]``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from rluf.hacking import DEFAULT_SIGNOFF_PATTERN, words
from rluf.judges.base import PASS, Item, Verdict


class RegexJudge:
    """Fails a response that matches any of `patterns` (case-insensitive `re.search`).

    The default pattern is the monitor's sign-off regex, so ``RegexJudge("signoff")`` forbids the
    "Bye! Sending Love!" family of endings that RLUF saw a love-optimised policy learn.
    """

    def __init__(self, name: str = "signoff", patterns: Sequence[str] = (DEFAULT_SIGNOFF_PATTERN,)):
        self.name = name
        self.patterns = [re.compile(p, re.IGNORECASE) for p in patterns]

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        out = []
        for it in items:
            hit = next((m for m in (p.search(it.response.strip()) for p in self.patterns) if m), None)
            out.append(Verdict(False, f"matches forbidden pattern: {hit.group(0)!r}") if hit else PASS)
        return out


class LengthJudge:
    """Passes responses whose length in words is within [min_words, max_words]."""

    def __init__(self, name: str = "length", min_words: int = 1, max_words: int = 200):
        if min_words < 0 or max_words < min_words:
            raise ValueError(f"LengthJudge: need 0 <= min_words <= max_words, got {min_words}, {max_words}")
        self.name, self.min_words, self.max_words = name, min_words, max_words

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        out = []
        for it in items:
            n = len(words(it.response))
            if n < self.min_words:
                out.append(Verdict(False, f"{n} words, fewer than min_words={self.min_words}"))
            elif n > self.max_words:
                out.append(Verdict(False, f"{n} words, more than max_words={self.max_words}"))
            else:
                out.append(PASS)
        return out


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces (SQuAD-style answer normalisation)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


class ExactAnswerJudge:
    """When an item's metadata carries a reference answer, the response must contain it.

    `mode="contains"` passes if the normalised reference appears as whole words in the normalised
    response (a chat answer wraps the fact in a sentence); `mode="exact"` needs equality. Items with no
    reference pass: the judge only constrains prompts that have a right answer.
    """

    def __init__(self, name: str = "exact_answer", key: str = "reference", mode: str = "contains"):
        if mode not in ("contains", "exact"):
            raise ValueError(f"ExactAnswerJudge: mode must be 'contains' or 'exact', got {mode!r}")
        self.name, self.key, self.mode = name, key, mode

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        out = []
        for it in items:
            ref = it.metadata.get(self.key)
            if ref is None or ref == "":
                out.append(PASS)
                continue
            r, y = normalize_answer(str(ref)), normalize_answer(it.response)
            ok = (y == r) if self.mode == "exact" else re.search(rf"(^| ){re.escape(r)}( |$)", y) is not None
            out.append(PASS if ok else Verdict(False, f"reference answer {ref!r} not found"))
        return out


class DegenerateJudge:
    """Fails empty output, output made of very few distinct words, and n-gram loops.

    A response fails when it has no words; when its distinct-word share is below `min_distinct` (only
    checked for responses of at least 8 words); or when any `ngram`-gram occurs more than `max_repeats`
    times.
    """

    def __init__(self, name: str = "degenerate", ngram: int = 3, max_repeats: int = 2, min_distinct: float = 0.3):
        self.name, self.ngram, self.max_repeats, self.min_distinct = name, ngram, max_repeats, min_distinct

    def _check(self, response: str) -> Verdict:
        w = words(response)
        if not w:
            return Verdict(False, "empty response")
        if len(w) >= 8 and len(set(w)) / len(w) < self.min_distinct:
            return Verdict(False, f"only {len(set(w))} distinct words of {len(w)}")
        grams = Counter(tuple(w[i : i + self.ngram]) for i in range(len(w) - self.ngram + 1))
        if grams:
            gram, count = grams.most_common(1)[0]
            if count > self.max_repeats:
                return Verdict(False, f"{' '.join(gram)!r} repeated {count} times (max {self.max_repeats})")
        return PASS

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        return [self._check(it.response) for it in items]
