"""A safe parser for label rules over reaction types, e.g. `love or like and not dislike`.

Grammar (precedence not > and > or, as in Python; parentheses group):
    expr    := term ('or' term)*
    term    := factor ('and' factor)*
    factor  := 'not' factor | '(' expr ')' | operand CMP operand | NAME
    operand := 'count' '(' NAME ')' | INTEGER          (at least one side a count)
    CMP     := '>' | '>=' | '<' | '<=' | '==' | '!='
NAME is a reaction type such as `love`, `thumbs_up` or `+1`: true when the message received at least one.
`count(NAME)` is how many it received, so real reactions that arrive as counts can be labelled by them:
`count(+1) > count(-1)` (net positive), `count(like) >= 2`. The rule becomes a small tree of tuples that is
evaluated over boolean and integer columns; nothing is ever passed to `eval`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from rluf.errors import ConfigError

_TOKEN = re.compile(r"\s*(?:(\()|(\))|(>=|<=|==|!=|>|<)|([A-Za-z0-9_+\-:.]+))")
KEYWORDS = {"and", "or", "not"}
COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
               "!=": operator.ne}

# ("name", str) | ("not", Rule) | ("and", Rule, Rule) | ("or", Rule, Rule) | ("cmp", op, Operand, Operand),
# Operand = ("count", str) | ("int", int)
Rule = tuple


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
        tokens.append(next(g for g in m.groups() if g))
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

    def chain(op: str, sub: Callable[[], Rule]) -> Rule:
        """`sub (op sub)*`, grouped to the left."""
        node = sub()
        while peek() == op:
            take()
            node = (op, node, sub())
        return node

    def expr() -> Rule:
        return chain("or", term)

    def term() -> Rule:
        return chain("and", factor)

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
        if tok is None or tok in KEYWORDS or tok in COMPARISONS or tok == ")":
            raise fail("a reaction name")
        if tok == "count" and pos + 1 < len(tokens) and tokens[pos + 1] == "(" or tok.isdigit():
            left = operand()
            if peek() not in COMPARISONS:
                raise fail("a comparison (>, >=, <, <=, ==, !=) after " + operand_text(left))
            op = take()
            right = operand()
            if left[0] == right[0] == "int":
                raise fail("count(NAME) on one side of the comparison")
            return ("cmp", op, left, right)
        return ("name", take())

    def operand() -> tuple:
        tok = peek()
        if tok is not None and tok.isdigit():
            return ("int", int(take()))
        if tok != "count":
            raise fail("count(NAME) or an integer")
        take()
        if peek() != "(":
            raise fail("'(' after count")
        take()
        name = peek()
        if name is None or name in KEYWORDS or name in COMPARISONS or name in "()":
            raise fail("a reaction name in count(...)")
        take()
        if peek() != ")":
            raise fail("')' after count(" + name)
        take()
        return ("count", name)

    tree = expr()
    if pos != len(tokens):
        raise fail("'and', 'or' or end of rule")
    return tree


def rule_names(rule: Rule) -> list[str]:
    """Reaction types the rule mentions, in first-seen order."""
    if rule[0] == "name":
        return [rule[1]]
    if rule[0] == "cmp":
        return list(dict.fromkeys(o[1] for o in rule[2:] if o[0] == "count"))
    out: list[str] = []
    for child in rule[1:]:
        out += [n for n in rule_names(child) if n not in out]
    return out


def evaluate_rule(rule: Rule, column: Callable[[str], Any], count: Callable[[str], Any] | None = None) -> Any:
    """Evaluate the rule with `column(name)` giving a boolean value (an Ibis column, a numpy array or a bool)
    and `count(name)` the number of reactions of that type (needed only by rules that compare counts)."""
    op = rule[0]
    if op == "name":
        return column(rule[1])
    if op == "cmp":
        if count is None:
            raise ValueError(f"rule {rule_text(rule)!r} compares counts: pass count=")
        left, right = (count(o[1]) if o[0] == "count" else o[1] for o in rule[2:])
        return COMPARISONS[rule[1]](left, right)
    if op == "not":
        return ~evaluate_rule(rule[1], column, count)
    left, right = evaluate_rule(rule[1], column, count), evaluate_rule(rule[2], column, count)
    return (left & right) if op == "and" else (left | right)


def rule_text(rule: Rule) -> str:
    """Canonical, fully parenthesised text of a rule (written to the manifest)."""
    op = rule[0]
    if op == "name":
        return rule[1]
    if op == "cmp":
        return f"{operand_text(rule[2])} {rule[1]} {operand_text(rule[3])}"
    if op == "not":
        return f"not {rule_text(rule[1])}"
    return f"({rule_text(rule[1])} {op} {rule_text(rule[2])})"


def operand_text(operand: tuple) -> str:
    return f"count({operand[1]})" if operand[0] == "count" else str(operand[1])
