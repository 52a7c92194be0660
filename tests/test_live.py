"""The live loop (`protocolcheck.jobs.live`, `protocolcheck.net.mpps`): exams judged series by series.

Real peers on 127.0.0.1: dcmtk's storescu sends a synthetic plexus study series by series with
pauses, a pynetdicom MPPS SCU (tests/peers.Modality) reports the exam's start and end, and the
storage SCP hands both to a LiveMonitor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peers import Modality, require_binaries
from pydicom.dataset import Dataset

from protocolcheck.audit.engine import AuditOptions
from protocolcheck.clinical.library import load_library
from protocolcheck.jobs.live import (
    ExamEnd,
    ExamState,
    ExamView,
    LiveKind,
    LiveMonitor,
    MppsMessage,
)
from protocolcheck.net.mpps import (
    DUPLICATE_SOP_INSTANCE,
    MPPS_SOP_CLASS,
    NO_SUCH_SOP_INSTANCE,
    PROCESSING_FAILURE,
    MppsStore,
    mpps_handlers,
)
from protocolcheck.net.scp import ListenConfig, StorageSCP
from protocolcheck.testing import synth

pytestmark = [pytest.mark.network, pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]

SERIES_IDLE = 0.5


@pytest.fixture(scope="module")
def library():
    return load_library()


class Views:
    """Every view the monitor published, with the monotonic time it was published."""

    def __init__(self) -> None:
        self.items: list[tuple[float, ExamView]] = []
        self.cond = threading.Condition()

    def __call__(self, view: ExamView) -> None:
        with self.cond:
            self.items.append((time.monotonic(), view))
            self.cond.notify_all()

    def wait(self, test: Callable[[ExamView], bool], timeout: float = 15.0) -> tuple[float, ExamView]:
        with self.cond:
            found: list[tuple[float, ExamView]] = []

            def done() -> bool:
                found[:] = [item for item in self.items if test(item[1])]
                return bool(found)

            assert self.cond.wait_for(done, timeout), [(v.state, v.series_received, v.series_open)
                                                       for _, v in self.items]
            return found[0]


class Loop:
    """A storage+MPPS SCP feeding a LiveMonitor (what `listen` wires together)."""

    def __init__(self, store: Path, library, series_idle: float = SERIES_IDLE) -> None:
        self.monitor = LiveMonitor(AuditOptions(library=library), series_idle=series_idle)
        self.views = Views()
        self.monitor.subscribe(self.views)
        self.mpps = MppsStore(store)
        self.mpps.load()
        handlers = mpps_handlers(self.mpps, lambda uid, ds: self.monitor.mpps(MppsMessage.from_dataset(uid, ds)))
        self.scp = StorageSCP(ListenConfig(store=store, port=0, idle=60),
                              lambda folder: self.monitor.study_idle(folder.name),
                              on_instance=lambda key, path: self.monitor.instance(key.study, key.series, path),
                              services=[((MPPS_SOP_CLASS,), handlers)])
        self.monitor.start()
        self.scp.start()

    @property
    def port(self) -> int:
        return self.scp.address[1]

    def stop(self) -> None:
        self.scp.stop(grace=5)
        self.monitor.stop()


@pytest.fixture
def loop(tmp_path: Path, library) -> Iterator[Loop]:
    require_binaries("storescu")
    running = Loop(tmp_path / "store", library)
    yield running
    running.stop()


def _study(folder: Path, **options: object) -> Path:
    synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, str(options.pop("accession", "LIVE1")), **options),
                      folder)
    return folder


def _kinds(view: ExamView) -> dict[str, str]:
    return {str(f.get("requirement") or f["code"]): f["live"] for f in view.findings}


def test_series_by_series_then_mpps_completed(tmp_path: Path, loop: Loop) -> None:
    """No STIR: provisional verdicts name it still missing, then missing once contrast was given
    (an alert while the exam is open); MPPS COMPLETED makes the verdict final."""
    modality = Modality(loop.port, _study(tmp_path / "src", fluid_fat_suppressed=False))
    assert modality.mpps_create() == 0
    _, started = loop.views.wait(lambda v: v.state is ExamState.IN_PROGRESS)
    assert started.scheduled_procedure == "MRI LUMBOSACRAL PLEXUS WO+W CONTRAST" and started.series_received == 0
    assert started.station == "MR-ROOM-1" and started.station_aet == "MR1" and started.provisional
    latencies = []
    for index in range(len(modality.series)):
        modality.send_series(index)
        sent = time.monotonic()
        at, view = loop.views.wait(lambda v, n=index + 1: v.series_received == n and v.series_open == 0
                                   and v.status != "")
        latencies.append(at - sent)
        assert view.provisional and view.state is ExamState.IN_PROGRESS
        kinds = _kinds(view)
        if index == 2:  # localizer, T1, T2 so far: STIR can still be done
            assert kinds == {"fluid-fat-suppressed": "still-missing",
                             "post-contrast-t1-fat-suppressed": "still-missing"}
            assert view.verdict == "on-track" and not view.alerts
        if index == 3:  # the first post-contrast series: too late for a STIR
            assert kinds == {"fluid-fat-suppressed": "missing"}
            assert view.verdict == "alert" and [a["requirement"] for a in view.alerts] == ["fluid-fat-suppressed"]
        time.sleep(0.2)
    # the verdict of each series within 2 s of its last instance (series idle 0.5 s here)
    assert max(latencies) < 2.0, latencies
    assert modality.mpps_set("COMPLETED") == 0
    _, final = loop.views.wait(lambda v: v.state is ExamState.COMPLETED)
    assert not final.provisional and final.status == "fail" and final.verdict == "fail"
    assert _kinds(final) == {"fluid-fat-suppressed": LiveKind.MISSING.value}
    assert not final.alerts  # the exam is over: no banner, the verdict says it
    assert sorted({s["series_number"] for s in final.series}) == [1, 2, 3, 4, 5]  # every series judged
    assert final.to_dict()["state"] == "completed" and "patient_name" not in final.to_dict()


def test_series_made_but_not_sent_is_reported(tmp_path: Path, loop: Loop) -> None:
    modality = Modality(loop.port, _study(tmp_path / "src", accession="LIVE2"))
    assert modality.mpps_create() == 0
    for index in range(len(modality.series) - 1):  # the last series is never sent
        modality.send_series(index)
    assert modality.mpps_set("COMPLETED") == 0
    _, final = loop.views.wait(lambda v: v.state is ExamState.COMPLETED and v.series_open == 0 and v.status != "")
    missing = [f for f in final.findings if f["code"] == "series-not-received"]
    assert [f["series"] for f in missing] == [[modality.series_uids[-1]]]
    assert final.status == "fail" and missing[0]["live"] == "missing"


def test_discontinued_and_mpps_rules(tmp_path: Path, loop: Loop) -> None:
    modality = Modality(loop.port, _study(tmp_path / "src", accession="LIVE3"))
    assert modality.mpps_create() == 0
    assert modality.mpps_create() == DUPLICATE_SOP_INSTANCE
    modality.send_series(0)
    assert modality.mpps_set("DISCONTINUED", performed=[0]) == 0
    _, final = loop.views.wait(lambda v: v.state is ExamState.DISCONTINUED)
    assert not final.provisional
    assert modality.mpps_set("COMPLETED") == PROCESSING_FAILURE  # a final step may no longer be updated
    stranger = Modality(loop.port, tmp_path / "src")
    assert stranger.mpps_set("COMPLETED") == NO_SUCH_SOP_INSTANCE
    # every acknowledged message is on disk and replays into the same step
    replayed = MppsStore(loop.mpps.root.parent).load()
    assert replayed[modality.mpps_uid].PerformedProcedureStepStatus == "DISCONTINUED"
    assert len(list(loop.mpps.root.glob(f"{modality.mpps_uid}_*.dcm"))) == 2


def test_next_series_completes_the_previous_one(tmp_path: Path, library) -> None:
    """Without waiting for the series idle time: an instance of the next series closes the last one."""
    folder = _study(tmp_path / "src", accession="LIVE4")
    now = [100.0]
    monitor = LiveMonitor(AuditOptions(library=library), series_idle=30, clock=lambda: now[0])
    files = sorted(folder.glob("*.dcm"))
    import pydicom

    def send(path: Path) -> None:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        monitor.instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, path)

    for path in files[:3]:  # the localizer (3 images)
        send(path)
    monitor.step(monitor.drain())  # drive the thread's body by hand
    assert monitor.views() == []  # nothing complete yet
    send(files[3])  # the first image of series 2
    monitor.step(monitor.drain())
    (view,) = monitor.views()
    assert view.series_received == 2 and view.series_open == 1 and view.series[0]["localizer"]
    now[0] += 31
    monitor.step([])
    (view,) = monitor.views()
    assert view.series_open == 0 and len({s["series_instance_uid"] for s in view.series}) == 2
    assert "patient_name" not in view.to_dict() and "SAMPLE^" not in str(view.to_dict())  # no names by default
    assert view.to_dict(include_patient=True)["patient_name"] == "SAMPLE^SIEMENS"


def test_mpps_message_from_dataset() -> None:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    step = Dataset()
    step.StudyInstanceUID = "1.2.3"
    step.AccessionNumber = "A9"
    step.ScheduledProcedureStepDescription = "MR PELVIS"
    ds.ScheduledStepAttributesSequence = [step]
    item = Dataset()
    item.SeriesInstanceUID = "1.2.3.4"
    ds.PerformedSeriesSequence = [item]
    message = MppsMessage.from_dataset("9.9", ds)
    assert (message.state, message.study_instance_uid, message.accession_number, message.scheduled_procedure,
            message.performed_series) == (ExamState.COMPLETED, "1.2.3", "A9", "MR PELVIS", ("1.2.3.4",))


def test_a_series_judged_before_stays_while_more_of_it_arrives(tmp_path: Path, library) -> None:
    """Late instances of a judged series must not make it read as missing until it settles again."""
    import pydicom

    folder = _study(tmp_path / "src", accession="LIVE5")
    now = [100.0]
    monitor = LiveMonitor(AuditOptions(library=library), series_idle=2, clock=lambda: now[0])
    files = sorted(folder.glob("*.dcm"))
    late = [p for p in files if p.name.startswith("0002_")][-1:]  # the T1's last image, sent at the end

    def send(paths: list[Path]) -> None:
        for path in paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            monitor.instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, path)
        monitor.step(monitor.drain())  # drive the thread's body by hand

    send([p for p in files if p not in late])
    now[0] += 3
    monitor.step([])
    (before,) = monitor.views()
    assert "t1" not in _kinds(before)
    send(late)  # the T1 reopens; an MPPS message has the exam judged again meanwhile
    monitor.step([("mpps", (MppsMessage("9.9", "IN PROGRESS", study_instance_uid=before.study_instance_uid), now[0]))])
    (during,) = monitor.views()
    assert "t1" not in _kinds(during) and during.series_open == 1


def test_an_exam_that_never_ends_times_out(tmp_path: Path, library) -> None:
    """An MPPS left IN PROGRESS with no images ends after the exam timeout (state idle, ended by the
    timeout, final); an instance reopens it; a step replayed at start keeps its age; MPPS COMPLETED
    later ends it by MPPS."""
    import pydicom

    now = [1000.0]
    monitor = LiveMonitor(AuditOptions(library=library), series_idle=2, exam_timeout=60, clock=lambda: now[0])
    monitor.mpps(MppsMessage("9.1", "IN PROGRESS", study_instance_uid="1.2.3.1", accession_number="TO1"))
    monitor.mpps(MppsMessage("9.2", "IN PROGRESS", study_instance_uid="1.2.3.2", accession_number="TO2"), age=3600)
    monitor.step(monitor.drain())
    views = {v.accession_number: v for v in monitor.views()}
    assert (views["TO1"].state, views["TO1"].provisional, views["TO1"].ended_by) == (ExamState.IN_PROGRESS, True, None)
    assert views["TO2"].ended_by is ExamEnd.TIMEOUT and not views["TO2"].provisional  # replayed, an hour old
    now[0] += 59
    monitor.step([])
    assert monitor.view("1.2.3.1").state is ExamState.IN_PROGRESS
    assert 0 < monitor._next_wait() <= 1.01  # the thread wakes up for the deadline
    now[0] += 1
    monitor.step([])
    view = monitor.view("1.2.3.1")
    assert (view.state, view.provisional, view.verdict) == (ExamState.IDLE, False, "no-images")
    assert view.to_dict()["ended_by"] == "timeout" and view.to_dict()["state"] == "idle"
    monitor.mpps(MppsMessage("9.1", "COMPLETED", study_instance_uid="1.2.3.1", accession_number="TO1"))
    monitor.step(monitor.drain())
    assert monitor.view("1.2.3.1").to_dict()["ended_by"] == "mpps"
    folder = _study(tmp_path / "src", accession="TO3")
    path = sorted(folder.glob("*.dcm"))[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    monitor.instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, path)
    now[0] += 61
    monitor.step(monitor.drain())  # an exam with images, no MPPS, no idle hand-over: the timeout ends it too
    view = monitor.view(ds.StudyInstanceUID)
    assert (view.ended_by, view.series_open, view.status != "") == (ExamEnd.TIMEOUT, 0, True)
    monitor.instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, path)  # more arrives: open again
    monitor.step(monitor.drain())
    now[0] += 3  # judged again once the series is quiet
    monitor.step([])
    view = monitor.view(ds.StudyInstanceUID)
    assert (view.state, view.ended_by) == (ExamState.IN_PROGRESS, None)


def test_the_idle_hand_over_waits_for_the_listeners(tmp_path: Path, library) -> None:
    """study_idle(wait=...) returns once the final verdict went through every listener (listen keeps the
    study's pending marker until then, so the SR is in the outbox before the marker goes)."""
    import pydicom

    folder = _study(tmp_path / "src", accession="LIVE6")
    monitor = LiveMonitor(AuditOptions(library=library), series_idle=30)
    seen: list[ExamView] = []

    def slow_listener(view: ExamView) -> None:
        time.sleep(0.3)  # e.g. building the SR and writing it to the outbox
        seen.append(view)

    monitor.subscribe(slow_listener)
    monitor.start()
    try:
        for path in sorted(folder.glob("*.dcm"))[:4]:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            monitor.instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, path)
        assert monitor.study_idle(str(ds.StudyInstanceUID), wait=20)
        assert seen and seen[-1].state is ExamState.IDLE and not seen[-1].provisional
        assert monitor.study_idle("1.2.3.404", wait=5)  # an exam the monitor never saw: at once
    finally:
        monitor.stop()


def test_an_exam_the_monitor_does_not_know_starts_from_the_stored_files(tmp_path: Path, library) -> None:
    """A late series of a study received before (by an earlier run): with ``history`` the exam is judged on
    every stored file, old series complete at once, each file once (the late one was stored too); without
    it, on the late series alone."""
    import os

    import pydicom

    folder = _study(tmp_path / "src", accession="HIST1")
    store = tmp_path / "store"
    files: list[tuple[str, str, Path]] = []
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        target = store / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        files.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, target))
    study = files[0][0]
    late_series = files[-1][1]
    for _, series, path in files:
        if series != late_series:
            os.utime(path, (time.time() - 3600, time.time() - 3600))  # stored an hour ago
    series_count = len({series for _, series, _ in files})

    def judged(history: Callable[[str], list[Path]] | None) -> tuple[LiveMonitor, ExamView]:
        now = [1000.0]
        monitor = LiveMonitor(AuditOptions(library=library), series_idle=2, history=history, clock=lambda: now[0])
        for study_uid, series, path in files:
            if series == late_series:
                monitor.instance(study_uid, series, path)
        monitor.step(monitor.drain())
        if history is not None:  # the old series are complete at once, the late one still arriving
            assert monitor.view(study).series_open == 1
        now[0] += 3
        monitor.step([])
        view = monitor.view(study)
        assert view is not None and view.series_open == 0
        return monitor, view

    monitor, whole = judged(lambda uid: sorted((store / uid).glob("*/*.dcm")))
    assert whole.series_received == series_count
    assert {s["series_instance_uid"] for s in whole.series} == {series for _, series, _ in files}
    assert sum(len(s.headers) for s in monitor._exams[study].series.values()) == len(files)  # each file once
    _, alone = judged(None)
    assert alone.series_received == 1
