"""The audit engine on classified series built directly: requirement matching, planes, wrong exam, timing."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

import pytest

from protocolcheck.audit.validate import (
    Choice,
    ChosenBy,
    StudyFacts,
    assign,
    check_plane_rule,
    check_timing,
    choose_protocol,
    evaluate,
    identify,
    study_facts,
)
from protocolcheck.classify import Acquisition, DixonLabel, FatSuppression, Inversion, Plane, SeriesClass, Weighting
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.findings import FindingCode, Severity
from protocolcheck.clinical.library import Library, load_library
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.study import Study, group_studies

STUDY = "1.2.3"


@pytest.fixture(scope="module")
def library() -> Library:
    return load_library()


def _normal(plane: str, tilt: float) -> tuple[float, float, float]:
    t = math.radians(tilt)
    if plane == "coronal":
        return (0.0, math.cos(t), math.sin(t))
    if plane == "axial":
        return (0.0, math.sin(t), math.cos(t))
    return (1.0, 0.0, 0.0)


_numbers = iter(range(1, 10_000))


def sc(weighting: str = "T2", plane: str = "axial", tilt: float = 0.0, **kw: Any) -> SeriesClass:
    """A classified series; ``tilt`` makes coronal/axial oblique (coronal +t and axial -t are orthogonal)."""
    number = kw.pop("number", next(_numbers))
    normal = _normal(plane, tilt)
    values: dict[str, Any] = dict(
        study_instance_uid=STUDY, series_instance_uid=f"{STUDY}.{number}", stack=None, series_number=number,
        series_description=kw.pop("description", f"{plane} {weighting}"), modality="MR", manufacturer="ACME",
        instances=20, weighting=Weighting(weighting), inversion=None, fat_suppressed=False, fat_suppression=None,
        post_contrast=False, plane=Plane(plane), obliquity_deg=abs(tilt) if plane != "sagittal" else 0.0, normal=normal,
        acquisition=Acquisition.TWO_D, localizer=False, derived=False, slice_thickness=4.0, field_strength=3.0,
    )
    values.update(kw)
    if values.get("dixon") is not None:
        values["dixon"] = DixonLabel(values["dixon"])
    return SeriesClass(**values)


def stir(**kw: Any) -> SeriesClass:
    return sc("T2", inversion=Inversion.STIR, fat_suppressed=True, fat_suppression=FatSuppression.STIR, **kw)


def t2fs(**kw: Any) -> SeriesClass:
    return sc("T2", fat_suppressed=True, fat_suppression=FatSuppression.CHESS, **kw)


def t1post(**kw: Any) -> SeriesClass:
    return sc("T1", fat_suppressed=True, fat_suppression=FatSuppression.CHESS, post_contrast=True, **kw)


def complete_plexus(tilt: float = 30.0) -> list[SeriesClass]:
    return [
        sc("T1", "coronal", tilt, description="COR T1"),
        stir(plane="coronal", tilt=tilt, description="COR STIR"),
        sc("T2", "axial", -tilt, description="AX T2"),
        t2fs(plane="axial", tilt=-tilt, description="AX T2 FS"),
        t1post(plane="coronal", tilt=tilt, description="COR T1 FS +C"),
        t1post(plane="axial", tilt=-tilt, description="AX T1 FS +C"),
    ]


def facts(description: str = "MR LUMBOSACRAL PLEXUS WO+W CONTRAST", modality: str = "MR",
          date: dt.date | None = dt.date(2025, 3, 14), **kw: Any) -> StudyFacts:
    return StudyFacts(study_instance_uid=STUDY, accession_number="A1", modality=modality,
                      study_description=description, date=date, date_source="StudyDate" if date else "", **kw)


def audit(library: Library, series: list[SeriesClass], *, protocol: str | None = None, indicated: str | None = None,
          context: ClinicalContext | None = None, study: StudyFacts | None = None) -> list[tuple[str, str | None]]:
    f = study or facts()
    choice = choose_protocol(f, series, library, protocol_id=protocol, indicated_id=indicated)
    evaluation = evaluate(choice, f, series, context)
    return [(x.code.value, x.requirement) for x in evaluation.findings]


def findings(library: Library, series: list[SeriesClass], **kw: Any):
    f = kw.pop("study", None) or facts()
    choice = choose_protocol(f, series, library, protocol_id=kw.pop("protocol", None),
                             indicated_id=kw.pop("indicated", None))
    return evaluate(choice, f, series, kw.pop("context", None)).findings


# ------------------------------------------------------------------------------------------ requirements


def test_complete_plexus_study_passes(library: Library) -> None:
    assert audit(library, complete_plexus(), protocol="mr-lumbosacral-plexus-wwo") == []


def test_missing_fluid_fat_suppression_names_the_near_misses(library: Library) -> None:
    series = [s for s in complete_plexus() if s.fat_suppression not in (FatSuppression.STIR, FatSuppression.CHESS)
              or s.post_contrast]
    result = findings(library, series, protocol="mr-lumbosacral-plexus-wwo")
    assert [(f.code, f.requirement) for f in result] == [(FindingCode.MISSING_SEQUENCE, "fluid-fat-suppressed")]
    finding = result[0]
    assert finding.severity is Severity.ERROR
    assert "'AX T2' (oblique axial T2" in finding.message and "fat-suppressed no (needs yes)" in finding.message
    assert "fat-saturated T2 or STIR" in finding.message
    assert "short tau inversion recovery" in finding.message  # the guideline statement is quoted
    assert finding.citations == ("seed-plexus-sequences",)
    ax_t2 = next(s for s in series if s.series_description == "AX T2")
    assert ax_t2.series_instance_uid in finding.series


def test_a_series_satisfies_one_requirement_only(library: Library) -> None:
    series = [sc("T1", "coronal", 30, number=1), t2fs(plane="axial", tilt=-30, number=2)]
    result = findings(library, series, protocol="mr-lumbosacral-plexus-wo")
    assert [(f.code, f.requirement) for f in result] == [(FindingCode.MISSING_SEQUENCE, "t2")]
    assert "qualifies, but already counts for fluid-sensitive fat-suppressed" in result[0].message


def test_assignment_prefers_an_arrangement_that_meets_every_requirement(library: Library) -> None:
    # the T2 FS could take 't2' (first in file order) and starve 'fluid-fat-suppressed'; augmenting fixes it
    protocol = library.get("mr-lumbosacral-plexus-wo")
    series = [sc("T1", number=1), t2fs(number=2), sc("T2", number=3)]
    results = {r.requirement.id: r.satisfied_by for r in assign(protocol.requirements, series)}
    assert results["fluid-fat-suppressed"].series_number == 2
    assert results["t2"].series_number == 3


def test_no_pre_contrast_t1(library: Library) -> None:
    series = [s for s in complete_plexus() if not (s.weighting is Weighting.T1 and not s.post_contrast)]
    result = findings(library, series, protocol="mr-lumbosacral-plexus-wwo")
    assert [(f.code, f.requirement) for f in result] == [(FindingCode.MISSING_SEQUENCE, "t1")]
    assert "acquired after contrast (needs before contrast)" in result[0].message


def test_missing_post_contrast(library: Library) -> None:
    series = [s for s in complete_plexus() if not s.post_contrast]
    assert audit(library, series, protocol="mr-lumbosacral-plexus-wwo") == [
        ("missing-sequence", "post-contrast-t1-fat-suppressed")]
    assert audit(library, series, protocol="mr-lumbosacral-plexus-wo") == []


def test_dixon_water_counts_as_fat_suppressed_but_fat_image_does_not(library: Library) -> None:
    base = [sc("T1", "coronal", 30, number=1), sc("T2", "axial", -30, number=2)]
    dixon = dict(plane="coronal", tilt=30, derived=True, number=3, description="T2 DIXON")
    water = sc("T2", stack="W", dixon="W", fat_suppressed=True, fat_suppression=FatSuppression.DIXON, **dixon)
    fat = sc("T2", stack="F", dixon="F", fat_suppressed=False, **{**dixon, "number": 4})
    assert audit(library, base + [water], protocol="mr-lumbosacral-plexus-wo") == []
    result = findings(library, base + [fat], protocol="mr-lumbosacral-plexus-wo")
    assert [(f.code, f.requirement) for f in result] == [(FindingCode.MISSING_SEQUENCE, "fluid-fat-suppressed")]
    plain_derived = replace(water, dixon=None, fat_suppression=FatSuppression.CHESS, stack=None)
    result = findings(library, base + [plain_derived], protocol="mr-lumbosacral-plexus-wo")
    assert "is derived (derived images do not count as an acquisition)" in result[0].message


def test_localizers_do_not_satisfy_requirements(library: Library) -> None:
    series = [sc("T1", "coronal", 30, localizer=True), stir(plane="coronal", tilt=30), sc("T2", "axial", -30)]
    result = findings(library, series, protocol="mr-lumbosacral-plexus-wo")
    assert [(f.code, f.requirement) for f in result] == [(FindingCode.MISSING_SEQUENCE, "t1")]
    assert "is a localizer" in result[0].message


# ------------------------------------------------------------------------------------------------ planes


def test_straight_planes_fail_the_orthogonal_oblique_rule(library: Library) -> None:
    result = findings(library, complete_plexus(tilt=0.0), protocol="mr-lumbosacral-plexus-wwo")
    assert [(f.code, f.requirement) for f in result] == [(FindingCode.MISSING_SEQUENCE, "orthogonal-oblique-planes")]
    assert "straight planes, not oblique" in result[0].message


def test_oblique_but_not_orthogonal_fails(library: Library) -> None:
    series = [replace(s, normal=_normal("coronal", 30), plane=Plane.CORONAL,
                      obliquity_deg=30.0) for s in complete_plexus()]
    rule = library.get("mr-lumbosacral-plexus-wwo").planes[0]
    outcome = check_plane_rule(rule, series)
    assert not outcome.met and "no two acquired series are perpendicular" in outcome.explanation


def test_3d_isotropic_acquisition_counts_alone_and_thick_3d_does_not(library: Library) -> None:
    rule = library.get("mr-lumbosacral-plexus-wwo").planes[0]
    iso = stir(plane="coronal", tilt=0, acquisition=Acquisition.THREE_D, slice_thickness=1.0)
    assert check_plane_rule(rule, [sc("T1", "coronal"), iso]).met
    thick = replace(iso, slice_thickness=3.0)
    assert not check_plane_rule(rule, [sc("T1", "coronal"), thick]).met


def test_reformats_count_as_planes_only_with_a_3d_acquisition(library: Library) -> None:
    rule = library.get("mr-lumbosacral-plexus-wwo").planes[0]
    acquired = stir(plane="coronal", tilt=30, acquisition=Acquisition.THREE_D, slice_thickness=2.0)
    mpr = stir(plane="axial", tilt=-30, derived=True, description="MPR AX")
    assert check_plane_rule(rule, [acquired, mpr]).met
    two_d = replace(acquired, acquisition=Acquisition.TWO_D)
    assert not check_plane_rule(rule, [two_d, mpr]).met


# ---------------------------------------------------------------------------------------- CT and limits


def ct(plane: str, **kw: Any) -> SeriesClass:
    return sc("unknown", plane, modality="CT", post_contrast=kw.pop("post_contrast", True), field_strength=None,
              acquisition=None, **kw)


def test_ct_thick_axial_is_a_parameter_problem(library: Library) -> None:
    series = [ct("axial", slice_thickness=5.0), ct("coronal", derived=True), ct("sagittal", derived=True)]
    f = facts("CT ABDOMEN PELVIS W CONTRAST", "CT")
    result = findings(library, series, study=f)
    assert [(x.code, x.requirement) for x in result] == [(FindingCode.PARAMETER, "thin-axial-source")]
    assert "slice thickness 5 mm outside the limit \u2264 3 mm" in result[0].message


def test_non_contrast_ct_for_plexopathy_is_the_wrong_exam(library: Library) -> None:
    series = [ct(p, post_contrast=False, slice_thickness=1.0, derived=p != "axial")
              for p in ("axial", "coronal", "sagittal")]
    f = facts("CT ABDOMEN PELVIS WO CONTRAST", "CT")
    result = findings(library, series, study=f, indicated="ct-abdomen-pelvis-with-contrast")
    assert [(x.code, x.severity) for x in result] == [(FindingCode.WRONG_PROTOCOL, Severity.ERROR)]
    assert "IV contrast given" in result[0].message.replace("iv contrast given", "IV contrast given")
    # not indicated: the same CT is simply not recognised as the contrast protocol
    assert audit(library, series, study=f) == [("no-protocol", None)]


def test_ct_when_mri_was_indicated_is_the_wrong_exam(library: Library) -> None:
    series = [ct(p, slice_thickness=1.0, derived=p != "axial") for p in ("axial", "coronal", "sagittal")]
    f = facts("CT ABDOMEN PELVIS W CONTRAST", "CT")
    result = findings(library, series, study=f, indicated="mr-lumbosacral-plexus-wwo")
    assert [x.code for x in result] == [FindingCode.WRONG_PROTOCOL]
    assert "this study is CT" in result[0].message
    assert result[0].evidence["identified_protocol"] == "ct-abdomen-pelvis-with-contrast"


# ------------------------------------------------------------------------------------------ wrong exam


def pelvis_series() -> list[SeriesClass]:
    return [sc("T2", "sagittal"), sc("T1", "axial"), sc("T2", "axial"), stir(plane="coronal")]


def test_standard_pelvis_for_plexopathy_is_the_wrong_exam(library: Library) -> None:
    f = facts("MR PELVIS WO")
    result = findings(library, pelvis_series(), study=f, indicated="mr-lumbosacral-plexus-wwo")
    assert [(x.code, x.requirement) for x in result] == [(FindingCode.WRONG_PROTOCOL, None)]
    message = result[0].message
    assert "recognisably MRI pelvis" in message and "Study Description 'MR PELVIS WO'" in message
    assert "Standard MRI of the pelvis without dedicated plexus imaging is not supported" in message
    assert "Orthogonal views through the oblique planes" in message
    # without an indication the same study is simply a standard pelvis MRI, audited as such
    assert audit(library, pelvis_series(), study=f) == []


def test_pelvis_description_with_dedicated_plexus_content_is_not_wrong(library: Library) -> None:
    f = facts("MR PELVIS")
    assert audit(library, complete_plexus(), study=f, indicated="mr-lumbosacral-plexus-wwo") == []


def test_what_was_performed_outweighs_what_was_ordered(library: Library) -> None:
    # ordered as a plexus MRI, performed (Study Description) as a standard pelvis
    performed_pelvis = facts("MR PELVIS", requested_procedure_description="MRI LUMBOSACRAL PLEXUS WO+W")
    assert audit(library, pelvis_series(), study=performed_pelvis, indicated="mr-lumbosacral-plexus-wwo") == [
        ("wrong-protocol", None)]
    performed_plexus = facts("MR LUMBOSACRAL PLEXUS WO+W", requested_procedure_description="MRI PELVIS")
    assert audit(library, pelvis_series(), study=performed_plexus, indicated="mr-lumbosacral-plexus-wwo") == [
        ("missing-sequence", "post-contrast-t1-fat-suppressed"), ("missing-sequence", "orthogonal-oblique-planes")]


def test_variant_of_the_same_exam_is_not_the_wrong_exam(library: Library) -> None:
    f = facts("MR LUMBOSACRAL PLEXUS WO CONTRAST")
    series = [s for s in complete_plexus() if not s.post_contrast]
    assert audit(library, series, study=f, indicated="mr-lumbosacral-plexus-wwo") == [
        ("missing-sequence", "post-contrast-t1-fat-suppressed")]


# -------------------------------------------------------------------------------------------- choosing


@pytest.mark.parametrize(
    ("description", "modality", "expected"),
    [
        ("MR LUMBOSACRAL PLEXUS WO+W CONTRAST", "MR", "mr-lumbosacral-plexus-wwo"),
        ("MRI LS PLEXUS W/WO", "MR", "mr-lumbosacral-plexus-wwo"),
        ("MRI LUMBOSACRAL PLEXUS WITHOUT AND WITH CONTRAST", "MR", "mr-lumbosacral-plexus-wwo"),
        ("MRI LUMBOSACRAL PLEXUS WO CONTRAST", "MR", "mr-lumbosacral-plexus-wo"),
        ("MR NEUROGRAPHY PELVIS W/O", "MR", "mr-lumbosacral-plexus-wo"),
        ("MR PELVIS WO", "MR", "mr-pelvis"),
        ("MRI LUMBAR SPINE WITHOUT CONTRAST", "MR", "mr-lumbar-spine-wo"),
        ("CT ABDOMEN PELVIS W CONTRAST", "CT", "ct-abdomen-pelvis-with-contrast"),
        ("CT ABDOMEN PELVIS WO CONTRAST", "CT", None),
        ("MR BRAIN", "MR", None),
    ],
)
def test_identify_from_descriptions(library: Library, description: str, modality: str, expected: str | None) -> None:
    found = identify(facts(description, modality), [], library)
    assert (found[0].protocol.id if found else None) == expected


def test_content_decides_between_variants_when_the_description_does_not(library: Library) -> None:
    without = [s for s in complete_plexus() if not s.post_contrast]
    assert identify(facts("MR LS PLEXUS"), without, library)[0].protocol.id == "mr-lumbosacral-plexus-wo"
    assert identify(facts("MR LS PLEXUS"), complete_plexus(), library)[0].protocol.id == "mr-lumbosacral-plexus-wwo"


def test_choice_order_and_no_protocol(library: Library) -> None:
    f = facts("MR PELVIS WO")
    series = pelvis_series()
    assert choose_protocol(f, series, library, protocol_id="mr-lumbar-spine-wo").chosen_by is ChosenBy.OPTION
    chosen = choose_protocol(f, series, library, indicated_id="mr-lumbosacral-plexus-wo")
    assert (chosen.chosen_by, chosen.protocol.id) == (ChosenBy.INDICATION, "mr-lumbosacral-plexus-wo")
    chosen = choose_protocol(f, series, library, indicated_id="not-in-library")
    assert chosen.chosen_by is ChosenBy.STUDY and "not in the protocol library" in chosen.reason
    with pytest.raises(KeyError, match="did you mean"):
        choose_protocol(f, series, library, protocol_id="mr-pelvic")
    none = choose_protocol(facts("MR BRAIN"), series, library)
    assert none.protocol is None and "no protocol in the library names this study" in none.reason
    result = evaluate(none, facts("MR BRAIN"), series).findings
    assert [(x.code, x.severity) for x in result] == [(FindingCode.NO_PROTOCOL, Severity.INFO)]


# --------------------------------------------------------------------------------------------- timing


@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, ["trauma-too-early"]), (27, ["trauma-too-early"]), (28, []), (90, []), (91, ["trauma-delayed"]),
     (-3, ["malformed-value"])],
)
def test_trauma_timing(library: Library, days: int, expected: list[str]) -> None:
    protocol = library.get("mr-lumbosacral-plexus-wwo")
    f = facts(date=dt.date(2025, 3, 14))
    context = ClinicalContext(indication="fall", trauma_date=f.date - dt.timedelta(days=days), source="test")
    found, timing = check_timing(protocol, f, context)
    assert [x.code.value for x in found] == expected
    assert timing["days_after_trauma"] == days and timing["date_source"] == "StudyDate"
    severities = {"trauma-too-early": Severity.ERROR, "trauma-delayed": Severity.WARNING}
    for finding in found:
        if finding.code.value in severities:
            assert finding.severity is severities[finding.code.value]
            assert "StudyDate" in finding.message and "1 month" in finding.message


def test_site_configured_maximum(library: Library) -> None:
    protocol = library.get("mr-lumbosacral-plexus-wwo")
    strict = replace(protocol, trauma=replace(protocol.trauma, max_days=60))
    context = ClinicalContext(trauma_date=dt.date(2025, 1, 1))
    found, _ = check_timing(strict, facts(date=dt.date(2025, 3, 14)), context)
    assert [x.code for x in found] == [FindingCode.TRAUMA_DELAYED] and "within 60 days" in found[0].message


@pytest.mark.parametrize(
    ("indication", "expected"),
    [("S34.4XXA lumbosacral plexus injury", ["context-missing"]), ("post-traumatic plexopathy", ["context-missing"]),
     ("non-traumatic plexopathy", []), ("", [])],
)
def test_traumatic_indication_without_date_is_context_missing(library: Library, indication: str,
                                                             expected: list[str]) -> None:
    protocol = library.get("mr-lumbosacral-plexus-wwo")
    found, _ = check_timing(protocol, facts(), ClinicalContext(indication=indication))
    assert [x.code.value for x in found] == expected
    if found:
        assert found[0].severity is Severity.WARNING and "date of injury" in found[0].message
        assert found[0].action.startswith("Record the date of the injury")


def test_unknown_study_date_with_trauma_date(library: Library) -> None:
    protocol = library.get("mr-lumbosacral-plexus-wwo")
    found, _ = check_timing(protocol, facts(date=None), ClinicalContext(trauma_date=dt.date(2025, 1, 1)))
    assert [x.code for x in found] == [FindingCode.CONTEXT_MISSING]


# ------------------------------------------------------------------------------------------ study facts


def _header(path: str, **kw: Any) -> InstanceHeader:
    base = dict(path=path, sop_class_uid="1.2.840.10008.5.1.4.1.1.4", sop_instance_uid=path,
                study_instance_uid=STUDY, series_instance_uid=f"{STUDY}.1", modality="MR")
    base.update(kw)
    return InstanceHeader(**base)


def test_study_date_falls_back_to_acquisition_then_series_date() -> None:
    study = next(group_studies([_header("a", acquisition_date="20250316", series_date="20250315"),
                                _header("b", acquisition_date="20250317")]))
    f = study_facts(study)
    assert (f.date, f.date_source) == (dt.date(2025, 3, 16), "AcquisitionDate")
    study = next(group_studies([_header("a", study_date="20250310", acquisition_date="20250316")]))
    assert study_facts(study).date_source == "StudyDate"
    study = next(group_studies([_header("a", study_date="2025XX10", series_date="20250301")]))
    f = study_facts(study)
    assert (f.date, f.date_source) == (dt.date(2025, 3, 1), "SeriesDate") and "not a date" in f.date_problem
    assert isinstance(study, Study)


def test_choice_record_is_plain_data(library: Library) -> None:
    choice = Choice(library.get("mr-pelvis"), ChosenBy.STUDY, "because")
    assert choice.protocol.id == "mr-pelvis" and choice.identified == ()
