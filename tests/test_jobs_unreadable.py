"""A results-store re-run keeps a file that became unreadable in place (same size and mtime): it stays
in its study's audit (an ``unreadable-file`` finding) and in the study's fingerprint, as without a store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from protocolcheck.cli import main

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "sample_dicom" / "01_siemens_plexus_complete"


def _audit(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, ["audit", "--format", "json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout), result.stderr


def _corrupt_in_place(path: Path) -> None:
    """Zeros over the whole file, its size and modification time kept (as a failing disk or a careless
    copy can leave it): the file index cannot see the change."""
    status = path.stat()
    path.write_bytes(b"\x00" * status.st_size)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


def _unreadable(records: list[dict]) -> list[str]:
    return [f["evidence"]["path"] for r in records for f in r["findings"] if f["code"] == "unreadable-file"]


def test_forced_rerun_keeps_a_file_corrupted_in_place(tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(STUDY, study)
    db = str(tmp_path / "qa.db")
    _code, first, _err = _audit(str(study), "--db", db)
    assert not _unreadable(first)
    victim = study / "0003_002.dcm"
    _corrupt_in_place(victim)
    _code, plain, _err = _audit(str(study), "--no-db")
    assert _unreadable(plain) == [str(victim)]
    _code, forced, _err = _audit(str(study), "--db", db, "--force")
    assert _unreadable(forced) == [str(victim)], "the unreadable file vanished from the audit"
    assert forced[0]["study_instance_uid"] == plain[0]["study_instance_uid"]
    _code, again, err = _audit(str(study), "--db", db)  # the fingerprint holds it: unchanged, skipped
    assert "1 unchanged" in err and _unreadable(again) == [str(victim)]


def test_reaudit_of_its_study_keeps_a_file_corrupted_in_place(tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(STUDY, study)
    db = str(tmp_path / "qa.db")
    _audit(str(study), "--db", db)
    victim = study / "0002_001.dcm"
    _corrupt_in_place(victim)
    os.utime(study / "0001_001.dcm")  # another file of the study changed: the study is re-audited
    _code, rerun, err = _audit(str(study), "--db", db)
    assert "1 audited" in err
    assert _unreadable(rerun) == [str(victim)]
    _code, again, err = _audit(str(study), "--db", db)
    assert "1 unchanged" in err and _unreadable(again) == [str(victim)]
