"""One Study Instance UID, two exams: ``study-uid-collision``.

A Study Instance UID is unique to one exam of one patient (PS3.3 C.7.2.1). When the files of one UID
carry more than one accession number or patient ID (a scanner or archive reusing UIDs, a merge gone
wrong), auditing them as one study would let one exam's series satisfy the other's protocol and hide
the second exam. The series are split by exam, each exam is audited on its own series, and the result
(kept under the UID, as the store and the reports key studies) is the largest exam's audit with an
error finding naming every accession and giving each other exam's own verdict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from protocolcheck.clinical.findings import AuditResult, Finding, FindingCode, Severity, Status, status_for
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.study import Stack, Study

ExamKey = tuple[str, str]  # (accession number, patient ID)


def _key(stack_instances: Sequence[object]) -> ExamKey:
    first = stack_instances[0]
    return (getattr(first, "accession_number", "") or "", getattr(first, "patient_id", "") or "")


def split_by_exam(study: Study) -> list[Study]:
    """The study's series grouped by exam (accession number, patient ID), largest exam first; one
    element (the study itself) when every file names the same exam."""
    stacks: dict[ExamKey, list[Stack]] = {}
    for stack in study.stacks:
        by_exam: dict[ExamKey, list[InstanceHeader]] = {}
        for header in stack.instances:
            by_exam.setdefault((header.accession_number or "", header.patient_id or ""), []).append(header)
        for key, instances in by_exam.items():
            part = stack if len(by_exam) == 1 else dataclasses.replace(stack, instances=tuple(instances))
            stacks.setdefault(key, []).append(part)
    if len(stacks) <= 1:
        return [study]
    exams = sorted(stacks.items(), key=lambda item: -sum(len(s.instances) for s in item[1]))
    return [Study(study.study_instance_uid, parts) for _key_, parts in exams]


def with_collision(results: Sequence[AuditResult], exams: Sequence[Study]) -> AuditResult:
    """The first exam's result with a ``study-uid-collision`` error naming every exam and each other
    exam's own audit (status, protocol, findings) in words and in ``evidence``."""
    first, others = results[0], results[1:]
    keys = [_key(exam.stacks[0].instances) for exam in exams]
    accessions = [key[0] or "(no accession)" for key in keys]
    patients = len({key[1] for key in keys})
    other_text = "; ".join(
        f"accession {r.accession_number or '-'}: {r.status.value}, protocol {r.protocol or '-'}, "
        f"{len(r.findings)} finding{'s' if len(r.findings) != 1 else ''}"
        + (" (" + ", ".join(dict.fromkeys(f.code.value for f in r.findings)) + ")" if r.findings else "")
        for r in others)
    summary = (f"Study Instance UID {first.study_instance_uid} is shared by {len(exams)} exams (accessions "
               f"{', '.join(accessions)}" + (f"; {patients} different patients" if patients > 1 else "")
               + f"). Each exam was audited on its own series; this record is accession "
               f"{first.accession_number or '-'}; the others: {other_text}.")
    finding = Finding(code=FindingCode.STUDY_UID_COLLISION, severity=Severity.ERROR, summary=summary,
                      action="Give each exam its own Study Instance UID at the scanner or in the archive, then "
                             "audit them again",
                      evidence={"accessions": accessions, "patients": patients,
                                "exams": [{"accession_number": r.accession_number, "status": r.status.value,
                                           "protocol": r.protocol, "findings": [f.to_dict() for f in r.findings]}
                                          for r in results]})
    findings = (finding, *first.findings)
    status = first.status if first.status in (Status.ERROR, Status.NO_PROTOCOL) else status_for(findings)
    return dataclasses.replace(first, findings=findings, status=status)
