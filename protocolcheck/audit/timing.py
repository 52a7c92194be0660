"""Trauma timing: imaging about a month after the injury (too early: error; unduly late: warning)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from protocolcheck.audit.facts import StudyFacts
from protocolcheck.audit.matching import quotes
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.decision import timing_applies
from protocolcheck.clinical.findings import Finding, FindingCode, Severity
from protocolcheck.clinical.protocol import Protocol
from protocolcheck.clinical.rules import Rules, load_rules
from protocolcheck.clinical.scenario import Scenario, interpret

EXAM_WORD = {"MR": "MRI", "CT": "CT"}  # how a technologist names the exam of a modality


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
    window = (f"about {trauma.min_days} days after the injury, so that blood and soft-tissue edema resolve, and "
              f"no later than {trauma.max_days} days")
    trauma_date = scenario.trauma_date if scenario else None
    if trauma_date is None:
        indication = context.indication if context else ""
        if scenario is not None and scenario.traumatic:
            findings.append(Finding(
                code=FindingCode.CONTEXT_MISSING, severity=Severity.WARNING,
                summary=f"The indication \u2018{indication}\u2019 describes an injury but gives no date of injury, "
                        "so the timing after the injury cannot be checked",
                requirement_name="Timing after trauma", expected=window,
                action="Record the date of the injury in the clinical context and audit the study again",
                citations=trauma.citations, guideline=quotes(protocol, trauma.citations),
                evidence={"needs": "trauma_date", "indication": indication},
            ))
        return findings, timing
    timing["trauma_date"] = trauma_date.isoformat()
    if facts.date is None:
        why = facts.date_problem or "the study has no StudyDate, AcquisitionDate or SeriesDate"
        findings.append(Finding(
            code=FindingCode.CONTEXT_MISSING, severity=Severity.WARNING,
            summary=f"The date of injury ({trauma_date.isoformat()}) is known but {why}, so the timing after the "
                    "injury cannot be checked",
            requirement_name="Timing after trauma", expected=window,
            action="Correct the study date in the images and audit the study again",
            citations=trauma.citations, guideline=quotes(protocol, trauma.citations), evidence={"needs": "study_date"},
        ))
        return findings, timing
    days = (facts.date - trauma_date).days
    timing["days_after_trauma"] = days
    found = f"study date {facts.iso_date} (from {facts.date_source}), {days} days after the injury on {trauma_date}"
    exam = EXAM_WORD.get(protocol.modality, "exam")
    earliest, latest = _plus(trauma_date, trauma.min_days), _plus(trauma_date, trauma.max_days)
    if days < 0 or earliest is None or latest is None:
        findings.append(Finding(
            code=FindingCode.VALUE_PROBLEM, severity=Severity.WARNING,
            summary=f"The date of injury ({trauma_date.isoformat()}) is after the study date ({facts.iso_date}, "
                    f"from {facts.date_source}): one of the two dates is wrong, so the timing was not checked",
            requirement_name="Timing after trauma",
            action="Correct the date of injury in the clinical context (or the study date) and audit the study again",
            evidence={"days_after_trauma": days},
        ))
    elif days < trauma.min_days:
        findings.append(Finding(
            code=FindingCode.TRAUMA_TOO_EARLY, severity=Severity.ERROR,
            summary=f"Imaged {_days(days)} after the injury: too early for blood and soft-tissue edema to resolve",
            requirement_name="Timing after trauma",
            expected=f"at least {trauma.min_days} days (about 1 month) after the injury: on or after {earliest}",
            found_note=found,
            action=f"Repeat the {exam} on or after {earliest.isoformat()} if the question is still open",
            citations=trauma.citations, guideline=quotes(protocol, trauma.citations),
            evidence={"days_after_trauma": days, "min_days": trauma.min_days, "earliest_date": earliest.isoformat()},
        ))
    elif days > trauma.max_days:
        findings.append(Finding(
            code=FindingCode.TRAUMA_DELAYED, severity=Severity.WARNING,
            summary=f"Imaged {_days(days)} after the injury: appropriate imaging should not be delayed much beyond "
                    "about 1 month",
            requirement_name="Timing after trauma",
            expected=f"within {trauma.max_days} days of the injury: by {latest}",
            found_note=found,
            action=f"Book imaging after an injury between day {trauma.min_days} and day {trauma.max_days}, "
                   "and record why this study was delayed",
            citations=trauma.delayed_citations, guideline=quotes(protocol, trauma.delayed_citations),
            evidence={"days_after_trauma": days, "max_days": trauma.max_days, "latest_date": latest.isoformat()},
        ))
    return findings, timing


def _plus(day: dt.date, days: int) -> dt.date | None:
    """``day`` + ``days``, or None past the calendar's end (a trauma date of 9999-12-31 is a wrong date)."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return None


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"
