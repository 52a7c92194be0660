"""The classifier's decision table and threshold table: generated from the code, one place for each number.

* the README's tables are exactly what the code generates (``python tools/decision_table.py`` rewrites them);
* every threshold in the table is used by a rule, and the rule modules compare against no other number;
* a threshold changed in the table changes the classification (the rules read the table, not a copy).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from protocolcheck.classify import DECISION_TABLE, Weighting, classify_study, weighting
from protocolcheck.classify.table import markdown, readme_block
from protocolcheck.classify.thresholds import CITATIONS, THRESHOLDS, Source, rows
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.study import group_studies

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "protocolcheck" / "classify"
# Numbers that are not cut-offs: 0 and 1 (presence, indexes), how evidence prints large numbers (model.fmt),
# and "a first acquisition needs at least two" (study.exam_level_agent).
STRUCTURAL = {0, 1}
ALLOWED = {("model.py", 1e5), ("study.py", 2)}


def test_readme_tables_are_generated_from_the_code() -> None:
    block = readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block, "README.md lost its decision-table markers"
    assert block == markdown(), "README decision table is stale: run `python tools/decision_table.py`"


def test_every_threshold_has_a_reason_a_source_and_a_user() -> None:
    code = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.glob("*.py") if p.name != "thresholds.py")
    code += (PACKAGE / "thresholds.py").read_text(encoding="utf-8").split("THRESHOLDS = Thresholds()")[1]
    for row in rows():
        assert row.reason and row.unit and row.sources, row
        assert all(source in CITATIONS for source in row.sources), row
        assert f"T.{row.name}" in code or f"table.{row.name}" in code, f"threshold {row.name} is used by no rule"
    assert set(CITATIONS) == set(Source)


def _constants(node: ast.AST) -> list[ast.Constant]:
    """Numeric literals under ``node``, not counting indexes and slices (``it[2:]``, ``time[:8]``)."""
    if isinstance(node, ast.Subscript):
        return _constants(node.value)
    if isinstance(node, ast.Constant):
        number = isinstance(node.value, int | float) and not isinstance(node.value, bool)
        return [node] if number else []
    return [c for child in ast.iter_child_nodes(node) for c in _constants(child)]


def _numbers_compared(path: Path) -> list[tuple[int, float]]:
    """Numeric literals that take part in a comparison (a < 5, x >= 0.8 * y) in one module."""
    return [(c.lineno, c.value) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Compare) for side in [node.left, *node.comparators] for c in _constants(side)]


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.glob("*.py") if p.name != "thresholds.py"),
                         ids=lambda p: p.name)
def test_rules_compare_against_the_table_only(path: Path) -> None:
    stray = [(line, value) for line, value in _numbers_compared(path)
             if value not in STRUCTURAL and (path.name, value) not in ALLOWED]
    assert not stray, f"{path.name}: numbers compared outside the threshold table: {stray}"


def test_decision_table_quotes_the_thresholds() -> None:
    text = " ".join(rule for _field, rule in DECISION_TABLE)
    for name in ("stir_max_ti", "flair_min_ti", "se_t2_min_te", "gre_t2star_max_flip", "gre_t1_min_flip",
                 "se_t1_max_tr_low_field", "se_t1_max_tr_high_field", "localizer_max_images"):
        assert f"{getattr(THRESHOLDS, name):g}" in text, name


def _spin_echo_3t(tr: float) -> list[InstanceHeader]:
    return [InstanceHeader(path=f"/x/{i}", sop_class_uid="1.2.840.10008.5.1.4.1.1.4", sop_instance_uid=f"2.25.9.{i}",
                           study_instance_uid="2.25.9", series_instance_uid="2.25.9.1", modality="MR",
                           manufacturer="SIEMENS", field_strength=3.0, sequence_name="*tse2d1_3",
                           scanning_sequence=("SE",), sequence_variant=("SK",), repetition_time=tr, echo_time=12.0,
                           image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), image_position=(0.0, 0.0, 5.0 * i),
                           instance_number=i + 1) for i in range(3)]


def test_a_changed_threshold_changes_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules read the table itself: a 3 T spin echo with TR 1200 ms / TE 12 ms is T1 at the 1250 ms
    cut-off and undecided (no name) at 1100 ms."""
    (study,) = group_studies(_spin_echo_3t(1200.0))
    (before,) = classify_study(study)
    assert before.weighting is Weighting.T1 and "<= 1250 at 3 T" in before.evidence["weighting"][-1]
    monkeypatch.setattr(weighting, "T", dataclasses.replace(THRESHOLDS, se_t1_max_tr_high_field=1100.0))
    (after,) = classify_study(study)
    assert after.weighting is Weighting.UNKNOWN, after.evidence["weighting"]
