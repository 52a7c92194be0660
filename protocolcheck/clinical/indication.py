"""ICD-10-CM codes in free text: the one parser every path uses.

ICD-10-CM (CDC/CMS, FY2025): a letter, a digit, a digit or letter, then optionally a dot and up to four
characters (``G54.1``, ``G57.01``, ``S34.4XXA``).  Codes written without the dot (``G541``) are
normalised.  Spinal levels that look like codes (``T10``-``T12``, ``T12-L1``) are not codes.  A token
that starts like a code but is malformed (``G54-1``) is returned separately, so the caller can say so
instead of guessing.
"""

from __future__ import annotations

import re

_CODEISH = re.compile(r"(?<![\w./-])([A-Za-z]\d\d[\w.\-]*)")
_ICD_STRICT = re.compile(r"[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?")
_ICD_DOTLESS = re.compile(r"[A-Z]\d[0-9A-Z][0-9A-Z]{1,4}")
_SPINAL_LEVEL = re.compile(r"T1[0-2](-[A-Z]?\d{1,2})?")  # T10-T12 are vertebral levels, not ICD-10-CM codes


def extract_icd10(text: str) -> tuple[list[str], list[str]]:
    """ICD-10-CM codes in ``text``, normalised (``G541`` -> ``G54.1``), and code-like tokens that are malformed."""
    codes: list[str] = []
    malformed: list[str] = []
    for match in _CODEISH.finditer(text or ""):
        token = match.group(1).rstrip(".-").upper()
        if _SPINAL_LEVEL.fullmatch(token):
            continue
        if _ICD_STRICT.fullmatch(token):
            code = token
        elif _ICD_DOTLESS.fullmatch(token):
            code = token[:3] + "." + token[3:]
        else:
            malformed.append(match.group(1))
            continue
        if code not in codes:
            codes.append(code)
    return codes, malformed


def icd10_codes(text: str) -> tuple[str, ...]:
    """The well-formed ICD-10-CM codes in ``text``, normalised, in order of appearance."""
    return tuple(extract_icd10(text)[0])
