"""The final audit of an exam as a DICOM Comprehensive SR (built with highdicom), for the PACS.

:func:`build_audit_sr` makes one SR instance in the study it judges (same patient and study
attributes, taken from a received instance), in its own series, with:

- the verdict (protocol, status, how the exam ended, protocol choice reason);
- one "Finding" container per finding: its code, severity, requirement, summary (or message), what
  was expected and found (structured findings), the action for the technologist as *Recommendation*,
  the citations and the Series Instance UIDs concerned;
- the series judged (number, description, classification, UID);
- every received instance in the Current Requested Procedure Evidence Sequence.

Concept names come from DCM where one fits (Finding 121071, Findings 121070, Recommendation 121075,
Comment 121106, Series Instance UID 112002); the others use the private coding scheme
``99PCHECK``. The SOP Instance UID is derived from the study and the content, so storing the same
verdict twice gives the same instance. Nothing here touches the network (``listen --send-sr`` sends
it with C-STORE; a DICOMweb client can STOW it).

Versions: a study's reports share one series. :func:`report_digest` is what a report *says* (protocol,
status, requirements met or missing, findings with their actions, the series judged; not how or when
the exam ended); a later verdict with the same digest needs no new report. One that differs is built
with ``previous=`` (a :class:`ReportVersion`): a new SOP Instance with the next Instance Number that
names the earlier one in the Predecessor Documents Sequence (0040,A360) and says why it supersedes it
(:func:`changes`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from protocolcheck.jobs.live import ExamState, ExamView

SCHEME = "99PCHECK"
SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = "protocolcheck protocol audit"

_TITLE = hd.sr.CodedConcept("AUDIT", SCHEME, "Imaging protocol compliance audit")
_FINDINGS = hd.sr.CodedConcept("121070", "DCM", "Findings")
_FINDING = hd.sr.CodedConcept("121071", "DCM", "Finding")
_RECOMMENDATION = hd.sr.CodedConcept("121075", "DCM", "Recommendation")
_COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
_SERIES_UID = hd.sr.CodedConcept("112002", "DCM", "Series Instance UID")
_PROTOCOL = hd.sr.CodedConcept("PROTOCOL", SCHEME, "Protocol")
_STATUS = hd.sr.CodedConcept("STATUS", SCHEME, "Compliance status")
_EXAM_STATE = hd.sr.CodedConcept("EXAMSTATE", SCHEME, "Exam state")
_REASON = hd.sr.CodedConcept("REASON", SCHEME, "Protocol chosen because")
_ENDED_BY = hd.sr.CodedConcept("ENDEDBY", SCHEME, "Exam ended by")
_SUPERSEDES = hd.sr.CodedConcept("SUPERSEDES", SCHEME, "Supersedes an earlier report")
_ENDED_TEXT = {  # ExamEnd values
    "mpps": "mpps: the scanner's MPPS COMPLETED or DISCONTINUED",
    "idle": "idle: no new image for listen's --idle time",
    "timeout": "timeout: no image and no MPPS message for listen's --exam-timeout; the MPPS never ended",
}
_CODE = hd.sr.CodedConcept("CODE", SCHEME, "Finding code")
_SEVERITY = hd.sr.CodedConcept("SEVERITY", SCHEME, "Severity")
_REQUIREMENT = hd.sr.CodedConcept("REQUIREMENT", SCHEME, "Requirement")
_CITATION = hd.sr.CodedConcept("CITATION", SCHEME, "Citation")
_SERIES_JUDGED = hd.sr.CodedConcept("SERIES", SCHEME, "Series judged")
_SERIES = hd.sr.CodedConcept("SERIESITEM", SCHEME, "Series")
_EXPECTED = hd.sr.CodedConcept("EXPECTED", SCHEME, "Expected")
_FOUND = hd.sr.CodedConcept("FOUND", SCHEME, "Found")

_CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


def _text(name: hd.sr.CodedConcept, value: Any) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=str(value)[:10240] or "-", relationship_type=_CONTAINS)


def _uid(value: str) -> hd.sr.UIDRefContentItem:
    return hd.sr.UIDRefContentItem(name=_SERIES_UID, value=value, relationship_type=_CONTAINS)


def _considered(item: dict[str, Any]) -> str:
    """A series considered for a requirement and why it did not count (structured findings)."""
    head = f"{item.get('name', '')} ({item['classified']})" if item.get("classified") else str(item.get("name", ""))
    why = "; ".join(str(w) for w in item.get("why") or ())
    return f"{head}: {why}" if why else head


def _finding(finding: dict[str, Any]) -> hd.sr.ContainerContentItem:
    item = hd.sr.ContainerContentItem(name=_FINDING, relationship_type=_CONTAINS)
    children: list[Dataset] = [_text(_CODE, finding.get("code")), _text(_SEVERITY, finding.get("severity"))]
    if finding.get("requirement"):
        children.append(_text(_REQUIREMENT, finding["requirement"]))
    children.append(_text(_COMMENT, finding.get("summary") or finding.get("message", "")))
    if finding.get("expected"):
        children.append(_text(_EXPECTED, finding["expected"]))
    children += [_text(_FOUND, _considered(c)) for c in finding.get("found") or () if isinstance(c, dict)]
    if finding.get("found_note"):
        children.append(_text(_FOUND, finding["found_note"]))
    if finding.get("action"):
        children.append(_text(_RECOMMENDATION, finding["action"]))
    children += [_text(_CITATION, c) for c in finding.get("citations", ())]
    children += [_uid(s) for s in finding.get("series", ()) if s]
    item.ContentSequence = DicomSequence(children)
    return item


def _series_item(series: dict[str, Any]) -> hd.sr.ContainerContentItem:
    item = hd.sr.ContainerContentItem(name=_SERIES, relationship_type=_CONTAINS)
    kind = _kind(series)
    item.ContentSequence = DicomSequence([
        _text(_COMMENT, f"#{series.get('series_number')} {series.get('series_description') or ''}: {kind}"),
        _uid(str(series.get("series_instance_uid"))),
    ])
    return item


def _evidence(study_dir: Path) -> list[Dataset]:
    """One dataset per received instance: the first of each series read from disk (patient and study
    attributes), the others named by their file (same SOP class as the series' first)."""
    evidence: list[Dataset] = []
    for series_dir in sorted(p for p in study_dir.iterdir() if p.is_dir()):
        files = sorted(series_dir.glob("*.dcm"))
        if not files:
            continue
        first = dcmread(files[0], stop_before_pixels=True)
        if str(first.get("Modality", "")) == "SR" and str(first.get("SeriesDescription", "")) == SR_SERIES_DESCRIPTION:
            continue  # our own earlier report, stored back into the study
        evidence.append(first)
        for path in files[1:]:
            ds = Dataset()
            ds.SOPClassUID = first.SOPClassUID
            ds.SOPInstanceUID = path.stem
            ds.StudyInstanceUID = first.StudyInstanceUID
            ds.SeriesInstanceUID = first.SeriesInstanceUID
            evidence.append(ds)
    if not evidence:
        raise ValueError(f"no received instance in {study_dir} to place the report in")
    return evidence


def _kind(series: dict[str, Any]) -> str:
    return " ".join(str(v) for v in (series.get("plane"), series.get("weighting"), series.get("inversion"),
                                     "FS" if series.get("fat_suppressed") else "",
                                     "+C" if series.get("post_contrast") else "",
                                     "localizer" if series.get("localizer") else "") if v)


def _series_uids(view: ExamView) -> list[str]:
    return sorted({str(s.get("series_instance_uid")) for s in view.series})


def _finding_keys(view: ExamView) -> list[str]:
    return sorted({f"{f.get('code')} ({f['requirement']})" if f.get("requirement") else str(f.get("code"))
                   for f in view.findings})


def report_digest(view: ExamView) -> str:
    """A digest of what the report says about the exam: protocol, status, each requirement met or missing
    (and by which series), each finding (code, severity, requirement, summary, expected, action, series),
    each series judged (UID and classification). Not the exam's state, how it ended, or any time: a
    verdict that only ended differently says the same."""
    def lines(items: Any) -> list[str]:
        return sorted(json.dumps(item, sort_keys=True, default=str) for item in items)

    data = {"protocol": view.protocol, "status": view.status,
            "requirements": lines((r.get("id"), r.get("kind"), bool(r.get("met")), r.get("series") or [])
                                  for r in view.requirements),
            "findings": lines((f.get("code"), f.get("severity"), f.get("requirement"),
                               f.get("summary") or f.get("message"), f.get("expected"), f.get("action"),
                               f.get("series") or []) for f in view.findings),
            "series": lines((s.get("series_instance_uid"), _kind(s)) for s in view.series)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ReportVersion:
    """A report queued for a study, as a later version compares with it and names it (its predecessor)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    instance_number: int
    digest: str  # report_digest() of its verdict
    time: float  # the verdict's time (seconds since the epoch)
    state: str  # ExamState value
    ended_by: str | None  # ExamEnd value
    status: str
    protocol: str | None
    series: tuple[str, ...]  # Series Instance UIDs judged
    findings: tuple[str, ...]  # "code (requirement)"

    @classmethod
    def of(cls, view: ExamView, sr: Dataset) -> ReportVersion:
        """The version ``sr`` (built from ``view``) is."""
        return cls(sop_instance_uid=str(sr.SOPInstanceUID), sop_class_uid=str(sr.SOPClassUID),
                   study_instance_uid=str(sr.StudyInstanceUID), series_instance_uid=str(sr.SeriesInstanceUID),
                   instance_number=int(sr.InstanceNumber), digest=report_digest(view), time=view.updated,
                   state=view.state.value, ended_by=view.ended_by.value if view.ended_by else None,
                   status=view.status, protocol=view.protocol, series=tuple(_series_uids(view)),
                   findings=tuple(_finding_keys(view)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportVersion:
        """The version :meth:`to_dict` wrote; KeyError/TypeError/ValueError when it is not one."""
        return cls(sop_instance_uid=str(data["sop_instance_uid"]), sop_class_uid=str(data["sop_class_uid"]),
                   study_instance_uid=str(data["study_instance_uid"]),
                   series_instance_uid=str(data["series_instance_uid"]), instance_number=int(data["instance_number"]),
                   digest=str(data["digest"]), time=float(data["time"]), state=str(data["state"]),
                   ended_by=None if data.get("ended_by") is None else str(data["ended_by"]),
                   status=str(data.get("status") or ""), protocol=data.get("protocol"),
                   series=tuple(str(s) for s in data.get("series") or ()),
                   findings=tuple(str(f) for f in data.get("findings") or ()))

    @property
    def when(self) -> str:
        return dt.datetime.fromtimestamp(self.time, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    def predecessor(self) -> Dataset:
        """What highdicom's ``previous_versions`` needs of it."""
        ds = Dataset()
        ds.SOPClassUID = self.sop_class_uid
        ds.SOPInstanceUID = self.sop_instance_uid
        ds.StudyInstanceUID = self.study_instance_uid
        ds.SeriesInstanceUID = self.series_instance_uid
        return ds


def _ending(state: str, ended_by: str | None) -> str:
    if state in (ExamState.COMPLETED.value, ExamState.DISCONTINUED.value):
        return f"MPPS {state.upper()}"
    return {"timeout": "the exam timeout", "idle": "no new image for listen's --idle time"}.get(
        str(ended_by), state)


def changes(previous: ReportVersion, view: ExamView) -> str:
    """Why ``view``'s report supersedes ``previous``, in words (e.g. "ended by MPPS COMPLETED, 2 more series")."""
    parts: list[str] = []
    ended_by = view.ended_by.value if view.ended_by else None
    if (view.state.value, ended_by) != (previous.state, previous.ended_by):
        parts.append(f"ended by {_ending(view.state.value, ended_by)}")
    now, before = _series_uids(view), set(previous.series)
    more, fewer = [s for s in now if s not in before], [s for s in before if s not in set(now)]
    if more:
        parts.append(f"{len(more)} more series")
    if fewer:
        parts.append(f"{len(fewer)} series no longer judged")
    if view.protocol != previous.protocol:
        parts.append(f"protocol {previous.protocol or 'none'} -> {view.protocol or 'none'}")
    if view.status != previous.status:
        parts.append(f"status {previous.status} -> {view.status}")
    findings, old = _finding_keys(view), set(previous.findings)
    new, resolved = [f for f in findings if f not in old], [f for f in previous.findings if f not in set(findings)]
    if new:
        parts.append("new: " + "; ".join(new))
    if resolved:
        parts.append("no longer found: " + "; ".join(resolved))
    return ", ".join(parts) or "the findings' details changed"


def content_digest(view: ExamView) -> str:
    """A digest of what the report says (the SOP Instance UID is derived from it)."""
    data = {"state": view.state.value, "ended_by": view.ended_by.value if view.ended_by else None,
            "protocol": view.protocol, "status": view.status,
            "findings": [(f.get("code"), f.get("requirement"), f.get("message"), tuple(f.get("series", ())))
                         for f in view.findings],
            "series": sorted({str(s.get("series_instance_uid")) for s in view.series})}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def build_audit_sr(view: ExamView, study_dir: Path, *, previous: ReportVersion | None = None,
                   manufacturer: str = "protocolcheck", institution: str | None = None) -> Dataset:
    """The Comprehensive SR of ``view`` (a final verdict), in the study whose instances are in ``study_dir``;
    with ``previous``, the next version of that report (see the module docstring)."""
    evidence = _evidence(study_dir)
    study = view.study_instance_uid
    root = hd.sr.ContainerContentItem(name=_TITLE)
    findings = hd.sr.ContainerContentItem(name=_FINDINGS, relationship_type=_CONTAINS)
    findings.ContentSequence = DicomSequence(
        [_finding(f) for f in view.findings] or [_text(_COMMENT, "No findings.")])
    judged = hd.sr.ContainerContentItem(name=_SERIES_JUDGED, relationship_type=_CONTAINS)
    seen: dict[str, dict[str, Any]] = {}
    for series in view.series:
        seen.setdefault(str(series.get("series_instance_uid")), series)
    judged.ContentSequence = DicomSequence(
        [_series_item(s) for s in seen.values()] or [_text(_COMMENT, "No series.")])
    children: list[Dataset] = [
        _text(_PROTOCOL, view.protocol or "none determined"),
        _text(_STATUS, view.status or "-"),
        _text(_EXAM_STATE, view.state.value),
    ]
    if view.ended_by is not None:
        children.append(_text(_ENDED_BY, _ENDED_TEXT.get(view.ended_by.value, view.ended_by.value)))
    if previous is not None:
        children.append(_text(_SUPERSEDES, f"the report of {previous.when} (Instance Number "
                                           f"{previous.instance_number}, SOP Instance UID "
                                           f"{previous.sop_instance_uid}): {changes(previous, view)}"))
    if view.protocol_reason:
        children = [*children, _text(_REASON, view.protocol_reason)]
    root.ContentSequence = DicomSequence([*children, findings, judged])
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=generate_uid(entropy_srcs=[study, "protocolcheck-audit-sr-series"]),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(entropy_srcs=[study, "protocolcheck-audit-sr", content_digest(view),
                                                    *([previous.sop_instance_uid] if previous else [])]),
        instance_number=previous.instance_number + 1 if previous else 1,
        previous_versions=[previous.predecessor()] if previous else None,
        manufacturer=manufacturer,
        is_complete=True,
        is_final=view.state.value != "in-progress",
        institution_name=institution,
    )
    sr.SeriesDescription = SR_SERIES_DESCRIPTION
    sr.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: messages quote guidelines with typographic quotes
    return sr
