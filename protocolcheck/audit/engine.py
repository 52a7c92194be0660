"""Audit orchestration: files or header records in, one :class:`AuditResult` per study out.

Used by the CLI (``audit``), the DICOM listener and query commands (``net/``) and batch jobs. Per
study: classify its series, look up its clinical context (context CSV row by accession number or
Study Instance UID, on top of the command-line defaults), choose the protocol (``--protocol``; else
the one the recommender ranks first for the indication; else the study's own descriptions/codes),
then validate. Unreadable files become ``unreadable-file`` findings of the study whose folder holds
them, or records of their own with status ``error``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from protocolcheck import config
from protocolcheck.audit.collision import split_by_exam, with_collision
from protocolcheck.audit.duplicates import duplicate_findings
from protocolcheck.audit.integrity import integrity_findings
from protocolcheck.audit.streaming import MAX_IN_MEMORY, StudyStream, attach_unreadable
from protocolcheck.audit.validate import Choice, ChosenBy, StudyFacts, choose_protocol, evaluate, identify, study_facts
from protocolcheck.classify import SeriesClass, classify_study
from protocolcheck.clinical.context import ClinicalContext, ContextTable
from protocolcheck.clinical.decision import Exam, Verdict, exam_of_protocol, select_protocol
from protocolcheck.clinical.findings import AuditResult, Finding, FindingCode, Severity, Status, status_for
from protocolcheck.clinical.library import Library
from protocolcheck.clinical.orders import parse_order
from protocolcheck.clinical.rules import Rules, load_rules
from protocolcheck.clinical.scenario import Scenario
from protocolcheck.dicom.records import ScanRecord, Unreadable
from protocolcheck.dicom.scan import scan
from protocolcheck.dicom.study import Study


@dataclass(frozen=True)
class AuditOptions:
    """What an audit needs besides the studies."""

    library: Library
    protocol_id: str | None = None  # --protocol
    contexts: ContextTable | None = None  # --context FILE.csv
    default_context: ClinicalContext | None = None  # --trauma-date / --indication ...
    include_series: bool = True


@dataclass(frozen=True)
class Indicated:
    """The protocol the clinical context calls for (the clinical core's decision), and the answers behind it."""

    protocol_id: str | None
    reason: str = ""
    citations: tuple[str, ...] = ()
    scenario: Scenario | None = None
    verdict: Verdict | None = None
    rules: Any = None
    problems: tuple[str, ...] = ()


def context_for(facts: StudyFacts, options: AuditOptions) -> ClinicalContext | None:
    """The study's context: its CSV row (by accession, else Study UID) over the command-line defaults."""
    row = options.contexts.lookup(facts.accession_number, facts.study_instance_uid) if options.contexts else None
    default = options.default_context
    if row is not None and default is not None:
        return default.merged(row)
    return row or default


def performed_exam(facts: StudyFacts, series: Sequence[SeriesClass], library: Library, rules: Rules) -> Exam | None:
    """The exam of the decision rules this study is: by the library protocol its descriptions/codes name,
    else by its Study (or Requested Procedure) Description read as an order text; None when unknown."""
    post = any(s.post_contrast is True for s in series)
    for ident in identify(facts, series, library):
        exam = exam_of_protocol(ident.protocol.id, rules, post)
        if exam is not None:
            return replace(exam, identified_by="; ".join(ident.evidence))
    for label, text in (("Study Description", facts.study_description),
                        ("Requested Procedure Description", facts.requested_procedure_description)):
        order = parse_order(text or "", "", rules)
        if order.key is not None:
            return Exam.of(rules.procedures[order.key], f"{label} '{text}'")
    return None


def indicated_protocol(context: ClinicalContext | None, library: Library, on: dt.date | None = None,
                       facts: StudyFacts | None = None, series: Sequence[SeriesClass] = ()) -> Indicated:
    """The protocol the clinical core selects for this context and study (None without an indication)."""
    if context is None or not ((context.indication or "").strip() or context.dermatomal):
        return Indicated(None)
    rules = recommender_rules(library)
    performed = performed_exam(facts, series, library, rules) if facts is not None else None
    selection = select_protocol(context, library, on, rules=rules, performed=performed)
    reason = selection.reason or f"indicated for {context.indication!r}"
    what = f"indication {context.indication!r}" if context.indication else "single-dermatome symptoms"
    return Indicated(selection.protocol_id, f"{what} \u2192 {reason}", selection.citations, selection.scenario,
                     selection.verdict, rules, selection.problems)


def recommender_rules(library: Library) -> Rules:
    """The decision rules: ``rules.yaml`` beside the library's protocols when there is one, else the
    default (``$PROTOCOLCHECK_RULES``, ``$PROTOCOLCHECK_LIBRARY``, shipped). Raises ``RulesError``
    (with every problem) when they cannot be used."""
    return load_rules(config.rules_for(library.path))


def _result(facts: StudyFacts, choice: Choice | None, status: Status, findings: Sequence[Finding],
            series: Sequence[SeriesClass], timing: dict | None, options: AuditOptions,
            requirements: tuple[dict, ...] = ()) -> AuditResult:
    return AuditResult(
        study_instance_uid=facts.study_instance_uid,
        accession_number=facts.accession_number,
        study_date=facts.iso_date,
        modality=facts.modality,
        study_description=facts.study_description,
        protocol=choice.protocol.id if choice and choice.protocol else None,
        status=status,
        findings=tuple(findings),
        series=tuple(s.to_dict() for s in series) if options.include_series else (),
        protocol_reason=choice.reason if choice else "",
        timing=timing,
        station_name=facts.station_name,
        manufacturer=facts.manufacturer,
        institution=facts.institution,
        patient_name=facts.patient_name,
        patient_id=facts.patient_id,
        requirements=requirements,
    )


def _gadolinium_egfr(context: ClinicalContext | None, options: AuditOptions) -> float | None:
    """The rules' eGFR below which gadolinium is avoided (read only when the context gives an eGFR)."""
    if context is None or context.egfr is None:
        return None
    return float(recommender_rules(options.library).gadolinium_avoid_below_egfr)


def _unreadable_finding(item: Unreadable, severity: Severity, suffix: str) -> Finding:
    if item.is_folder:  # a folder that could not be listed (permission, path length): never silent
        return Finding(code=FindingCode.UNREADABLE_FOLDER, severity=severity,
                       summary=f"Folder {item.path} could not be listed: {item.reason.split(': ', 1)[-1]}{suffix}",
                       action="Make the folder readable (permissions, path length) and audit it again",
                       evidence={"path": item.path, "reason": item.reason})
    return Finding(code=FindingCode.UNREADABLE_FILE, severity=severity,
                   summary=f"File {item.path} could not be read: {item.reason}{suffix}",
                   action="Send the study again from the scanner or the archive",
                   evidence={"path": item.path, "reason": item.reason})


def audit_study(study: Study, options: AuditOptions, unreadable: Sequence[Unreadable] = ()) -> AuditResult:
    """Audit one study: classify, choose the protocol, validate, and add unreadable-file findings.
    A Study UID shared by several exams (accessions, patients) is audited exam by exam and reported as
    ``study-uid-collision`` (:mod:`.collision`).

    Raises KeyError when ``options.protocol_id`` is not in the library (a usage error)."""
    exams = split_by_exam(study)
    if len(exams) == 1:
        return _audit_exam(study, options, unreadable)
    results = [_audit_exam(exam, options, unreadable if i == 0 else ()) for i, exam in enumerate(exams)]
    return with_collision(results, exams)


def _audit_exam(study: Study, options: AuditOptions, unreadable: Sequence[Unreadable] = ()) -> AuditResult:
    """:func:`audit_study` of the series of one exam."""
    facts = study_facts(study)
    extra = [_unreadable_finding(u, Severity.WARNING, "; the study may be incomplete.") for u in unreadable]
    extra += integrity_findings(study)  # malformed values, incomplete pixel data
    extra += duplicate_findings(h for stack in study.stacks for h in stack.instances)
    try:
        series = classify_study(study)
    except Exception as exc:  # noqa: BLE001 - a header the classifier cannot handle must not stop a batch
        finding = Finding(code=FindingCode.VALUE_PROBLEM, severity=Severity.ERROR,
                          summary=f"The study could not be classified ({type(exc).__name__}: {exc}); not audited",
                          action="Report this study to the protocolcheck maintainers with its headers")
        return _result(facts, None, Status.ERROR, [finding, *extra], (), None, options)
    context = context_for(facts, options)
    if context is not None and facts.requested_procedure_description:  # the order's own words, read for devices
        order = ("the Requested Procedure Description", facts.requested_procedure_description)
        context = replace(context, texts=tuple(dict.fromkeys((*context.texts, order))))
    indicated = indicated_protocol(context, options.library, facts.date, facts, series)
    choice = choose_protocol(facts, series, options.library, protocol_id=options.protocol_id,
                             indicated_id=None if options.protocol_id else indicated.protocol_id,
                             indication_reason=indicated.reason, scenario=indicated.scenario,
                             verdict=indicated.verdict, rules=indicated.rules)
    evaluation = evaluate(choice, facts, series, context, gadolinium_egfr_below=_gadolinium_egfr(context, options))
    findings = [*evaluation.findings, *extra]
    findings.extend(  # a contradictory or malformed context: named, never a traceback
        Finding(code=FindingCode.CONTEXT_MISSING, severity=Severity.WARNING,
                summary=f"The clinical context cannot be used as given ({problem}); the protocol was chosen without it",
                action="Correct the clinical context and audit the study again",
                evidence={"context": context.source if context else "", "problem": problem})
        for problem in indicated.problems)
    findings.sort(key=lambda f: -f.severity.rank)  # stable: missing items first within a severity
    judged = any(f.code is FindingCode.WRONG_PROTOCOL for f in findings)  # the exam done is known to be wrong
    status = Status.NO_PROTOCOL if choice.chosen_by is ChosenBy.NONE and not judged else status_for(findings)
    return _result(facts, choice, status, findings, series, evaluation.timing, options, evaluation.outcomes())


def audit_records(records: Iterable[ScanRecord], options: AuditOptions, *, max_in_memory: int = MAX_IN_MEMORY,
                  tmpdir: str | None = None) -> Iterator[AuditResult]:
    """Group header records by study and audit each, in bounded memory; unreadable files become findings
    of their study or records of their own.

    Studies come out in Study Instance UID order, then one ``error`` record per folder of unreadable
    files that belong to no study. Headers beyond ``max_in_memory`` are spilled to a temporary folder
    (``tmpdir``, default the system's) and merged back one study at a time
    (:class:`~protocolcheck.audit.streaming.StudyStream`)."""
    with StudyStream(records, max_in_memory=max_in_memory, tmpdir=tmpdir) as stream:
        attached = attach_unreadable(stream.unreadable, stream.study_dirs)
        for study in stream:
            yield audit_study(study, options, attached.by_study.get(study.study_instance_uid, ()))
    yield from orphan_results(attached.orphans, options)


def orphan_results(orphans: Iterable[Unreadable], options: AuditOptions) -> Iterator[AuditResult]:
    """One ``error`` record per folder of unreadable files that belong to no study."""
    by_folder: dict[str, list[Unreadable]] = {}
    for item in orphans:
        by_folder.setdefault(os.path.dirname(item.path) or ".", []).append(item)
    for folder, items in by_folder.items():
        findings = [_unreadable_finding(u, Severity.ERROR, "; it belongs to no study found.") for u in items]
        facts = StudyFacts(study_instance_uid="", study_description=f"unreadable files in {folder}")
        yield _result(facts, None, Status.ERROR, findings, (), None, options)


def audit_paths(paths: Iterable[str | os.PathLike[str]], options: AuditOptions) -> Iterator[AuditResult]:
    """Audit every study found under the files/folders ``paths`` (FileNotFoundError for a missing path)."""
    yield from audit_records(scan(list(paths)), options)


def unmatched_context(options: AuditOptions) -> list[str]:
    """Context CSV rows that matched no audited study (call after the audit iterator is exhausted)."""
    if options.contexts is None:
        return []
    where = options.contexts.path or "context file"
    return [f"{where}: {key} matches no study that was audited (check the number, or the paths given)"
            for key in options.contexts.unused()]


@dataclass(frozen=True)
class Summary:
    """Counts by status, for the one-line summary on stderr."""

    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Iterable[AuditResult]) -> Summary:
        counts = {s.value: 0 for s in Status}
        for r in results:
            counts[r.status.value] += 1
        return cls(counts)

    @property
    def studies(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        c = self.counts
        text = (f"{self.studies} studies: {c['pass']} pass, {c['warn']} warn, {c['fail']} fail, "
                f"{c['no-protocol']} no protocol")
        if c.get("error"):
            text += f", {c['error']} error"
        return text


def reaches(results: Iterable[AuditResult], threshold: Severity | None) -> bool:
    """Whether any finding is at or above ``threshold`` (None = never), or any record is an error."""
    if threshold is None:
        return False
    for r in results:
        if r.status is Status.ERROR:
            return True
        if any(f.severity.rank >= threshold.rank for f in r.findings):
            return True
    return False
