"""Audit one study against a protocol: choose the protocol, then run every check and collect the findings.

Inputs are the classified series (:class:`~protocolcheck.classify.series.SeriesClass`), the study's own
facts (:class:`~protocolcheck.audit.facts.StudyFacts`), a protocol from the library and the clinical
context; the output is an :class:`Evaluation` (findings, timing, per-requirement outcomes). Nothing here
reads files or prints. The checks live beside it: requirement matching (``matching``), plane rules
(``planes``), quality limits (``quality``), trauma timing (``timing``), contrast and device safety
(``safety``); a recorded clinical reason to deviate (:class:`~protocolcheck.clinical.findings.Deviation`)
keeps the findings it covers as ``info``.

``wrong-protocol`` is raised only when the protocol was *chosen for* the study (explicitly or by the
indication) and the study is recognisably another exam: another modality, a ``defines_exam``
requirement unmet (a CT without IV contrast), or identified by its own descriptions/codes as a
protocol of another family while failing required rules (a standard pelvis MRI for plexopathy). The
unmet requirements are then summarised inside that one finding instead of separate
``missing-sequence`` findings: the exam was not done, so listing its missing parts is noise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from protocolcheck.audit.facts import StudyFacts, study_facts
from protocolcheck.audit.matching import RequirementResult, assign, quotes, requirement_finding, series_name
from protocolcheck.audit.planes import PlaneResult, check_plane_rule, check_plane_rules, plane_finding
from protocolcheck.audit.quality import check_limits
from protocolcheck.audit.safety import DeviceMention, check_contrast_safety, check_mri_safety
from protocolcheck.audit.timing import check_timing
from protocolcheck.classify import SeriesClass
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.decision import Verdict as ExamVerdict
from protocolcheck.clinical.decision import decide
from protocolcheck.clinical.findings import Deviation, Finding, FindingCode, Severity
from protocolcheck.clinical.library import Library
from protocolcheck.clinical.protocol import Level, Protocol
from protocolcheck.clinical.recommend import timing_findings, verdict_finding
from protocolcheck.clinical.rules import Rules
from protocolcheck.clinical.scenario import Scenario, contrast_contraindications

__all__ = [
    "Choice", "ChosenBy", "DeviceMention", "Evaluation", "Identification", "StudyFacts", "assign",
    "check_plane_rule", "check_timing", "choose_protocol", "evaluate", "identify", "study_facts", "unmet_required",
]


# --------------------------------------------------------------------------------------------------
# protocol identification and choice


@dataclass(frozen=True)
class Identification:
    """A protocol that the study's own descriptions or codes name."""

    protocol: Protocol
    score: int
    evidence: tuple[str, ...]
    unmet_required: int = 0


# What the study says it is, by weight: the Study Description names what was performed; procedure
# codes and the Requested Procedure Description name what was ordered.
STUDY_DESCRIPTION_SCORE = 3
PROCEDURE_CODE_SCORE = 2
REQUESTED_DESCRIPTION_SCORE = 1


def _description_hits(protocol: Protocol, facts: StudyFacts) -> list[tuple[int, str]]:
    hits = []
    for score, label, text in (
            (STUDY_DESCRIPTION_SCORE, "Study Description", facts.study_description),
            (REQUESTED_DESCRIPTION_SCORE, "Requested Procedure Description", facts.requested_procedure_description)):
        if not text:
            continue
        if any(re.search(p, text, re.IGNORECASE) for p in protocol.applies_to.exclude_descriptions):
            continue
        if any(re.search(p, text, re.IGNORECASE) for p in protocol.applies_to.descriptions):
            hits.append((score, f"{label} '{text}'"))
    return hits


def unmet_required(protocol: Protocol, series: Sequence[SeriesClass]) -> list[str]:
    """Ids of the protocol's required rules that the series do not meet."""
    unmet = [r.requirement.id for r in assign(protocol.requirements, series)
             if not r.met and r.requirement.level is Level.REQUIRED]
    unmet += [p.rule.id for p in check_plane_rules(protocol, series) if not p.met and p.rule.level is Level.REQUIRED]
    return unmet


def identify(facts: StudyFacts, series: Sequence[SeriesClass], library: Library) -> list[Identification]:
    """Active protocols that the study's descriptions or procedure codes name, best first.

    Ranking: Study Description (3, what was performed) + procedure code (2) + Requested Procedure
    Description (1, what was ordered); then fewer unmet required rules (between variants of one exam
    the content decides); then the protocol's priority; then Body Part Examined."""
    modalities = {facts.modality} | {s.modality for s in series if s.modality}
    found: list[tuple[tuple[Any, ...], Identification]] = []
    for protocol in library:
        if not protocol.active or protocol.modality not in modalities:
            continue
        evidence: list[str] = []
        score = 0
        codes = [c for c in facts.procedure_codes if c in protocol.applies_to.procedure_codes]
        if codes:
            score += PROCEDURE_CODE_SCORE
            evidence.append(f"procedure code {', '.join(codes)}")
        for weight, hit in _description_hits(protocol, facts):
            score += weight
            evidence.append(hit)
        if not score:
            continue
        body = bool(facts.body_part and facts.body_part in protocol.applies_to.body_parts)
        unmet = len(unmet_required(protocol, series))
        key = (score, -unmet, protocol.applies_to.priority, body)
        found.append((key, Identification(protocol, score, tuple(evidence), unmet)))
    found.sort(key=lambda item: item[0], reverse=True)
    return [ident for _, ident in found]


class ChosenBy(str, Enum):
    OPTION = "option"  # --protocol
    INDICATION = "indication"  # the clinical context, through the recommender's rules
    STUDY = "study"  # the study's own descriptions/codes
    NONE = "none"


@dataclass(frozen=True)
class Choice:
    """The protocol a study is audited against, and why."""

    protocol: Protocol | None
    chosen_by: ChosenBy
    reason: str
    identified: tuple[Identification, ...] = ()
    citations: tuple[str, ...] = ()
    # the clinical core's answers for the study's context (None without a context)
    scenario: Scenario | None = None
    verdict: ExamVerdict | None = None  # the exam the study is, judged against the decision for the scenario
    rules: Rules | None = None


def choose_protocol(facts: StudyFacts, series: Sequence[SeriesClass], library: Library, *,
                    protocol_id: str | None = None, indicated_id: str | None = None,
                    indication_reason: str = "", scenario: Scenario | None = None,
                    verdict: ExamVerdict | None = None, rules: Rules | None = None) -> Choice:
    """``--protocol`` first, then the protocol the indication calls for, then the study's own
    descriptions/codes. Raises KeyError for an unknown ``protocol_id``."""
    identified = tuple(identify(facts, series, library))
    if protocol_id:
        chosen = library.get(protocol_id)
        return Choice(chosen, ChosenBy.OPTION, f"chosen for this audit: {chosen.title}", identified,
                      scenario=scenario, rules=rules)
    notes = []
    if indicated_id:
        if indicated_id in library:
            return Choice(library.get(indicated_id), ChosenBy.INDICATION, indication_reason or
                          f"indicated by the clinical context ({indicated_id})", identified,
                          scenario=scenario, verdict=verdict, rules=rules)
        notes.append(f"the indication calls for a protocol ({indicated_id}) that is not in the protocol library")
    if identified:
        best = identified[0]
        reason = f"identified from the study: {'; '.join(best.evidence)}"
        if notes:
            reason = "; ".join(notes) + "; " + reason
        return Choice(best.protocol, ChosenBy.STUDY, reason, identified, scenario=scenario, verdict=verdict,
                      rules=rules)
    why = [f"no protocol in the library names this study ({_study_text(facts)})"]
    if indication_reason and not indicated_id:
        why.append(indication_reason)
    elif not indicated_id:
        why.append("no indication was given to select one")
    return Choice(None, ChosenBy.NONE, "; ".join(notes + why), identified, scenario=scenario, verdict=verdict,
                  rules=rules)


def _study_text(facts: StudyFacts) -> str:
    parts = [f"modality {facts.modality or '?'}"]
    if facts.study_description:
        parts.append(f"Study Description '{facts.study_description}'")
    if facts.requested_procedure_description and facts.requested_procedure_description != facts.study_description:
        parts.append(f"Requested Procedure '{facts.requested_procedure_description}'")
    if facts.procedure_codes:
        parts.append(f"codes {', '.join(facts.procedure_codes)}")
    if len(parts) == 1:
        parts.append("no description or procedure code")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# the audit of one study


@dataclass(frozen=True)
class Evaluation:
    """Findings of a study against its protocol, plus the timing record."""

    findings: tuple[Finding, ...]
    timing: dict[str, Any]
    requirements: tuple[RequirementResult, ...] = ()
    planes: tuple[PlaneResult, ...] = ()

    def outcomes(self) -> tuple[dict[str, Any], ...]:
        """Per requirement and plane rule: met or not, and by which series (the audit's ``requirements``)."""
        rows: list[dict[str, Any]] = []
        for r in self.requirements:
            chosen = [r.satisfied_by] if r.satisfied_by is not None else []
            verdict = next((v for v in r.verdicts if r.satisfied_by is not None and v.series is r.satisfied_by), None)
            rows.append({"id": r.requirement.id, "label": r.requirement.label, "level": r.requirement.level.value,
                         "kind": "series", "met": r.met, "series": [s.series_instance_uid for s in chosen],
                         "stacks": [s.stack for s in chosen], "names": [series_name(s) for s in chosen],
                         "alternative": verdict.alternative if verdict else None})
        rows.extend({"id": p.rule.id, "label": p.rule.label, "level": p.rule.level.value, "kind": "planes",
                     "met": p.met, "series": [s.series_instance_uid for s in p.series] if p.met else [],
                     "stacks": [s.stack for s in p.series] if p.met else [],
                     "names": [series_name(s) for s in p.series] if p.met else [],
                     "alternative": p.explanation if p.met else None}
                    for p in self.planes)
        return tuple(rows)


def evaluate(choice: Choice, facts: StudyFacts, series: Sequence[SeriesClass],
             context: ClinicalContext | None = None, *, gadolinium_egfr_below: float | None = None,
             devices: Sequence[DeviceMention] = ()) -> Evaluation:
    """Audit the study against the chosen protocol: requirements, planes, quality limits, wrong exam,
    timing; and, whatever the protocol, contrast and device safety. ``gadolinium_egfr_below`` is the
    rules' eGFR below which gadolinium is avoided; ``devices`` the devices the clinical text names.
    A deviation recorded in the context keeps the findings it covers as ``info`` with its reason."""
    protocol = choice.protocol
    findings: list[Finding] = []
    results: list[RequirementResult] = []
    planes: list[PlaneResult] = []
    timing: dict[str, Any] = {"study_date": facts.iso_date or None, "date_source": facts.date_source or None}
    if protocol is None:
        findings.append(Finding(
            code=FindingCode.NO_PROTOCOL, severity=Severity.INFO, summary=f"No protocol applies: {choice.reason}",
            action="Record the indication in the clinical context, or choose the protocol to audit against",
            evidence={"identified": []}))
        # the exam done may still be the wrong one, or done at the wrong time: the clinical core says so
        wrong = _wrong_protocol(choice, facts, series, (), ())
        findings.extend([wrong] if wrong else [])
        findings.extend(core_timing_findings(choice, facts) if choice.verdict is not None else [])
    else:
        relevant = [s for s in series if not s.modality or s.modality == protocol.modality]
        results = assign(protocol.requirements, relevant)
        planes = check_plane_rules(protocol, relevant)
        wrong = _wrong_protocol(choice, facts, series, results, planes)
        if wrong is not None:
            findings.append(wrong)
        else:
            findings.extend(requirement_finding(protocol, r) for r in results if not r.met)
            findings.extend(plane_finding(protocol, p) for p in planes if not p.met)
            findings.extend(check_limits(protocol, relevant))
        found_timing, timing = check_timing(protocol, facts, context, choice.scenario, choice.rules)
        findings.extend(found_timing)
        if protocol.trauma is None and choice.verdict is not None:  # the exam done has no rule; the scenario has
            findings.extend(core_timing_findings(choice, facts))
    scenario, rules = choice.scenario, choice.rules
    if scenario is not None and rules is not None:  # the clinical core's answers: recorded, derived, read in text
        findings.extend(check_contrast_safety(protocol, series, context,
                                              reasons=contrast_contraindications(scenario, rules)))
        mentioned = [DeviceMention(d.label, d.source, d.words) for d in (scenario.mri_device,) if d is not None]
        findings.extend(check_mri_safety(protocol, facts, series, context, [*devices, *mentioned],
                                         recorded=bool(scenario.mri_contraindicated)))
    else:
        findings.extend(check_contrast_safety(protocol, series, context, gadolinium_egfr_below=gadolinium_egfr_below))
        findings.extend(check_mri_safety(protocol, facts, series, context, devices))
    deviation = Deviation.parse(context.exception, _rule_ids(protocol)) if context is not None else None
    if deviation is not None:
        findings = deviation.apply(findings)
    return Evaluation(tuple(findings), timing, tuple(results), tuple(planes))


def core_timing_findings(choice: Choice, facts: StudyFacts) -> list[Finding]:
    """The trauma timing findings of the clinical core for a study with no protocol of its own."""
    if choice.scenario is None or choice.rules is None or facts.date is None:
        return []
    try:
        rec = decide(choice.scenario, choice.rules)
    except ValueError:
        return []
    return timing_findings(rec, choice.rules, f"Imaged {facts.iso_date}")


def _rule_ids(protocol: Protocol | None) -> list[str]:
    if protocol is None:
        return []
    ids = [r.id for r in protocol.requirements] + [p.id for p in protocol.planes] + [q.id for q in protocol.limits]
    return ids


def _wrong_protocol(choice: Choice, facts: StudyFacts, series: Sequence[SeriesClass],
                    results: Sequence[RequirementResult], planes: Sequence[PlaneResult]) -> Finding | None:
    protocol = choice.protocol
    if choice.verdict is not None and choice.rules is not None and choice.chosen_by is not ChosenBy.OPTION:
        # the study is an exam the clinical core knows: the same verdict and severity as check-order
        return verdict_finding(choice.verdict, choice.rules, "This study is", action_verb="Book",
                               requirement=None,
                               evidence={"expected_protocol": protocol.id if protocol else None,
                                         "performed": choice.verdict.exam.key,
                                         "verdict": choice.verdict.kind.value, "study_modality": facts.modality})
    if protocol is None or choice.chosen_by not in (ChosenBy.OPTION, ChosenBy.INDICATION):
        return None
    why = ("the indication calls for" if choice.chosen_by is ChosenBy.INDICATION else "the audit was asked to check")
    unmet = [r for r in results if not r.met and r.requirement.level is Level.REQUIRED]
    unmet_planes = [p for p in planes if not p.met and p.rule.level is Level.REQUIRED]
    missing_labels = [r.requirement.label for r in unmet] + [p.rule.label for p in unmet_planes]
    modalities = {facts.modality} | {s.modality for s in series if s.modality}
    reason = ""

    def same_exam(i: Identification) -> bool:
        return i.protocol.id == protocol.id or bool(protocol.family and i.protocol.family == protocol.family)

    best = choice.identified[0] if choice.identified else None  # what the study most says it is
    other = best if best is not None and not same_exam(best) else None
    if protocol.modality not in modalities:
        reason = f"this study is {'/'.join(sorted(m for m in modalities if m)) or 'of unknown modality'}"
        if other is not None:
            reason += f", recognisably {other.protocol.title} ({'; '.join(other.evidence)})"
    elif any(r.requirement.defines_exam for r in results if not r.met):
        defining = [r.requirement.label for r in results if not r.met and r.requirement.defines_exam]
        reason = f"this study is not that exam: {', '.join(defining).lower()} \u2014 not found"
    elif other is not None and (unmet or unmet_planes):
        reason = f"this study is recognisably {other.protocol.title} ({'; '.join(other.evidence)})"
    if not reason:
        return None
    cited_ids = list(dict.fromkeys(c for r in unmet for c in r.requirement.citations))
    note = ""
    if other is not None and other.protocol.wrong_exam is not None:
        note = other.protocol.wrong_exam.text
        cited_ids = list(dict.fromkeys([*other.protocol.wrong_exam.citations, *cited_ids]))
    guideline = tuple(q for q in (*quotes(other.protocol if other else None,
                                          other.protocol.wrong_exam.citations if other and other.protocol.wrong_exam
                                          else ()),
                                  *quotes(protocol, cited_ids[:2])))
    guideline = tuple({q.id: q for q in guideline}.values())
    return Finding(
        code=FindingCode.WRONG_PROTOCOL,
        severity=Severity.ERROR,
        summary=f"Wrong exam: {why} {protocol.title}, but {reason}",
        requirement_name=protocol.title,
        expected=protocol.title,
        found_note=("missing for that exam: " + "; ".join(missing_labels)
                    if missing_labels and protocol.modality in modalities else ""),
        note=note,
        action=f"Order {protocol.title} instead",
        citations=tuple(cited_ids),
        guideline=guideline,
        evidence={
            "expected_protocol": protocol.id,
            "identified_protocol": other.protocol.id if other else None,
            "identified_by": list(other.evidence) if other else [],
            "study_modality": facts.modality,
            "missing": [r.requirement.id for r in unmet] + [p.rule.id for p in unmet_planes],
        },
    )
