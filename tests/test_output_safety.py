"""Text from DICOM headers is hostile until proven otherwise: the outputs made from it are safe where
they go. CSV cells cannot run as spreadsheet formulas; tables and one-line logs carry no raw control
characters (terminal escapes, bells, forged lines); JUnit XML stays well-formed."""

from __future__ import annotations

import csv
import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from protocolcheck.cli import main
from protocolcheck.logs import printable
from protocolcheck.report.tabular import csv_safe, xml_safe

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "sample_dicom" / "01_siemens_plexus_complete"

FORMULAS = ("=HYPERLINK(\"http://x\",\"y\")", "@SUM(1+1)*cmd|' /C calc'!A0", "+1+cmd", "-2+3", "\t=1", "\r=1")


def test_the_helpers() -> None:
    for text in FORMULAS:
        assert csv_safe(text) == "'" + text
    assert csv_safe("MR PLEXUS") == "MR PLEXUS" and csv_safe(-2.5) == -2.5 and csv_safe(None) is None
    assert printable("a\x1b[2J\x07b\nc\u202ed") == "a\\x1b[2J\\x07b\\x0ac\\u202ed"
    assert printable("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    assert xml_safe("a\x01b\x0bc\td\ne") == "abc\td\ne"


@pytest.fixture
def hostile_study(tmp_path: Path) -> Path:
    """The sample Siemens study with hostile text in its study description and one series description."""
    folder = tmp_path / "hostile"
    shutil.copytree(STUDY, folder)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.StudyDescription = "=HYPERLINK(\"http://evil\",\"x\")\x07\x01\x0b"
        ds.AccessionNumber = "@SUM(1)\x1b[2J"
        if path.name.startswith("0002_"):
            ds.SeriesDescription = "\x1b]0;pwned\x07COR\x0b"
        ds.save_as(path)
    return folder


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_audit_csv_neutralises_formulas(hostile_study: Path) -> None:
    _code, out, _err = _run("audit", str(hostile_study), "--no-db", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert rows[0]["accession_number"].startswith("'@SUM")
    assert rows[0]["study_description"].startswith("'=HYPERLINK")


def test_classify_csv_neutralises_formulas(hostile_study: Path) -> None:
    _code, out, _err = _run("classify", str(hostile_study), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and any(r["series_description"].startswith("'\x1b") is False for r in rows)
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


@pytest.mark.parametrize("command", ["audit", "classify"])
def test_tables_carry_no_control_characters(hostile_study: Path, command: str) -> None:
    args = [command, str(hostile_study), "--format", "table"] + (["--no-db"] if command == "audit" else [])
    _code, out, err = _run(*args)
    assert out
    for text in (out, err):
        assert not any(ch in text for ch in "\x1b\x07\x01\x0b\r"), repr(text[:400])
    if command == "audit":
        assert "\\x1b[2J" in out  # shown, escaped


def test_junit_is_well_formed(hostile_study: Path, tmp_path: Path) -> None:
    junit = tmp_path / "audit.xml"
    _run("audit", str(hostile_study), "--no-db", "--junit", str(junit), "--protocol", "mr-pelvis")
    root = ET.parse(junit).getroot()  # raises on \x01 / \x0b
    assert root.tag == "testsuite" and root.find("testcase") is not None


def test_report_csv_neutralises_formulas(hostile_study: Path, tmp_path: Path) -> None:
    store = tmp_path / "qa.db"
    _run("audit", str(hostile_study), "--db", str(store), "--format", "json")
    exported = tmp_path / "qa.csv"
    code, _out, err = _run("report", "--db", str(store), "--csv", str(exported))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8"))))
    assert rows and rows[0]["accession_number"].startswith("'@SUM")
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


def test_log_lines_and_messages_cannot_be_forged(capsys: pytest.CaptureFixture[str]) -> None:
    """A newline in an accession or a refused SOP UID forged a log line; ESC/BEL reached the terminal."""
    import logging

    from protocolcheck.cli.net import net_logging
    from protocolcheck.cli.options import warn

    net_logging(quiet=False)
    forged = "ACC1\n2026-12-07 00:00:00 INFO forged\x1b[2J"
    logging.getLogger("protocolcheck.net.scp").info("stored accession %s", forged)
    warn("error: cannot read /data/\x07bell\x1b]0;title\x07\n  second line of ours")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 3 and "ACC1\\x0a2026-12-07 00:00:00 INFO forged\\x1b[2J" in lines[0]
    assert lines[1] == "error: cannot read /data/\\x07bell\\x1b]0;title\\x07" and lines[2] == "  second line of ours"
    logging.getLogger("protocolcheck").handlers[:] = []
