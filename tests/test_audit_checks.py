"""The audit's checks on real DICOM written with pydicom (synth), across vendors: the near miss named
first, a STIR after contrast, quality limits, contrast and device safety, the trauma action, and
justified deviations recorded in the context."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from protocolcheck.audit.engine import AuditOptions, audit_paths
from protocolcheck.clinical.context import ClinicalContext, load_context_csv
from protocolcheck.clinical.findings import AuditResult, Finding, FindingCode, Severity, Status
from protocolcheck.clinical.library import Library, load_library
from protocolcheck.testing import synth
from protocolcheck.testing.synth import Kind, SeriesSpec, Vendor

VENDORS = [Vendor.SIEMENS, Vendor.GE, Vendor.PHILIPS, Vendor.CANON]
PLEXOPATHY = "lumbosacral plexopathy G54.1"
STUDY_DATE = dt.date(2025, 3, 14)  # synth's default study date


@pytest.fixture(scope="module")
def library() -> Library:
    return load_library()


def audit(folder: Path, library: Library, protocol: str | None = None, **context: Any) -> AuditResult:
    options = AuditOptions(library, protocol_id=protocol,
                           default_context=ClinicalContext(**context) if context else None)
    results = list(audit_paths([folder], options))
    assert len(results) == 1
    return results[0]


def write(spec: synth.StudySpec, tmp_path: Path) -> Path:
    synth.write_study(spec, tmp_path / "study")
    return tmp_path / "study"


def only(result: AuditResult, code: FindingCode) -> Finding:
    found = [f for f in result.findings if f.code is code]
    assert len(found) == 1, [f.message for f in result.findings]
    return found[0]


def series_without_fluid_fs(**kw: Any) -> list[SeriesSpec]:
    return list(synth.plexus_series(slices=2, fluid_fat_suppressed=False, **kw))


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda v: v.value)
def test_a_flair_where_a_stir_was_intended_is_named_first(vendor: Vendor, tmp_path: Path, library: Library) -> None:
    (cor, cor_t), _ = synth.plexus_planes(30.0)
    series = series_without_fluid_fs()
    series.insert(2, SeriesSpec(Kind.FLAIR, cor, cor_t, 2, description="COR STIR"))
    result = audit(write(synth.plexus_study(vendor, "NEAR1", series=series), tmp_path), library, indication=PLEXOPATHY)
    finding = only(result, FindingCode.MISSING_SEQUENCE)
    assert finding.requirement == "fluid-fat-suppressed" and finding.severity is Severity.ERROR
    first = finding.found[0]
    assert first.name.endswith("'COR STIR'") or "COR STIR" in first.name, finding.message
    assert re.search(r"inversion FLAIR, TI \d+ ms \(needs STIR\)", "; ".join(first.why)), first.why
    assert finding.action == "Add an oblique coronal STIR (or fat-saturated T2) before contrast"
    assert finding.expected.startswith("fat-saturated T2 or STIR")
    assert finding.message.index("COR STIR") < finding.message.index("Action:")


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda v: v.value)
def test_a_stir_after_contrast_does_not_count_and_is_named(vendor: Vendor, tmp_path: Path, library: Library) -> None:
    (cor, cor_t), _ = synth.plexus_planes(30.0)
    series = series_without_fluid_fs() + [SeriesSpec(Kind.STIR, cor, cor_t, 2, post_contrast=True,
                                                      description="COR STIR POST", contrast_agent="GADOVIST")]
    result = audit(write(synth.plexus_study(vendor, "POSTSTIR", series=series), tmp_path), library,
                   indication=PLEXOPATHY)
    finding = only(result, FindingCode.MISSING_SEQUENCE)
    assert finding.requirement == "fluid-fat-suppressed"
    first = finding.found[0]
    assert "COR STIR POST" in first.name and "acquired after contrast (needs before contrast)" in first.why
    assert "before contrast" in finding.action


def test_a_stir_before_contrast_passes(tmp_path: Path, library: Library) -> None:
    result = audit(write(synth.plexus_study(Vendor.SIEMENS, "PRESTIR", slices=2), tmp_path), library,
                   indication=PLEXOPATHY)
    assert result.status is Status.PASS, [f.message for f in result.findings]


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda v: v.value)
def test_thick_slices_and_low_field_are_out_of_range(vendor: Vendor, tmp_path: Path, library: Library) -> None:
    series = [s if s.kind_ is not Kind.T2_TSE else SeriesSpec(Kind.T2_TSE, s.plane_, s.tilt_deg, 2, slice_thickness=8.0,
                                                               description="AX T2 THICK")
              for s in synth.plexus_series(slices=2)]
    spec = synth.plexus_study(vendor, "LIMITS", series=series, field_strength=0.3)
    result = audit(write(spec, tmp_path), library, indication=PLEXOPATHY)
    by_requirement = {f.requirement: f for f in result.findings if f.code is FindingCode.PARAMETER}
    assert set(by_requirement) == {"slice-thickness-2d", "field-strength"}, [f.message for f in result.findings]
    thick = by_requirement["slice-thickness-2d"]
    assert [c.name for c in thick.found] == [n for n in (c.name for c in thick.found) if "AX T2 THICK" in n]
    assert thick.found[0].why == ("slice thickness 8 mm (limit \u2264 5 mm)",)
    assert "Site policy:" in thick.message and thick.action.startswith("Repeat")
    field = by_requirement["field-strength"]
    assert field.found and all(c.why == ("field strength 0.3 T (limit \u2265 1.5 T)",) for c in field.found)
    assert field.action == "Scan the patient on a 1.5 T or 3 T scanner"
    assert result.status is Status.FAIL


def test_a_site_can_tighten_a_limit(tmp_path: Path, library: Library) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    for path in Path(library.path).glob("*.yaml"):
        text = path.read_text()
        (folder / path.name).write_text(text.replace("    max: 5                     # mm", "    max: 3"))
    strict = load_library(folder)
    study = write(synth.plexus_study(Vendor.GE, "TIGHT", slices=2), tmp_path)  # synth's 2D slices are 4 mm
    assert audit(study, library, indication=PLEXOPATHY).status is Status.PASS
    result = audit(study, strict, indication=PLEXOPATHY)
    assert [f.requirement for f in result.findings] == ["slice-thickness-2d"]


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda v: v.value)
def test_gadolinium_despite_low_egfr_fails_whatever_the_protocol(vendor: Vendor, tmp_path: Path,
                                                                 library: Library) -> None:
    study = write(synth.plexus_study(vendor, "EGFR20", slices=2), tmp_path)
    result = audit(study, library, protocol="mr-lumbosacral-plexus-wo", indication=PLEXOPATHY, egfr=20.0)
    finding = only(result, FindingCode.CONTRAST_CONTRAINDICATED)
    assert finding.severity is Severity.ERROR and result.status is Status.FAIL
    assert "eGFR 20 is below 30 mL/min/1.73 m\u00b2" in finding.summary
    assert finding.found and all(c.why == ("acquired after gadolinium",) for c in finding.found)
    assert audit(study, library, protocol="mr-lumbosacral-plexus-wo", indication=PLEXOPATHY,
                 egfr=45.0).status is Status.PASS


def test_no_contrast_no_contrast_finding(tmp_path: Path, library: Library) -> None:
    study = write(synth.plexus_study(Vendor.SIEMENS, "NOGAD", slices=2, with_contrast_ordered=False), tmp_path)
    result = audit(study, library, indication=PLEXOPATHY, egfr=20.0, gadolinium_contraindicated=True)
    assert FindingCode.CONTRAST_CONTRAINDICATED not in {f.code for f in result.findings}


@pytest.mark.parametrize("vendor", [Vendor.SIEMENS, Vendor.PHILIPS], ids=lambda v: v.value)
def test_an_mri_with_mri_recorded_as_contraindicated_warns(vendor: Vendor, tmp_path: Path, library: Library) -> None:
    study = write(synth.plexus_study(vendor, "PACER", slices=2), tmp_path)
    result = audit(study, library, protocol="mr-lumbosacral-plexus-wwo", indication=PLEXOPATHY,
                   mri_contraindicated=True)
    finding = only(result, FindingCode.POSSIBLE_MRI_CONTRAINDICATION)
    assert finding.severity is Severity.WARNING and result.status is Status.WARN
    assert "MR Conditional" in finding.action and "CT with IV contrast" in finding.expected
    assert [q.id for q in finding.guideline] == ["seed-ct-when-mri-contraindicated"]


def test_a_ct_for_a_patient_with_mri_contraindicated_is_fine(tmp_path: Path, library: Library) -> None:
    study = write(synth.ct_study(Vendor.GE, "CTPACER", with_contrast=True), tmp_path)
    result = audit(study, library, indication=PLEXOPATHY, mri_contraindicated=True)
    assert FindingCode.POSSIBLE_MRI_CONTRAINDICATION not in {f.code for f in result.findings}


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda v: v.value)
def test_too_early_after_trauma_says_when_to_repeat(vendor: Vendor, tmp_path: Path, library: Library) -> None:
    study = write(synth.plexus_study(vendor, "EARLY", slices=2), tmp_path)
    result = audit(study, library, indication="S34.4XXA lumbosacral plexus injury",
                   trauma_date=STUDY_DATE - dt.timedelta(days=10))
    finding = only(result, FindingCode.TRAUMA_TOO_EARLY)
    assert finding.action == "Repeat the MRI on or after 2025-04-01 if the question is still open"
    assert "on or after 2025-04-01" in finding.expected


def test_a_deviation_in_the_context_csv_keeps_the_finding_as_info(tmp_path: Path, library: Library) -> None:
    study = write(synth.plexus_study(Vendor.SIEMENS, "HEMATOMA", slices=2), tmp_path)
    csv_path = tmp_path / "context.csv"
    csv_path.write_text("accession_number,indication,trauma_date,exception\n"
                        "HEMATOMA,S34.4XXA lumbosacral plexus injury,2025-03-04,"
                        "\"suspected hematoma, imaging needed now\"\n")
    options = AuditOptions(library, contexts=load_context_csv(csv_path))
    [result] = list(audit_paths([study], options))
    finding = only(result, FindingCode.TRAUMA_TOO_EARLY)
    assert finding.severity is Severity.INFO and finding.deviated_from is Severity.ERROR
    assert finding.deviation == "suspected hematoma, imaging needed now"
    assert "Deviation recorded: suspected hematoma, imaging needed now." in finding.message
    assert result.status is Status.PASS


def test_a_deviation_does_not_excuse_contrast_unless_it_names_it(tmp_path: Path, library: Library) -> None:
    study = write(synth.plexus_study(Vendor.GE, "GADOK", slices=2), tmp_path)
    plain = audit(study, library, indication=PLEXOPATHY, egfr=20.0, exception="urgent, no time to wait")
    assert only(plain, FindingCode.CONTRAST_CONTRAINDICATED).severity is Severity.ERROR
    named = audit(study, library, indication=PLEXOPATHY, egfr=20.0,
                  exception="contrast-despite-contraindication: contrast essential, group II agent")
    finding = only(named, FindingCode.CONTRAST_CONTRAINDICATED)
    assert finding.severity is Severity.INFO and finding.deviation == "contrast essential, group II agent"


# every message template, rendered: grammatical and free of internal words

INTERNAL = re.compile(r"\bseed\b|--[a-z]|\bmr-lumbo|\bct-abdomen|\bmr-pelvis|\bmr-lumbar|\bNone\b|\bnull\b")


def _scenarios(tmp_path: Path, library: Library) -> list[Finding]:
    (cor, cor_t), _ = synth.plexus_planes(30.0)
    flair = series_without_fluid_fs()
    flair.insert(2, SeriesSpec(Kind.FLAIR, cor, cor_t, 2, description="COR STIR"))
    cases: list[tuple[synth.StudySpec, str | None, dict[str, Any]]] = [
        (synth.plexus_study(Vendor.GE, "G1", series=flair, field_strength=0.3), None, {"indication": PLEXOPATHY}),
        (synth.plexus_study(Vendor.SIEMENS, "G2", slices=2, oblique=False, post_contrast=False), None,
         {"indication": PLEXOPATHY, "egfr": 20.0, "mri_contraindicated": True}),
        (synth.plexus_study(Vendor.PHILIPS, "G3", slices=2), None,
         {"indication": "S34.4XXA plexus injury", "trauma_date": STUDY_DATE - dt.timedelta(days=3)}),
        (synth.plexus_study(Vendor.CANON, "G4", slices=2), None,
         {"indication": "S34.4XXA plexus injury", "trauma_date": STUDY_DATE - dt.timedelta(days=200)}),
        (synth.plexus_study(Vendor.CANON, "G5", slices=2), None, {"indication": "S34.4XXA plexus injury"}),
        (synth.pelvis_study(Vendor.SIEMENS, "G6", slices=2), None, {"indication": PLEXOPATHY}),
        (synth.ct_study(Vendor.GE, "G7", with_contrast=False), None, {"indication": PLEXOPATHY}),
        (replace(synth.pelvis_study(Vendor.GE, "G8", slices=2), study_description="MR KNEE",
                 requested_procedure="MRI KNEE", procedure_code=None), None, {}),
        (synth.plexus_study(Vendor.UIH, "G10", slices=2), None, {"indication": PLEXOPATHY, "egfr": 25.0}),
        (synth.plexus_study(Vendor.GE, "G9", slices=2), "mr-lumbar-spine-wo", {}),
    ]
    findings: list[Finding] = []
    for i, (spec, protocol, context) in enumerate(cases):
        folder = tmp_path / f"s{i}"
        synth.write_study(spec, folder)
        findings.extend(audit(folder, library, protocol, **context).findings)
    return findings


def test_every_message_is_grammatical_and_free_of_internal_words(tmp_path: Path, library: Library) -> None:
    findings = _scenarios(tmp_path, library)
    codes = {f.code for f in findings}
    assert codes >= {FindingCode.MISSING_SEQUENCE, FindingCode.PARAMETER, FindingCode.CONTRAST_CONTRAINDICATED,
                     FindingCode.POSSIBLE_MRI_CONTRAINDICATION, FindingCode.TRAUMA_TOO_EARLY,
                     FindingCode.TRAUMA_DELAYED, FindingCode.CONTEXT_MISSING, FindingCode.WRONG_PROTOCOL,
                     FindingCode.NO_PROTOCOL}, codes
    for f in findings:
        text = f.render(guideline=False)
        assert f.action, f.message
        assert not INTERNAL.search(text), (INTERNAL.search(text), text)
        assert text[0].isupper() and text.endswith("."), text
        assert "  " not in text and ".." not in text and " ." not in text and ",." not in text, text
        assert f.action[0].isupper() and f.action.count(".") <= 1 and "Action: " + f.action.rstrip(".") in text
        assert ". " not in f.action, f"one sentence: {f.action}"
        first = f.action.split()[0]
        assert first in {"Add", "Repeat", "Scan", "Order", "Record", "Correct", "Confirm", "Tell", "Angle", "Book",
                         "Send", "Reconstruct", "Acquire"}, f.action
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
        assert all(s[0].isupper() for s in sentences), sentences


def test_the_exception_option_records_a_deviation(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from protocolcheck.cli import main

    study = write(synth.plexus_study(Vendor.CANON, "OPT", slices=2), tmp_path)
    args = ["audit", str(study), "--no-db", "--format", "json", "--indication", "S34.4XXA lumbosacral plexus injury",
            "--trauma-date", (STUDY_DATE - dt.timedelta(days=5)).isoformat()]
    strict = CliRunner().invoke(main, args)
    assert strict.exit_code == 1
    kept = CliRunner().invoke(main, [*args, "--exception", "suspected hematoma, imaging needed now"])
    assert kept.exit_code == 0, kept.output
    import json

    [record] = json.loads(kept.stdout)
    [finding] = [f for f in record["findings"] if f["code"] == "trauma-too-early"]
    assert finding["severity"] == "info" and finding["deviated_from"] == "error"
    assert finding["deviation"] == "suspected hematoma, imaging needed now" and finding["action"]


@pytest.mark.parametrize("where", ["indication", "order"])
def test_a_device_named_in_the_text_warns_on_an_mri(where: str, tmp_path: Path, library: Library) -> None:
    spec = synth.plexus_study(Vendor.GE, "DEVICE", slices=2)
    context: dict[str, Any] = {"indication": PLEXOPATHY}
    if where == "indication":
        context["indication"] = PLEXOPATHY + "; pacemaker"
    else:
        spec = replace(spec, requested_procedure="MRI LUMBOSACRAL PLEXUS W WO CONTRAST - PATIENT HAS PACEMAKER")
    result = audit(write(spec, tmp_path), library, **context)
    finding = only(result, FindingCode.POSSIBLE_MRI_CONTRAINDICATION)
    assert "pacemaker" in finding.summary.lower() and finding.severity is Severity.WARNING
    assert result.status is Status.WARN, [f.message for f in result.findings]
    quiet = audit(write(synth.plexus_study(Vendor.GE, "NODEVICE", slices=2), tmp_path / "b"), library,
                  indication=PLEXOPATHY + "; no pacemaker")
    assert FindingCode.POSSIBLE_MRI_CONTRAINDICATION not in {f.code for f in quiet.findings}
