"""One decision: which procedure(s) and protocol for a scenario, and how an exam compares with it.

:func:`decide` ranks the procedures of the matching clinical variant of ``rules.yaml`` (patient factors
exclude some), with the trauma timing and the statements that go with them.  :func:`judge` rates one
exam (ordered, scheduled, or already acquired) against that decision and returns a :class:`Verdict`:
``check-order``, ``worklist`` and the audit's ``wrong-protocol`` finding all use it, so the same exam
for the same scenario gets the same verdict and severity on every path.  :func:`select_protocol` is the
audit's protocol choice: the protocol of the top allowable procedure, or of the exam that was done when
the decision rates it as highly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from protocolcheck import config
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.library import Library
from protocolcheck.clinical.rules import (
    Appropriateness,
    Format,
    Procedure,
    Rating,
    Rules,
    RulesError,
    Source,
    StatementRule,
    Variant,
    evaluate,
    load_rules,
)
from protocolcheck.clinical.scenario import Scenario, ScenarioError, interpret, scenario_facts


class TimingStatus(str, Enum):
    """Where the exam date falls in the trauma window of rules.yaml (``timing``)."""

    NO_TRAUMA = "no-trauma"
    TRAUMA_DATE_MISSING = "trauma-date-missing"
    NOT_APPLICABLE = "not-applicable"
    TOO_EARLY = "too-early"
    IN_WINDOW = "in-window"
    LATE = "late"


@dataclass(frozen=True)
class Statement:
    text: str
    citations: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": list(self.citations)}


@dataclass(frozen=True)
class RankedProcedure:
    rank: int
    key: str
    procedure: str
    protocol: str | None
    appropriateness: Appropriateness
    rationale: str
    citations: tuple[str, ...]
    modality: str = ""
    contrast: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "procedure": self.procedure, "protocol": self.protocol,
                "appropriateness": self.appropriateness.value, "rationale": self.rationale,
                "citations": list(self.citations), "key": self.key, "modality": self.modality,
                "contrast": self.contrast}


@dataclass(frozen=True)
class ExcludedProcedure:
    key: str
    procedure: str
    protocol: str | None
    appropriateness: Appropriateness
    reason: str
    citations: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"procedure": self.procedure, "protocol": self.protocol, "appropriateness": self.appropriateness.value,
                "reason": self.reason, "citations": list(self.citations), "key": self.key}


@dataclass(frozen=True)
class Timing:
    status: TimingStatus
    earliest_date: dt.date | None
    latest_date: dt.date | None
    text: str
    citations: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "text": self.text, "citations": list(self.citations),
                "earliest_date": self.earliest_date.isoformat() if self.earliest_date else None,
                "latest_date": self.latest_date.isoformat() if self.latest_date else None}


@dataclass(frozen=True)
class Recommendation:
    """The full answer of ``protocolcheck recommend`` (the DESIGN.md section 3 JSON object)."""

    scenario: Scenario
    variant: Variant
    recommendations: tuple[RankedProcedure, ...]
    excluded: tuple[ExcludedProcedure, ...]
    timing: Timing
    companion: tuple[Statement, ...]
    follow_up: tuple[Statement, ...]
    cautions: tuple[Statement, ...]
    sources: Mapping[str, Source]
    rules_path: str = ""

    @property
    def top(self) -> RankedProcedure | None:
        """The first allowable procedure (patient factors already removed the excluded ones)."""
        return self.recommendations[0] if self.recommendations else None

    @property
    def earliest_date(self) -> dt.date | None:
        return self.timing.earliest_date

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.to_dict(),
            "variant": {"id": self.variant.id, "title": self.variant.title, "citations": list(self.variant.citations)},
            "recommendations": [r.to_dict() for r in self.recommendations],
            "excluded": [e.to_dict() for e in self.excluded],
            "earliest_date": self.timing.earliest_date.isoformat() if self.timing.earliest_date else None,
            "timing": self.timing.to_dict(),
            "companion": [s.to_dict() for s in self.companion],
            "follow_up": [s.to_dict() for s in self.follow_up],
            "cautions": [s.to_dict() for s in self.cautions],
            "sources": {k: s.to_dict() for k, s in self.sources.items()},
            "rules": self.rules_path,
        }


def recommend(context: ClinicalContext, on: dt.date | None = None, rules: Rules | None = None,
              today: dt.date | None = None) -> Recommendation:
    """Which exam and protocol, when, and what goes with it; :class:`ScenarioError` for unusable inputs."""
    rules = rules or load_rules()
    scenario, problems, out_of_scope = interpret(context, rules, on, today)
    if problems:
        raise ScenarioError(problems, out_of_scope=out_of_scope)
    return decide(scenario, rules)


def decide(scenario: Scenario, rules: Rules) -> Recommendation:
    """THE decision: the ranked procedures (and protocols) for ``scenario``, timing, companion tests, cautions."""
    facts = scenario_facts(scenario, None)
    variant = next((v for v in rules.variants if evaluate(v.when, facts)), None)
    if variant is None:  # every in-scope scenario matches a variant in the shipped rules; a site may break that
        raise ScenarioError([f"indication: no clinical variant of the rules matches "
                             f"{', '.join(scenario.categories) or 'it'}"], out_of_scope=True)
    facts["variant"] = variant.id
    device = scenario.mri_device
    values = Format(egfr=f"{scenario.egfr:g}" if scenario.egfr is not None else "?",
                    gbca_egfr=f"{rules.gadolinium_avoid_below_egfr:g}",
                    icm_egfr=f"{rules.iodinated_caution_below_egfr:g}",
                    min_days=rules.min_days_after_trauma, max_days=rules.max_days_after_trauma,
                    mri_reason=scenario.mri_reason or "recorded",
                    gadolinium_reason=scenario.gadolinium_reason or "recorded",
                    iodinated_reason=scenario.iodinated_reason or "recorded",
                    mri_device=device.label if device else "device",
                    mri_device_source=f"\u201c{device.words}\u201d in {device.source}" if device else "")

    ranked: list[tuple[int, int, Rating]] = []
    excluded: list[ExcludedProcedure] = []
    for index, rating in enumerate(variant.ratings):
        proc = rules.procedures[rating.procedure]
        exclusion = next((e for e in rules.exclusions
                          if evaluate(e.when, facts)
                          and all(getattr(proc, k) == v for k, v in e.applies_to.items())), None)
        if exclusion is not None:
            threshold = exclusion.when.get("egfr_below")
            reason = exclusion.reason.format_map(Format(values, threshold=f"{threshold:g}" if threshold else "?"))
            excluded.append(ExcludedProcedure(proc.key, proc.name, proc.protocol, rating.appropriateness, reason,
                                              exclusion.citations))
        else:
            ranked.append((rating.appropriateness.order, index, rating))
    ranked.sort(key=lambda t: (t[0], t[1]))
    recommendations = []
    for rank, (_order, _index, rating) in enumerate(ranked, start=1):
        proc = rules.procedures[rating.procedure]
        rationale = rating.rationale + (f" Note: {rating.note}" if rating.note else "")
        recommendations.append(RankedProcedure(rank, proc.key, proc.name, proc.protocol, rating.appropriateness,
                                               rationale, rating.citations, proc.modality, proc.contrast))
    none_appropriate = not recommendations or recommendations[0].appropriateness is Appropriateness.NOT
    facts["none_appropriate"] = none_appropriate

    def pick(section: tuple[StatementRule, ...]) -> tuple[Statement, ...]:
        return tuple(Statement(s.text.format_map(values), s.citations) for s in section
                     if (s.variants is None or variant.id in s.variants)
                     and (s.when is None or evaluate(s.when, facts)))

    timing = trauma_timing(scenario, variant, rules)
    cautions = pick(rules.cautions)
    cited: dict[str, None] = {}
    for ids in ([variant.citations] + [r.citations for r in recommendations] + [e.citations for e in excluded]
                + [timing.citations] + [s.citations for s in pick(rules.companion) + pick(rules.follow_up) + cautions]):
        cited.update(dict.fromkeys(ids))
    return Recommendation(
        scenario=scenario, variant=variant, recommendations=tuple(recommendations), excluded=tuple(excluded),
        timing=timing, companion=pick(rules.companion), follow_up=pick(rules.follow_up), cautions=cautions,
        sources={cid: rules.sources[cid] for cid in cited}, rules_path=rules.path,
    )


def timing_applies(scenario: Scenario, rules: Rules) -> bool:
    """Whether the trauma window applies to this scenario (False only when its clinical variant is not one of
    ``timing.variants``: the spine for radicular symptoms is imaged when indicated, without waiting)."""
    variant = next((v for v in rules.variants if evaluate(v.when, scenario_facts(scenario, None))), None)
    return variant is None or variant.id in rules.timing_variants


def add_days(day: dt.date, days: int) -> dt.date:
    """``day + days``, saturating at the ends of the calendar (a trauma date of 9999-12-31 must not crash)."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def trauma_window(trauma_date: dt.date, rules: Rules) -> tuple[dt.date, dt.date]:
    """(earliest, latest) imaging dates after an injury on ``trauma_date`` (rules.yaml ``timing``)."""
    return add_days(trauma_date, rules.min_days_after_trauma), add_days(trauma_date, rules.max_days_after_trauma)


def trauma_timing(scenario: Scenario, variant: Variant, rules: Rules) -> Timing:
    """Where ``scenario.on`` falls in the trauma window, in words, with the statements behind it."""
    lo, hi = rules.min_days_after_trauma, rules.max_days_after_trauma
    trauma = scenario.traumatic
    if variant.id not in rules.timing_variants:
        text = ("No waiting period: the delay after trauma applies to plexus imaging; image the spine when indicated."
                if trauma else "No trauma: no waiting period; image when clinically indicated.")
        return Timing(TimingStatus.NOT_APPLICABLE if trauma else TimingStatus.NO_TRAUMA, None, None, text,
                      rules.timing_citations if trauma else ())
    if not trauma:
        return Timing(TimingStatus.NO_TRAUMA, None, None,
                      "No trauma: no waiting period; image when clinically indicated.", ())
    if scenario.trauma_date is None:
        return Timing(TimingStatus.TRAUMA_DATE_MISSING, None, None,
                      f"Trauma is named but no trauma date was given: plan the imaging about 1 month ({lo} days) after "
                      "the injury, so blood and soft-tissue edema resolve, and not much later; give the trauma date "
                      "to get the dates.", rules.timing_citations)
    earliest, latest = trauma_window(scenario.trauma_date, rules)
    days = scenario.days_since_trauma
    base = (f"Trauma on {scenario.trauma_date.isoformat()}, {days} days before {scenario.on.isoformat()}. "
            f"Image about 1 month after the injury so blood and soft-tissue edema resolve: on or after "
            f"{earliest.isoformat()} (trauma + {lo} days), and not much beyond {latest.isoformat()} "
            f"(trauma + {hi} days).")
    if scenario.on < earliest:
        return Timing(TimingStatus.TOO_EARLY, earliest, latest,
                      f"{base} {scenario.on.isoformat()} is too early: wait {(earliest - scenario.on).days} more days.",
                      rules.timing_citations)
    if scenario.on > latest:
        return Timing(TimingStatus.LATE, earliest, latest,
                      base + " That window has passed: image now, without further delay.", rules.max_timing_citations)
    return Timing(TimingStatus.IN_WINDOW, earliest, latest,
                  base + f" {scenario.on.isoformat()} is within that window: image now.", rules.timing_citations)


# ----------------------------------------------------------------------------------------------------
# Judging one exam against the decision


class VerdictKind(str, Enum):
    """How an exam compares with the decision for the scenario."""

    FIRST_CHOICE = "first-choice"  # the top procedure, or rated as highly as it
    LESS_APPROPRIATE = "less-appropriate"  # rated, but below the first choice
    NOT_APPROPRIATE = "not-appropriate"  # rated usually not appropriate
    BEST_REMAINING = "best-remaining"  # the top procedure, but nothing better than usually not appropriate remains
    EXCLUDED = "excluded"  # ruled out by a patient factor (contraindication)
    NOT_RATED = "not-rated"  # the rules do not rate this exam for the scenario


@dataclass(frozen=True)
class Exam:
    """An exam as identified: a procedure of the rules (``key``) or, when the rules know none, its words."""

    key: str | None
    name: str
    modality: str = ""
    region: str = ""
    contrast: str = ""
    identified_by: str = ""  # how a study was recognised as this exam ("Study Description 'MR PELVIS WO'")

    @classmethod
    def of(cls, procedure: Procedure, identified_by: str = "") -> Exam:
        return cls(procedure.key, procedure.name, procedure.modality, procedure.region, procedure.contrast,
                   identified_by)

    @property
    def named(self) -> str:
        """The name, with how it was recognised when that is known."""
        return f"{self.name} (from its {self.identified_by})" if self.identified_by else self.name


@dataclass(frozen=True)
class Verdict:
    """The one answer to "is this exam right for this scenario?" shared by check-order, worklist and audit.

    ``severity`` is ``"error"``, ``"warning"`` or ``None`` (nothing to report); ``message`` says what the
    exam is and why (no subject: callers prefix "Ordered" / "This study is"), ``alternative`` names the
    exam to do instead (or ""), ``protocol`` is the library protocol the exam should be audited against.
    """

    kind: VerdictKind
    severity: str | None
    exam: Exam
    message: str
    alternative: str
    citations: tuple[str, ...]
    protocol: str | None

    @property
    def acceptable(self) -> bool:
        return self.kind is VerdictKind.FIRST_CHOICE


def cite(rules: Rules, ids: Sequence[str]) -> str:
    """The first cited source as a radiologist names it (title, section, year), for a message."""
    if not ids:
        return ""
    published = [i for i in ids if rules.sources[i].origin != "site"]  # a publication first; site policy if alone
    return f" (Source: {rules.sources[(published or list(ids))[0]].title}.)"


def judge(rec: Recommendation, exam: Exam, rules: Rules) -> Verdict:
    """Rate ``exam`` against the decision ``rec`` (see :class:`VerdictKind`)."""
    top = rec.top
    top_name = top.procedure if top else ""
    ranked = {r.key: r for r in rec.recommendations}
    excluded = {e.key: e for e in rec.excluded}
    what = rec.variant.label
    if exam.key in excluded:
        e = excluded[exam.key]
        return Verdict(VerdictKind.EXCLUDED, "error", exam,
                       f"{exam.named}, which is not suitable for this patient: {e.reason}.", top_name, e.citations,
                       top.protocol if top else None)
    if exam.key in ranked:
        r = ranked[exam.key]
        if top is None or r.key == top.key or r.appropriateness is top.appropriateness:
            if r.appropriateness is Appropriateness.NOT:
                return Verdict(VerdictKind.BEST_REMAINING, "warning", exam,
                               f"{exam.named}: the best remaining option for this patient, but "
                               f"{r.appropriateness.label} for {what}; discuss with a radiologist.", "", r.citations,
                               r.protocol)
            return Verdict(VerdictKind.FIRST_CHOICE, None, exam,
                           f"{exam.named}: {r.appropriateness.label} for {what}.", "", r.citations, r.protocol)
        if r.appropriateness is Appropriateness.NOT:
            return Verdict(VerdictKind.NOT_APPROPRIATE, "error", exam,
                           f"{exam.named}: {r.appropriateness.label} for {what}. {r.rationale}", top_name, r.citations,
                           top.protocol)
        return Verdict(VerdictKind.LESS_APPROPRIATE, "warning", exam,
                       f"{exam.named}: {r.appropriateness.label} for {what}, while the first choice, {top_name}, is "
                       f"{top.appropriateness.label}. {r.rationale}", top_name, r.citations, top.protocol)
    return Verdict(VerdictKind.NOT_RATED, "warning", exam,
                   f"{exam.named}: not among the exams rated for {what}.", top_name, rec.variant.citations,
                   top.protocol if top else None)


# ----------------------------------------------------------------------------------------------------
# Protocol selection for the audit

@dataclass(frozen=True)
class Selection:
    """The protocol the audit validates a study against, why, and the decision behind it."""

    protocol_id: str | None
    procedure: str
    reason: str
    citations: tuple[str, ...]
    scenario: Scenario | None = None
    recommendation: Recommendation | None = None
    verdict: Verdict | None = None
    problems: tuple[str, ...] = ()


def exam_of_protocol(protocol_id: str, rules: Rules, post_contrast: bool | None = None) -> Exam | None:
    """The procedure of the rules that a library protocol performs (between a with/without pair of one
    protocol, ``post_contrast`` decides)."""
    procs = [p for p in rules.procedures.values() if p.protocol == protocol_id]
    if not procs:
        return None
    if len(procs) > 1 and post_contrast is not None:
        wanted = [p for p in procs if (p.contrast in ("with", "without-and-with")) == post_contrast]
        procs = wanted or procs
    return Exam.of(procs[0])


def select_protocol(context: ClinicalContext, library: Library | None = None, on: dt.date | None = None,
                    rules: Rules | None = None, performed: Exam | None = None) -> Selection:
    """The audit's protocol: the top allowable procedure's, or the performed exam's when :func:`judge` rates
    it as highly (an MRI plexus without contrast done where with-and-without was first: both usually
    appropriate).  Never raises for clinical inputs; date problems are ignored (they do not change the exam)."""
    try:
        if rules is None:  # the rules that live with this library, so audit and recommender read the same file
            rules = load_rules(config.rules_for(library.path if library is not None else None))
        scenario, problems, out_of_scope = interpret(context, rules, on, check_dates=False)
        if problems:
            raise ScenarioError(problems, out_of_scope)
        rec = decide(scenario, rules)
    except ScenarioError as exc:
        return Selection(None, "", "no recommendation: " + "; ".join(exc.problems), (),
                         problems=() if exc.out_of_scope else tuple(exc.problems))
    except RulesError as exc:
        return Selection(None, "", "the decision rules cannot be used: " + "; ".join(exc.problems), ())
    top = rec.top
    if top is None:
        return Selection(None, "", f"{rec.variant.label}: no procedure is suitable for this patient",
                         rec.variant.citations, scenario, rec)
    verdict = judge(rec, performed, rules) if performed is not None else None
    chosen = top
    if verdict is not None and verdict.acceptable and verdict.exam.key in {r.key for r in rec.recommendations}:
        chosen = next(r for r in rec.recommendations if r.key == verdict.exam.key)
    reason = f"{chosen.procedure}: {chosen.appropriateness.label} for {rec.variant.label}"
    if chosen is not top:
        reason += f", like the first choice ({top.procedure}); the study is this exam"
    protocol = chosen.protocol
    if protocol is None:
        reason += "; no library protocol exists for this procedure"
    elif library is not None and protocol not in library:
        reason += f"; its protocol ({protocol}) is not in the protocol library"
        protocol = None
    return Selection(protocol, chosen.procedure, reason, chosen.citations, scenario, rec, verdict)
