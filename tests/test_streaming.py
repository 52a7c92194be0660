"""Bounded-memory auditing gives exactly the pipeline's results, however small its buffer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocolcheck.audit.engine import AuditOptions, audit_records
from protocolcheck.audit.streaming import StudyStream, audit_records_streaming
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


@pytest.mark.parametrize("max_in_memory", [1, 3, 17, 10_000])
def test_same_results_as_the_pipeline(corpus: Path, options: AuditOptions, max_in_memory: int) -> None:
    records = list(scan([corpus]))
    expected = [r.to_dict() for r in audit_records(records, options)]
    streamed = [r.to_dict() for r in audit_records_streaming(records, options, max_in_memory=max_in_memory)]
    assert streamed == expected
    assert [r["status"] for r in expected].count("error") >= 1  # the orphan unreadable files
    assert len(expected) >= 6


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
