"""Text renderings of records (render.py): recommendation and order-check reports, classify and audit tables."""

from __future__ import annotations

import datetime as dt

import pytest

from protocolcheck.context import ClinicalContext
from protocolcheck.recommend import check_order, load_rules, recommend
from protocolcheck.render import format_order_check, format_recommendation

TODAY = dt.date(2026, 3, 1)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def test_text_renderings(rules):
    text = format_recommendation(recommend(ClinicalContext(indication="G54.1", egfr=20), on=TODAY, rules=rules,
                                           today=TODAY))
    assert "mr-lumbosacral-plexus-wo" in text and "Sources:" in text and "[1]" in text
    check_text = format_order_check(check_order("MRI pelvis w/o", ClinicalContext(indication="G54.1"), "", TODAY,
                                                rules=rules, today=TODAY))
    assert "wrong-protocol" in check_text and "Status: fail" in check_text
