"""What a study says about itself (descriptions, procedure codes, dates), independent of its series."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from protocolcheck.dicom.study import Study


@dataclass(frozen=True)
class StudyFacts:
    """What the study says about itself (descriptions, codes, dates), independent of its series."""

    study_instance_uid: str
    accession_number: str = ""
    modality: str = ""
    study_description: str = ""
    requested_procedure_description: str = ""
    procedure_codes: tuple[str, ...] = ()
    body_part: str = ""
    manufacturer: str = ""
    station_name: str = ""
    institution: str = ""
    patient_name: str = ""
    patient_id: str = ""
    date: dt.date | None = None
    date_source: str = ""  # "StudyDate", "AcquisitionDate", "SeriesDate" or "" when none
    date_problem: str = ""

    @property
    def descriptions(self) -> tuple[str, ...]:
        return tuple(d for d in (self.study_description, self.requested_procedure_description) if d)

    @property
    def iso_date(self) -> str:
        return self.date.isoformat() if self.date else ""


def _parse_da(text: str) -> dt.date | None:
    text = text.strip().replace("-", "").replace(".", "")
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def study_facts(study: Study) -> StudyFacts:
    """Facts of a study from its headers; the date is StudyDate, else the earliest AcquisitionDate,
    else the earliest SeriesDate (and which one was used is recorded)."""
    headers = [h for stack in study.stacks for h in stack.instances]

    def first(attr: str) -> str:
        return next((getattr(h, attr) for h in headers if getattr(h, attr)), "")

    modalities = [h.modality for h in headers if h.modality]
    modality = max(set(modalities), key=modalities.count) if modalities else ""
    codes: list[str] = []
    for h in headers:
        codes.extend(c for c in h.procedure_codes if c not in codes)
    date, source, problem = None, "", ""
    for attr, label in (("study_date", "StudyDate"), ("acquisition_date", "AcquisitionDate"),
                        ("series_date", "SeriesDate")):
        values = sorted({getattr(h, attr).strip() for h in headers if getattr(h, attr).strip()})
        parsed = [d for d in (_parse_da(v) for v in values) if d is not None]
        if values and not parsed and not problem:
            problem = f"{label} {values[0]!r} is not a date"
        if parsed:
            date, source = min(parsed), label
            break
    return StudyFacts(
        study_instance_uid=study.study_instance_uid,
        accession_number=first("accession_number"),
        modality=modality,
        study_description=first("study_description"),
        requested_procedure_description=first("requested_procedure_description"),
        procedure_codes=tuple(codes),
        body_part=first("body_part").upper(),
        manufacturer=first("manufacturer"),
        station_name=first("station_name"),
        institution=first("institution"),
        patient_name=first("patient_name"),
        patient_id=first("patient_id"),
        date=date,
        date_source=source,
        date_problem=problem,
    )
