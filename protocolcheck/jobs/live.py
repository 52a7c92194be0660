"""The technologist's loop: each exam judged series by series while the patient is still on the table.

:class:`LiveMonitor` keeps one :class:`Exam` per Study Instance UID. Instances are reported as they
are stored (:meth:`LiveMonitor.instance`, cheap, called on an association thread); the monitor's
own thread reads their headers, decides when a series is complete (no new instance of it for
``series_idle`` seconds, or the next series of the exam has started) and then re-audits the exam so
far through the one audit engine (:func:`protocolcheck.audit.engine.audit_study`). Verdicts are
*provisional* while the exam is open and *final* once it ends: MPPS COMPLETED or DISCONTINUED
(PS3.4 Annex F), or the study idle as ``listen`` decides today (:meth:`LiveMonitor.study_idle`), or
nothing at all (no instance and no MPPS message) for ``exam_timeout`` seconds: an MPPS left IN
PROGRESS with no images, or a step never completed, does not stay open for ever. How it ended is
:class:`ExamEnd` (``ended_by`` in ``/api/exams``).
A series quiet for ``settle`` seconds (0.5) is judged already, so that its verdict shows well within
``series_idle`` of its last instance; it counts as complete (no longer "arriving") after ``series_idle``.
A series still receiving is never judged on its first images; one judged before stays in the verdict
while more of it arrives.

Every finding is sorted into one of three live kinds (:class:`LiveKind`): ``still-missing`` (a
required series not acquired *yet*: no alarm while it can still be done), ``missing`` (the exam is
over, or contrast has been given and the series is a pre-contrast one), and ``wrong`` (anything else
at warning or error level: wrong plane, thick slices, wrong exam). ``missing`` and ``wrong`` items of
an open exam are its *alerts* (the page's banner, ``--notify``).

Listeners (:meth:`LiveMonitor.subscribe`) get every new :class:`ExamView`; they run on the monitor's
thread and must be quick (queue work elsewhere). Nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from protocolcheck import config
from protocolcheck.audit.engine import AuditOptions, audit_study
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.findings import (
    AuditResult,
    Finding,
    FindingCode,
    Severity,
    Status,
    status_for,
)
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import load_fast_reader, read_file
from protocolcheck.dicom.study import group_studies

LOG = logging.getLogger("protocolcheck.jobs.live")

_HAS_ACTION = any(f.name == "action" for f in dataclasses.fields(Finding))  # structured findings (issue 12)
DEFAULT_SERIES_IDLE = 2.0  # seconds without a new instance before a series counts as complete
DEFAULT_SETTLE = 0.5  # seconds without a new instance before a series is judged (early, still "arriving")
RECENT_EXAMS = 50  # finished exams kept in memory for the page
BATCH_SECONDS = 0.05  # the monitor takes instances in batches this far apart (one wake-up per batch, not per
#                       instance: the receiving threads and the monitor then rarely contend for the GIL)


class ExamState(str, Enum):
    """Where an exam is (MPPS status, PS3.3 C.4.14 Performed Procedure Step Status, or our idle rule)."""

    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    DISCONTINUED = "discontinued"
    IDLE = "idle"  # no MPPS ended it: no new instance for listen's --idle seconds


class ExamEnd(str, Enum):
    """What ended an exam (``ended_by``; an open exam has none)."""

    MPPS = "mpps"  # MPPS COMPLETED or DISCONTINUED (PS3.4 F.7)
    IDLE = "idle"  # listen's idle hand-over: no new instance for --idle seconds (state idle)
    TIMEOUT = "timeout"  # no instance and no MPPS message for --exam-timeout seconds (state idle)


class LiveKind(str, Enum):
    """How a finding reads while the exam runs."""

    STILL_MISSING = "still-missing"  # a required series not acquired yet; it still can be
    MISSING = "missing"  # too late: the exam ended, or contrast was given before this pre-contrast series
    WRONG = "wrong"  # a problem with what was acquired (plane, parameters, wrong exam, ...)
    NOTE = "note"  # information only


_MPPS_STATUS = {"IN PROGRESS": ExamState.IN_PROGRESS, "COMPLETED": ExamState.COMPLETED,
                "DISCONTINUED": ExamState.DISCONTINUED}


@dataclass(frozen=True)
class MppsMessage:
    """What a Modality Performed Procedure Step N-CREATE/N-SET tells (PS3.4 F.7; attributes after the
    N-SET merged onto the N-CREATE's, so every message is the step's whole state)."""

    sop_instance_uid: str
    status: str  # IN PROGRESS / COMPLETED / DISCONTINUED
    study_instance_uid: str = ""
    accession_number: str = ""
    scheduled_procedure: str = ""  # Requested / Scheduled Procedure Step Description of the first step
    performed_procedure: str = ""  # Performed Procedure Step Description
    station_aet: str = ""
    station_name: str = ""
    performed_series: tuple[str, ...] = ()  # Series Instance UIDs of the Performed Series Sequence
    patient_name: str = ""

    @property
    def state(self) -> ExamState | None:
        return _MPPS_STATUS.get(self.status.strip().upper())

    @classmethod
    def from_dataset(cls, sop_instance_uid: str, ds: Dataset) -> MppsMessage:
        """Read the message from an MPPS dataset (missing attributes read as empty)."""
        step = _first(ds, "ScheduledStepAttributesSequence")
        study = str(step.get("StudyInstanceUID", "") or "") if step is not None else ""
        accession = str(step.get("AccessionNumber", "") or "") if step is not None else ""
        scheduled = ""
        if step is not None:
            scheduled = str(step.get("RequestedProcedureDescription", "") or
                            step.get("ScheduledProcedureStepDescription", "") or "")
        series: list[str] = []
        for item in ds.get("PerformedSeriesSequence", None) or ():
            uid = str(item.get("SeriesInstanceUID", "") or "")
            if uid:
                series.append(uid)
        return cls(
            sop_instance_uid=sop_instance_uid,
            status=str(ds.get("PerformedProcedureStepStatus", "") or ""),
            study_instance_uid=study,
            accession_number=accession,
            scheduled_procedure=scheduled,
            performed_procedure=str(ds.get("PerformedProcedureStepDescription", "") or ""),
            station_aet=str(ds.get("PerformedStationAETitle", "") or "").strip(),
            station_name=str(ds.get("PerformedStationName", "") or "").strip(),
            performed_series=tuple(series),
            patient_name=str(ds.get("PatientName", "") or ""),
        )


def _first(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword, None)
    return seq[0] if seq else None


@dataclass(frozen=True)
class Expectation:
    """What the exam should be, from the modality worklist or the context CSV (looked up by accession)."""

    scheduled_procedure: str = ""
    context: ClinicalContext | None = None
    source: str = ""  # e.g. "worklist RIS@10.0.0.2:104"


@dataclass
class _Series:
    headers: list[InstanceHeader] = field(default_factory=list)
    uids: set[str] = field(default_factory=set)  # SOP Instance UIDs of headers
    last: float = 0.0
    complete: bool = False
    judged: int = 0  # instances it had when the exam was last judged
    order: int = 0


@dataclass
class Exam:
    """The mutable state of one exam (owned by the monitor's thread)."""

    study_instance_uid: str
    accession_number: str = ""
    series: dict[str, _Series] = field(default_factory=dict)
    mpps: MppsMessage | None = None
    expectation: Expectation | None = None
    expectation_looked_up: bool = False
    state: ExamState = ExamState.IN_PROGRESS
    result: AuditResult | None = None
    dirty: bool = False
    version: int = 0
    updated: float = field(default_factory=time.time)
    unreadable: int = 0
    last_activity: float = 0.0  # the monitor's clock at the last instance or MPPS message
    ended_by: ExamEnd | None = None
    paths: set[str] = field(default_factory=set)  # the files taken (an instance reported twice counts once)

    @property
    def final(self) -> bool:
        return self.state is not ExamState.IN_PROGRESS


@dataclass(frozen=True)
class ExamView:
    """One exam as the page, ``GET /api/exams``, ``--notify`` and the SR see it (immutable snapshot)."""

    study_instance_uid: str
    accession_number: str
    station: str
    station_aet: str
    state: ExamState
    provisional: bool
    protocol: str | None
    status: str  # the audit status so far (pass/warn/fail/no-protocol/error); "" before any series
    verdict: str  # open exam: "alert" (something missing or wrong) or "on-track"; ended: the final status
    scheduled_procedure: str
    series: tuple[dict[str, Any], ...]
    requirements: tuple[dict[str, Any], ...]
    findings: tuple[dict[str, Any], ...]  # Finding.to_dict() plus "live" (a LiveKind value)
    alerts: tuple[dict[str, Any], ...]  # the findings that are missing or wrong while the exam is open
    series_received: int
    series_open: int
    performed_series: tuple[str, ...]
    updated: float
    version: int
    protocol_reason: str = ""
    expectation_source: str = ""
    patient_name: str = ""
    ended_by: ExamEnd | None = None
    result: AuditResult | None = field(default=None, compare=False, repr=False)

    def to_dict(self, *, include_patient: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "study_instance_uid": self.study_instance_uid,
            "accession_number": self.accession_number,
            "station": self.station,
            "station_aet": self.station_aet,
            "state": self.state.value,
            "provisional": self.provisional,
            "protocol": self.protocol,
            "protocol_reason": self.protocol_reason,
            "status": self.status,
            "verdict": self.verdict,
            "scheduled_procedure": self.scheduled_procedure,
            "expectation_source": self.expectation_source,
            "series": list(self.series),
            "requirements": list(self.requirements),
            "findings": list(self.findings),
            "alerts": list(self.alerts),
            "series_received": self.series_received,
            "series_open": self.series_open,
            "performed_series": list(self.performed_series),
            "ended_by": self.ended_by.value if self.ended_by is not None else None,
            "updated": dt.datetime.fromtimestamp(self.updated, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "version": self.version,
        }
        if include_patient:
            data["patient_name"] = self.patient_name
        return data


def _not_received(uid: str, station: str, mpps_uid: str) -> Finding:
    """``series-not-received`` for a series the MPPS lists as performed."""
    summary = (f"The scanner reports series {uid} as performed (MPPS Performed Series Sequence) but it was "
               "never received.")
    action = f"Send series {uid} from {station} again (to this listener and the PACS) before the study is closed."
    extra: dict[str, Any] = {"action": action} if _HAS_ACTION else {}
    # the third field is the summary (the message, before findings were structured)
    return Finding(FindingCode.SERIES_NOT_RECEIVED, Severity.ERROR, summary, series=(uid,),
                   evidence={"series_instance_uid": uid, "mpps": mpps_uid}, **extra)


def _contrast_given(result: AuditResult) -> bool:
    return any(s.get("post_contrast") is True for s in result.series)


def _pre_contrast_only(requirement: dict[str, Any] | None) -> bool:
    """Whether a requirement cannot be met after contrast (its label or matching says pre-contrast),
    or is a fluid-sensitive series (fat-suppressed T2/STIR: done before gadolinium by convention)."""
    if requirement is None:
        return False
    text = " ".join(str(requirement.get(k, "")) for k in ("id", "label")).lower()
    return "pre-contrast" in text or "precontrast" in text or "fluid" in text or "stir" in text


def live_kind(finding: dict[str, Any], *, final: bool, contrast_given: bool,
              requirements: dict[str, dict[str, Any]]) -> LiveKind:
    """Sort one finding (a ``Finding.to_dict()``) into still-missing / missing / wrong / note."""
    severity = finding.get("severity")
    if finding.get("code") == FindingCode.MISSING_SEQUENCE.value:
        if final:
            return LiveKind.MISSING
        if contrast_given and _pre_contrast_only(requirements.get(str(finding.get("requirement")))):
            return LiveKind.MISSING
        return LiveKind.STILL_MISSING
    if finding.get("code") == FindingCode.SERIES_NOT_RECEIVED.value:
        return LiveKind.MISSING
    if severity in (Severity.ERROR.value, Severity.WARNING.value):
        return LiveKind.WRONG
    return LiveKind.NOTE


Listener = Callable[[ExamView], None]


class LiveMonitor:
    """Per-series evaluation of every exam being received (see the module docstring).

    ``expect(accession)`` (optional) tells what the exam should be (worklist lookup); it runs once per
    exam on a small pool of its own (a slow worklist never delays judging), as soon as the exam's
    accession number is known (its MPPS, or its first instance); the exam is judged again with it.
    ``history(study_uid)`` (optional) lists the files stored for a study before: an exam the monitor
    does not know (a restart, or one forgotten among the recent ones) starts from all of them, so that
    a study reopened by a late series or an MPPS message is judged whole, not on what came after.
    """

    def __init__(self, options: AuditOptions, *, series_idle: float = DEFAULT_SERIES_IDLE,
                 settle: float = DEFAULT_SETTLE, exam_timeout: float = config.EXAM_TIMEOUT,
                 expect: Callable[[str], Expectation | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, recent: int = RECENT_EXAMS,
                 history: Callable[[str], Iterable[Path]] | None = None) -> None:
        if series_idle < 0:
            raise ValueError("series idle time must be >= 0 seconds")
        if exam_timeout <= 0:
            raise ValueError("exam timeout must be > 0 seconds")
        self.exam_timeout = exam_timeout
        self.options = options
        self.series_idle = series_idle
        self.settle = min(settle, series_idle)
        self.expect = expect
        self.history = history
        self.clock = clock
        self.recent = recent
        self._exams: dict[str, Exam] = {}
        self._views: dict[str, ExamView] = {}
        self._inbox: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self._listeners: list[Listener] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._version = 0
        self._order = 0
        self._lookups = ThreadPoolExecutor(2, thread_name_prefix="protocolcheck-expect") if expect else None
        self.evaluations = 0

    # -- input (any thread) ------------------------------------------------------------------
    def instance(self, study_uid: str, series_uid: str, path: str | Path) -> None:
        """An instance was stored (call after it is on disk); returns at once."""
        self._post("instance", (study_uid, series_uid, str(path), self.clock()))

    def mpps(self, message: MppsMessage, age: float = 0.0) -> None:
        """An MPPS N-CREATE or N-SET (already stored durably); ``age``: seconds since it was received
        (a step replayed at start keeps its age towards the exam timeout)."""
        self._post("mpps", (message, self.clock() - max(0.0, age)))

    def study_idle(self, study_uid: str, wait: float = 0.0) -> bool:
        """``listen`` handed the study over (no instance for ``--idle`` s): final unless MPPS ended it.
        With ``wait``, block up to that many seconds until the exam's verdict has been through every
        listener (so that ``listen`` keeps the study's pending marker until its report is in the outbox);
        whether it has."""
        done = threading.Event()
        self._post("idle", (study_uid, done))
        return done.wait(wait) if wait > 0 else True

    def _post(self, kind: str, item: Any) -> None:
        with self._cond:
            self._inbox.append((kind, item))
            if len(self._inbox) == 1:  # otherwise the monitor was woken already and takes this one too
                self._cond.notify_all()

    def drain(self) -> list[tuple[str, Any]]:
        """The queued events, taken (for driving :meth:`step` by hand when the thread is not started)."""
        with self._cond:
            inbox, self._inbox = self._inbox, []
        return inbox

    # -- output ------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(view)`` (on the monitor's thread) for every new view of an exam."""
        self._listeners.append(listener)

    def views(self) -> list[ExamView]:
        """Every exam known, open ones first, then the most recently updated."""
        with self._cond:
            views = list(self._views.values())
        return sorted(views, key=lambda v: (v.state is not ExamState.IN_PROGRESS, -v.updated))

    def view(self, study_uid: str) -> ExamView | None:
        with self._cond:
            return self._views.get(study_uid)

    @property
    def version(self) -> int:
        """Increases with every new view (for server-sent events)."""
        with self._cond:
            return self._version

    def wait_version(self, after: int, timeout: float) -> int:
        """Block until :attr:`version` exceeds ``after`` or ``timeout`` passes; the version then."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > after or self._stopping, timeout)
            return self._version

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until nothing is queued or unevaluated (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                busy = self._inbox or any(e.dirty for e in self._exams.values())
            if not busy:
                return True
            time.sleep(0.02)
        return False

    # -- the thread --------------------------------------------------------------------------
    def start(self) -> None:
        load_fast_reader()  # not on the first instance's way
        self._thread = threading.Thread(target=self._run, name="protocolcheck-live", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lookups is not None:
            self._lookups.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._inbox and not self._stopping:
                    self._cond.wait(self._next_wait())
                if self._stopping and not self._inbox:
                    return
                if self._inbox and self._inbox[-1][0] == "instance" and not self._stopping:
                    self._cond.wait(BATCH_SECONDS)  # instances flowing: let a batch gather
                inbox, self._inbox = self._inbox, []
            try:
                self.step(inbox)
            except Exception:
                LOG.exception("live evaluation failed")

    def _next_wait(self) -> float | None:
        now = self.clock()
        waits = [s.last + (self.settle if len(s.headers) != s.judged else self.series_idle) - now
                 for e in self._exams.values() for s in e.series.values() if not s.complete]
        waits += [e.last_activity + self.exam_timeout - now for e in self._exams.values() if not e.final]
        return max(0.0, min(waits)) + 0.005 if waits else None

    def step(self, inbox: Iterable[tuple[str, Any]]) -> None:
        """Apply queued events, complete idle series, re-evaluate changed exams (the thread's body;
        callable directly in tests)."""
        handlers: dict[str, Callable[[Any], None]] = {
            "instance": lambda item: self._add_instance(*item), "mpps": lambda item: self._apply_mpps(*item),
            "idle": lambda item: self._idle(item[0]), "expect": lambda item: self._expected(*item)}
        handed_over: list[threading.Event] = []
        for kind, item in inbox:
            handlers[kind](item)
            if kind == "idle":
                handed_over.append(item[1])
        now = self.clock()
        for exam in self._exams.values():
            if not exam.final and now - exam.last_activity >= self.exam_timeout:
                self._timed_out(exam)
            self._settle(exam, now)
        for exam in list(self._exams.values()):
            self._look_up(exam)
            if exam.dirty:
                self._evaluate(exam)
        self._forget_old()
        for done in handed_over:  # their exams were judged and every listener has run
            done.set()

    def _settle(self, exam: Exam, now: float) -> None:
        """Complete the series quiet for ``series_idle``; mark the exam for judging when one is quiet for ``settle``."""
        for series in exam.series.values():
            if series.complete:
                continue
            if now - series.last >= self.series_idle:
                series.complete = True
                exam.dirty = True
            elif now - series.last >= self.settle and len(series.headers) != series.judged:
                exam.dirty = True  # quiet for a moment: judge it now, confirm it complete later

    # -- events ------------------------------------------------------------------------------
    def _exam(self, study_uid: str, accession: str = "") -> Exam:
        exam = self._exams.get(study_uid)
        if exam is None and accession:  # an MPPS without the Study UID, or with another one: match by accession
            exam = next((e for e in self._exams.values() if e.accession_number == accession and not e.series
                         and e.state is ExamState.IN_PROGRESS), None)
            if exam is not None:
                del self._exams[exam.study_instance_uid]
                with self._cond:
                    self._views.pop(exam.study_instance_uid, None)
                exam.study_instance_uid = study_uid
                self._exams[study_uid] = exam
                self._load_history(exam)
        if exam is None:
            exam = self._exams[study_uid] = Exam(study_uid, accession)
            self._load_history(exam)
        return exam

    def _load_history(self, exam: Exam) -> None:
        """Take the files stored for a study the monitor meets for the first time (``history``), each as
        old as its modification time says (a series stored long ago is complete at once)."""
        if self.history is None or exam.study_instance_uid.startswith("mpps:"):
            return
        try:
            paths = list(self.history(exam.study_instance_uid))
        except (OSError, ValueError) as exc:  # no folder yet, or a UID unusable as a folder name
            LOG.debug("no earlier files of study %s: %s", exam.study_instance_uid, exc)
            return
        now, wall = self.clock(), time.time()
        for path in paths:
            try:
                age = max(0.0, wall - path.stat().st_mtime)
            except OSError:
                continue
            self._take(exam, path.parent.name, str(path), now - age)

    def _add_instance(self, study_uid: str, series_uid: str, path: str, when: float) -> None:
        known = self._exams.get(study_uid)
        headers = [] if known is not None and path in known.paths else self._read(path)
        exam = self._exam(study_uid, headers[0].accession_number if headers else "")
        self._take(exam, series_uid, path, when, headers)

    @staticmethod
    def _read(path: str) -> list[InstanceHeader]:
        try:
            records = read_file(path)
        except OSError as exc:
            LOG.warning("cannot read stored instance %s: %s", path, exc)
            records = []
        return [r for r in records if isinstance(r, InstanceHeader)] if isinstance(records, list) else []

    def _take(self, exam: Exam, series_uid: str, path: str, when: float,
              headers: list[InstanceHeader] | None = None) -> None:
        """Add one stored file to ``exam``: ``headers`` when already read, None to read them (a file from
        ``history``, skipped when taken already). A file taken before (sent again, or taken from the
        history first) only counts as activity: its headers are not added twice."""
        if path in exam.paths:
            if headers is None:
                return
            headers = []
        else:
            exam.paths.add(path)
            if headers is None:
                headers = self._read(path)
            if not headers:
                exam.unreadable += 1
        if not exam.accession_number and headers:
            exam.accession_number = headers[0].accession_number
        series = self._series(exam, series_uid)
        for header in headers:
            if header.sop_instance_uid not in series.uids or header.frames > 1:
                series.headers.append(header)
                series.uids.add(header.sop_instance_uid)
        series.last = max(series.last, when)
        exam.last_activity = max(exam.last_activity, when)
        if series.complete:  # more of a series already judged: judge it again when it settles
            series.complete = False
        if exam.state is ExamState.IDLE:
            exam.state = ExamState.IN_PROGRESS  # more arrived after the idle hand-over (or the timeout)
            exam.ended_by = None

    def _series(self, exam: Exam, series_uid: str) -> _Series:
        series = exam.series.get(series_uid)
        if series is None:
            self._order += 1
            series = exam.series[series_uid] = _Series(order=self._order)
            for other in exam.series.values():  # the next series started: the others are complete
                if other is not series and not other.complete:
                    other.complete = True
                    exam.dirty = True
        return series

    def _apply_mpps(self, message: MppsMessage, when: float) -> None:
        key = message.study_instance_uid or f"mpps:{message.sop_instance_uid}"
        exam = next((e for e in self._exams.values() if e.mpps and e.mpps.sop_instance_uid == message.sop_instance_uid),
                    None)
        if exam is None:
            exam = self._exam(key, message.accession_number)
        exam.mpps = message
        if message.accession_number and not exam.accession_number:
            exam.accession_number = message.accession_number
        exam.last_activity = max(exam.last_activity, when)
        state = message.state
        if state is not None:
            exam.state = state
            exam.ended_by = ExamEnd.MPPS if state in (ExamState.COMPLETED, ExamState.DISCONTINUED) else None
        exam.dirty = True
        if state in (ExamState.COMPLETED, ExamState.DISCONTINUED):
            for series in exam.series.values():  # the scanner says it is over: judge what arrived
                series.complete = True

    def _idle(self, study_uid: str) -> None:
        exam = self._exams.get(study_uid)
        if exam is None:
            return
        for series in exam.series.values():
            series.complete = True
        if exam.state is ExamState.IN_PROGRESS:
            exam.state = ExamState.IDLE
            exam.ended_by = ExamEnd.IDLE
        exam.dirty = True

    def _timed_out(self, exam: Exam) -> None:
        """Nothing for ``exam_timeout`` s on an open exam: final, state idle, ended by the timeout."""
        LOG.warning("exam %s: no instance and no MPPS message for %g s; ending it (no MPPS COMPLETED or "
                    "DISCONTINUED arrived)", exam.accession_number or exam.study_instance_uid, self.exam_timeout)
        for series in exam.series.values():
            series.complete = True
        exam.state = ExamState.IDLE
        exam.ended_by = ExamEnd.TIMEOUT
        exam.dirty = True

    def _look_up(self, exam: Exam) -> None:
        if exam.expectation_looked_up or self._lookups is None or not exam.accession_number:
            return
        exam.expectation_looked_up = True
        study, accession, expect = exam.study_instance_uid, exam.accession_number, self.expect
        assert expect is not None

        def run() -> None:
            try:
                expectation = expect(accession)
            except Exception as exc:  # noqa: BLE001 - a worklist that fails must not stop judging
                LOG.warning("cannot look up accession %s: %s", accession, exc)
                return
            if expectation is not None:
                self._post("expect", (study, accession, expectation))

        self._lookups.submit(run)

    def _expected(self, study_uid: str, accession: str, expectation: Expectation) -> None:
        exam = self._exams.get(study_uid) or next(
            (e for e in self._exams.values() if e.accession_number == accession), None)
        if exam is not None:
            exam.expectation = expectation
            exam.dirty = True

    # -- evaluation --------------------------------------------------------------------------
    def _evaluate(self, exam: Exam) -> None:
        exam.dirty = False
        now = self.clock()
        # a series judged before stays in the verdict while more of it arrives (it would read as missing)
        settled = [s for s in exam.series.values() if s.complete or s.judged or now - s.last >= self.settle]
        for series in settled:
            series.judged = len(series.headers)
        headers = [h for s in settled for h in s.headers]
        if headers:
            options = self.options
            if exam.expectation is not None and exam.expectation.context is not None:
                default = options.default_context
                context = default.merged(exam.expectation.context) if default else exam.expectation.context
                options = dataclasses.replace(options, default_context=context)
            studies = list(group_studies(headers))
            if studies:
                exam.result = audit_study(studies[0], options)
                self.evaluations += 1
                if not exam.accession_number:
                    exam.accession_number = exam.result.accession_number
        exam.updated = time.time()
        view = self._view(exam)
        with self._cond:
            self._version += 1
            exam.version = self._version
            view = dataclasses.replace(view, version=self._version)
            self._views[exam.study_instance_uid] = view
            self._cond.notify_all()
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                LOG.exception("live listener failed")

    def _not_received(self, exam: Exam) -> list[Finding]:
        if exam.mpps is None or exam.state is not ExamState.COMPLETED:
            return []
        received = set(exam.series)
        missing = [uid for uid in exam.mpps.performed_series if uid not in received]
        station = exam.mpps.station_aet or exam.mpps.station_name or "the scanner"
        return [_not_received(uid, station, exam.mpps.sop_instance_uid) for uid in missing]

    def _view(self, exam: Exam) -> ExamView:
        result = exam.result
        extra = self._not_received(exam)
        findings: list[dict[str, Any]] = []
        requirements: tuple[dict[str, Any], ...] = ()
        contrast = False
        if result is not None:
            requirements = result.requirements
            contrast = _contrast_given(result)
            findings = [f.to_dict() for f in result.findings]
            if extra:
                findings = [f.to_dict() for f in extra] + findings
                status = result.status if result.status in (Status.NO_PROTOCOL, Status.ERROR) \
                    else status_for([*extra, *result.findings])
                result = dataclasses.replace(result, findings=(*extra, *result.findings), status=status)
        else:
            findings = [f.to_dict() for f in extra]
        by_id = {str(r.get("id")): r for r in requirements}
        for f in findings:
            f["live"] = live_kind(f, final=exam.final, contrast_given=contrast, requirements=by_id).value
        alerts = tuple(f for f in findings if exam.state is ExamState.IN_PROGRESS
                       and f["live"] in (LiveKind.MISSING.value, LiveKind.WRONG.value))
        mpps = exam.mpps
        expectation = exam.expectation
        scheduled = (mpps.scheduled_procedure if mpps and mpps.scheduled_procedure else "") or \
            (expectation.scheduled_procedure if expectation else "") or \
            (mpps.performed_procedure if mpps else "")
        station = (mpps.station_name if mpps and mpps.station_name else "") or \
            (result.station_name if result is not None else "")
        return ExamView(
            study_instance_uid=exam.study_instance_uid,
            accession_number=exam.accession_number,
            station=station,
            station_aet=mpps.station_aet if mpps else "",
            state=exam.state,
            provisional=not exam.final,
            protocol=result.protocol if result is not None else None,
            protocol_reason=result.protocol_reason if result is not None else "",
            status=result.status.value if result is not None else "",
            verdict=(("alert" if alerts else "on-track") if not exam.final
                     else (result.status.value if result is not None else "no-images")),
            scheduled_procedure=scheduled,
            expectation_source=expectation.source if expectation else "",
            series=result.series if result is not None else (),
            requirements=requirements,
            findings=tuple(findings),
            alerts=alerts,
            series_received=len(exam.series),
            series_open=sum(1 for s in exam.series.values() if not s.complete),
            performed_series=mpps.performed_series if mpps else (),
            updated=exam.updated,
            version=exam.version,
            patient_name=(result.patient_name if result is not None else "") or (mpps.patient_name if mpps else ""),
            ended_by=exam.ended_by if exam.final else None,
            result=result,
        )

    def _forget_old(self) -> None:
        finished = [e for e in self._exams.values() if e.final and not e.dirty]
        if len(finished) <= self.recent:
            return
        finished.sort(key=lambda e: e.updated)
        for exam in finished[:len(finished) - self.recent]:
            del self._exams[exam.study_instance_uid]
            with self._cond:
                self._views.pop(exam.study_instance_uid, None)
