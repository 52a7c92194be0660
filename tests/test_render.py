"""Text renderings of records (render.py): recommendation and order-check reports, classify and audit tables."""

from __future__ import annotations

import datetime as dt

import pytest

from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.recommend import check_order, load_rules, recommend
from protocolcheck.report import text as render
from protocolcheck.report.text import format_order_check, format_recommendation

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


# -- classify and audit tables ----------------------------------------------------------------------


def _cells(text: str, description: str) -> dict[str, str]:
    """The classify-table row of the series ``description``, by column header (cells are right-aligned
    under their header, so a cell is whatever ends where its header ends; blank cells are "")."""
    lines = text.splitlines()
    (index,) = [i for i, line in enumerate(lines) if f" {description} " in line]
    header = next(lines[i] for i in range(index, -1, -1) if lines[i].lstrip().startswith("#"))
    row, cells = lines[index], {}
    for name in header.split():
        end = header.index(f" {name}" if name != "#" else name) + len(name) + (name != "#")
        cells[name] = row[:end].split()[-1] if row[end - 1] != " " else ""
    return cells


@pytest.fixture(scope="module")
def sample_records(sample_dir):
    from protocolcheck.classify import classify_study
    from protocolcheck.dicom.records import InstanceHeader
    from protocolcheck.dicom.scan import scan
    from protocolcheck.dicom.study import group_studies

    headers = [r for r in scan([sample_dir]) if isinstance(r, InstanceHeader)]
    return [c.to_dict() for study in group_studies(headers) for c in classify_study(study)]


@pytest.fixture(scope="module")
def sample_audits(sample_dir):
    from protocolcheck.audit.engine import AuditOptions, audit_paths
    from protocolcheck.clinical.library import load_library

    return [r.to_dict() for r in audit_paths([sample_dir], AuditOptions(library=load_library()))]


def test_classify_table_says_no_and_unknown_apart(sample_records):
    text = render.classify_table(sample_records)
    # Siemens: a plain T2 is 'no', a fat-saturated one with no named method 'yes', STIR by name
    assert _cells(text, "t2_tse_tra")["fatsat"] == "no"
    assert _cells(text, "t2_tse_fs_tra")["fatsat"] == "yes"
    assert _cells(text, "t2_tirm_cor_stir")["fatsat"] == "STIR"
    assert _cells(text, "t1_tse_fs_cor_post")["post"] == "yes" and _cells(text, "t1_tse_cor")["post"] == "no"
    # Philips without contrast information: post-contrast unknown is '?', not blank or 'no'
    spir = _cells(text, "T2W_TSE_SPIR_TRA")
    assert (spir["fatsat"], spir["post"]) == ("SPIR", "?")
    # GE CT: fat suppression unknown ('?'), reformats flagged 'der', the scout 'loc', the rest no flag
    assert _cells(text, "Scout")["fatsat"] == "?" and _cells(text, "Scout")["flags"] == "loc"
    assert _cells(text, "Coronal 3mm +C")["flags"] == "der" and _cells(text, "0.625mm STND +C")["flags"] == ""
    assert "True" not in text and "False" not in text and "UNSPECIFIED" not in text


def test_classify_table_tells_long_stack_labels_apart(sample_records):
    """Diffusion stacks (DIFFUSION/NONE, DIFFUSION/TRACEW) are labelled by b-value; other long labels are cut
    in the middle, not the end."""
    long = sorted({r["stack"] for r in sample_records if r["stack"] and len(r["stack"]) > 11})
    assert {"DIFFUSION/NONE", "DIFFUSION/TRACEW"} <= set(long)
    text = render.classify_table(sample_records)
    dwi = [r for r in sample_records if r["weighting"] == "DWI" and r["stack"]]
    labels = {render.stack_label(r) for r in dwi}
    assert len(labels) == len(dwi) and all(label.startswith("b") and label in text for label in labels), labels
    assert "b800 TRACEW" in labels
    other = [label for label in long if not label.startswith("DIFFUSION")]
    cut = [render._middle_cut(label, 11) for label in other]
    assert len(set(cut)) == len(other) and all(len(c) == 11 and c in text for c in cut)


def test_classify_table_heads_studies_by_accession_date_and_description_in_date_order(sample_records, sample_dir):
    from protocolcheck.dicom.records import InstanceHeader
    from protocolcheck.dicom.scan import scan

    text = render.classify_table(sample_records)
    heads = [line for line in text.splitlines() if line.startswith("Study ")]
    dates = [line.split()[2] for line in heads]
    assert dates == sorted(dates) and len(heads) == len({r["study_instance_uid"] for r in sample_records})
    first = heads[0]
    assert first.startswith("Study SAMPLE0001  2025-03-03  MR LUMBOSACRAL PLEXUS"), first
    names = {r.patient_name for r in scan([sample_dir]) if isinstance(r, InstanceHeader)} - {""}
    assert names and not any(form in text for name in names for form in (name, name.replace("^", " ")))


def test_classify_table_fits_100_columns(sample_records):
    long = [{**r, "manufacturer": "M" * 64, "series_description": "D" * 64, "stack": "S" * 30,
             "fat_suppressed": True, "fat_suppression": "WATER_EXCITATION", "localizer": True, "derived": True,
             "weighting": "unknown", "inversion": "FLAIR", "series_number": 99999, "instances": 9999}
            for r in sample_records]
    for records in (sample_records, long):
        text = render.classify_table(records)
        assert max(len(line) for line in text.splitlines()) <= 100
    assert "WATER-EXC" in render.classify_table(long) and "loc,der" in render.classify_table(long)


def test_fat_sat_and_yes_no_labels():
    assert [render.yes_no(v) for v in (True, False, None)] == ["yes", "no", "?"]
    assert render.fat_sat_label(True, "SPAIR") == "SPAIR"
    assert render.fat_sat_label(True, "UNSPECIFIED") == render.fat_sat_label(True, None) == "yes"
    assert render.fat_sat_label(False, None) == "no" and render.fat_sat_label(None, None) == "?"


def test_audit_table_fits_100_columns_and_keeps_the_scanner(sample_audits):
    text = render.audit_table(sample_audits)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "  Scanner: Philips Medical Systems PHILIPS-MR3T" in text
    assert "Study SAMPLE0003  2025-03-05  MR  MR LUMBOSACRAL PLEXUS WO+W CONTRAST\n" in text
    # the longest values DICOM allows still fit, wrapped, with nothing lost
    long = [{**r, "accession_number": "A" * 16, "study_description": "LONG DESCRIPTION " * 4,
             "manufacturer": "VENDOR " * 9, "station_name": "S" * 16, "protocol": "p" * 90} for r in sample_audits]
    text = render.audit_table(long)
    assert max(len(line) for line in text.splitlines()) <= 100
    words = text.split()
    assert "S" * 16 in words and "p" * 90 in words and words.count("VENDOR") == 9 * len(long)


def test_recommendation_report_fits_100_columns(rules):
    """Every line of the text report fits a 100-column terminal, with the long titles wrapped, not cut."""
    rec = recommend(ClinicalContext(indication="S34.4XXA plexus injury", trauma_date=dt.date(2026, 2, 19)), on=TODAY,
                    rules=rules, today=TODAY)
    text = format_recommendation(rec)
    assert max(len(line) for line in text.splitlines()) <= 100
    for r in rec.recommendations:  # every procedure and protocol is there in full
        assert " ".join(r.procedure.split()) in " ".join(text.split())
        if r.protocol:
            assert f"protocol: {r.protocol}" in text


def test_worklist_table_fits_100_columns_and_keeps_every_value():
    long_order = "MRI PELVIS WITHOUT CONTRAST STANDARD PROTOCOL WITH ADDITIONAL CORONAL T2 AND AXIAL DWI SEQUENCES"
    records = [{"accession_number": "ACC-LONG-0001", "scheduled_date": "2026-11-25", "station_aet": "MR_STATION_1",
                "procedure": long_order, "status": "fail", "earliest_date": "2026-12-01",
                "recommended": {"procedure": "MRI lumbosacral plexus without and with IV contrast"},
                "findings": [{"severity": "error", "code": "wrong-protocol"},
                             {"severity": "warning", "code": "trauma-too-early"}]},
               {"accession_number": "A2", "scheduled_date": "2026-11-26", "station_aet": "MR1",
                "procedure": "MRI LS PLEXUS",
                "status": "pass", "earliest_date": None, "recommended": None, "findings": []}]
    text = render.worklist_table(records)
    assert max(len(line) for line in text.splitlines()) <= 100
    flat = " ".join(text.split())
    assert long_order in flat and "error: wrong-protocol; warning: trauma-too-early" in flat
    assert "ACC-LONG-0001" in text and "MR_STATION_1" in text and "recommended: -" in text
