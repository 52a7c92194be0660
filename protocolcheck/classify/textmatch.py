"""Helpers for reading series text and sequence names: word-bounded, case-insensitive patterns."""

from __future__ import annotations

import re
from collections.abc import Sequence

B = r"(?<![a-z])"  # no letter before
E = r"(?![a-z])"  # no letter after


def rx(pattern: str) -> re.Pattern[str]:
    """A case-insensitive pattern."""
    return re.compile(pattern, re.IGNORECASE)


def first_match(text: str, patterns: Sequence[tuple[re.Pattern[str], str]]) -> tuple[str, str] | None:
    """(label, matched text) of the first pattern found in text."""
    for pattern, label in patterns:
        m = pattern.search(text)
        if m:
            return label, m.group(0)
    return None
