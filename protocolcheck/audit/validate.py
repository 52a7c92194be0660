"""Audit one study against a protocol: choose the protocol, match series to requirements, check
plane and timing rules, and explain every finding.

Inputs are the classified series (:class:`~protocolcheck.classify.SeriesClass`), the study's own
facts (:class:`StudyFacts`), a protocol from the library and the clinical context; the output is a
list of :class:`~protocolcheck.findings.Finding`. Nothing here reads files or prints.

Matching rules:

- A series (more exactly a stack: a Dixon water image set is one stack of its series) satisfies at
  most one *exclusive* requirement; the assignment maximises first the required, then the
  recommended requirements met (augmenting paths), preferring original images in acquisition order.
- Localizers and derived images never satisfy a requirement unless the requirement (or the
  alternative that matches) says ``allow_localizer`` / ``allow_derived``.
- A series that matches but is outside the requirement's ``limits`` does not satisfy it; when that
  is the only reason, the finding is ``parameter-out-of-range`` instead of ``missing-sequence``.
- Plane rules (``orthogonal-pair``) report ``missing-sequence`` with the rule id, as DESIGN.md says
  ("planes included").
- ``wrong-protocol`` is raised only when the protocol was *chosen for* the study (``--protocol`` or the
  indication) and the study is recognisably another exam: another modality, a ``defines_exam``
  requirement unmet (a CT without IV contrast), or identified by its own descriptions/codes as a
  protocol of another family while failing required rules (a standard pelvis MRI for plexopathy). The
  unmet requirements are then summarised inside that one finding instead of separate
  ``missing-sequence`` findings: the exam was not done, so listing its missing parts is noise.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from protocolcheck.classify import SeriesClass, describe
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.decision import Verdict as ExamVerdict
from protocolcheck.clinical.decision import decide, timing_applies
from protocolcheck.clinical.findings import Finding, FindingCode, Severity
from protocolcheck.clinical.library import Level, Library, Match, PlaneRule, Protocol, Range, Requirement
from protocolcheck.clinical.recommend import timing_findings, verdict_finding
from protocolcheck.clinical.rules import Rules, load_rules
from protocolcheck.clinical.scenario import Scenario, interpret
from protocolcheck.dicom.geometry import angle_between
from protocolcheck.dicom.study import Study

MAX_LISTED = 4  # series named in one message (all of them are in the evidence)

FIELD_LABELS = {
    "weighting": "weighting", "inversion": "inversion", "fat_suppressed": "fat-suppressed",
    "fat_suppression": "fat suppression", "post_contrast": "post-contrast", "plane": "plane",
    "acquisition": "acquisition", "dixon": "Dixon output", "stack": "stack", "localizer": "localizer",
    "derived": "derived", "modality": "modality", "obliquity_deg": "obliquity", "slice_thickness": "slice thickness",
    "field_strength": "field strength",
}
UNITS = {"obliquity_deg": "\u00b0", "slice_thickness": " mm", "field_strength": " T"}
NULL_IS_NONE = ("inversion", "fat_suppression", "stack", "dixon")


# --------------------------------------------------------------------------------------------------
# study facts


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
    for attr, label in (("study_date", "StudyDate"), ("acquisition_date", "AcquisitionDate"), ("series_date", "SeriesDate")):
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


# --------------------------------------------------------------------------------------------------
# describing series


def series_key(s: SeriesClass) -> tuple[str, str | None]:
    return (s.series_instance_uid, s.stack)


def series_name(s: SeriesClass) -> str:
    """``#5 'COR STIR' [W]`` — number, description and stack, as a reader finds it in the viewer."""
    number = f"#{s.series_number}" if s.series_number is not None else "#?"
    text = f"{number} '{s.series_description}'" if s.series_description else f"{number} (no description)"
    return f"{text} [{s.stack}]" if s.stack else text


def series_summary(s: SeriesClass) -> str:
    """Series name plus how it was classified, e.g. ``#5 'COR STIR' (oblique coronal T2 STIR 2D)``."""
    return f"{series_name(s)} ({describe(s)})"


def _value(s: SeriesClass, name: str) -> Any:
    if name == "stack":
        return s.stack.split()[0] if s.stack else None
    value = getattr(s, name, None)
    return value.value if isinstance(value, Enum) else value


def _fmt(value: Any, name: str = "") -> str:
    if value is None:
        return "none" if name in NULL_IS_NONE else "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}{UNITS.get(name, '')}"
    return f"{value}{UNITS.get(name, '')}"


def _expected(values: Sequence[Any], name: str) -> str:
    return " or ".join(_fmt(v, name) for v in values)


# --------------------------------------------------------------------------------------------------
# matching one series against a requirement


def match_failures(match: Match, s: SeriesClass) -> list[str]:
    """Why ``s`` does not meet ``match`` (empty when it does)."""
    reasons: list[str] = []
    for name, values in match.values:
        actual = _value(s, name)
        if name == "modality":
            ok = str(actual or "").upper() in {str(v).upper() for v in values}
        else:
            ok = actual in values
        if not ok:
            reasons.append(f"{FIELD_LABELS.get(name, name)} {_fmt(actual, name)} (needs {_expected(values, name)})")
    for name, rng in match.ranges:
        actual = _value(s, name)
        if actual is None:
            reasons.append(f"{FIELD_LABELS.get(name, name)} unknown (needs {rng.describe()}{UNITS.get(name, '')})")
        elif not rng.contains(float(actual)):
            reasons.append(f"{FIELD_LABELS.get(name, name)} {_fmt(float(actual), name)} "
                           f"(needs {rng.describe()}{UNITS.get(name, '')})")
    if match.negated is not None and not match_failures(match.negated, s):
        reasons.append(f"is {match.negated.describe()} (excluded)")
    return reasons


def limit_failures(limits: Iterable[tuple[str, Range]], s: SeriesClass) -> list[str]:
    """Parameter limits the series breaks; an unknown value is not held against it."""
    reasons = []
    for name, rng in limits:
        actual = _value(s, name)
        if actual is not None and not rng.contains(float(actual)):
            reasons.append(f"{FIELD_LABELS.get(name, name)} {_fmt(float(actual), name)} outside the limit "
                           f"{rng.describe()}{UNITS.get(name, '')}")
    return reasons


@dataclass(frozen=True)
class Verdict:
    """Whether one series satisfies one requirement, and why not."""

    series: SeriesClass
    reasons: tuple[str, ...]  # match failures (incl. derived/localizer gating)
    limit_reasons: tuple[str, ...]  # matches, but outside parameter limits
    alternative: str = ""
    specificity: int = 0  # properties the alternative asks for (more = more specific)
    gated: int = 0  # localizer/derived refusals among the reasons
    conditions: int = 1  # conditions the alternative checks

    @property
    def ok(self) -> bool:
        return not self.reasons and not self.limit_reasons

    @property
    def distance(self) -> float:
        """How far from qualifying: the share of the alternative's conditions that fail (0..1), plus
        0.25 per localizer/derived refusal and 0.1 per parameter limit broken."""
        failed = len(self.reasons) - self.gated
        return failed / max(self.conditions, 1) + 0.25 * self.gated + 0.1 * len(self.limit_reasons)


def _positive_conditions(match: Match) -> int:
    """Conditions that ask for a property (not for its absence): ``fat_suppressed: true`` counts,
    ``inversion: null`` does not. A series fits best the requirement that uses most of its properties."""
    count = sum(1 for _name, values in match.values if None not in values and False not in values)
    return count + len(match.ranges)


def judge(requirement: Requirement, s: SeriesClass) -> Verdict:
    """Best alternative of ``requirement`` for series ``s``."""
    base = match_failures(requirement.match, s)
    best: Verdict | None = None
    for alt in requirement.alternatives or (Match(),):
        reasons = base + match_failures(alt, s)
        failed = len(reasons)
        conditions = sum(len(m.values) + len(m.ranges) + (m.negated is not None) for m in (requirement.match, alt))
        allow_derived = alt.allow_derived if alt.allow_derived is not None else requirement.allow_derived
        allow_localizer = alt.allow_localizer if alt.allow_localizer is not None else requirement.allow_localizer
        if s.localizer and not allow_localizer:
            reasons.append("is a localizer (localizers do not count)")
        if s.derived and not allow_derived:
            reasons.append("is derived (derived images do not count as an acquisition)")
        limits = limit_failures(requirement.limits, s) if not reasons else []
        specificity = sum(_positive_conditions(m) for m in (requirement.match, alt))
        verdict = Verdict(s, tuple(reasons), tuple(limits), alt.label, specificity, len(reasons) - failed, conditions)
        if best is None or (verdict.distance, -verdict.specificity) < (best.distance, -best.specificity):
            best = verdict
    assert best is not None
    return best


# --------------------------------------------------------------------------------------------------
# assignment


@dataclass(frozen=True)
class RequirementResult:
    """The outcome of one requirement: the series that satisfied it, or why none did."""

    requirement: Requirement
    satisfied_by: SeriesClass | None
    verdicts: tuple[Verdict, ...]
    used_elsewhere: tuple[tuple[SeriesClass, str], ...] = ()  # qualified, but used for (requirement id)

    @property
    def met(self) -> bool:
        return self.satisfied_by is not None


def _preference(s: SeriesClass, index: int) -> tuple[int, int]:
    return (1 if s.derived else 0, index)


def assign(requirements: Sequence[Requirement], series: Sequence[SeriesClass]) -> list[RequirementResult]:
    """Match series to requirements; each series satisfies at most one exclusive requirement."""
    verdicts = {r.id: [judge(r, s) for s in series] for r in requirements}
    order = {series_key(s): i for i, s in enumerate(series)}
    candidates = {
        r.id: sorted((v.series for v in verdicts[r.id] if v.ok), key=lambda s: _preference(s, order[series_key(s)]))
        for r in requirements
    }
    owner: dict[tuple[str, str | None], str] = {}  # series key -> requirement id

    def augment(rid: str, visited: set[tuple[str, str | None]]) -> bool:
        for s in candidates[rid]:
            key = series_key(s)
            if key in visited:
                continue
            visited.add(key)
            if key not in owner or augment(owner[key], visited):
                owner[key] = rid
                return True
        return False

    # Required before recommended; within a level the most constrained requirement first, so that
    # when one series could serve two requirements the one that has no other choice gets it and the
    # finding names the more general requirement (e.g. "T2" rather than "fat-suppressed T2").
    specificity = {r.id: max((v.specificity for v in verdicts[r.id] if v.ok), default=0) for r in requirements}
    exclusive = [r for r in requirements if r.exclusive]
    for level in (Level.REQUIRED, Level.RECOMMENDED):
        for r in sorted((r for r in exclusive if r.level is level),
                        key=lambda r: (len(candidates[r.id]), -specificity[r.id])):
            augment(r.id, set())
    by_requirement = {rid: key for key, rid in owner.items()}
    by_key = {series_key(s): s for s in series}
    results = []
    for r in requirements:
        if r.exclusive:
            key = by_requirement.get(r.id)
            chosen = by_key[key] if key is not None else None
        else:
            chosen = candidates[r.id][0] if candidates[r.id] else None
        used = tuple((s, owner[series_key(s)]) for s in candidates[r.id]
                     if r.exclusive and series_key(s) in owner and owner[series_key(s)] != r.id)
        results.append(RequirementResult(r, chosen, tuple(verdicts[r.id]), used))
    return results


# --------------------------------------------------------------------------------------------------
# plane rules


@dataclass(frozen=True)
class PlaneResult:
    rule: PlaneRule
    met: bool
    explanation: str
    series: tuple[SeriesClass, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)


def check_plane_rule(rule: PlaneRule, series: Sequence[SeriesClass]) -> PlaneResult:
    """``orthogonal-pair``: two counted series perpendicular within tolerance, each oblique enough;
    or (``isotropic_3d_counts``) one 3D acquisition with slices no thicker than ``isotropic_max_mm``."""
    has_3d = any(s.acquisition is not None and s.acquisition.value == "3D" and not s.derived and not s.localizer
                 for s in series)
    counted: list[SeriesClass] = []
    for s in series:
        if s.localizer or match_failures(rule.series, s):
            continue
        if s.derived and not (rule.reformats_count and has_3d):
            continue
        counted.append(s)
    if rule.isotropic_3d_counts:
        for s in counted:
            if (s.acquisition is not None and s.acquisition.value == "3D" and not s.derived
                    and s.slice_thickness is not None and s.slice_thickness <= rule.isotropic_max_mm):
                return PlaneResult(rule, True, f"3D isotropic acquisition {series_summary(s)} with "
                                   f"{s.slice_thickness:g} mm slices: orthogonal oblique views are reformatted from it",
                                   (s,), {"isotropic_3d": s.series_instance_uid})
    oriented = [s for s in counted if s.normal is not None]
    best: tuple[float, SeriesClass, SeriesClass] | None = None
    for i, a in enumerate(oriented):
        for b in oriented[i + 1:]:
            angle = angle_between(a.normal, b.normal)
            if angle is None or angle < 90.0 - rule.tolerance_deg:
                continue
            oblique = min(a.obliquity_deg or 0.0, b.obliquity_deg or 0.0)
            if oblique >= rule.min_obliquity_deg:
                return PlaneResult(rule, True, f"{series_summary(a)} and {series_summary(b)} are {angle:.0f}\u00b0 "
                                   "apart and both oblique", (a, b),
                                   {"pair": [a.series_instance_uid, b.series_instance_uid], "angle_deg": round(angle, 1)})
            if best is None or oblique > best[0]:
                best = (oblique, a, b)
    planes = ", ".join(
        f"{series_name(s)} {s.plane or 'unknown plane'} {s.obliquity_deg or 0:.0f}\u00b0 off axis" for s in oriented[:8]
    ) or "none"
    if best is not None:
        _, a, b = best
        why = (f"orthogonal pairs exist (e.g. {series_name(a)} and {series_name(b)}) but they are in straight planes, "
               f"not oblique (each needs \u2265 {rule.min_obliquity_deg:g}\u00b0 off the scanner axes)")
    elif len(oriented) < 2:
        why = f"fewer than two acquired series with a known orientation (found: {planes})"
    else:
        why = f"no two acquired series are perpendicular within {rule.tolerance_deg:g}\u00b0"
    unknown = [series_name(s) for s in counted if s.normal is None]
    if unknown:
        why += f"; orientation unknown for {', '.join(unknown[:MAX_LISTED])}"
    return PlaneResult(rule, False, f"{why}. Planes acquired: {planes}", tuple(oriented),
                       {"planes": [{"series": s.series_instance_uid, "series_number": s.series_number,
                                    "plane": s.plane, "obliquity_deg": None if s.obliquity_deg is None
                                    else round(s.obliquity_deg, 1)} for s in oriented]})


def check_plane_rules(protocol: Protocol, series: Sequence[SeriesClass]) -> list[PlaneResult]:
    return [check_plane_rule(rule, series) for rule in protocol.planes if rule.rule == "orthogonal-pair"]


# --------------------------------------------------------------------------------------------------
# messages


def cite(protocol: Protocol, ids: Sequence[str]) -> str:
    """``Guideline: “statement” (source)`` for the cited statements."""
    cited = protocol.cite(ids)
    if not cited:
        return ""
    return "Guideline: " + " ".join(c.short() for c in cited)


def looked_for(r: Requirement) -> str:
    """What would satisfy the requirement, in the protocol's own words where it gives them."""
    labels = [a.label for a in r.alternatives if a.label]
    if labels and len(labels) == len(r.alternatives):
        text = " or ".join(dict.fromkeys(labels))
    else:
        text = r.describe()
    if r.limits:
        text += " with " + ", ".join(f"{FIELD_LABELS.get(n, n)} {rng.describe()}{UNITS.get(n, '')}" for n, rng in r.limits)
    return text


def _considered(result: RequirementResult) -> list[Verdict]:
    """Near misses: series that partly qualify, closest first (a series failing every condition of
    the requirement is not worth naming)."""
    verdicts = sorted((v for v in result.verdicts if not v.ok and v.distance < 1.0),
                      key=lambda v: (v.distance, v.series.localizer))
    if not verdicts:
        return []
    if not result.requirement.allow_localizer:  # a localizer is named only when it is the closest
        others = [v.distance for v in verdicts if not v.series.localizer]
        verdicts = [v for v in verdicts if not v.series.localizer or not others or v.distance < min(others)]
    best = verdicts[0].distance
    return [v for v in verdicts if v.distance <= best + 0.2]


def requirement_finding(protocol: Protocol, result: RequirementResult) -> Finding:
    """The finding for an unmet requirement: what was expected, what was found, why it did not qualify."""
    r = result.requirement
    near = _considered(result)
    only_limits = any(v.limit_reasons and not v.reasons for v in result.verdicts)
    code = FindingCode.PARAMETER if only_limits else FindingCode.MISSING_SEQUENCE
    lines = []
    for s, other in result.used_elsewhere:
        lines.append(f"{series_summary(s)} qualifies but is already used for '{other}'")
    for v in near[:MAX_LISTED]:
        lines.append(f"{series_summary(v.series)}: {'; '.join(v.reasons or v.limit_reasons)}")
    if len(near) > MAX_LISTED:
        lines.append(f"{len(near) - MAX_LISTED} more in the evidence")
    found = "; ".join(lines) if lines else f"none of the {len(result.verdicts)} series comes close"
    if not result.verdicts:
        found = "no series in the study"
    head = (f"{r.label} ({r.level.value}): series match but are outside the parameter limits"
            if only_limits else f"Missing {r.label} ({r.level.value})")
    message = f"{head}. Expected: {looked_for(r)}. Found: {found}."
    if r.note:
        message += f" Note: {r.note}"
    citation = cite(protocol, r.citations)
    if citation:
        message += " " + citation
    considered = [*(s for s, _ in result.used_elsewhere), *(v.series for v in near)]
    return Finding(
        code=code,
        severity=r.level.severity,
        message=message,
        requirement=r.id,
        series=tuple(dict.fromkeys(s.series_instance_uid for s in considered)),
        citations=r.citations,
        evidence={
            "expected": r.describe(),
            "label": r.label,
            "considered": [
                {"series": v.series.series_instance_uid, "stack": v.series.stack,
                 "series_number": v.series.series_number, "description": v.series.series_description,
                 "reasons": list(v.reasons or v.limit_reasons)}
                for v in near
            ],
            "used_elsewhere": [{"series": s.series_instance_uid, "stack": s.stack, "series_number": s.series_number,
                                "used_for": other} for s, other in result.used_elsewhere],
        },
    )


def plane_finding(protocol: Protocol, result: PlaneResult) -> Finding:
    rule = result.rule
    message = f"Missing {rule.label} ({rule.level.value}): {result.explanation}."
    extra = []
    if rule.isotropic_3d_counts:
        extra.append(f"a 3D acquisition with slices \u2264 {rule.isotropic_max_mm:g} mm would also do")
    if extra:
        message += " (" + "; ".join(extra) + ")."
    if rule.note:
        message += f" Note: {rule.note}"
    citation = cite(protocol, rule.citations)
    if citation:
        message += " " + citation
    return Finding(
        code=FindingCode.MISSING_SEQUENCE,
        severity=rule.level.severity,
        message=message,
        requirement=rule.id,
        series=tuple(dict.fromkeys(s.series_instance_uid for s in result.series)),
        citations=rule.citations,
        evidence={"label": rule.label, "rule": rule.rule, "tolerance_deg": rule.tolerance_deg,
                  "min_obliquity_deg": rule.min_obliquity_deg, **result.evidence},
    )


# --------------------------------------------------------------------------------------------------
# timing


def check_timing(protocol: Protocol, facts: StudyFacts, context: ClinicalContext | None,
                 scenario: Scenario | None = None, rules: Rules | None = None) -> tuple[list[Finding], dict[str, Any]]:
    """Trauma timing: too early (< min_days), delayed (> max_days), or context missing.

    Whether the indication is traumatic, and the trauma date (given, or written next to a trauma word in
    the text), are the clinical core's answers (:func:`protocolcheck.clinical.scenario.interpret`).
    Returns the findings and the ``timing`` record of the audit result (dates, which study date tag
    was used, days after trauma, limits)."""
    rules = rules or load_rules()
    if scenario is None and context is not None:
        scenario = interpret(context, rules, facts.date, check_dates=False)[0]
    timing: dict[str, Any] = {"study_date": facts.iso_date or None, "date_source": facts.date_source or None}
    findings: list[Finding] = []
    trauma = protocol.trauma
    if context is not None and context.source:
        timing["context"] = context.source
    if trauma is None or (scenario is not None and scenario.indication and not timing_applies(scenario, rules)):
        return findings, timing  # no trauma rule here, or the clinical core says the window does not apply
    timing.update({"min_days": trauma.min_days, "max_days": trauma.max_days})
    trauma_date = scenario.trauma_date if scenario else None
    if trauma_date is None:
        indication = context.indication if context else ""
        if scenario is not None and scenario.traumatic:
            findings.append(Finding(
                code=FindingCode.CONTEXT_MISSING, severity=Severity.WARNING,
                message=(f"The indication {indication!r} describes an injury but no trauma date was given, so the "
                         f"timing rule (image about {trauma.min_days} days after the injury, not later than "
                         f"{trauma.max_days}) cannot be checked. Give --trauma-date or a trauma_date column in the "
                         f"context CSV. " + cite(protocol, trauma.citations)).strip(),
                citations=trauma.citations, evidence={"needs": "trauma_date", "indication": indication},
            ))
        return findings, timing
    timing["trauma_date"] = trauma_date.isoformat()
    if facts.date is None:
        why = facts.date_problem or "the study has no StudyDate, AcquisitionDate or SeriesDate"
        findings.append(Finding(
            code=FindingCode.CONTEXT_MISSING, severity=Severity.WARNING,
            message=f"Trauma date {trauma_date.isoformat()} is known but {why}, so the timing after the injury cannot be checked.",
            citations=trauma.citations, evidence={"needs": "study_date"},
        ))
        return findings, timing
    days = (facts.date - trauma_date).days
    timing["days_after_trauma"] = days
    when = f"study date {facts.iso_date} (from {facts.date_source})"
    if days < 0:
        findings.append(Finding(
            code=FindingCode.VALUE_PROBLEM, severity=Severity.WARNING,
            message=(f"The trauma date {trauma_date.isoformat()} is after the {when}: one of the two dates is wrong; "
                     "the timing rule was not checked."),
            evidence={"days_after_trauma": days},
        ))
    elif days < trauma.min_days:
        findings.append(Finding(
            code=FindingCode.TRAUMA_TOO_EARLY, severity=Severity.ERROR,
            message=(f"Imaged {days} days after the injury ({trauma_date.isoformat()}; {when}); expected at least "
                     f"{trauma.min_days} days (about 1 month) so that blood and soft-tissue edema resolve. "
                     + cite(protocol, trauma.citations)).strip(),
            citations=trauma.citations,
            evidence={"days_after_trauma": days, "min_days": trauma.min_days},
        ))
    elif days > trauma.max_days:
        findings.append(Finding(
            code=FindingCode.TRAUMA_DELAYED, severity=Severity.WARNING,
            message=(f"Imaged {days} days after the injury ({trauma_date.isoformat()}; {when}); expected within "
                     f"{trauma.max_days} days: appropriate imaging should not be delayed much beyond about 1 month. "
                     + cite(protocol, trauma.delayed_citations)).strip(),
            citations=trauma.delayed_citations,
            evidence={"days_after_trauma": days, "max_days": trauma.max_days},
        ))
    return findings, timing


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
        return Choice(library.get(protocol_id), ChosenBy.OPTION, f"--protocol {protocol_id}", identified,
                      scenario=scenario, rules=rules)
    notes = []
    if indicated_id:
        if indicated_id in library:
            return Choice(library.get(indicated_id), ChosenBy.INDICATION, indication_reason or
                          f"indicated by the clinical context ({indicated_id})", identified,
                          scenario=scenario, verdict=verdict, rules=rules)
        notes.append(f"the indication calls for {indicated_id!r}, which is not in the protocol library")
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
        why.append("no indication selected one (give --indication, a context CSV or --protocol)")
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
        for p in self.planes:
            rows.append({"id": p.rule.id, "label": p.rule.label, "level": p.rule.level.value, "kind": "planes",
                         "met": p.met, "series": [s.series_instance_uid for s in p.series] if p.met else [],
                         "stacks": [s.stack for s in p.series] if p.met else [],
                         "names": [series_name(s) for s in p.series] if p.met else [],
                         "alternative": p.explanation if p.met else None})
        return tuple(rows)


def evaluate(choice: Choice, facts: StudyFacts, series: Sequence[SeriesClass],
             context: ClinicalContext | None = None) -> Evaluation:
    """Audit the study against the chosen protocol: requirements, planes, wrong exam, timing."""
    protocol = choice.protocol
    if protocol is None:
        # the exam done may still be the wrong one, or done at the wrong time: the clinical core says so
        wrong = _wrong_protocol(choice, facts, series, (), ())
        timing = core_timing_findings(choice, facts) if choice.verdict is not None else []
        return Evaluation((Finding(code=FindingCode.NO_PROTOCOL, severity=Severity.INFO,
                                   message=f"No protocol applies: {choice.reason}.",
                                   evidence={"identified": []}), *([wrong] if wrong else []), *timing),
                          {"study_date": facts.iso_date or None, "date_source": facts.date_source or None})
    relevant = [s for s in series if not s.modality or s.modality == protocol.modality]
    results = assign(protocol.requirements, relevant)
    planes = check_plane_rules(protocol, relevant)
    missing = [requirement_finding(protocol, r) for r in results if not r.met]
    missing += [plane_finding(protocol, p) for p in planes if not p.met]
    findings: list[Finding] = []
    wrong = _wrong_protocol(choice, facts, series, results, planes)
    if wrong is not None:
        findings.append(wrong)
    else:
        findings.extend(missing)
    timing_findings, timing = check_timing(protocol, facts, context, choice.scenario, choice.rules)
    findings.extend(timing_findings)
    if protocol.trauma is None and choice.verdict is not None:  # the exam done has no rule; the scenario has
        findings.extend(core_timing_findings(choice, facts))
    findings.extend(check_contrast_safety(protocol, series, context))
    return Evaluation(tuple(findings), timing, tuple(results), tuple(planes))


# (modality, the context flag that forbids its contrast agent, what the agent is called)
_CONTRAST_RULES = (("MR", "gadolinium_contraindicated", "gadolinium"),
                   ("CT", "iodinated_contrast_contraindicated", "iodinated contrast"))
# statements that make the contrast-free exam the appropriate one, where the protocol cites them
_CONTRAST_FREE_CITATIONS = ("acr-plexus-wo-appropriate", "acr-plexopathy-2021")


def check_contrast_safety(protocol: Protocol, series: Sequence[SeriesClass],
                          context: ClinicalContext | None) -> list[Finding]:
    """Post-contrast series in a study whose context records that contrast agent as contraindicated.

    Whatever protocol the study is audited against: a contrast-free protocol simply ignores the extra
    series, so without this check a contraindicated injection would pass unnoticed."""
    if context is None:
        return []
    findings = []
    for modality, flag, agent in _CONTRAST_RULES:
        if not getattr(context, flag):
            continue
        post = [s for s in series if s.post_contrast is True and (s.modality or protocol.modality) == modality]
        if not post:
            continue
        shown = "; ".join(series_summary(s) for s in post[:4]) + (f"; and {len(post) - 4} more" if len(post) > 4 else "")
        message = (f"The clinical context ({context.source or 'given'}) records {agent} as contraindicated, but "
                   f"{len(post)} series {'was' if len(post) == 1 else 'were'} acquired after {agent}: {shown}. "
                   f"Check the patient and the contrast record; a contrast-free exam is the appropriate one.")
        citation = cite(protocol, [c for c in _CONTRAST_FREE_CITATIONS if c in protocol.citations][:1])
        if citation:
            message += f" {citation}"
        findings.append(Finding(
            code=FindingCode.CONTRAST_CONTRAINDICATED, severity=Severity.ERROR, message=message,
            series=tuple(s.series_instance_uid for s in post),
            evidence={"context": context.source or "given", "contraindicated": flag,
                      "post_contrast_series": {s.series_instance_uid: s.evidence.get("post_contrast", [])
                                               for s in post}}))
    return findings


def core_timing_findings(choice: Choice, facts: StudyFacts) -> list[Finding]:
    """The trauma timing findings of the clinical core for a study with no protocol of its own."""
    if choice.scenario is None or choice.rules is None or facts.date is None:
        return []
    try:
        rec = decide(choice.scenario, choice.rules)
    except ValueError:
        return []
    return timing_findings(rec, choice.rules, f"Imaged {facts.iso_date}")


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
    why = ("the indication calls for" if choice.chosen_by is ChosenBy.INDICATION else "--protocol asks for")
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
    message = f"Wrong exam: {why} {protocol.title} ({protocol.id}), but {reason}."
    if missing_labels and protocol.modality in modalities:
        message += f" Missing for {protocol.id}: {'; '.join(missing_labels)}."
    if other is not None and other.protocol.wrong_exam is not None:
        note = other.protocol.wrong_exam
        message += f" {note.text} " + cite(other.protocol, note.citations)
    citation = cite(protocol, cited_ids[:1])
    if citation:
        message += " " + citation
    return Finding(
        code=FindingCode.WRONG_PROTOCOL,
        severity=Severity.ERROR,
        message=message,
        requirement=None,
        series=(),
        citations=tuple(cited_ids),
        evidence={
            "expected_protocol": protocol.id,
            "identified_protocol": other.protocol.id if other else None,
            "identified_by": list(other.evidence) if other else [],
            "study_modality": facts.modality,
            "missing": [r.requirement.id for r in unmet] + [p.rule.id for p in unmet_planes],
        },
    )
