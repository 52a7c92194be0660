"""The audit engine works study by study in bounded memory: the same results however small its buffer;
unreadable files go to the study whose folder holds them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocolcheck.audit.engine import AuditOptions, audit_records
from protocolcheck.audit.streaming import StudyStream, attach_unreadable
from protocolcheck.clinical.library import default_library_path, load_library
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import scan
from protocolcheck.dicom.study import group_studies
from protocolcheck.testing import synth


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five studies over two folders (one folder holds two studies), plus unreadable files."""
    root = tmp_path_factory.mktemp("corpus")
    specs = synth.varied_studies(5, slices=2)
    for i, spec in enumerate(specs):
        synth.write_study(spec, root / (f"shared/part{i}" if i in (1, 2) else f"study{i}"))
    (root / "study0" / "broken.dcm").write_bytes(b"\x00" * 300)  # belongs to study 0 (its folder)
    (root / "shared" / "broken.dcm").write_bytes(b"\x00" * 300)  # above two studies: nobody's
    (root / "stray").mkdir()
    (root / "stray" / "junk.dcm").write_bytes(b"junk")  # no study at all
    return root


@pytest.fixture(scope="module")
def options() -> AuditOptions:
    return AuditOptions(library=load_library(default_library_path()))


@pytest.mark.parametrize("max_in_memory", [1, 3, 17])
def test_same_results_however_small_the_buffer(corpus: Path, options: AuditOptions, max_in_memory: int) -> None:
    records = list(scan([corpus]))
    in_memory = [r.to_dict() for r in audit_records(records, options, max_in_memory=1_000_000)]
    spilled = [r.to_dict() for r in audit_records(records, options, max_in_memory=max_in_memory)]
    assert spilled == in_memory
    uids = [r["study_instance_uid"] for r in in_memory]
    assert uids[:5] == sorted(uids[:5]) and all(uids[:5]) and uids[5:] == ["", ""]  # studies, then orphans


def test_unreadable_files_go_to_the_study_in_their_folder(corpus: Path, options: AuditOptions) -> None:
    results = list(audit_records(scan([corpus]), options))
    paths = [[f.evidence["path"] for f in r.findings if f.code.value == "unreadable-file"] for r in results]
    with_files = [(r, p) for r, p in zip(results, paths, strict=True) if p]
    assert [(bool(r.study_instance_uid), r.status.value, p) for r, p in with_files] == [
        (True, "warn", [str(corpus / "study0" / "broken.dcm")]),  # a warning on study 0 (its folder)
        (False, "error", [str(corpus / "shared" / "broken.dcm")]),  # above two studies: nobody's
        (False, "error", [str(corpus / "stray" / "junk.dcm")]),  # no study near
    ]


def test_attach_unreadable_needs_exactly_one_study_nearby(tmp_path: Path) -> None:
    from protocolcheck.dicom.records import Unreadable

    dirs = {"1.1": {str(tmp_path / "a" / "s1")}, "1.2": {str(tmp_path / "a" / "s2")}}
    items = [Unreadable(str(tmp_path / "a" / "s1" / "x.dcm"), "bad"),  # its own folder: study 1.1
             Unreadable(str(tmp_path / "a" / "s2" / "deep" / "y.dcm"), "bad"),  # one folder below 1.2's
             Unreadable(str(tmp_path / "a" / "z.dcm"), "bad"),  # above both studies: nobody's
             Unreadable(str(tmp_path / "b" / "w.dcm"), "bad")]  # no study near
    attached = attach_unreadable(items, dirs)
    assert attached.by_study == {"1.1": [items[0]], "1.2": [items[1]]}
    assert attached.orphans == items[2:]


def test_studies_come_out_like_group_studies_and_runs_are_removed(corpus: Path, tmp_path: Path) -> None:
    records = list(scan([corpus]))
    headers = [r for r in records if isinstance(r, InstanceHeader)]
    stream = StudyStream(records, max_in_memory=4, tmpdir=str(tmp_path))
    assert stream.spilled and stream.headers == len(headers) and len(stream.unreadable) == 3
    assert os.listdir(tmp_path)  # sorted runs on disk while the stream is open
    studies = list(stream)
    expected = list(group_studies(headers))
    assert [s.study_instance_uid for s in studies] == [s.study_instance_uid for s in expected]
    assert [[st.instances for st in s.stacks] for s in studies] == [[st.instances for st in s.stacks] for s in expected]
    assert os.listdir(tmp_path) == []  # cleaned up when iteration ends


def test_in_memory_when_small(corpus: Path) -> None:
    stream = StudyStream(scan([corpus]), max_in_memory=100_000)
    assert not stream.spilled
    assert len(list(stream)) == 5
