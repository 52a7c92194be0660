"""End to end on real DICOM files written with pydicom (synth): every finding code on every vendor,
the committed samples as their README says, and the ``audit`` / ``protocols`` commands."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from protocolcheck.audit.engine import AuditOptions, Summary, audit_paths, audit_records, reaches, unmatched_context
from protocolcheck.cli import main
from protocolcheck.clinical.context import ClinicalContext, load_context_csv
from protocolcheck.clinical.findings import AuditResult, Severity, Status
from protocolcheck.clinical.library import default_library_path, load_library
from protocolcheck.dicom.geometry import Plane
from protocolcheck.dicom.records import Unreadable
from protocolcheck.testing import synth
from protocolcheck.testing.synth import Kind, SeriesSpec, Vendor

MR_VENDORS = [v for v in Vendor]
STUDY_DATE = dt.date(2025, 3, 14)
PLEXOPATHY = "lumbosacral plexopathy G54.1"


@pytest.fixture(scope="module")
def library():
    return load_library()


def codes(result: AuditResult) -> list[tuple[str, str | None]]:
    return sorted((f.code.value, f.requirement) for f in result.findings)


def audit_one(folder: Path, library: Any, **context: Any) -> AuditResult:
    default = ClinicalContext(**context) if context else None
    results = list(audit_paths([folder], AuditOptions(library, default_context=default)))
    assert len(results) == 1
    return results[0]


def _without(series: tuple[SeriesSpec, ...], kind: Kind) -> tuple[SeriesSpec, ...]:
    return tuple(s for s in series if s.kind_ is not kind)


def _uninformative(series: tuple[SeriesSpec, ...]) -> tuple[SeriesSpec, ...]:
    """'Series N' for every description and protocol name. The post-contrast series carry a
    Contrast/Bolus Agent: with neither text nor agent, no header says a series is post-contrast."""
    return tuple(replace(s, description=f"Series {i + 1}", protocol_name=f"Series {i + 1}",
                         contrast_agent="GADOVIST" if s.is_post else None) for i, s in enumerate(series))


def _3d_with_reformats(vendor: Vendor, accession: str) -> synth.StudySpec:
    """A 3D STIR (2 mm: not isotropic enough to count alone) plus oblique MPR reformats, T1, T2, post T1 FS."""
    mpr = (("ImageType", ["DERIVED", "SECONDARY", "MPR"]),)
    series = (
        SeriesSpec(Kind.LOCALIZER, slices=1),
        SeriesSpec(Kind.T1_TSE, Plane.CORONAL, 0, 2),
        SeriesSpec(Kind.SPACE_STIR_3D, Plane.CORONAL, 0, 4, slice_thickness=2.0),
        SeriesSpec(Kind.SPACE_STIR_3D, Plane.CORONAL, 30, 2, description="MPR COR OBL", overrides=mpr),
        SeriesSpec(Kind.SPACE_STIR_3D, Plane.AXIAL, -30, 2, description="MPR AX OBL", overrides=mpr),
        SeriesSpec(Kind.T2_TSE, Plane.AXIAL, 0, 2),
        SeriesSpec(Kind.T1_FS_POST, Plane.CORONAL, 0, 2),
    )
    return synth.plexus_study(vendor, accession, series=series)


# scenario -> (spec factory, context, expected status, expected findings)
SCENARIOS: dict[str,
                tuple[Callable[[Vendor, str], synth.StudySpec], dict[str, Any], str, list[tuple[str, str | None]]]] = {
    "complete": (lambda v, a: synth.plexus_study(v, a, slices=2), {"indication": PLEXOPATHY}, "pass", []),
    "no-fluid-fs": (lambda v, a: synth.plexus_study(v, a, slices=2, fluid_fat_suppressed=False),
                    {"indication": PLEXOPATHY}, "fail", [("missing-sequence", "fluid-fat-suppressed")]),
    "no-post": (lambda v, a: synth.plexus_study(v, a, slices=2, post_contrast=False),
                {"indication": PLEXOPATHY}, "fail", [("missing-sequence", "post-contrast-t1-fat-suppressed")]),
    "no-oblique": (lambda v, a: synth.plexus_study(v, a, slices=2, oblique=False),
                   {"indication": PLEXOPATHY}, "fail", [("missing-sequence", "orthogonal-oblique-planes")]),
    "no-pre-t1": (lambda v, a: synth.plexus_study(v, a, series=_without(synth.plexus_series(slices=2), Kind.T1_TSE)),
                  {"indication": PLEXOPATHY}, "fail", [("missing-sequence", "t1")]),
    "dixon": (lambda v, a: synth.plexus_study(v, a, slices=2, dixon=True), {"indication": PLEXOPATHY}, "pass", []),
    "uninformative-names": (lambda v, a: synth.plexus_study(v, a, series=_uninformative(synth.plexus_series(slices=2))),
                            {"indication": PLEXOPATHY}, "pass", []),
    "3d-with-reformats": (_3d_with_reformats, {"indication": PLEXOPATHY}, "pass", []),
    "too-early": (lambda v, a: synth.plexus_study(v, a, slices=2),
                  {"indication": "S34.4XXA lumbosacral plexus injury",
                   "trauma_date": STUDY_DATE - dt.timedelta(days=10)},
                  "fail", [("trauma-too-early", None)]),
    "delayed": (lambda v, a: synth.plexus_study(v, a, slices=2),
                {"indication": "traumatic plexopathy", "trauma_date": STUDY_DATE - dt.timedelta(days=120)},
                "warn", [("trauma-delayed", None)]),
    "trauma-date-missing": (lambda v, a: synth.plexus_study(v, a, slices=2),
                            {"indication": "S34.4XXA lumbosacral plexus injury"}, "warn", [("context-missing", None)]),
    "standard-pelvis": (lambda v, a: synth.pelvis_study(v, a, slices=2), {"indication": PLEXOPATHY}, "fail",
                        [("wrong-protocol", None)]),
}


@pytest.mark.parametrize("vendor", MR_VENDORS, ids=lambda v: v.value)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_finding_code_on_every_vendor(scenario: str, vendor: Vendor, tmp_path: Path, library: Any) -> None:
    make, context, status, expected = SCENARIOS[scenario]
    spec = make(vendor, f"T{vendor.value[:7].upper()}")
    synth.write_study(spec, tmp_path / "study")
    result = audit_one(tmp_path / "study", library, **context)
    assert (result.status.value, codes(result)) == (status, expected), [f.message for f in result.findings]
    assert result.protocol == ("mr-lumbosacral-plexus-wwo")
    for finding in result.findings:
        assert finding.message and finding.severity in (Severity.ERROR, Severity.WARNING)


@pytest.mark.parametrize("vendor", [Vendor.GE, Vendor.SIEMENS], ids=lambda v: v.value)
@pytest.mark.parametrize(
    ("with_contrast", "mri_contraindicated", "expected"),
    [(True, True, ("pass", [])), (False, True, ("fail", [("wrong-protocol", None)])),
     (False, False, ("fail", [("wrong-protocol", None)])),
     # CT with IV contrast without an MRI contraindication: may be appropriate (a warning, as check-order says)
     (True, False, ("warn", [("wrong-protocol", None)]))],
)
def test_ct_with_and_without_contrast(vendor: Vendor, with_contrast: bool, mri_contraindicated: bool,
                                      expected: tuple[str, list[Any]], tmp_path: Path, library: Any) -> None:
    synth.write_study(synth.ct_study(vendor, "CT1", with_contrast=with_contrast), tmp_path / "ct")
    result = audit_one(tmp_path / "ct", library, indication=PLEXOPATHY, mri_contraindicated=mri_contraindicated)
    assert (result.status.value, codes(result)) == expected, [f.message for f in result.findings]


def test_wrong_protocol_message_names_both_exams(tmp_path: Path, library: Any) -> None:
    synth.write_study(synth.pelvis_study(Vendor.HITACHI, "PEL1"), tmp_path / "pelvis")
    result = audit_one(tmp_path / "pelvis", library, indication=PLEXOPATHY)
    message = result.findings[0].message
    assert "MRI lumbosacral plexus without and with IV contrast" in message
    assert "This study is MRI pelvis without IV contrast" in message and "'MR PELVIS WO'" in message
    assert "usually not appropriate" in message and "not supported for plexopathy" in message
    assert result.protocol_reason.startswith(f"indication '{PLEXOPATHY}'")


def test_no_indication_uses_the_study_description(tmp_path: Path, library: Any) -> None:
    synth.write_study(synth.pelvis_study(Vendor.SIEMENS, "PEL2", slices=2), tmp_path / "pelvis")
    result = audit_one(tmp_path / "pelvis", library)
    assert result.protocol == "mr-pelvis" and "identified from the study" in result.protocol_reason
    synth.write_study(synth.ct_study(Vendor.SIEMENS, "CT2", with_contrast=False), tmp_path / "ct")
    result = audit_one(tmp_path / "ct", library)
    assert (result.status, codes(result)) == (Status.NO_PROTOCOL, [("no-protocol", None)])


def test_explicit_protocol_overrides_indication(tmp_path: Path, library: Any) -> None:
    synth.write_study(synth.plexus_study(Vendor.GE, "GE9", slices=2, post_contrast=False), tmp_path / "s")
    options = AuditOptions(library, protocol_id="mr-lumbosacral-plexus-wo",
                           default_context=ClinicalContext(indication=PLEXOPATHY))
    [result] = audit_paths([tmp_path / "s"], options)
    assert (result.protocol, result.status) == ("mr-lumbosacral-plexus-wo", Status.PASS)
    assert result.protocol_reason == "chosen for this audit: MRI lumbosacral plexus without IV contrast"


def test_result_records_requirements_series_and_timing(tmp_path: Path, library: Any) -> None:
    synth.write_study(synth.plexus_study(Vendor.SIEMENS, "SIE9", slices=2), tmp_path / "s")
    result = audit_one(tmp_path / "s", library, indication="fall", trauma_date=dt.date(2025, 2, 1))
    data = result.to_dict()
    assert {"study_instance_uid", "accession_number", "study_date", "modality", "study_description", "protocol",
            "status", "findings", "series"} <= set(data)
    assert data["study_date"] == "2025-03-14"
    assert data["timing"]["days_after_trauma"] == 41 and data["timing"]["date_source"] == "StudyDate"
    met = {r["id"]: r for r in data["requirements"]}
    assert all(r["met"] for r in met.values())
    assert met["fluid-fat-suppressed"]["names"][0].endswith("'t2_tirm_cor_obl_stir'")
    assert len(data["series"]) >= 7 and "patient_name" not in data


# --------------------------------------------------------------------------------- unreadable files


def test_unreadable_file_in_a_study_folder_is_a_finding_of_that_study(tmp_path: Path, library: Any) -> None:
    folder = tmp_path / "study"
    synth.write_study(synth.plexus_study(Vendor.SIEMENS, "UNR1", slices=2), folder)
    good = sorted(folder.rglob("*.dcm"))[0]
    (good.parent / "broken.dcm").write_bytes(good.read_bytes()[:300])
    [result] = audit_paths([tmp_path], AuditOptions(library))
    assert result.status is Status.WARN
    [finding] = result.findings
    assert finding.code.value == "unreadable-file" and "broken.dcm" in finding.message


def test_unreadable_files_of_no_study_become_an_error_record(tmp_path: Path, library: Any) -> None:
    synth.write_study(synth.plexus_study(Vendor.GE, "UNR2", slices=2), tmp_path / "a")
    synth.write_study(synth.plexus_study(Vendor.UIH, "UNR3", slices=2), tmp_path / "b")
    (tmp_path / "junk.dcm").write_text("not dicom")
    results = list(audit_paths([tmp_path], AuditOptions(library)))
    assert [r.status for r in results[:2]] == [Status.PASS, Status.PASS]
    orphan = results[2]
    assert orphan.status is Status.ERROR and orphan.study_instance_uid == ""
    assert [f.code.value for f in orphan.findings] == ["unreadable-file"] and "junk.dcm" in orphan.findings[0].message
    assert reaches(results, Severity.ERROR) and not reaches(results, None)


def test_audit_records_accepts_scan_records(library: Any) -> None:
    results = list(audit_records([Unreadable("/nowhere/x.dcm", "empty file (0 bytes)")], AuditOptions(library)))
    assert [(r.status, r.findings[0].code.value) for r in results] == [(Status.ERROR, "unreadable-file")]
    assert Summary.of(results).line() == "1 studies: 0 pass, 0 warn, 0 fail, 0 no protocol, 1 error"


# ---------------------------------------------------------------------------------------- contexts


def test_context_rows_by_accession_and_unmatched_rows(tmp_path: Path, library: Any) -> None:
    synth.write_study(synth.plexus_study(Vendor.CANON, "CTX1", slices=2), tmp_path / "s")
    ctx = tmp_path / "ctx.csv"
    ctx.write_text("accession_number,trauma_date,indication\nCTX1,2025-03-04,S34.4XXA injury\nTYPO9,,plexopathy\n")
    options = AuditOptions(library, contexts=load_context_csv(ctx),
                           default_context=ClinicalContext(trauma_date=dt.date(2024, 1, 1)))
    [result] = audit_paths([tmp_path / "s"], options)
    assert codes(result) == [("trauma-too-early", None)]  # the row's date wins over the default
    assert "ctx.csv line 2" in result.timing["context"]
    assert unmatched_context(options) == [f"{ctx}: accession TYPO9 matches no study that was audited "
                                          "(check the number, or the paths given)"]


# ---------------------------------------------------------------------------------- committed samples


def _readme_expectations(sample_dir: Path) -> dict[str, tuple[str, list[str]]]:
    rows: dict[str, tuple[str, list[str]]] = {}
    for line in (sample_dir / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[0].startswith("`"):
            continue
        folder, accession, _scanner, _desc, status, findings = cells
        expected = [] if findings.startswith("none") else re.findall(r"([a-z]+(?:-[a-z]+)+)(?: \(([a-z0-9-]+)\))?",
                                                                     findings)
        rows[accession if accession != "-" else folder.strip("`")] = (status, expected)
    return rows


def test_sample_dicom_audits_as_its_readme_says(sample_dir: Path, library: Any) -> None:
    expected = _readme_expectations(sample_dir)
    assert len(expected) >= 10
    options = AuditOptions(library, contexts=load_context_csv(sample_dir / "context.csv"), include_series=False)
    results = list(audit_paths([sample_dir], options))
    seen = {}
    for r in results:
        key = r.accession_number or Path(r.study_description.removeprefix("unreadable files in ")).name
        found = [(f.code.value, f.requirement) for f in r.findings if f.severity is not Severity.INFO]
        seen[key] = (r.status.value, found)
    for key, (status, findings) in expected.items():
        got_status, got = seen[key]
        if status.startswith("(no study)"):
            assert got_status == "error" and {c for c, _ in got} == {"unreadable-file"}
            continue
        assert got_status == status, key
        assert sorted((c, r or None) for c, r in findings) == sorted(got), key
    assert unmatched_context(options) == []


# -------------------------------------------------------------------------------------------- CLI


@pytest.fixture(autouse=True)
def _private_results_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that keep a results store keep it in this test's folder, never in the user's home."""
    monkeypatch.setenv("PROTOCOLCHECK_DB", str(tmp_path / "results.db"))


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    synth.write_study(synth.plexus_study(Vendor.SIEMENS, "CLI1", slices=2), root / "ok")
    synth.write_study(synth.plexus_study(Vendor.GE, "CLI2", slices=2, fluid_fat_suppressed=False), root / "bad")
    return root


def test_cli_json_and_exit_codes(two_studies: Path) -> None:
    result = _run("audit", str(two_studies), "--format", "json", "--indication", PLEXOPATHY)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    by_accession = {r["accession_number"]: r for r in data}
    assert by_accession["CLI1"]["status"] == "pass"
    assert [(f["code"], f["requirement"]) for f in by_accession["CLI2"]["findings"]] == [
        ("missing-sequence", "fluid-fat-suppressed")]
    assert "2 studies: 1 pass, 0 warn, 1 fail, 0 no protocol" in result.stderr.splitlines()[-1]
    assert _run("audit", str(two_studies / "ok"), "--format", "json", "-q").exit_code == 0
    assert _run("audit", str(two_studies), "--fail-on", "never", "--format", "json").exit_code == 0


def test_cli_fail_on_warning(tmp_path: Path) -> None:
    synth.write_study(synth.plexus_study(Vendor.PHILIPS, "W1", slices=2), tmp_path / "s")
    args = ["audit", str(tmp_path), "--format", "json", "--indication", "fall", "--trauma-date", "2024-10-01"]
    assert _run(*args).exit_code == 0
    result = _run(*args, "--fail-on", "warning")
    assert result.exit_code == 1 and json.loads(result.stdout)[0]["status"] == "warn"


def test_cli_table_lists_missing_items_first(two_studies: Path) -> None:
    result = _run("audit", str(two_studies / "bad"), "--format", "table")
    text = result.stdout
    assert "Status: FAIL   Protocol: mr-lumbosacral-plexus-wwo" in text
    assert text.index("ERROR missing-sequence fluid-fat-suppressed") < text.index("Met:")
    assert "fat-suppressed no (needs yes)" in text and "source: Guideline summary 'Management of" in text


def test_cli_csv_and_junit(two_studies: Path, tmp_path: Path) -> None:
    junit = tmp_path / "audit.xml"
    result = _run("audit", str(two_studies), "--format", "csv", "--junit", str(junit))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {(r["accession_number"], r["status"], r["code"]) for r in rows} == {
        ("CLI1", "pass", ""), ("CLI2", "fail", "missing-sequence")}
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert "fluid-fat-suppressed" in suite.find("testcase/failure").get("message")


def test_cli_usage_errors_exit_2(two_studies: Path, tmp_path: Path) -> None:
    bad_ctx = tmp_path / "ctx.csv"
    bad_ctx.write_text("accession_number,trauma_date\nCLI1,14/03/2025\n")
    result = _run("audit", str(two_studies), "--context", str(bad_ctx))
    assert result.exit_code == 2 and f"{bad_ctx} line 2, column trauma_date" in result.stderr
    result = _run("audit", str(two_studies), "--protocol", "mr-lumbosacral-plexus-ww")
    assert result.exit_code == 2 and "did you mean 'mr-lumbosacral-plexus-wwo'" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    result = _run("audit", str(empty))
    assert result.exit_code == 2 and "no readable DICOM images" in result.stderr
    assert _run("audit", str(tmp_path / "missing")).exit_code == 2
    library = tmp_path / "lib"
    shutil.copytree(default_library_path(), library, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    broken = library / "mr-pelvis.yaml"
    broken.write_text(broken.read_text().replace("level: recommended", "levle: recommended"))
    result = _run("audit", str(two_studies), "--library", str(library))
    assert result.exit_code == 2
    assert f"{broken}:" in result.stderr
    assert "unknown key 'levle'" in result.stderr and "did you mean 'level'" in result.stderr


def test_cli_broken_recommender_rules_beside_the_library_exit_2(two_studies: Path, tmp_path: Path) -> None:
    library = tmp_path / "lib"
    shutil.copytree(default_library_path(), library, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (library / "rules.yaml").write_text("version: [\n")
    result = _run("audit", str(two_studies), "--library", str(library), "--indication", PLEXOPATHY)
    assert result.exit_code == 2 and "decision rules, which cannot be used" in result.stderr
    assert f"{library / 'rules.yaml'}" in result.stderr
    # the trauma window of every protocol lives in the rules: --protocol needs them too
    assert _run("audit", str(two_studies / "ok"), "--library", str(library), "--protocol", "mr-lumbosacral-plexus-wwo",
                "--format", "json").exit_code == 2


def test_cli_unmatched_context_row_is_reported(two_studies: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.csv"
    ctx.write_text("accession_number,indication\nCLI1,plexopathy\nNOPE1,plexopathy\n")
    result = _run("audit", str(two_studies / "ok"), "--context", str(ctx), "--format", "json", "-q")
    assert result.exit_code == 0
    assert "warning: " in result.stderr and "accession NOPE1 matches no study" in result.stderr


def test_cli_protocols_list_show_lint(tmp_path: Path) -> None:
    listed = json.loads(_run("protocols", "list", "--format", "json").stdout)
    assert {"mr-lumbosacral-plexus-wwo", "mr-pelvis"} <= {p["id"] for p in listed}
    shown = _run("protocols", "show", "mr-lumbosacral-plexus-wwo").stdout
    assert "orthogonal-oblique-planes" in shown and "References" in shown
    assert "Imaging should be delayed approximately 1 month following trauma" in shown
    assert json.loads(_run("protocols", "show", "mr-pelvis", "--format", "json").stdout)["id"] == "mr-pelvis"
    assert _run("protocols", "show", "nope").exit_code == 2
    assert _run("protocols", "lint").exit_code == 0
    bad = tmp_path / "site-x.yaml"
    bad.write_text((default_library_path() / "mr-pelvis.yaml").read_text()
                   .replace("id: mr-pelvis", "id: site-x").replace("match: {weighting: T1}", "match: {weigthing: T1}"))
    result = _run("protocols", "lint", str(bad))
    assert result.exit_code == 2
    assert re.search(rf"{re.escape(str(bad))}:\d+: requirements\[0\]\.match\.weigthing: unknown key 'weigthing'"
                     r" \u2014 fix: did you mean 'weighting'\?", result.stdout)


def test_contrast_given_despite_a_recorded_contraindication_is_an_error(library: Any, tmp_path: Path) -> None:
    """Gadolinium contraindicated: the audit is against the no-contrast plexus MRI, whose requirements a
    contrast study also meets, so only this check notices the post-contrast series."""
    synth.write_study(synth.plexus_study(Vendor.SIEMENS, "GAD1"), tmp_path / "s")
    flagged = audit_one(tmp_path / "s", library, indication=PLEXOPATHY, gadolinium_contraindicated=True,
                        source="ctx.csv line 2")
    assert flagged.protocol == "mr-lumbosacral-plexus-wo"
    [finding] = [f for f in flagged.findings if f.code.value == "contrast-despite-contraindication"]
    assert finding.severity is Severity.ERROR and flagged.status is Status.FAIL
    post = [s for s in flagged.series if s["post_contrast"] is True]
    assert post and set(finding.series) == {s["series_instance_uid"] for s in post}
    assert "ctx.csv line 2" in finding.message and "gadolinium" in finding.message
    assert "Guideline:" in finding.message  # cites why the contrast-free exam is appropriate
    assert set(finding.evidence["post_contrast_series"]) == set(finding.series)
    # the same study without the contraindication, and a contrast-free study with it: nothing to say
    plain = audit_one(tmp_path / "s", library, indication=PLEXOPATHY)
    assert "contrast-despite-contraindication" not in [f.code.value for f in plain.findings]
    spec = synth.plexus_study(Vendor.SIEMENS, "GAD2")
    synth.write_study(replace(spec, series=tuple(s for s in spec.series if not s.is_post)), tmp_path / "wo")
    clean = audit_one(tmp_path / "wo", library, indication=PLEXOPATHY, gadolinium_contraindicated=True)
    assert "contrast-despite-contraindication" not in [f.code.value for f in clean.findings]


def test_iodinated_contrast_despite_a_recorded_contraindication(library: Any, tmp_path: Path) -> None:
    synth.write_study(synth.ct_study(Vendor.GE, "CTC1", with_contrast=True), tmp_path / "ct")
    result = audit_one(tmp_path / "ct", library, indication=PLEXOPATHY, mri_contraindicated=True,
                       iodinated_contrast_contraindicated=True)
    assert "contrast-despite-contraindication" in [f.code.value for f in result.findings]
    assert result.status is Status.FAIL
