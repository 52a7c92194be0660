"""``recommend`` and ``check-order``: the clinical core's answers for a scenario and for an order.

The interpretation is :func:`protocolcheck.clinical.scenario.interpret`, the decision
:func:`protocolcheck.clinical.decision.decide` and the rating of one exam
:func:`protocolcheck.clinical.decision.judge`; this module only turns them into the ``check-order``
record (status, findings, recommended exam), which ``worklist`` prints for each scheduled step too.
The names below are re-exported so that callers have one import for the clinical answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.decision import (
    Exam,
    ExcludedProcedure,
    RankedProcedure,
    Recommendation,
    Selection,
    Statement,
    Timing,
    TimingStatus,
    Verdict,
    VerdictKind,
    decide,
    judge,
    recommend,
    select_protocol,
)
from protocolcheck.clinical.findings import Finding, FindingCode, Quote, Severity, Status, status_for
from protocolcheck.clinical.indication import extract_icd10
from protocolcheck.clinical.orders import ParsedOrder, parse_order
from protocolcheck.clinical.rules import (
    Appropriateness,
    Rules,
    RulesError,
    default_rules_path,
    evaluate,
    load_rules,
)
from protocolcheck.clinical.scenario import CodeMatch, Scenario, ScenarioError, interpret

ORDER_TEXT = "the order text"
def quotes(rules: Rules, ids: Sequence[str]) -> tuple[Quote, ...]:
    """The first cited publication (site policy only when nothing else is cited), quoted with its source
    named as a radiologist cites it (title, section, year)."""
    published = [i for i in ids if rules.sources[i].origin != "site"] or list(ids)
    return tuple(Quote(i, rules.sources[i].statement, rules.sources[i].title) for i in published[:1])


def finding(code: FindingCode, severity: Severity, summary: str, *, rules: Rules, action: str = "",
            expected: str = "", note: str = "", citations: Sequence[str] = (), **fields: Any) -> Finding:
    """A clinical-core finding: what is wrong, what was expected, the action, and the statement behind it."""
    return Finding(code, severity, summary, action=action, expected=expected, note=note,
                   citations=tuple(citations), guideline=quotes(rules, citations), **fields)


@dataclass(frozen=True)
class OrderCheck:
    """The ``check-order`` record: status, findings and the recommended replacement."""

    procedure: str
    procedure_code: str
    scheduled: dt.date
    status: Status
    findings: tuple[Finding, ...]
    recommended: RankedProcedure | None
    ordered: ParsedOrder | None = None
    recommendation: Recommendation | None = None
    problems: tuple[str, ...] = ()

    def to_dict(self, rules: Rules | None = None) -> dict[str, Any]:
        rec = self.recommendation
        return {
            "status": self.status.value,
            "findings": [f.to_dict() for f in self.findings],
            "recommended": self.recommended.to_dict() if self.recommended else None,
            "procedure": self.procedure,
            "procedure_code": self.procedure_code or None,
            "scheduled": self.scheduled.isoformat(),
            "ordered": self.ordered.to_dict(rules) if self.ordered else None,
            "variant": {"id": rec.variant.id, "title": rec.variant.title} if rec else None,
            "scenario": rec.scenario.to_dict() if rec else None,
            "earliest_date": rec.timing.earliest_date.isoformat() if rec and rec.timing.earliest_date else None,
            "timing": rec.timing.to_dict() if rec else None,
            "problems": list(self.problems),
        }


def verdict_finding(verdict: Verdict, rules: Rules, subject: str, *, action_verb: str = "Order",
                    note: str = "", soften: bool = False, evidence: dict[str, Any] | None = None,
                    requirement: str | None = "order:procedure") -> Finding | None:
    """The ``wrong-protocol`` finding for a :class:`Verdict` (None when the exam is a first choice).

    ``subject`` starts the sentence ("Ordered", "This study is"); the audit and the order check use this
    one function, so the same exam for the same scenario gets the same code and severity."""
    if verdict.severity is None:
        return None
    severity = Severity(verdict.severity)
    if soften and severity is Severity.ERROR:
        severity = Severity.WARNING
    if verdict.kind is VerdictKind.BEST_REMAINING or not verdict.alternative:
        action = "Discuss the choice of imaging with a radiologist before the exam."
    else:
        action = f"{action_verb} {verdict.alternative} instead."
    return finding(FindingCode.WRONG_PROTOCOL, severity, f"{subject} {verdict.message}", rules=rules,
                   action=action, expected=verdict.alternative, note=note, requirement=requirement,
                   citations=verdict.citations, evidence=dict(evidence or {}))


def device_finding(rec: Recommendation, rules: Rules, exam: Exam, subject: str) -> Finding | None:
    """``possible-mri-contraindication`` when an MRI is planned or done for a patient with a device named
    in the text, whose MR safety status is not recorded."""
    device = rec.scenario.mri_device
    if device is None or not exam.modality.startswith("MR"):
        return None
    no_mri = replace(rec.scenario, mri_contraindicated=True, mri_device=None)
    alternative = decide(no_mri, rules).top
    action = "Confirm the device's MR safety status (MR Conditional labelling and its conditions) before scanning"
    action += f"; if MRI is contraindicated, order {alternative.procedure} instead." if alternative else "."
    return finding(FindingCode.POSSIBLE_MRI_CONTRAINDICATION, Severity.WARNING,
                   f"{subject} an MRI, and {device.source} names a {device.label} (\u201c{device.words}\u201d) "
                   "whose MR safety status is not recorded.", rules=rules,
                   action=action, expected="MRI only for a patient without an MR Unsafe device",
                   requirement="order:mri-safety", citations=("acr-mr-safety", "seed-ct-when-mri-contraindicated"),
                   evidence={"device": device.to_dict()})


def timing_findings(rec: Recommendation, rules: Rules, when: str, requirement_prefix: str = "timing") -> list[Finding]:
    """Trauma timing findings for an exam on ``rec.scenario.on`` (``when`` names the date: "Scheduled 2026-03-01")."""
    timing, scenario = rec.timing, rec.scenario
    days = scenario.days_since_trauma
    if timing.status is TimingStatus.TOO_EARLY and timing.earliest_date:
        return [finding(
            FindingCode.TRAUMA_TOO_EARLY, Severity.ERROR,
            f"{when}, {days} days after the injury on {scenario.trauma_date}: too early, blood and soft-tissue edema "
            "may not have resolved.", rules=rules,
            action=f"Reschedule on or after {timing.earliest_date.isoformat()}.",
            expected=f"imaging on or after {timing.earliest_date.isoformat()} (about 1 month after the injury)",
            requirement=f"{requirement_prefix}:min-days-after-trauma", citations=timing.citations,
            evidence={"trauma_date": str(scenario.trauma_date), "days_since_trauma": days,
                      "earliest_date": timing.earliest_date.isoformat()})]
    if timing.status is TimingStatus.LATE and timing.latest_date:
        return [finding(
            FindingCode.TRAUMA_DELAYED, Severity.WARNING,
            f"{when}, {days} days after the injury on {scenario.trauma_date}: later than "
            f"{timing.latest_date.isoformat()}, and appropriate imaging should not be delayed much beyond about "
            "1 month.", rules=rules,
            action="Book the exam at the earliest available slot.",
            expected=f"imaging by {timing.latest_date.isoformat()}",
            requirement=f"{requirement_prefix}:max-days-after-trauma", citations=timing.citations,
            evidence={"trauma_date": str(scenario.trauma_date), "days_since_trauma": days,
                      "latest_date": timing.latest_date.isoformat()})]
    if timing.status is TimingStatus.TRAUMA_DATE_MISSING:
        return [finding(
            FindingCode.CONTEXT_MISSING, Severity.WARNING,
            "The indication names an injury but no trauma date was given, so the timing (about 1 month after the "
            "injury) cannot be checked.", rules=rules,
            action="Record the date of the injury (trauma date) with the order.",
            requirement=f"{requirement_prefix}:trauma-date", citations=timing.citations)]
    return []


def check_order(procedure: str, context: ClinicalContext, procedure_code: str = "", scheduled: dt.date | None = None,
                rules: Rules | None = None, today: dt.date | None = None) -> OrderCheck:
    """Is this order the exam the indication calls for, at the right time?  Never raises for clinical inputs.

    Unusable inputs give status ``error`` (out-of-scope indications ``no-protocol``) with ``problems``,
    each naming its field.  The order text is read for contraindications too (a pacemaker written on it).
    """
    rules = rules or load_rules()
    today = today or dt.date.today()
    scheduled = scheduled or today
    if procedure:
        context = replace(context, texts=context.texts + ((ORDER_TEXT, procedure),))
    try:
        rec = recommend(context, on=scheduled, rules=rules, today=today)
    except ScenarioError as exc:
        status = Status.NO_PROTOCOL if exc.out_of_scope else Status.ERROR
        return OrderCheck(procedure, procedure_code, scheduled, status, (), None, None, None, tuple(exc.problems))
    ordered = parse_order(procedure, procedure_code, rules)
    findings = order_findings(ordered, rec, rules, procedure or procedure_code)
    findings.extend(timing_findings(rec, rules, f"Scheduled {scheduled.isoformat()}", "timing"))
    return OrderCheck(procedure, procedure_code, scheduled, status_for(findings), tuple(findings), rec.top, ordered,
                      rec, ())


def order_findings(ordered: ParsedOrder, rec: Recommendation, rules: Rules, shown: str) -> list[Finding]:
    """What is wrong with the ordered exam for the decision ``rec``: not understood, contrast not stated,
    the verdict of :func:`~protocolcheck.clinical.decision.judge`, a possible MRI contraindication."""
    top = rec.top
    top_text = top.procedure if top else "no suitable procedure"
    evidence = {"ordered": ordered.key, "recommended": top.key if top else None, "variant": rec.variant.id}
    if not ordered.understood:
        missing = " or ".join(ordered.missing())  # "modality (MRI, CT, ...)" and/or "body part"
        return [finding(
            FindingCode.ORDER_NOT_UNDERSTOOD, Severity.WARNING,
            f"The order \u201c{shown}\u201d does not name a recognisable {missing}, so it cannot be checked against "
            "the indication.",
            action=f"Write the modality, body part and contrast in the order (for this indication: {top_text}), "
                   "or give its procedure code.",
            expected=top_text, requirement="order:procedure", rules=rules,
            evidence={**evidence, "modality": ordered.modality, "region": ordered.region})]
    findings: list[Finding] = []
    key = ordered.key
    if key is None and ordered.candidates:
        if top and top.key in ordered.candidates:
            findings.append(finding(
                FindingCode.CONTEXT_MISSING, Severity.INFO,
                f"The order \u201c{shown}\u201d does not state the contrast; the recommended exam is {top_text}.",
                action=f"State the contrast in the order: {top_text}.", expected=top_text,
                requirement="order:contrast", rules=rules, evidence=dict(evidence)))
        else:  # judge the best-ranked exam the order could be
            keys = [r.key for r in rec.recommendations] + [e.key for e in rec.excluded]
            order_of = {k: i for i, k in enumerate(keys)}
            key = min(ordered.candidates, key=lambda k: order_of.get(k, len(order_of)))
    exam = Exam.of(rules.procedures[key]) if key is not None else (
        ordered.exam(rules) if not ordered.candidates else None)
    if exam is None:
        return findings
    note = ""
    if ordered.contrast == "with" and exam.modality == "MR":
        note = ("\u201cWith contrast\u201d means post-contrast only (as in ACR and CPT terms); if pre-contrast "
                "sequences are intended, order \u201cwithout and with\u201d.")
    soften = ordered.region_from_code and exam.region == "pelvis"
    if soften:
        note += (f" The body part comes only from code {ordered.code}, which is also used to bill dedicated "
                 "plexus MRI: if this is the plexus protocol, say so in the description.")
    name = exam.name if ordered.key or key is None else f"{exam.name} (contrast not stated)"
    verdict = judge(rec, replace(exam, name=name), rules)
    wrong = verdict_finding(verdict, rules, "Ordered", note=note.strip(), soften=soften, evidence=evidence)
    device = device_finding(rec, rules, exam, "Ordered")
    side = side_finding(ordered, rec, rules)
    return findings + [f for f in (wrong, device, side) if f is not None]


def side_finding(ordered: ParsedOrder, rec: Recommendation, rules: Rules) -> Finding | None:
    """``laterality-mismatch`` when the order names one side and the indication the other."""
    wanted, written = rec.scenario.laterality, ordered.laterality
    if not wanted or not written or wanted == written or "bilateral" in (wanted, written):
        return None
    return finding(FindingCode.LATERALITY_MISMATCH, Severity.WARNING,
                   f"The order names the {written} side, but the indication names the {wanted} side.",
                   action=f"Confirm the side with the referrer and correct the order (the indication says {wanted}).",
                   expected=f"the {wanted} side", requirement="order:laterality", rules=rules,
                   evidence={"order": written, "indication": wanted})


__all__ = [
    "Appropriateness", "CodeMatch", "Exam", "ExcludedProcedure", "OrderCheck", "ParsedOrder", "RankedProcedure",
    "Recommendation", "Rules", "RulesError", "Scenario", "ScenarioError", "Selection", "Statement", "Timing",
    "TimingStatus", "Verdict", "VerdictKind", "check_order", "decide", "default_rules_path", "device_finding",
    "evaluate", "extract_icd10", "interpret", "judge", "load_rules", "parse_order", "recommend", "select_protocol",
    "timing_findings", "verdict_finding",
]
