"""HTML report: escaping, privacy, charts that carry the store's numbers, rendering in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from helpers import make_result

from protocolcheck.clinical.findings import Finding, FindingCode, Severity, Status
from protocolcheck.clinical.library import load_library
from protocolcheck.jobs.store import Filters, Store
from protocolcheck.report.html import (
    EXPORT_COLUMNS,
    by_group,
    export_frame,
    missing_requirements,
    over_time,
    render_html,
    trauma_histogram,
)
from protocolcheck.report.sections import requirement_labels, vendor_name

EVIL = "<script>alert(1)</script>"


def missing(req: str) -> Finding:
    return Finding(FindingCode.MISSING_SEQUENCE, Severity.ERROR, f"expected {req}; none found", requirement=req)


@pytest.fixture
def filled(tmp_path: Path) -> Store:
    """A store with studies over three months, three stations, trauma timings and missing requirements."""
    store = Store.open(tmp_path / "r.db", keep_patient=True)
    plan = [
        ("1.1", "20240110", "MR1", "SIEMENS", (missing("stir-cor"), missing("t1-cor")), 10),
        ("1.2", "20240115", "MR1", "SIEMENS", (missing("stir-cor"),), 35),
        ("1.3", "20240203", "MR2", "GE MEDICAL SYSTEMS", (), 40),
        ("1.4", "20240219", "MR2", "GE MEDICAL SYSTEMS", (missing("t2-ax"),), None),
        ("1.5", "20240301", EVIL, "Philips", (), 200),
        ("1.6", "20240320", "MR1", "SIEMENS", (), 29),
    ]
    for uid, date, station, maker, findings, days in plan:
        timing = {"days_after_trauma": days} if days is not None else None
        store.save(make_result(uid, study_date=date, station=station, manufacturer=maker, findings=findings,
                               timing=timing, description=f"series {EVIL}"), fingerprint="f", library_version="L")
    store.save(make_result("1.7", study_date="20240321", status=Status.NO_PROTOCOL, protocol=None))
    yield store
    store.close()


def page(store: Store, **kw: object) -> str:
    audits = store.latest(include_patient=bool(kw.get("include_patient")))
    return render_html(audits, store.findings(audits["id"]), source="r.db", **kw)


def counts(svg: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-count="(\d+)"', svg)]


def svgs(text: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", text, flags=re.S)


def test_header_values_are_escaped(filled: Store) -> None:
    text = page(filled)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    for svg in svgs(text):  # every chart is well-formed XML, so escaping held inside SVG too
        ET.fromstring(svg)


def test_patient_names_only_on_request(filled: Store) -> None:
    assert "Doe^Jane" not in page(filled)
    assert "Doe^Jane" in page(filled, include_patient=True)


def test_sections_and_summary(filled: Store) -> None:
    text = page(filled)
    for heading in ("Compliance over time", "By scanner, station and institution", "Most often missing requirements",
                    "Timing after injury", "Failing studies (3)"):
        assert heading in text
    assert '<div class="num">7</div><div class="lbl">studies</div>' in text
    # 3 of 6 audited against a protocol have no errors
    assert '<div class="num">50%</div><div class="lbl">compliant</div>' in text


def test_charts_carry_the_store_numbers(filled: Store) -> None:
    audits = filled.latest()
    findings = filled.findings(audits["id"])
    period, labels, stacks = over_time(audits)
    # ten weeks of studies: weekly columns from the week of 8 Jan to that of 18 Mar, empty weeks kept
    assert period.name == "week" and labels[0] == "08 Jan" and labels[-1] == "18 Mar" and len(labels) == 11
    assert sum(sum(s.values()) for s in stacks) == 7
    assert stacks[0]["fail"] == 1 and stacks[1]["fail"] == 1 and sum(stacks[2].values()) == 0
    assert stacks[-1] == {"pass": 1, "warn": 0, "fail": 0, "no-protocol": 1, "error": 0}
    monthly = over_time(audits.assign(when=audits["when"] + pd.to_timedelta(audits.index * 40, unit="D")))
    assert monthly[0].name == "month" and sum(sum(s.values()) for s in monthly[2]) == 7
    names, per_station = by_group(audits, "station_name")
    assert names[0] == "MR1" and sum(per_station[0].values()) == 4
    assert missing_requirements(audits, findings)[0][:2] == ("stir-cor", 2)
    _starts, hist, before = trauma_histogram(audits["days_after_trauma"])
    assert sum(hist) == 5 and before == 0
    assert hist[1] == 1 and hist[-1] == 1  # 10 days; 200 days folds into the last bin

    charts = svgs(render_html(audits, findings))
    over, _scanner, station, _institution, missing_svg, timing = charts
    assert sum(counts(over)) == 7
    assert sum(counts(station)) == 7
    assert counts(missing_svg) == [2, 1, 1]
    assert sum(counts(timing)) == 5
    assert 'class="minimum"' in timing and "28-day minimum" in timing


def test_filters_and_failing_table(filled: Store) -> None:
    audits = filled.latest(Filters(stations=("MR1",)))
    text = render_html(audits, filled.findings(audits["id"]), filters=Filters(stations=("MR1",)).describe())
    assert "stations: MR1" in text
    table = text[text.index("Failing studies"):]
    assert "<b>A1.1</b>" in table and "<b>A1.4</b>" not in table  # MR2 filtered out
    assert table.count('<span class="badge" style="background:#d64545">fail</span>') == 2
    assert "expected stir-cor; none found" in table and "expected t2-ax" not in table


def test_empty_selection_still_renders(filled: Store) -> None:
    audits = filled.latest(Filters(protocols=("nothing",)))
    text = render_html(audits, filled.findings(audits["id"]))
    assert "No stored audits match" in text and "<svg" not in text


def test_export_frame(filled: Store, tmp_path: Path) -> None:
    audits = filled.latest()
    frame = export_frame(audits, filled.findings(audits["id"]))
    assert list(frame.columns) == list(EXPORT_COLUMNS)
    row = frame.set_index("study_instance_uid").loc["1.1"]
    assert row["missing_requirements"] == "stir-cor|t1-cor" and row["errors"] == 2
    assert "patient_name" in export_frame(filled.latest(include_patient=True), filled.findings(audits["id"]),
                                          include_patient=True)
    pytest.importorskip("pyarrow", reason="Parquet export needs the optional pyarrow")
    frame.to_parquet(tmp_path / "x.parquet")
    back = pd.read_parquet(tmp_path / "x.parquet")
    assert len(back) == 7 and set(back["status"]) == {"pass", "fail", "no-protocol"}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_renders_in_headless_chromium(filled: Store, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(page(filled), encoding="utf-8")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
        dom = subprocess.run(args + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
        subprocess.run(args + [f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri()],
                       capture_output=True, timeout=120)
    assert "Compliance over time" in dom.stdout
    assert dom.stdout.count("<svg") == 6
    assert "<script" not in dom.stdout.lower()  # the browser saw the evil station name as text only
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_report_command_writes_html_and_exports(filled: Store, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from protocolcheck.cli import main

    db = str(tmp_path / "r.db")
    out, csv = tmp_path / "report.html", tmp_path / "t.csv"
    result = CliRunner().invoke(main, ["report", "--db", db, "-o", str(out), "--csv", str(csv),
                                       "--status", "fail", "--since", "2024-01-01"])
    assert result.exit_code == 0, result.output
    assert "report: 3 studies (3 fail)" in result.output
    text = out.read_text(encoding="utf-8")
    assert "Failing studies (3)" in text and "statuses: fail" in text
    table = pd.read_csv(csv)
    assert sorted(table["study_instance_uid"].astype(str)) == ["1.1", "1.2", "1.4"]
    assert "patient_name" not in table.columns

    html_only = CliRunner().invoke(main, ["report", "--db", db, "-q"])
    assert html_only.exit_code == 0 and html_only.output.startswith("<!DOCTYPE html>")


def test_report_command_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from protocolcheck.cli import main

    missing = CliRunner().invoke(main, ["report", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no results store" in missing.output
    assert not (tmp_path / "none.db").exists()
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite at all" * 64)
    broken = CliRunner().invoke(main, ["report", "--db", str(bad)])
    assert broken.exit_code == 3 and "cannot read results store" in broken.output
    assert CliRunner().invoke(main, ["report", "--db", str(bad), "--until", "31/12/2024"]).exit_code == 2


def test_report_of_a_real_audit(synth_corpus: object, tmp_path: Path) -> None:
    """Audit a multi-vendor synthetic corpus into a store; the report's charts carry those audits."""
    from click.testing import CliRunner

    from protocolcheck.cli import main

    db = str(tmp_path / "qa.db")
    audited = CliRunner().invoke(main, ["audit", str(synth_corpus.root), "--db", db, "-q", "--format", "json"])
    assert audited.exit_code in (0, 1), audited.output
    records = json.loads(audited.stdout)
    with Store.open(db, readonly=True) as store:
        audits = store.latest()
        findings = store.findings(audits["id"])
    assert len(audits) == len(synth_corpus.studies)
    out = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", "--db", db, "-o", str(out), "-q"]).exit_code == 0
    text = out.read_text(encoding="utf-8")
    over = svgs(text)[0]
    groups = text[text.index("<h2>By scanner, station"):text.index("<h2>Most often missing")]
    per_modality = svgs(groups)  # vendor, station, institution for each modality
    missing_svg = svgs(text[text.index("<h2>Most often missing"):])[0]
    # the report counts what the audit printed: its records of unreadable files that belong to no study too
    assert sum(counts(over)) == len(records)
    vendors, stations = per_modality[0::3], per_modality[1::3]
    assert sum(sum(counts(c)) for c in vendors) == sum(sum(counts(c)) for c in stations) == len(audits)
    for maker in audits["manufacturer"].unique():
        assert esc_text(vendor_name(maker)[:23]) in "".join(vendors)
    n_failing = sum(r["status"] in ("fail", "error") for r in records)
    assert f"Failing studies ({n_failing})" in text
    expected = missing_requirements(audits, findings, labels=requirement_labels(load_library()))
    assert counts(missing_svg) == [n for _, n, _ in expected] and expected
    assert "SAMPLE^" not in text  # synth patient names stay out of the report


def esc_text(value: str) -> str:
    import html

    return html.escape(value, quote=True)


def test_every_study_is_listed_whatever_its_status(filled: Store) -> None:
    text = page(filled)
    listing = text[text.index("All studies (7)"):]
    for uid in ("1.1", "1.3", "1.5", "1.7"):  # failing, passing, no protocol alike
        assert f'<span class="uid" title="{uid}">{uid}</span>' in listing
    assert "<small>series &lt;script&gt;alert(1)&lt;/script&gt;</small>" in listing


def test_failing_studies_show_each_finding_with_its_action(tmp_path: Path) -> None:
    action = "Add an oblique coronal STIR (or fat-saturated T2) before contrast"
    finding = Finding(FindingCode.MISSING_SEQUENCE, Severity.ERROR, "Required series missing: STIR <b>",
                      requirement="fluid-fat-suppressed", expected="STIR", action=action)
    timing = Finding(FindingCode.TRAUMA_TOO_EARLY, Severity.ERROR, "Imaged 3 days after the injury",
                     action="Repeat the MRI on or after 2024-02-10")
    with Store.open(tmp_path / "r.db") as store:
        store.save(make_result("1.9.1", findings=(finding, timing)))
        text = page(store)
    assert "<th>Finding</th><th>Action</th>" in text
    assert f'<td class="action">{action}</td>' in text
    assert '<td class="action">Repeat the MRI on or after 2024-02-10</td>' in text
    failing = text[text.index("<h2>Failing studies"):]
    assert "Required series missing: STIR &lt;b&gt;. Expected: STIR." in failing and "Action:" not in failing
    assert 'rowspan="2"' in text  # the study's cells span its two findings
