"""The HTML report a manager acts on, from a real audit (multi-vendor MR and CT corpus plus unreadable
files) and real scheduled-exam checks, opened in headless Chromium: counts equal the audit's, one bar per
vendor, MR and CT apart, requirement names, short UIDs with the full one on hover, both trauma-window
lines (numbers from rules.yaml), actions, the weekly trend, upcoming problems first, no overflow at
1280 px, a printable layout. The screenshot and the printed PDF are kept as test artefacts."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from peers import chromium

from protocolcheck.cli import main
from protocolcheck.clinical.library import load_library
from protocolcheck.clinical.rules import load_rules
from protocolcheck.jobs.scheduled import record_steps
from protocolcheck.jobs.store import Store
from protocolcheck.jobs.worklist import check_worklist
from protocolcheck.net.mwl import WorklistItem
from protocolcheck.report.sections import VENDOR_NAMES, vendor_name


def _tomorrow() -> str:
    return (dt.date.today() + dt.timedelta(days=1)).strftime("%Y%m%d")


STEPS = [  # a wrong exam booked for tomorrow, and a right one next week
    WorklistItem("WL-WRONG", _tomorrow(), station_aet="MR1", modality="MR", procedure="MRI PELVIS WO",
                 step_id="SPS1", admitting_diagnoses="lumbosacral plexopathy G54.1"),
    WorklistItem("WL-RIGHT", (dt.date.today() + dt.timedelta(days=6)).strftime("%Y%m%d"), station_aet="MR1",
                 modality="MR", procedure="MRI LUMBOSACRAL PLEXUS WO+W", procedure_code="72197", step_id="SPS2",
                 comments="non-traumatic lumbosacral plexopathy, G54.1"),
]


@pytest.fixture(scope="module")
def audited(synth_corpus: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A store filled by a real ``audit`` (the corpus and a folder of unreadable files) and ``worklist``
    checks; returns the store and the audit's own records."""
    tmp = tmp_path_factory.mktemp("manager")
    junk = tmp / "incoming" / "broken"
    junk.mkdir(parents=True)
    (junk / "cut.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")  # a transfer cut short
    db = tmp / "qa.db"
    result = CliRunner().invoke(main, ["audit", str(synth_corpus.root), str(junk.parent), "--db", str(db), "-q",
                                       "--format", "json", "--trauma-date", "20240101"])
    assert result.exit_code in (0, 1), result.output
    with Store.open(db) as store:
        saved = record_steps(store, check_worklist(STEPS, load_rules()))
    assert saved.new == 2
    return db, json.loads(result.stdout)


@pytest.fixture(scope="module")
def report(audited: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db, _ = audited
    out = tmp_path_factory.mktemp("manager-report") / "qa.html"
    result = CliRunner().invoke(main, ["report", "--db", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.stderr


def test_report_counts_equal_the_audit(audited: tuple[Path, list[dict]], report: tuple[Path, str]) -> None:
    _, records = audited
    path, err = report
    text = path.read_text()
    audit_counts = Counter(r["status"] for r in records)
    assert audit_counts["error"] >= 1  # the unreadable folder, at least
    for status, label in (("pass", "pass"), ("warn", "warning"), ("fail", "fail"), ("error", "error")):
        assert f'<div class="num">{audit_counts[status]}</div><div class="lbl">{label}</div>' in text
    assert f'<div class="num">{len(records)}</div><div class="lbl">studies</div>' in text
    assert f"report: {len(records)} studies" in err and f"{audit_counts['error']} error" in err
    assert "unreadable files in" in text and "unreadable-file" in text
    # the cron mail names tomorrow's wrong order and what to do
    assert "upcoming: 1 of 2 scheduled exams with a problem" in err
    assert "WL-WRONG  fail: wrong-protocol" in err and "instead" in err


def test_vendors_modalities_and_requirement_names(report: tuple[Path, str]) -> None:
    text = report[0].read_text()
    groups = text[text.index("<h2>By scanner, station"):text.index("<h2>Most often missing")]
    assert '<h3 class="modality">MR (' in groups and '<h3 class="modality">CT (' in groups
    mr = groups[groups.index('modality">MR'):groups.index('modality">CT')]
    assert mr.count(">Siemens</text>") == 1  # SIEMENS and Siemens Healthineers: one bar
    charts = groups[groups.index("<svg"):]
    assert "Healthineers" not in charts and ">SIEMENS<" not in charts
    assert vendor_name("Siemens Healthineers") == vendor_name("SIEMENS") == VENDOR_NAMES[next(iter(VENDOR_NAMES))]
    names = {r.label for p in load_library() for r in p.requirements}
    missing = text[text.index("<h2>Most often missing"):text.index("<h2>Timing after injury")]
    shown = [n for n in names if n[:39] in missing]
    assert shown, missing[:2000]
    assert "fluid-fat-suppressed</text>" not in missing and "post-contrast-t1-fat-suppressed" not in missing


def test_timing_lines_come_from_the_rules(report: tuple[Path, str]) -> None:
    text = report[0].read_text()
    rules = load_rules()
    timing = text[text.index("<h2>Timing after injury"):]
    assert f"{rules.min_days_after_trauma}-day minimum" in timing
    assert f"{rules.max_days_after_trauma} days: delayed" in timing
    assert 'class="maximum"' in timing and 'class="minimum"' in timing


def test_page_in_headless_chromium(report: tuple[Path, str], audited: tuple[Path, list[dict]],
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    path, _ = report
    _, records = audited
    artefacts = tmp_path_factory.mktemp("report-artefacts")
    with chromium() as driver:
        driver.set_window_size(1280, 1000)
        driver.get(path.as_uri())
        page: dict[str, Any] = driver.execute_script("""
            const vw = document.documentElement.clientWidth;
            const wide = [...document.querySelectorAll('body *')].filter(e => {
                if (e.closest('.scroll') && e !== e.closest('.scroll')) return false;
                const r = e.getBoundingClientRect();
                return r.width > 0 && (r.right > vw + 1 || r.width > vw + 1);
            }).map(e => e.tagName + '.' + e.className);
            const card = l => [...document.querySelectorAll('.card')].find(
                c => c.querySelector('.lbl').textContent === l).querySelector('.num').textContent;
            const uids = [...document.querySelectorAll('span.uid')].map(s => [s.textContent, s.title]);
            const codes = [...document.querySelectorAll('code, small, span.req')]
                .filter(e => e.textContent.trim() === '').map(e => e.outerHTML);
            const upcoming = [...document.querySelectorAll('#upcoming tbody tr')].map(
                r => [...r.cells].map(c => c.textContent));
            const actionHead = [...document.querySelectorAll('th')].filter(t => t.textContent === 'Action').length;
            const actions = [...document.querySelectorAll('td.action')].map(t => t.textContent);
            const trend = document.querySelectorAll('table.trend tbody tr').length;
            return {scrollWidth: document.documentElement.scrollWidth, vw, wide, errors: card('error'),
                    studies: card('studies'), uids, codes, upcoming, actionHead, actions, trend,
                    height: document.documentElement.scrollHeight};
        """)
        driver.set_window_size(1280, min(int(page["height"]) + 120, 16000))
        shot = artefacts / "report-1280.png"
        assert driver.save_screenshot(str(shot))
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        printed: dict[str, Any] = driver.execute_script("""
            return {header: getComputedStyle(document.querySelector('header')).backgroundColor,
                    all: getComputedStyle(document.querySelector('details.all')).display};""")
        pdf = artefacts / "report-print.pdf"
        pdf.write_bytes(base64.b64decode(driver.print_page()))
    print(f"\nreport screenshot: {shot}\nprinted report: {pdf}")
    assert shot.stat().st_size > 20_000 and pdf.read_bytes().startswith(b"%PDF")
    assert page["scrollWidth"] <= page["vw"] and not page["wide"], page["wide"][:10]
    assert int(page["errors"]) == sum(r["status"] == "error" for r in records)
    assert int(page["studies"]) == len(records)
    assert page["uids"] and all(len(shown) < len(full) or shown == full for shown, full in page["uids"])
    assert all(full.startswith(shown.split("…")[0]) for shown, full in page["uids"])
    assert not page["codes"], page["codes"][:5]
    assert page["upcoming"][0][1] == "WL-WRONG" and page["upcoming"][0][4] == "fail"
    assert "instead" in page["upcoming"][0][6] and page["upcoming"][1][1] == "WL-RIGHT"
    assert page["actionHead"] >= 2 and any(a.strip() not in ("", "–") for a in page["actions"])
    assert page["trend"] >= 2
    assert printed["header"] in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)") and printed["all"] == "none"


def test_csv_export_has_the_audit_records_too(audited: tuple[Path, list[dict]], tmp_path: Path) -> None:
    import csv

    db, records = audited
    out, ahead = tmp_path / "qa.csv", tmp_path / "upcoming.csv"
    result = CliRunner().invoke(main, ["report", "--db", str(db), "--csv", str(out), "--upcoming-csv", str(ahead)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(records)
    assert Counter(r["status"] for r in rows) == Counter(r["status"] for r in records)
    upcoming = list(csv.DictReader(ahead.open()))
    assert [(u["accession_number"], u["status"]) for u in upcoming] == [("WL-WRONG", "fail"), ("WL-RIGHT", "pass")]
    assert "instead" in upcoming[0]["actions"] and upcoming[0]["finding_codes"] == "wrong-protocol"
