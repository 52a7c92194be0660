"""A Study Instance UID shared by two exams (accessions / patients) is audited exam by exam and reported
as ``study-uid-collision`` naming both accessions; one exam's series never satisfy the other's protocol."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from protocolcheck.cli import main

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_dicom"


@pytest.fixture
def collided(tmp_path: Path) -> tuple[Path, str]:
    """Sample studies 01 (Siemens, complete) and 02 (GE, no fluid-sensitive fat suppression), the GE
    files rewritten with the Siemens study's UID, as a scanner reusing UIDs would write them."""
    first = tmp_path / "first"
    second = tmp_path / "second"
    shutil.copytree(SAMPLE / "01_siemens_plexus_complete", first)
    shutil.copytree(SAMPLE / "02_ge_plexus_no_fluid_fs", second)
    uid = pydicom.dcmread(next(first.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    for path in second.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = uid
        ds.save_as(path)
    return tmp_path, uid


def _audit(root: Path, *extra: str) -> list[dict]:
    result = CliRunner().invoke(main, ["audit", str(root), "--format", "json", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return json.loads(result.stdout)


def _accession(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).AccessionNumber)


@pytest.mark.parametrize("store", [["--no-db"], ["--db", "STORE"]])
def test_collision_names_both_accessions_and_audits_each_exam(collided: tuple[Path, str], store: list[str]) -> None:
    root, uid = collided
    args = [a.replace("STORE", str(root.parent / "qa.db")) for a in store]
    [record] = _audit(root, *args)
    first, second = _accession(root / "first"), _accession(root / "second")
    assert record["study_instance_uid"] == uid
    [collision] = [f for f in record["findings"] if f["code"] == "study-uid-collision"]
    assert collision["severity"] == "error"
    assert first in collision["message"] and second in collision["message"]
    exams = {e["accession_number"]: e for e in collision["evidence"]["exams"]}
    assert set(exams) == {first, second}
    # each exam on its own series: the complete Siemens exam meets its requirements, the GE exam does not
    assert not [f for f in exams[first]["findings"] if f["code"] == "missing-sequence"]
    assert [f for f in exams[second]["findings"] if f["code"] == "missing-sequence"]
    assert record["accession_number"] in (first, second) and record["status"] == "fail"


def test_one_exam_per_uid_is_untouched(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE / "01_siemens_plexus_complete", tmp_path / "one")
    [record] = _audit(tmp_path, "--no-db")
    assert not [f for f in record["findings"] if f["code"] == "study-uid-collision"]
