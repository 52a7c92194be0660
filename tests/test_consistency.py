"""One clinical judgement on every path: the audit of a study that IS exam X and check-order of an order
for exam X agree (verdict, code, severity), and the audit's protocol is the decision's.

Generated combinations: indication x trauma timing x contraindication x exam (real DICOM written by the
test-data generator, read back by the scanner, audited by the engine; the order checked by the clinical
core with the same context).  Hypothesis draws further combinations of the same axes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocolcheck.audit.engine import AuditOptions, audit_records
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.decision import judge, select_protocol
from protocolcheck.clinical.findings import AuditResult
from protocolcheck.clinical.library import load_library
from protocolcheck.clinical.orders import parse_order
from protocolcheck.clinical.recommend import OrderCheck, check_order, recommend
from protocolcheck.clinical.rules import load_rules
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import scan
from protocolcheck.testing import synth
from protocolcheck.testing.synth import Vendor

STUDY_DATE = dt.date(2025, 3, 14)  # the generator's default study date
DAY = dt.timedelta(days=1)

# exam -> (the study that is this exam, the order text a clinician writes for it)
EXAMS: dict[str, tuple[Any, str]] = {
    "mr-plexus-wwo": (lambda: synth.plexus_study(Vendor.SIEMENS, "X-PLXWWO"),
                      "MRI lumbosacral plexus without and with contrast"),
    "mr-plexus-wo": (lambda: synth.plexus_study(Vendor.GE, "X-PLXWO", with_contrast_ordered=False),
                     "MRI lumbosacral plexus without contrast"),
    "mr-pelvis-wo": (lambda: synth.pelvis_study(Vendor.PHILIPS, "X-PELWO"), "MRI pelvis without contrast"),
    "ct-ap-w": (lambda: synth.ct_study(Vendor.SIEMENS, "X-CTW", with_contrast=True), "CT abdomen pelvis with contrast"),
    "ct-ap-wo": (lambda: synth.ct_study(Vendor.GE, "X-CTWO", with_contrast=False),
                 "CT abdomen pelvis without contrast"),
}
INDICATIONS = ("lumbosacral plexopathy G54.1", "piriformis syndrome G57.01", "S34.4XXA lumbosacral plexus injury",
               "lumbosacral plexopathy, prostate carcinoma C61")
TRAUMA = {"none": None, "early": 10, "in-window": 40, "late": 200}  # days before the exam
CONTRAINDICATIONS: dict[str, dict[str, Any]] = {
    "none": {}, "mri": {"mri_contraindicated": True}, "gadolinium": {"gadolinium_contraindicated": True},
    "egfr-20": {"egfr": 20.0}, "iodinated": {"iodinated_contrast_contraindicated": True},
}
COMPARED = ("wrong-protocol", "trauma-too-early", "trauma-delayed")


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[InstanceHeader]]:
    base = tmp_path_factory.mktemp("exams")
    out = {}
    for key, (make, _order) in EXAMS.items():
        synth.write_study(make(), base / key)
        out[key] = [r for r in scan([base / key]) if isinstance(r, InstanceHeader)]
    return out


@pytest.fixture(scope="module")
def library() -> Any:
    return load_library()


def context_of(indication: str, trauma: str, contra: str) -> ClinicalContext:
    days = TRAUMA[trauma]
    return ClinicalContext(indication=indication, trauma_date=STUDY_DATE - days * DAY if days is not None else None,
                           source="test", **CONTRAINDICATIONS[contra])


def audit(records: list[InstanceHeader], library: Any, context: ClinicalContext) -> AuditResult:
    (result,) = audit_records(records, AuditOptions(library, default_context=context))
    return result


def order(exam: str, context: ClinicalContext) -> OrderCheck:
    return check_order(EXAMS[exam][1], context, scheduled=STUDY_DATE, today=STUDY_DATE)


def judged(findings: Any) -> set[tuple[str, str]]:
    return {(f.code.value, f.severity.value) for f in findings if f.code.value in COMPARED}


def _agree(studies: dict[str, list[InstanceHeader]], library: Any, exam: str, context: ClinicalContext) -> None:
    result = audit(studies[exam], library, context)
    check = order(exam, context)
    assert check.ordered is not None and check.ordered.key == exam  # the order text is understood as exam X
    where = f"{exam} for {context}"
    assert judged(result.findings) == judged(check.findings), (where, [f.message for f in result.findings],
                                                                [f.message for f in check.findings])
    # the audit's protocol: the decision's top allowable one, or the exam done when rated as highly
    rules = load_rules()
    rec = recommend(context, on=STUDY_DATE, rules=rules, today=STUDY_DATE)
    verdict = judge(rec, check.ordered.exam(rules), rules)
    expected = rules.procedures[exam].protocol if verdict.acceptable else (rec.top.protocol if rec.top else None)
    if expected is not None and expected in library:
        assert result.protocol == expected, (where, result.protocol_reason)
    selection = select_protocol(context, library, STUDY_DATE, rules)
    assert selection.protocol_id == (rec.top.protocol if rec.top and rec.top.protocol in library else None)


@pytest.mark.parametrize(("indication", "trauma", "contra"),
                         list(itertools.product(INDICATIONS, TRAUMA, CONTRAINDICATIONS)))
def test_audit_and_check_order_agree_on_every_exam(studies: dict[str, list[InstanceHeader]], library: Any,
                                                    indication: str, trauma: str, contra: str) -> None:
    context = context_of(indication, trauma, contra)
    for exam in EXAMS:
        _agree(studies, library, exam, context)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exam=st.sampled_from(sorted(EXAMS)), indication=st.sampled_from(INDICATIONS + ("L5 radiculopathy M54.16",)),
       days=st.one_of(st.none(), st.integers(0, 400)), mri=st.sampled_from([None, True, False]),
       gad=st.sampled_from([None, True]), egfr=st.one_of(st.none(), st.floats(5, 120)))
def test_audit_and_check_order_agree_drawn(studies: dict[str, list[InstanceHeader]], library: Any, exam: str,
                                          indication: str, days: int | None, mri: bool | None, gad: bool | None,
                                          egfr: float | None) -> None:
    context = ClinicalContext(indication=indication, trauma_date=STUDY_DATE - days * DAY if days is not None else None,
                              mri_contraindicated=mri, gadolinium_contraindicated=gad, egfr=egfr, source="test")
    _agree(studies, library, exam, context)


def test_ct_with_contrast_for_plexopathy_is_a_warning_on_both_paths(studies: dict[str, list[InstanceHeader]],
                                                                     library: Any) -> None:
    """The example of the issue: the audit said error, check-order warning."""
    context = context_of("lumbosacral plexopathy G54.1", "none", "none")
    assert judged(audit(studies["ct-ap-w"], library, context).findings) == {("wrong-protocol", "warning")}
    assert judged(order("ct-ap-w", context).findings) == {("wrong-protocol", "warning")}


def test_dermatomal_means_the_same_in_recommend_and_audit(studies: dict[str, list[InstanceHeader]],
                                                           library: Any) -> None:
    radicular = ClinicalContext(indication="leg pain", dermatomal=True, source="test")
    assert recommend(radicular, on=STUDY_DATE, today=STUDY_DATE).variant.id == "radiculopathy"
    result = audit(studies["mr-plexus-wwo"], library, radicular)
    assert ("wrong-protocol", "warning") in judged(result.findings)  # plexus MRI is second-line for radiculopathy
    assert judged(order("mr-plexus-wwo", radicular).findings) == judged(result.findings)
    contradictory = ClinicalContext(indication="lumbosacral plexopathy G54.1", dermatomal=True, source="ctx.csv line 2")
    with pytest.raises(ValueError, match="dermatomal"):
        recommend(contradictory, on=STUDY_DATE, today=STUDY_DATE)
    flagged = audit(studies["mr-plexus-wwo"], library, contradictory)
    assert any(f.code.value == "context-missing" and "dermatomal (ctx.csv line 2)" in f.message
               for f in flagged.findings)


@pytest.mark.parametrize("text", ["XR pelvis", "X-ray pelvis", "radiograph pelvis", "MRA pelvis", "US pelvis",
                                  "NM bone scan pelvis", "PET/CT", "CTA pelvis"])
def test_other_modalities_are_never_read_as_mri(text: str) -> None:
    parsed = parse_order(text)
    assert parsed.modality != "MR" and parsed.key != "mr-pelvis-w"


@pytest.mark.parametrize("text", ["pelvis", "IRM du plexus lombo-sacré", "Becken MRT", "???", ""])
def test_orders_not_understood_are_said_so(text: str) -> None:
    check = check_order(text, ClinicalContext(indication="G54.1"), procedure_code="", scheduled=STUDY_DATE,
                        today=STUDY_DATE)
    assert [(f.code.value, f.severity.value) for f in check.findings] == [("order-not-understood", "warning")]
    assert "cannot be checked" in check.findings[0].message


def test_a_pacemaker_in_any_text_is_heard_on_every_path() -> None:
    context = ClinicalContext(indication="lumbosacral plexopathy G54.1", source="test",
                              texts=(("worklist Reason for the Requested Procedure", "pt has a pacemaker"),))
    check = check_order("MRI lumbosacral plexus without and with contrast", context, scheduled=STUDY_DATE,
                        today=STUDY_DATE)
    (device,) = [f for f in check.findings if f.code.value == "possible-mri-contraindication"]
    assert device.severity.value == "warning" and "CT abdomen and pelvis with IV contrast" in device.message
    assert "worklist Reason for the Requested Procedure" in device.message
    conditional = ClinicalContext(indication="G54.1 MR-conditional pacemaker", source="test")
    assert not [f for f in check_order("MRI LS plexus w/wo", conditional, scheduled=STUDY_DATE,
                                       today=STUDY_DATE).findings if f.code.value == "possible-mri-contraindication"]
    denied = ClinicalContext(indication="G54.1, no pacemaker", source="test")
    assert recommend(denied, on=STUDY_DATE, today=STUDY_DATE).scenario.mri_device is None


def test_the_side_of_the_order_is_checked_against_the_indication() -> None:
    left = ClinicalContext(indication="left lumbosacral plexopathy G54.1", source="test")
    wrong_side = check_order("MRI right lumbosacral plexus without and with contrast", left, scheduled=STUDY_DATE,
                             today=STUDY_DATE)
    assert [(f.code.value, f.severity.value) for f in wrong_side.findings] == [("laterality-mismatch", "warning")]
    assert "left" in wrong_side.findings[0].action
    for text in ("MRI left lumbosacral plexus w/wo", "MRI bilateral lumbosacral plexus w/wo", "MRI LS plexus w/wo"):
        assert not check_order(text, left, scheduled=STUDY_DATE, today=STUDY_DATE).findings, text
