"""Classify each stack of a study: weighting, inversion, fat suppression, contrast, plane, 2D/3D,
localizer and derived, each with the header facts that decided it.

Modules: ``model`` (enums, :class:`SeriesClass`), ``thresholds`` (every cut-off, with its source),
``facts`` (what the rules read from a stack), one module per field (``technique``, ``weighting``,
``inversion``, ``fat``, ``contrast``, ``geometry``, ``flags``), ``study`` (study-level rules),
``engine`` (putting them together) and ``table`` (the decision table).

Adding or changing a rule: put any number it compares against in ``thresholds.THRESHOLDS`` (with unit, reason
and source; ``tests/test_classify_table.py`` rejects numbers compared anywhere else); declare its evidence as a
module-level ``Rule(field, name, wording)`` beside the code and return ``RULE.cite(fact=value, ...)`` (the text is
rendered from the facts; never build or read evidence strings); describe it in the module's ``RULES`` lines and
run ``python tools/decision_table.py`` to regenerate the README tables.
"""

from protocolcheck.classify.engine import classify_stack, classify_study, describe
from protocolcheck.classify.facts import vendor_of
from protocolcheck.classify.model import (
    Acquisition,
    DixonLabel,
    FatSuppression,
    Inversion,
    Plane,
    SeriesClass,
    Technique,
    Vendor,
    Weighting,
)
from protocolcheck.classify.table import DECISION_TABLE

__all__ = [
    "DECISION_TABLE",
    "Acquisition",
    "DixonLabel",
    "FatSuppression",
    "Inversion",
    "Plane",
    "SeriesClass",
    "Technique",
    "Vendor",
    "Weighting",
    "classify_stack",
    "classify_study",
    "describe",
    "vendor_of",
]
