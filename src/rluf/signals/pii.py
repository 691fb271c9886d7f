"""PII scrubbing as Ibis string expressions (RE2 syntax, so they run in DuckDB, Spark and warehouses alike).

Order matters: card-like numbers are replaced before phone numbers, which would otherwise match them.
"""

from __future__ import annotations

import ibis

# name -> (RE2 pattern, placeholder)
PATTERNS: dict[str, tuple[str, str]] = {
    "email": (r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}", "[EMAIL]"),
    "card": (r"\b\d(?:[ \-]?\d){12,18}\b", "[CARD]"),  # 13-19 digits, optional space/dash groups
    "phone": (r"\+?\(?\b\d(?:[ .\-()]{0,2}\d){8,14}\b", "[PHONE]"),  # 9-15 digits, optional separators
}


def scrub(text: ibis.StringValue) -> ibis.StringValue:
    """Replace every email, card-like number and phone number in `text` by its placeholder."""
    for pattern, placeholder in PATTERNS.values():
        text = text.re_replace(pattern, placeholder)
    return text


def pii_counts(text: ibis.StringValue) -> dict[str, ibis.Value]:
    """Aggregates counting the texts that contain each kind of PII (applied in pattern order, like `scrub`)."""
    out = {}
    for name, (pattern, placeholder) in PATTERNS.items():
        out[f"pii_{name}"] = text.re_search(pattern).cast("int64").sum()
        text = text.re_replace(pattern, placeholder)
    return out
