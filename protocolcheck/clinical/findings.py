"""Finding codes, severities and the audit result record (the `audit --format json` contract).

The audit and the order check both judge, so the record lives at the clinical layer, below both."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


class FindingCode(str, Enum):
    """Stable finding codes; scripts key on these strings."""

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
    TRUNCATED_PIXEL_DATA = "truncated-pixel-data"  # Pixel Data cut short or shorter than the image it describes
    CONTEXT_UNMATCHED = "context-unmatched"
    CONTRAST_CONTRAINDICATED = "contrast-despite-contraindication"  # contrast given though recorded contraindicated
    SERIES_NOT_RECEIVED = "series-not-received"  # MPPS lists a performed series that never arrived (live loop)
    POSSIBLE_MRI_CONTRAINDICATION = "possible-mri-contraindication"  # an MRI for a patient with a device
    ORDER_NOT_UNDERSTOOD = "order-not-understood"  # the order text names no modality or no body part


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NO_PROTOCOL = "no-protocol"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about a study, with what was expected, what was found and why."""

    code: FindingCode
    severity: Severity
    message: str
    requirement: str | None = None
    series: tuple[str, ...] = ()
    citations: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "requirement": self.requirement,
            "series": list(self.series),
            "message": self.message,
            "citations": list(self.citations),
            "evidence": self.evidence,
        }


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
