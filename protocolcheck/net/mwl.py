"""Modality Worklist client: find scheduled procedure steps and the clinical facts written on them.

:func:`find_worklist` runs an MWL C-FIND (by station AE title, modality, scheduled date range) and
returns one :class:`WorklistItem` per scheduled procedure step. :func:`item_context` hands the
item's free-text fields (reason for the requested procedure, admitting diagnoses, procedure
comments) to a :class:`~protocolcheck.clinical.context.ClinicalContext`, each labelled with where it
was written; this module reads no clinical meaning from them (the trauma date, a pacemaker, a contrast
reaction are found by :func:`protocolcheck.clinical.scenario.interpret`, the one interpretation).
:func:`order_context` lets a context CSV row (keyed by accession number) override what the worklist
says. The order check itself is :func:`protocolcheck.clinical.recommend.check_order`, called by the
CLI, never re-implemented here.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset

from protocolcheck.clinical.context import ClinicalContext, ContextTable, parse_date
from protocolcheck.net.common import (
    DEFAULT_TIMEOUTS,
    WORKLIST_FIND,
    FindEnd,
    NetError,
    NetErrorKind,
    Peer,
    Timeouts,
    find,
    validate_date_range,
)
from protocolcheck.net.receiving import Exceeded, receiving_handlers

LOG = logging.getLogger("protocolcheck.net.mwl")


@dataclass(frozen=True)
class WorklistQuery:
    """MWL matching keys; empty means "any". ``date`` is a DICOM DA or range."""

    station_aet: str = ""
    modality: str = ""
    date: str = ""
    accession: str = ""  # one order (listen --worklist looks each exam up by its accession number)

    def identifier(self) -> Dataset:
        """The C-FIND identifier: matching keys plus the return keys the order check needs."""
        step = Dataset()
        step.ScheduledStationAETitle = self.station_aet
        step.ScheduledProcedureStepStartDate = validate_date_range(self.date) if self.date else ""
        step.ScheduledProcedureStepStartTime = ""
        step.Modality = self.modality.upper()
        step.ScheduledProcedureStepDescription = ""
        step.ScheduledProcedureStepID = ""
        ds = Dataset()
        ds.AccessionNumber = self.accession
        ds.StudyInstanceUID = ""
        ds.RequestedProcedureID = ""
        ds.RequestedProcedureDescription = ""
        ds.RequestedProcedureCodeSequence = []
        ds.ReasonForTheRequestedProcedure = ""
        ds.RequestedProcedureComments = ""
        ds.AdmittingDiagnosesDescription = ""
        ds.ScheduledProcedureStepSequence = [step]
        return ds


@dataclass(frozen=True)
class WorklistItem:
    """One scheduled procedure step and the order it belongs to (no patient identity)."""

    accession_number: str
    scheduled_date: str  # DICOM DA as sent (YYYYMMDD) or ""
    scheduled_time: str = ""
    station_aet: str = ""
    modality: str = ""
    procedure: str = ""
    procedure_code: str = ""
    step_id: str = ""
    step_description: str = ""
    requested_procedure_id: str = ""
    study_instance_uid: str = ""
    reason: str = ""
    admitting_diagnoses: str = ""
    comments: str = ""

    @property
    def scheduled(self) -> dt.date | None:
        """The scheduled date, or None when absent or malformed."""
        try:
            return parse_date(self.scheduled_date) if self.scheduled_date else None
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        scheduled = self.scheduled
        return {
            "accession_number": self.accession_number,
            "scheduled_date": scheduled.isoformat() if scheduled else (self.scheduled_date or None),
            "scheduled_time": self.scheduled_time,
            "station_aet": self.station_aet,
            "modality": self.modality,
            "procedure": self.procedure,
            "procedure_code": self.procedure_code,
            "scheduled_step_id": self.step_id,
            "requested_procedure_id": self.requested_procedure_id,
            "study_instance_uid": self.study_instance_uid,
        }


def _text(ds: Dataset | None, keyword: str) -> str:
    if ds is None:
        return ""
    try:
        value = ds.get(keyword, "")
    except Exception:  # noqa: BLE001 - a malformed value in a reply is not fatal
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _first(ds: Dataset, keyword: str) -> Dataset | None:
    try:
        items = ds.get(keyword, None)
        return items[0] if items else None
    except Exception:  # noqa: BLE001 - pydicom raises many types on a malformed sequence: no item
        return None


def item_from(ds: Dataset) -> list[WorklistItem]:
    """The worklist items in one C-FIND reply (one per scheduled procedure step it carries)."""
    code = _first(ds, "RequestedProcedureCodeSequence")
    common = {
        "accession_number": _text(ds, "AccessionNumber"),
        "procedure": _text(ds, "RequestedProcedureDescription"),
        "procedure_code": _text(code, "CodeValue"),
        "requested_procedure_id": _text(ds, "RequestedProcedureID"),
        "study_instance_uid": _text(ds, "StudyInstanceUID"),
        "reason": _text(ds, "ReasonForTheRequestedProcedure"),
        "admitting_diagnoses": _text(ds, "AdmittingDiagnosesDescription"),
        "comments": _text(ds, "RequestedProcedureComments"),
    }
    try:
        steps = list(ds.get("ScheduledProcedureStepSequence", None) or [])
    except Exception:  # noqa: BLE001 - pydicom raises many types on a malformed sequence: no steps
        steps = []
    items = []
    for step in steps or [None]:
        description = _text(step, "ScheduledProcedureStepDescription")
        items.append(WorklistItem(
            **common,
            scheduled_date=_text(step, "ScheduledProcedureStepStartDate"),
            scheduled_time=_text(step, "ScheduledProcedureStepStartTime"),
            station_aet=_text(step, "ScheduledStationAETitle"),
            modality=_text(step, "Modality").upper(),
            step_id=_text(step, "ScheduledProcedureStepID"),
            step_description=description,
        ))
    return [i if i.procedure else replace(i, procedure=i.step_description) for i in items]


def find_worklist(peer: Peer, query: WorklistQuery, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> list[WorklistItem]:
    """MWL C-FIND; NetError when the worklist server cannot be reached or the query fails.

    Items are sorted by scheduled date and time, then accession number.
    """
    too_large: list[Exceeded] = []
    replies, end = find(peer, WORKLIST_FIND, query.identifier(), timeouts, "worklist C-FIND",
                        evt_handlers=receiving_handlers(on_exceeded=too_large.append))
    if too_large:
        raise NetError(NetErrorKind.FAILED, f"worklist C-FIND on {peer}: a reply refused, {too_large[0].reason}; "
                       "the association was aborted")
    items = [item for ds in replies for item in item_from(ds)]
    if end is FindEnd.ABORTED:
        raise NetError(NetErrorKind.ABORTED,
                       f"worklist C-FIND on {peer}: the peer aborted the association instead of answering "
                       f"(is {peer.calling_aet!r} allowed to query it?)")
    if end is FindEnd.SILENT:
        raise NetError(NetErrorKind.TIMEOUT, f"worklist C-FIND on {peer}: no reply within {timeouts.dimse:g} s "
                       "(the peer stopped answering)")
    if query.station_aet:  # some servers treat an unsupported key as universal: filter here too
        items = [i for i in items if not i.station_aet or i.station_aet == query.station_aet]
    if query.modality:
        items = [i for i in items if not i.modality or i.modality == query.modality.upper()]
    if query.accession:
        items = [i for i in items if i.accession_number == query.accession]
    return sorted(items, key=lambda i: (i.scheduled_date, i.scheduled_time, i.accession_number, i.step_id))


FIELD_LABELS = (("reason", "worklist Reason for the Requested Procedure"),
                ("admitting_diagnoses", "worklist Admitting Diagnoses Description"),
                ("comments", "worklist Requested Procedure Comments"))


def item_context(item: WorklistItem) -> ClinicalContext:
    """The clinical text written on the worklist item: together the indication; each field is also handed
    on with its name, so that a trauma date or a device found in it is reported with where it was written."""
    texts = tuple((label, getattr(item, name)) for name, label in FIELD_LABELS if getattr(item, name))
    indication = "; ".join(dict.fromkeys(text for _, text in texts))
    source = "worklist " + ", ".join(label.removeprefix("worklist ") for label, _ in texts) if texts else ""
    origins = (("indication", source),) if texts else ()
    return ClinicalContext(indication=indication, source=source, texts=texts, origins=origins)


def order_context(item: WorklistItem, table: ContextTable | None = None) -> ClinicalContext:
    """The worklist's own context, overridden field by field by the context CSV row for its accession."""
    context = item_context(item)
    if table is not None:
        row = table.lookup(accession_number=item.accession_number, study_instance_uid=item.study_instance_uid)
        if row is not None:
            context = context.merged(row)
    return context
