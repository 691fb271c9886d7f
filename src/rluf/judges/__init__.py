"""Mixture of Judges: rule, model and LLM judges behind one batched interface (CGPO, Xu et al., 2024)."""

from rluf.judges.base import PASS, Item, Judge, Scorer, Verdict, make_items
from rluf.judges.config import JudgeConfig, build_judge, build_judges
from rluf.judges.llm import JudgeEndpointError, LLMJudge, parse_verdict
from rluf.judges.mixture import MixtureOfJudges, MixtureResult
from rluf.judges.model import FalseRefusalJudge, ModelJudge
from rluf.judges.rules import DegenerateJudge, ExactAnswerJudge, LengthJudge, RegexJudge, normalize_answer

__all__ = [
    "PASS", "Item", "Judge", "Scorer", "Verdict", "make_items", "JudgeConfig", "build_judge", "build_judges",
    "JudgeEndpointError", "LLMJudge", "parse_verdict", "MixtureOfJudges", "MixtureResult",
    "FalseRefusalJudge", "ModelJudge", "DegenerateJudge", "ExactAnswerJudge", "LengthJudge", "RegexJudge",
    "normalize_answer",
]
