"""``listen --send-sr``'s rule for a study's reports (`protocolcheck.cli.live.LiveLoop`), in process.

The verdicts come from the live monitor judging a synthetic plexus exam (no STIR) read from a store
folder; the reports go into the real outbox (its sender is not started, so they stay there to be read).
The same rule against a real Orthanc, across a kill -9: tests/test_live_listen.py.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from protocolcheck import config
from protocolcheck.audit.engine import AuditOptions
from protocolcheck.cli.live import LiveLoop
from protocolcheck.clinical.library import load_library
from protocolcheck.jobs.live import ExamEnd, ExamState, ExamView

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
IdleVerdicts = Callable[[Path, Path, str], tuple[Path, list[ExamView]]]  # the conftest fixture


def _views(store: Path, idle_verdicts: IdleVerdicts) -> list[ExamView]:
    """An exam stored in ``store``: its idle verdict after 3 series, and after all 5."""
    return idle_verdicts(store.parent / "src", store, "CLIVE")[1]


def _loop(store: Path) -> LiveLoop:
    opts = {"series_idle": 0.5, "exam_timeout": config.EXAM_TIMEOUT, "send_sr": "PACS@127.0.0.1:104"}
    loop = LiveLoop(opts, AuditOptions(library=load_library()), store, "PROTOCOLCHECK")
    assert loop.sender is not None
    loop.sender.prepare()
    return loop


def _waiting(loop: LiveLoop) -> list[pydicom.Dataset]:
    """The reports in the outbox folder (whichever run put them there)."""
    assert loop.sender is not None
    return [pydicom.dcmread(p) for p in sorted(loop.sender.outbox.folder.glob("*.dcm"))]


def _completed(view: ExamView) -> ExamView:
    return dataclasses.replace(view, state=ExamState.COMPLETED, ended_by=ExamEnd.MPPS, updated=view.updated + 60)


def test_one_report_per_verdict_and_versions_across_restarts(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             idle_verdicts: IdleVerdicts) -> None:
    store = tmp_path / "store"
    early, whole = _views(store, idle_verdicts)
    loop = _loop(store)
    loop._send_sr(early)
    (first,) = _waiting(loop)
    with caplog.at_level(logging.INFO, logger="protocolcheck.live"):
        _loop(store)._send_sr(_completed(early))  # another run: the same verdict, ended by MPPS
    assert [ds.SOPInstanceUID for ds in _waiting(loop)] == [first.SOPInstanceUID]
    assert "accession CLIVE (completed, ended by mpps): the same verdict as the report of" in caplog.text
    again = _loop(store)
    again._send_sr(_completed(whole))  # 2 more series: a new version
    (second,) = [ds for ds in _waiting(again) if ds.SOPInstanceUID != first.SOPInstanceUID]
    (item,) = second.PredecessorDocumentsSequence
    assert item.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert int(second.InstanceNumber) == 2 and second.SeriesInstanceUID == first.SeriesInstanceUID
    again._send_sr(whole)  # the study idle after MPPS COMPLETED: the same verdict again
    assert len(_waiting(again)) == 2


def test_a_report_the_pacs_refused_is_not_superseded(tmp_path: Path, idle_verdicts: IdleVerdicts) -> None:
    """The PACS refused the first report for good: the next, different verdict is a report of its own (a
    predecessor the PACS never took would point nowhere), and the same verdict is not sent again."""
    store = tmp_path / "store"
    early, whole = _views(store, idle_verdicts)
    loop = _loop(store)
    assert loop.sender is not None
    loop._send_sr(early)
    (path,) = loop.sender.outbox.pending()
    loop.sender.outbox.fail(path, "0xC000 for the test")
    _loop(store)._send_sr(_completed(early))
    assert not _waiting(loop)
    _loop(store)._send_sr(_completed(whole))
    (second,) = _waiting(loop)
    assert "PredecessorDocumentsSequence" not in second and int(second.InstanceNumber) == 1
