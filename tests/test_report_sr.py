"""The audit SR (`protocolcheck.report.sr`): what a report says, and a new version superseding an earlier one.

The verdicts come from the live monitor judging a synthetic plexus exam written by pydicom (no STIR),
the way `listen` judges one; the version records go through the real outbox folder.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from protocolcheck.jobs.live import ExamEnd, ExamState, ExamView
from protocolcheck.net.outbox import Outbox
from protocolcheck.report.sr import ReportVersion, build_audit_sr, changes, report_digest

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
IdleVerdicts = Callable[[Path, Path, str], tuple[Path, list[ExamView]]]  # the conftest fixture


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory, idle_verdicts: IdleVerdicts) -> tuple[Path, list[ExamView]]:
    """(the study's folder in a store, its idle verdict after 3 series and after all of them)."""
    return idle_verdicts(tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("store"), "SRVER")


def _completed(view: ExamView) -> ExamView:
    return dataclasses.replace(view, state=ExamState.COMPLETED, ended_by=ExamEnd.MPPS, updated=view.updated + 60)


def test_the_digest_is_what_the_report_says_not_how_the_exam_ended(exam: tuple[Path, list[ExamView]]) -> None:
    _, (early, whole) = exam
    assert report_digest(whole) == report_digest(_completed(whole))
    assert report_digest(early) != report_digest(whole)  # 2 more series judged
    fewer_findings = dataclasses.replace(whole, findings=whole.findings[1:])
    assert report_digest(fewer_findings) != report_digest(whole)
    other_action = dataclasses.replace(whole, findings=({**whole.findings[0], "action": "Do something else."},
                                                        *whole.findings[1:]))
    assert report_digest(other_action) != report_digest(whole)


def test_a_new_version_names_its_predecessor_and_says_why(exam: tuple[Path, list[ExamView]], tmp_path: Path) -> None:
    folder, (early, whole) = exam
    first = build_audit_sr(early, folder)
    assert int(first.InstanceNumber) == 1 and "PredecessorDocumentsSequence" not in first
    outbox = Outbox(tmp_path, max_items=10, max_bytes=10**7)
    outbox.prepare()
    outbox.record_report(early.study_instance_uid, ReportVersion.of(early, first).to_dict())
    record = outbox.last_report(early.study_instance_uid)
    assert record is not None
    previous = ReportVersion.from_dict(record)
    assert previous == ReportVersion.of(early, first)  # survives the round trip through the file
    assert not list(outbox.reported_folder.glob(".incoming-*"))

    later = _completed(whole)
    why = changes(previous, later)
    assert why.startswith("ended by MPPS COMPLETED, 2 more series"), why
    second = build_audit_sr(later, folder, previous=previous)
    (item,) = second.PredecessorDocumentsSequence
    (series,) = item.ReferencedSeriesSequence
    (instance,) = series.ReferencedSOPSequence
    assert (item.StudyInstanceUID, series.SeriesInstanceUID, instance.ReferencedSOPInstanceUID) == (
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert second.SeriesInstanceUID == first.SeriesInstanceUID and int(second.InstanceNumber) == 2
    assert second.SOPInstanceUID != first.SOPInstanceUID
    texts = [str(i.TextValue) for i in second.ContentSequence if "TextValue" in i]
    (supersedes,) = [t for t in texts if t.startswith("the report of ")]
    assert previous.when in supersedes and first.SOPInstanceUID in supersedes and why in supersedes
    # the same verdict on the same predecessor is the same instance (a replay after a restart)
    assert build_audit_sr(later, folder, previous=previous).SOPInstanceUID == second.SOPInstanceUID
    # the first version is unchanged by versioning (reports already in PACSes keep their UIDs)
    assert build_audit_sr(early, folder).SOPInstanceUID == first.SOPInstanceUID


def test_a_damaged_record_reads_as_none_and_old_records_go(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(tmp_path, max_items=10, max_bytes=10**7, reported_keep=60)
    outbox.prepare()
    outbox.record_report("1.2.3", {"sop_instance_uid": "1.2.3.4"})
    assert outbox.last_report("1.2.3") == {"sop_instance_uid": "1.2.3.4"}
    assert outbox.last_report("1.2.4") is None
    (outbox.reported_folder / "1.2.5.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="protocolcheck.net.outbox"):
        assert outbox.last_report("1.2.5") is None
    assert "cannot read what was reported for study 1.2.5" in caplog.text
    with pytest.raises(ValueError):
        outbox.record_report("../evil", {})
    old = time.time() - 120
    os.utime(outbox.reported_folder / "1.2.3.json", (old, old))
    Outbox(tmp_path, max_items=10, max_bytes=10**7, reported_keep=60).prepare()  # the next start
    assert outbox.last_report("1.2.3") is None and (outbox.reported_folder / "1.2.5.json").exists()
