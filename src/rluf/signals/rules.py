"""A safe parser for label rules over reaction types, e.g. `love or like and not dislike`.

Grammar (precedence not > and > or, as in Python; parentheses group):
    expr   := term ('or' term)*
    term   := factor ('and' factor)*
    factor := 'not' factor | '(' expr ')' | NAME
NAME is a reaction type such as `love`, `thumbs_up` or `+1`. The rule becomes a small tree of tuples that is
evaluated over boolean columns; nothing is ever passed to `eval`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rluf.errors import ConfigError

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([A-Za-z0-9_+\-:.]+))")
KEYWORDS = {"and", "or", "not"}

Rule = tuple  # ("name", str) | ("not", Rule) | ("and", Rule, Rule) | ("or", Rule, Rule)


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConfigError(
                f"signal rule {text!r}: unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}; "
                "use reaction names, and/or/not and parentheses, e.g. 'love or like and not dislike'"
            )
        tokens.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
    return tokens


def parse_rule(text: str) -> Rule:
    """Parse `text` into a rule tree. Raises ConfigError naming the position of a syntax problem."""
    tokens = _tokenize(text)
    if not tokens:
        raise ConfigError("signal rule is empty; give a reaction type such as 'love'")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def fail(what: str) -> ConfigError:
        got = repr(peek()) if peek() is not None else "end of rule"
        return ConfigError(
            f"signal rule {text!r}: expected {what} at token {pos + 1}, got {got}; "
            "example: 'love or like and not dislike'"
        )

    def expr() -> Rule:
        node = term()
        while peek() == "or":
            take()
            node = ("or", node, term())
        return node

    def term() -> Rule:
        node = factor()
        while peek() == "and":
            take()
            node = ("and", node, factor())
        return node

    def factor() -> Rule:
        tok = peek()
        if tok == "not":
            take()
            return ("not", factor())
        if tok == "(":
            take()
            node = expr()
            if peek() != ")":
                raise fail("')'")
            take()
            return node
        if tok is None or tok in KEYWORDS or tok == ")":
            raise fail("a reaction name")
        return ("name", take())

    tree = expr()
    if pos != len(tokens):
        raise fail("'and', 'or' or end of rule")
    return tree


def rule_names(rule: Rule) -> list[str]:
    """Reaction types the rule mentions, in first-seen order."""
    if rule[0] == "name":
        return [rule[1]]
    out: list[str] = []
    for child in rule[1:]:
        out += [n for n in rule_names(child) if n not in out]
    return out


def evaluate_rule(rule: Rule, column: Callable[[str], Any]) -> Any:
    """Evaluate the rule with `column(name)` giving a boolean value (an Ibis column, a numpy array or a bool)."""
    op = rule[0]
    if op == "name":
        return column(rule[1])
    if op == "not":
        return ~evaluate_rule(rule[1], column)
    left, right = evaluate_rule(rule[1], column), evaluate_rule(rule[2], column)
    return (left & right) if op == "and" else (left | right)


def rule_text(rule: Rule) -> str:
    """Canonical, fully parenthesised text of a rule (written to the manifest)."""
    op = rule[0]
    if op == "name":
        return rule[1]
    if op == "not":
        return f"not {rule_text(rule[1])}"
    return f"({rule_text(rule[1])} {op} {rule_text(rule[2])})"
