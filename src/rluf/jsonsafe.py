"""JSON and text from users, parsed within bounds (docs/log-schema.md, "Text policy").

`loads` refuses JSON nested deeper than MAX_DEPTH (the standard parser would raise RecursionError
near 1,000 levels, and code that walks the value recursively earlier). `lone_surrogate` finds text that
JSON escapes can carry but UTF-8 cannot (`"\\ud800"`): such text is refused, never repaired.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Far deeper than any chat record (a chat request nests about 5 levels; an OpenAssistant tree nests 2 per
# reply, so 200 levels hold a thread of 99 replies), and far below the interpreter's recursion limit
# (1,000), so code that walks a parsed value recursively stays safe.
MAX_DEPTH = 200

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONDepthError(ValueError):
    """The JSON value is nested deeper than the accepted depth."""

    def __init__(self, depth: int, max_depth: int):
        super().__init__(
            f"the JSON value is nested more than {max_depth} levels deep; at most {max_depth} "
            "levels are accepted"
        )
        self.depth, self.max_depth = depth, max_depth


def nesting_depth(text: str, stop_after: int | None = None) -> int:
    """Deepest nesting of [ and { in JSON text (brackets inside strings do not count); stops counting once
    the depth passes `stop_after`."""
    depth = deepest = 0
    for ch in _STRING.sub("", text):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    break
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads that raises JSONDepthError (a ValueError) for values nested deeper than `max_depth`,
    before parsing. Other errors are json.JSONDecodeError as usual."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    # a value cannot be deeper than the brackets it has: most lines skip the scan
    if text.count("[") + text.count("{") > max_depth:
        depth = nesting_depth(text, max_depth)
        if depth > max_depth:
            raise JSONDepthError(depth, max_depth)
    return json.loads(text)


def lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate code point in `text` (not encodable as UTF-8), or None."""
    if text.isascii():
        return None
    m = _SURROGATE.search(text)
    return m.start() if m else None


def surrogate_detail(name: str, text: str, at: int) -> str:
    """The quarantine detail for text refused by the text policy."""
    return (
        f"{name} holds a lone surrogate {text[at]!r} at character {at}, which is not valid Unicode text "
        "(text must be encodable as UTF-8; see docs/log-schema.md)"
    )


def printable(text: str) -> str:
    """`text` with each lone surrogate written as its escape (\\udcff): for messages and reports that
    name things as they came (a file name that is not UTF-8 holds surrogates in Python)."""
    return text if lone_surrogate(text) is None else text.encode("utf-8", "backslashreplace").decode("utf-8")
