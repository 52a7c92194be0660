"""Classifier evidence is structured: each line is a rule and its facts, rendered; no rule reads the text back."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from protocolcheck.classify import SeriesClass, classify_study
from protocolcheck.classify.model import Evidence, Field, Rule
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import scan
from protocolcheck.dicom.study import group_studies

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "protocolcheck" / "classify"


def _sample_results() -> list[SeriesClass]:
    headers = [r for r in scan([str(ROOT / "sample_dicom")]) if isinstance(r, InstanceHeader)]
    return [c for study in group_studies(headers) for c in classify_study(study)]


def test_evidence_text_is_rendered_from_records() -> None:
    results = _sample_results()
    assert results
    for c in results:
        assert set(c.evidence) == {str(name) for name in c.reasons}
        for name, records in c.reasons.items():
            assert records, (c.series_description, name)
            assert c.evidence[str(name)] == [r.text() for r in records]
            for record in records:
                assert isinstance(record, Evidence) and record.text()
                # a field's list holds its own rules; weighting also leads with the technique that framed it
                assert record.field is name or (name is Field.WEIGHTING and record.field is Field.TECHNIQUE), record


def test_facts_are_the_header_values() -> None:
    """The STIR series' inversion evidence carries its TI as a number, and the threshold it was compared with."""
    stir = next(c for c in _sample_results() if c.series_description == "t2_tirm_cor_obl_stir")
    by_ti = stir.reasons[Field.INVERSION][-1]
    assert by_ti.rule.name == "ti-stir"
    assert by_ti.fact("ti") == stir.inversion_time and by_ti.fact("ti_max") == 350.0
    assert stir.evidence["inversion"][-1] == f"TI {stir.inversion_time:g} ms <= 350 with spin echo -> STIR"


def test_rules_are_named_once_per_field() -> None:
    rules = {id(value): value for path in sorted(PACKAGE.glob("*.py"))
             for value in vars(importlib.import_module(f"protocolcheck.classify.{path.stem}")).values()
             if isinstance(value, Rule)}
    names = [(rule.field, rule.name) for rule in rules.values()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert len(names) > 100


def test_no_rule_reads_evidence_text() -> None:
    """Only the record renders evidence text; no classifier module reads ``.evidence`` (the rendered text)."""
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        reads = [node.lineno for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and node.attr == "evidence" and isinstance(node.ctx, ast.Load)
                 and not (path.name == "model.py" and isinstance(node.value, ast.Name) and node.value.id == "self")]
        assert not reads, f"{path.name} reads rendered evidence at lines {reads}"
