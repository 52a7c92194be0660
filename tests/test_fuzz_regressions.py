"""Replay every input the fuzzer (``python -m fuzz.run``) found to break a reader, and keep it fixed.

``tests/data/crashers/`` holds the minimized inputs, named after what they exercise:
``dicom/`` files go through scan -> group_studies -> classify_study -> audit and the ``classify`` /
``audit`` commands beside a good study; ``library/`` protocol files, ``rules/`` recommender rules and
``context/`` CSVs go through their loaders and the commands that read them (a CSV that loads is
used for an audit). The contract: no
exception, every bad file named (an Unreadable record, an ``unreadable-file`` finding, a problem
naming the file), and the good study still audited.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from protocolcheck.audit.engine import AuditOptions, audit_records
from protocolcheck.classify import classify_study
from protocolcheck.cli import main
from protocolcheck.clinical.context import ContextError, load_context_csv
from protocolcheck.clinical.findings import FindingCode, Status
from protocolcheck.clinical.library import LibraryError, load_library, load_protocol_file
from protocolcheck.clinical.recommend import RulesError, load_rules
from protocolcheck.dicom.lean import read_fast
from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import scan, scan_file
from protocolcheck.dicom.study import group_studies

REPO = Path(__file__).resolve().parent.parent
CRASHERS = REPO / "tests" / "data" / "crashers"
GOOD_STUDY = REPO / "sample_dicom" / "01_siemens_plexus_complete"
PROTOCOLS = REPO / "protocols"

DICOM = sorted(p for p in (CRASHERS / "dicom").iterdir() if p.is_file())
LIBRARY = sorted((CRASHERS / "library").glob("*.yaml"))
RULES = sorted((CRASHERS / "rules").glob("*.yaml"))
CONTEXT = sorted((CRASHERS / "context").glob("*.csv"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good study and every DICOM crasher, side by side as a user's folder would hold them."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(GOOD_STUDY, root / "good")
    (root / "crashers").mkdir()
    for path in DICOM:
        shutil.copy(path, root / "crashers" / path.name)
    return root


@pytest.fixture(autouse=True)
def _own_results_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """audit keeps a results store by default: a fresh one per test, never the user's."""
    monkeypatch.setenv("PROTOCOLCHECK_DB", str(tmp_path / "results.db"))


def test_the_corpus_is_there() -> None:
    assert DICOM and LIBRARY and RULES and CONTEXT


@pytest.mark.parametrize("path", DICOM, ids=_ids(DICOM))
def test_reader_gives_a_record_for_each_crasher(path: Path) -> None:
    records = scan_file(str(path))
    assert records and all(isinstance(r, (InstanceHeader, Unreadable, Skipped)) for r in records)
    assert all(r.path == str(path) for r in records)
    for record in records:
        if isinstance(record, (Unreadable, Skipped)):
            assert record.reason.strip()
            assert "MemoryError" not in record.reason and "RecursionError" not in record.reason
            # a reason never echoes raw file bytes (which may hold a patient name)
            assert len(record.reason) < 400 and "\x00" not in record.reason and "^" not in record.reason
    read_fast(str(path))  # the lean reader answers (a record or None) and never raises


def test_small_deflated_file_inflating_to_megabytes_is_refused_quickly() -> None:
    [record] = scan_file(str(CRASHERS / "dicom" / "deflated_8kb_inflating_to_32mb_slow.dcm"))
    assert isinstance(record, Unreadable) and "deflate bomb" in record.reason


def test_pipeline_names_every_bad_file_and_audits_the_good_study(mixed_folder: Path) -> None:
    records = list(scan([mixed_folder]))
    headers = [r for r in records if isinstance(r, InstanceHeader)]
    bad = [r for r in records if isinstance(r, Unreadable)]
    studies = list(group_studies(headers))
    classified = [c for s in studies for c in classify_study(s)]
    assert {(h.study_instance_uid, h.series_instance_uid) for h in headers} == \
        {(c.study_instance_uid, c.series_instance_uid) for c in classified}

    results = list(audit_records(records, AuditOptions(library=load_library(None))))
    unreadable_paths = {f.evidence.get("path") for r in results for f in r.findings
                        if f.code is FindingCode.UNREADABLE_FILE}
    assert {u.path for u in bad} <= unreadable_paths
    good_uids = {h.study_instance_uid for h in headers if h.path.startswith(str(mixed_folder / "good"))}
    good = [r for r in results if r.study_instance_uid in good_uids]
    assert len(good) == 1 and good[0].protocol and good[0].status is not Status.ERROR
    assert good[0].requirements  # audited against its protocol, not just listed
    for path in DICOM:  # every crasher is accounted for: read, skipped, or named as unreadable
        name = str(mixed_folder / "crashers" / path.name)
        assert any(r.path == name for r in records)


@pytest.mark.parametrize("fmt", ["json", "table", "csv"])
def test_classify_and_audit_commands_name_bad_files_without_a_traceback(mixed_folder: Path, fmt: str) -> None:
    runner = CliRunner()
    bad = [r.path for r in scan([mixed_folder / "crashers"]) if isinstance(r, Unreadable)]
    assert bad
    for command in ("classify", "audit"):
        result = runner.invoke(main, [command, str(mixed_folder), "--format", fmt])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code in (0, 1), result.output
        assert "Traceback" not in result.output + result.stderr
        text = result.stdout + result.stderr
        for path in bad:
            assert Path(path).name in text, f"{command} --format {fmt} does not name {path}"
    audit = runner.invoke(main, ["audit", str(mixed_folder), "--format", "json"])
    named = {f["evidence"]["path"] for r in json.loads(audit.stdout) for f in r["findings"]
             if f["code"] == "unreadable-file"}
    assert set(bad) <= named


@pytest.mark.parametrize("path", LIBRARY, ids=_ids(LIBRARY))
def test_bad_protocol_file_is_a_problem_naming_the_file(path: Path, tmp_path: Path) -> None:
    result = load_protocol_file(path)
    assert result.problems and result.protocol is None
    assert all(str(path) in p for p in result.problems)
    library = tmp_path / "library"
    shutil.copytree(PROTOCOLS, library, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    shutil.copy(path, library / path.name)
    with pytest.raises(LibraryError) as excinfo:
        load_library(library)
    assert any(path.name in p for p in excinfo.value.problems)
    runner = CliRunner()
    lint = runner.invoke(main, ["protocols", "lint", str(path)])
    assert lint.exit_code == 2 and path.name in lint.output
    audit = runner.invoke(main, ["audit", str(GOOD_STUDY), "--library", str(library), "--format", "json"])
    assert audit.exit_code == 2 and path.name in audit.stderr
    assert "Traceback" not in audit.output + audit.stderr


@pytest.mark.parametrize("path", RULES, ids=_ids(RULES))
def test_bad_rules_file_is_a_rules_error_naming_the_file(path: Path) -> None:
    with pytest.raises(RulesError) as excinfo:
        load_rules(path)
    assert all(str(path) in p for p in excinfo.value.problems)
    result = CliRunner().invoke(main, ["recommend", "--rules", str(path), "--indication", "lumbosacral plexopathy"])
    assert result.exit_code == 2 and path.name in result.stderr
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize("path", CONTEXT, ids=_ids(CONTEXT))
def test_context_csv_crasher_is_a_context_error_or_audits_cleanly(path: Path) -> None:
    """A bad CSV is rejected naming the file (exit 2); one that loads must not break the audit."""
    try:
        table = load_context_csv(path)
    except ContextError as exc:
        assert exc.problems and all(str(path) in p for p in exc.problems)
        expected = {2}
    else:
        assert table.by_accession or table.by_study_uid
        expected = {0, 1}
    study = REPO / "sample_dicom" / "05_canon_plexus_trauma_10d"
    result = CliRunner().invoke(main, ["audit", str(study), "--context", str(path), "--format", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in expected, result.output
    assert "Traceback" not in result.output + result.stderr
    if expected == {2}:
        assert path.name in result.stderr
    else:
        assert json.loads(result.stdout)[0]["status"] in ("pass", "warn", "fail")


def test_special_files_are_named_not_waited_on(tmp_path: Path) -> None:
    """A named pipe (opening it would wait forever for a writer), a broken symbolic link and a folder
    named like a file, beside a good study: each bad one named, no hang, no usage error."""
    import os

    root = tmp_path / "special"
    shutil.copytree(GOOD_STUDY, root / "good")
    os.mkfifo(root / "good" / "pipe.dcm")
    (root / "good" / "broken_link.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (root / "good" / "folder.dcm").mkdir()
    records = list(scan([root]))
    reasons = {Path(r.path).name: r.reason for r in records if isinstance(r, Unreadable)}
    assert set(reasons) == {"pipe.dcm", "broken_link.dcm"}
    assert "not a regular file" in reasons["pipe.dcm"]
    for command in ("classify", "audit"):
        result = CliRunner().invoke(main, [command, str(root), "--format", "json"])
        assert result.exit_code in (0, 1), result.output
        assert "pipe.dcm" in result.stdout + result.stderr and "broken_link.dcm" in result.stdout + result.stderr


def test_file_names_that_are_not_utf8_are_named_not_a_traceback(tmp_path: Path) -> None:
    """Names with Latin-1 bytes: Python keeps them as lone surrogates, which no output (JSON, CSV,
    SQLite) can encode; they are reported as unreadable under an escaped name."""
    import os

    root = tmp_path / "names"
    shutil.copytree(GOOD_STUDY, root / "good")
    folder = os.fsencode(root / "good")
    with open(folder + b"/latin1_\xe9.dcm", "wb") as fh:
        fh.write((GOOD_STUDY / "0001_001.dcm").read_bytes())
    with open(folder + b"/junk_\xff\xfe.dcm", "wb") as fh:
        fh.write(b"not dicom")
    for command in ("classify", "audit"):
        for fmt in ("json", "csv", "table"):
            result = CliRunner().invoke(main, [command, str(root), "--format", fmt])
            assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
            assert result.exit_code in (0, 1), result.output
            text = result.stdout + result.stderr
            assert "xe9.dcm" in text and "xfe.dcm" in text  # named (JSON doubles the backslash)


def test_classify_names_unreadable_files_even_when_quiet(mixed_folder: Path) -> None:
    result = CliRunner().invoke(main, ["classify", str(mixed_folder / "crashers"), str(mixed_folder / "good"),
                                       "-q", "--format", "json"])
    assert result.exit_code == 0
    for record in scan([mixed_folder / "crashers"]):
        if isinstance(record, Unreadable):
            assert record.path in result.stderr
