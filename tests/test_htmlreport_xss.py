"""An HTML report built from studies whose headers carry markup shows the text and runs no script.

A real DICOM study (written by :mod:`protocolcheck.synth`) has ``<script>alert(1)</script>`` and other
markup in its study and series descriptions, institution, station, manufacturer, model and patient
name; it is audited by the real ``audit --db`` command, then ``report`` renders the store. The HTML
must carry each string escaped and no tag of it. When Chromium is installed, the report is also
loaded headless and its live DOM checked: the injected handlers would have marked the page.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from protocolcheck.testing import synth

REPO = Path(__file__).resolve().parent.parent
SCRIPT = "<script>alert(1)</script>"
# Markup that would change the page if it were parsed: the handlers mark <html>, which headless
# Chromium's live DOM then shows.
MARK = "document.documentElement.setAttribute('data-xss','1')"
IMG = f'"><img src=x onerror="{MARK}">'
SVG = f"<svg onload=\"{MARK}\">"
HEADER_VALUES = {
    "StudyDescription": SCRIPT,
    "InstitutionName": IMG,
    "StationName": "<b>ST</b>" + SVG,
    "Manufacturer": "SIEMENS" + "</td><script>" + MARK + "</script>",
    "ManufacturerModelName": "'><iframe srcdoc=x>",
    "PatientName": "<script>alert(2)</script>",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "protocolcheck", *args], capture_output=True, text=True,
                          env=env, timeout=180, cwd=REPO)


def hostile_study(folder: Path) -> list[Path]:
    """A plexus study whose header strings are markup (every series description too)."""
    spec = synth.plexus_study(synth.Vendor.SIEMENS, "XSS-1")
    overrides = tuple(HEADER_VALUES.items())
    series = tuple(replace(s, description=SCRIPT if i == 0 else f"{SCRIPT} {SVG} series {i}",
                           overrides=s.overrides + overrides)
                   for i, s in enumerate(spec.series))
    spec = replace(spec, study_description=SCRIPT, series=series)
    return synth.write_study(spec, folder)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("xss")
    files = hostile_study(base / "study")
    import pydicom

    ds = pydicom.dcmread(files[-1], stop_before_pixels=True)
    assert ds.StudyDescription == SCRIPT and SCRIPT in ds.SeriesDescription and ds.InstitutionName == IMG
    db = base / "results.db"
    audit = run("audit", "--db", str(db), "--format", "json", "--include-patient",
                str(base / "study"))  # stores the name
    assert audit.returncode in (0, 1), audit.stderr
    assert SCRIPT in audit.stdout  # the JSON keeps the text as it is (escaping is the HTML's job)
    out = base / "report.html"
    for extra in ((), ("--include-patient",)):
        result = run("report", "--db", str(db), "-o", str(out.with_suffix(f".{len(extra)}.html")), *extra)
        assert result.returncode == 0, result.stderr
    return out.with_suffix(".1.html"), out.with_suffix(".1.html").read_text(encoding="utf-8")


def test_report_shows_header_markup_as_text(report: tuple[Path, str]) -> None:
    _path, text = report
    assert html.escape(SCRIPT) in text  # "&lt;script&gt;alert(1)&lt;/script&gt;" is shown
    assert "<script" not in text.lower()  # the report has no script of its own, and none injected
    for name, value in HEADER_VALUES.items():
        if name == "ManufacturerModelName":
            continue  # not shown in the report
        if name == "PatientName":
            assert html.escape(value) in text  # shown with --include-patient, escaped
            continue
        assert html.escape(value, quote=True) in text, f"{name} not shown escaped"
    for tag in ("<img", "<svg onload", "<iframe", "<b>st</b>"):
        assert tag not in text.lower()
    # No attribute opened by a header value: every on* handler text sits inside escaped text.
    assert not re.search(r"<[^>]*\son\w+\s*=", text, flags=re.IGNORECASE)


def test_report_without_patient_option_hides_the_name(report: tuple[Path, str]) -> None:
    path, _ = report
    hidden = path.with_suffix("").with_suffix(".0.html").read_text(encoding="utf-8")
    assert "alert(2)" not in hidden


def test_report_runs_no_script_in_a_browser(report: tuple[Path, str], tmp_path: Path) -> None:
    browser = next((b for b in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if b), None)
    if browser is None:
        pytest.skip("no headless Chromium installed")
    path, _ = report
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=2000",
                             "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=90)
    dom = result.stdout
    assert "</html>" in dom, result.stderr[-2000:]
    opening = re.search(r"<html[^>]*>", dom)
    assert opening and "data-xss" not in opening.group(0)  # no injected handler or script ran
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # the browser shows the description as text
    assert "<small>&lt;script&gt;alert(1)&lt;/script&gt;</small>" in dom  # in the studies table
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
