"""Finding codes, severities, the finding record and the audit result (the `audit --format json` contract).

A :class:`Finding` carries its facts — the requirement (id and name), what was expected, what was
found (each series considered and why it did not count, the near miss first), the action (one
imperative sentence), the guideline statements cited — and its ``message`` is rendered from them.
Nothing parses message text: reports read the fields. The audit and the order check both judge, so
the record lives at the clinical layer, below both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

MAX_LISTED = 4  # series named in a rendered message (all of them are in ``found``)


class Severity(str, Enum):
    """How much a finding matters: ``error`` fails the study, ``warning`` warns, ``info`` informs."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


class FindingCode(str, Enum):
    """Stable finding codes; scripts key on these strings (DESIGN.md, "audit --format json")."""

    MISSING_SEQUENCE = "missing-sequence"
    PLANE = "plane"  # a plane rule is not met (e.g. no orthogonal oblique pair)
    PARAMETER = "parameter-out-of-range"  # slice thickness, field strength limits
    TRAUMA_TOO_EARLY = "trauma-too-early"
    TRAUMA_DELAYED = "trauma-delayed"
    WRONG_PROTOCOL = "wrong-protocol"
    CONTEXT_MISSING = "context-missing"
    UNREADABLE_FILE = "unreadable-file"
    UNREADABLE_FOLDER = "unreadable-folder"  # a folder that could not be listed: its files were not audited
    NO_PROTOCOL = "no-protocol"
    VALUE_PROBLEM = "malformed-value"  # a header value the readers could not use (or a trauma date after the study)
    STUDY_UID_COLLISION = "study-uid-collision"  # one Study Instance UID holds several exams (accessions, patients)
    TRUNCATED_PIXEL_DATA = "truncated-pixel-data"  # Pixel Data cut short or shorter than the image it describes
    CONTEXT_UNMATCHED = "context-unmatched"
    CONTRAST_CONTRAINDICATED = "contrast-despite-contraindication"  # contrast given though recorded contraindicated
    DUPLICATE_INSTANCE = "duplicate-instance"  # one SOP Instance UID, files with different content (both kept)
    SERIES_NOT_RECEIVED = "series-not-received"  # MPPS lists a performed series that never arrived (live loop)
    POSSIBLE_MRI_CONTRAINDICATION = "possible-mri-contraindication"  # an MRI for a patient with a device
    ORDER_NOT_UNDERSTOOD = "order-not-understood"  # the order text names no modality or no body part
    LATERALITY_MISMATCH = "laterality-mismatch"  # the order names the other side than the indication


# Findings a recorded clinical reason may downgrade to info by default (an ``exception`` without a
# code): the exam's content, timing and choice. Safety findings are downgraded only when the
# exception names their code; data-integrity findings never are (a clinical reason cannot repair a file).
DEVIABLE = frozenset({FindingCode.MISSING_SEQUENCE, FindingCode.PLANE, FindingCode.PARAMETER,
                      FindingCode.TRAUMA_TOO_EARLY, FindingCode.TRAUMA_DELAYED, FindingCode.WRONG_PROTOCOL})
SAFETY = frozenset({FindingCode.CONTRAST_CONTRAINDICATED, FindingCode.POSSIBLE_MRI_CONTRAINDICATION})


class Status(str, Enum):
    """The verdict of one study's audit (DESIGN.md, "audit --format json")."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NO_PROTOCOL = "no-protocol"
    ERROR = "error"


def sentence(text: str) -> str:
    """``text`` ending in a full stop (or its own ! ? .)."""
    text = text.strip()
    core = text.rstrip(")]\"\u201d\u2019'")
    return text if not text or (core and core[-1] in ".!?") or text.endswith("]") else text + "."


@dataclass(frozen=True)
class Considered:
    """A series a check looked at and why it did not count (one entry of a finding's ``found``)."""

    series: str  # Series Instance UID
    name: str  # "#5 'COR STIR' [W]": number, description and stack, as the viewer shows it
    classified: str = ""  # how it was classified, e.g. "oblique coronal T2 FLAIR 2D"
    why: tuple[str, ...] = ()  # why it did not count, e.g. "inversion FLAIR, TI 2500 ms (needs STIR)"
    stack: str | None = None
    series_number: int | None = None

    def text(self) -> str:
        head = f"{self.name} ({self.classified})" if self.classified else self.name
        return f"{head}: {'; '.join(self.why)}" if self.why else head

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "stack": self.stack, "series_number": self.series_number, "name": self.name,
                "classified": self.classified, "why": list(self.why)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Considered:
        number = data.get("series_number")
        return cls(series=str(data.get("series") or ""), name=str(data.get("name") or ""),
                   classified=str(data.get("classified") or ""), why=tuple(str(w) for w in data.get("why") or ()),
                   stack=data.get("stack"), series_number=int(number) if isinstance(number, int) else None)


@dataclass(frozen=True)
class Quote:
    """A guideline statement a finding cites: its id, the statement quoted, and its source."""

    id: str
    statement: str
    source: str

    def text(self) -> str:
        return f"\u201c{self.statement}\u201d ({self.source})"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "statement": self.statement, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quote:
        return cls(str(data.get("id") or ""), str(data.get("statement") or ""), str(data.get("source") or ""))


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about a study or an order: its facts, and the message rendered from them.

    ``summary`` says what is wrong in one sentence; ``expected`` what would satisfy the rule;
    ``found`` the series considered (the near miss first) with why each did not count, or
    ``found_note`` when no series is worth naming (or the fact is not about series, e.g. a date);
    ``action`` one imperative sentence a technologist or scheduler can follow; ``guideline`` the
    statements behind ``citations``. ``deviation`` is a recorded clinical reason to deviate: the
    finding is then kept as ``info`` and ``deviated_from`` keeps the severity it had.
    """

    code: FindingCode
    severity: Severity
    summary: str
    requirement: str | None = None
    series: tuple[str, ...] = ()
    citations: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    requirement_name: str = ""
    expected: str = ""
    found: tuple[Considered, ...] = ()
    found_note: str = ""
    action: str = ""
    note: str = ""
    guideline: tuple[Quote, ...] = ()
    deviation: str = ""
    deviated_from: Severity | None = None

    @property
    def message(self) -> str:
        """The whole finding in words: summary, expected, found, note, deviation, action, guideline."""
        return self.render()

    def found_text(self) -> str:
        shown = [c.text() for c in self.found[:MAX_LISTED]]
        if len(self.found) > MAX_LISTED:
            shown.append(f"{len(self.found) - MAX_LISTED} more (listed in the JSON output)")
        return "; ".join(shown) or self.found_note

    def render(self, *, action: bool = True, guideline: bool = True) -> str:
        """The message; tables leave out the action and the guideline (shown apart) with ``False``."""
        parts = [self.summary.strip()]
        if self.expected:
            parts.append(sentence(f"Expected: {self.expected}"))
        found = self.found_text()
        if found:
            parts.append(sentence(f"Found: {found}"))
        if self.note:
            parts.append(sentence(f"Note: {self.note}"))
        if self.deviation:
            parts.append(sentence(f"Deviation recorded: {self.deviation}"))
        if action and self.action:
            parts.append(sentence(f"Action: {self.action}"))
        if guideline and self.guideline:
            parts.append("Guideline: " + " ".join(q.text() for q in self.guideline))
        if len([p for p in parts if p]) > 1:  # a bare summary (a record from before) is kept as written
            parts[0] = sentence(parts[0])
        return " ".join(p for p in parts if p)

    def deviated(self, reason: str) -> Finding:
        """This finding kept as ``info`` with the clinical reason to deviate recorded."""
        if self.severity is Severity.INFO:
            return replace(self, deviation=reason)
        return replace(self, severity=Severity.INFO, deviation=reason, deviated_from=self.severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "requirement": self.requirement,
            "requirement_name": self.requirement_name or None,
            "series": list(self.series),
            "summary": self.summary,
            "expected": self.expected or None,
            "found": [c.to_dict() for c in self.found],
            "found_note": self.found_note or None,
            "action": self.action or None,
            "note": self.note or None,
            "deviation": self.deviation or None,
            "deviated_from": self.deviated_from.value if self.deviated_from else None,
            "citations": list(self.citations),
            "guideline": [q.to_dict() for q in self.guideline],
            "message": self.message,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuild a finding from :meth:`to_dict` (a code this version does not know keeps its text in
        the evidence; a record written before findings were structured keeps its message as summary)."""
        evidence = dict(data.get("evidence") or {})
        try:
            code = FindingCode(data.get("code"))
        except ValueError:
            evidence.setdefault("code", data.get("code"))
            code = FindingCode.VALUE_PROBLEM
        summary = data.get("summary")
        if summary is None:  # written before findings were structured: the message was all there was
            summary = str(data.get("message") or "")
        deviated_from = data.get("deviated_from")
        return cls(
            code=code,
            severity=_severity(data.get("severity")),
            summary=str(summary),
            requirement=data.get("requirement"),
            series=tuple(data.get("series") or ()),
            citations=tuple(data.get("citations") or ()),
            evidence=evidence,
            requirement_name=str(data.get("requirement_name") or ""),
            expected=str(data.get("expected") or ""),
            found=tuple(Considered.from_dict(c) for c in data.get("found") or () if isinstance(c, Mapping)),
            found_note=str(data.get("found_note") or ""),
            action=str(data.get("action") or ""),
            note=str(data.get("note") or ""),
            guideline=tuple(Quote.from_dict(q) for q in data.get("guideline") or () if isinstance(q, Mapping)),
            deviation=str(data.get("deviation") or ""),
            deviated_from=_severity(deviated_from) if deviated_from else None,
        )


def _severity(value: Any) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        return Severity.INFO


@dataclass(frozen=True)
class Deviation:
    """A recorded clinical reason to deviate from the protocol (context column or option ``exception``).

    ``"suspected hematoma, imaging needed now"`` applies to every content, timing and choice finding
    (:data:`DEVIABLE`); ``"trauma-too-early: suspected hematoma"`` (finding codes or requirement ids,
    comma-separated, before a colon) only to those — the only way to downgrade a safety finding."""

    reason: str
    targets: tuple[str, ...] = ()  # finding codes or requirement ids; empty = every DEVIABLE finding

    @classmethod
    def parse(cls, text: str, known: Iterable[str] = ()) -> Deviation | None:
        """``None`` for an empty text; a leading ``code[, code]:`` is read as targets when every
        name in it is a finding code or one of ``known`` (requirement ids)."""
        text = " ".join(text.split())
        if not text:
            return None
        head, sep, rest = text.partition(":")
        names = [n.strip() for n in head.split(",") if n.strip()]
        vocabulary = {c.value for c in FindingCode} | set(known)
        if sep and rest.strip() and names and all(n in vocabulary for n in names):
            return cls(rest.strip(), tuple(names))
        return cls(text)

    def applies_to(self, finding: Finding) -> bool:
        if self.targets:
            return finding.code.value in self.targets or (finding.requirement or "") in self.targets
        return finding.code in DEVIABLE

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings with those this deviation covers downgraded to info (never dropped)."""
        return [f.deviated(self.reason) if self.applies_to(f) else f for f in findings]


def status_for(findings: list[Finding] | tuple[Finding, ...]) -> Status:
    """fail if any error, warn if any warning, else pass."""
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return Status.FAIL
    if Severity.WARNING in severities:
        return Status.WARN
    return Status.PASS


@dataclass(frozen=True)
class AuditResult:
    """The audit of one study: the `audit --format json` object."""

    study_instance_uid: str
    accession_number: str
    study_date: str
    modality: str
    study_description: str
    protocol: str | None
    status: Status
    findings: tuple[Finding, ...]
    series: tuple[dict[str, Any], ...] = ()
    protocol_reason: str = ""
    timing: dict[str, Any] | None = None
    station_name: str = ""
    manufacturer: str = ""
    institution: str = ""
    patient_name: str = ""
    patient_id: str = ""
    # per requirement / plane rule: {id, label, level, met, series (uids), series_numbers} (added by validate)
    requirements: tuple[dict[str, Any], ...] = ()

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def to_dict(self, *, include_patient: bool = False) -> dict[str, Any]:
        data = {
            "study_instance_uid": self.study_instance_uid,
            "accession_number": self.accession_number,
            "study_date": self.study_date,
            "modality": self.modality,
            "study_description": self.study_description,
            "manufacturer": self.manufacturer,
            "station_name": self.station_name,
            "institution": self.institution,
            "protocol": self.protocol,
            "protocol_reason": self.protocol_reason,
            "status": self.status.value,
            "timing": self.timing,
            "findings": [f.to_dict() for f in self.findings],
            "requirements": list(self.requirements),
            "series": list(self.series),
        }
        if include_patient:
            data["patient_name"] = self.patient_name
            data["patient_id"] = self.patient_id
        return data


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default``: enums by value, dates as ISO text, sets and tuples as lists."""
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
