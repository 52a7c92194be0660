"""Requirement matching: whether a series satisfies a protocol requirement, which series satisfies
which requirement, and the finding for a requirement no series met.

- A series (more exactly a stack: a Dixon water image set is one stack of its series) satisfies at
  most one *exclusive* requirement; the assignment maximises first the required, then the
  recommended requirements met (augmenting paths), preferring original images in acquisition order.
- Localizers and derived images never satisfy a requirement unless the requirement (or the
  alternative that matches) says ``allow_localizer`` / ``allow_derived``.
- A series that matches but is outside the requirement's ``limits`` does not satisfy it; when that
  is the only reason, the finding is ``parameter-out-of-range`` instead of ``missing-sequence``.
- A finding names the series considered, the near miss first: a series no other requirement uses
  (what was probably meant for this one, e.g. a FLAIR where a STIR was intended), closest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from protocolcheck.classify import SeriesClass, describe
from protocolcheck.clinical.findings import Considered, Finding, FindingCode, Quote
from protocolcheck.clinical.protocol import NULL_IS_NONE, Level, Match, Protocol, Range, Requirement

FIELD_LABELS = {
    "weighting": "weighting", "inversion": "inversion", "fat_suppressed": "fat-suppressed",
    "fat_suppression": "fat suppression", "post_contrast": "post-contrast", "plane": "plane",
    "acquisition": "acquisition", "dixon": "Dixon output", "stack": "stack", "localizer": "localizer",
    "derived": "derived", "modality": "modality", "obliquity_deg": "obliquity", "slice_thickness": "slice thickness",
    "field_strength": "field strength",
}
UNITS = {"obliquity_deg": "\u00b0", "slice_thickness": " mm", "field_strength": " T"}


# --------------------------------------------------------------------------------------------------
# describing series and citing


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


def considered(s: SeriesClass, why: Iterable[str]) -> Considered:
    """A finding's ``found`` entry for series ``s``."""
    return Considered(series=s.series_instance_uid, name=series_name(s), classified=describe(s), why=tuple(why),
                      stack=s.stack, series_number=s.series_number)


def quotes(protocol: Protocol | None, ids: Sequence[str]) -> tuple[Quote, ...]:
    """The guideline statements behind ``ids``, quoted with their sources."""
    if protocol is None:
        return ()
    return tuple(Quote(c.id, c.statement, c.source) for c in protocol.cite(ids))


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


def _mismatch(name: str, actual: Any, values: Sequence[Any], s: SeriesClass) -> str:
    """Why a field's value does not count, in a technologist's words: the contrast phase as before /
    after contrast, an inversion with its inversion time (a FLAIR at TI 2500 ms is not a STIR)."""
    if name == "post_contrast":
        if actual is True:
            return "acquired after contrast (needs before contrast)"
        wanted = "after IV contrast" if True in values else "before contrast"
        return ("acquired before contrast" if actual is False else "contrast phase unknown") + f" (needs {wanted})"
    text = f"{FIELD_LABELS.get(name, name)} {_fmt(actual, name)}"
    if name == "inversion" and actual is not None and s.inversion_time is not None:
        text += f", TI {s.inversion_time:g} ms"
    return f"{text} (needs {_expected(values, name)})"


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
            reasons.append(_mismatch(name, actual, values, s))
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
        0.15 per localizer/derived refusal and 0.1 per parameter limit broken."""
        failed = len(self.reasons) - self.gated
        return failed / max(self.conditions, 1) + 0.15 * self.gated + 0.1 * len(self.limit_reasons)


def _positive_conditions(match: Match) -> int:
    """Conditions that ask for a property (not for its absence): ``fat_suppressed: true`` counts,
    ``inversion: null`` does not. A series fits best the requirement that uses most of its properties."""
    count = sum(1 for _name, values in match.values if None not in values and False not in values)
    return count + len(match.ranges)


def _kindred(match: Match, s: SeriesClass) -> int:
    """Conditions ``s`` fails with a value of the same kind (a FLAIR's inversion where a STIR's is
    asked): such an alternative is what was probably meant, more than one whose property it lacks."""
    return sum(1 for name, values in match.values
               if _value(s, name) not in (None, False) and _value(s, name) not in values
               and None not in values and False not in values)


def judge(requirement: Requirement, s: SeriesClass) -> Verdict:
    """Best alternative of ``requirement`` for series ``s``: the smallest share of failed conditions,
    then the fewest failed, then the alternative whose failures are of the same kind (:func:`_kindred`),
    then the most specific."""
    base = match_failures(requirement.match, s)
    best: Verdict | None = None
    best_key: tuple[float, int, int, int] = (0.0, 0, 0, 0)
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
        kindred = _kindred(requirement.match, s) + _kindred(alt, s)
        key = (verdict.distance, len(reasons), -kindred, -verdict.specificity)
        if best is None or key < best_key:
            best, best_key = verdict, key
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
    # other requirements each series serves: (series key, requirement label, True if it counts for it,
    # False if it merely qualifies); a series serving none is an orphan, the likeliest near miss
    roles: tuple[tuple[tuple[str, str | None], str, bool], ...] = ()

    def role(self, s: SeriesClass) -> tuple[str, bool] | None:
        """(label, counts) of another requirement ``s`` counts for (preferred) or qualifies for."""
        found = [(label, counts) for key, label, counts in self.roles if key == series_key(s)]
        return max(found, key=lambda item: item[1]) if found else None

    @property
    def met(self) -> bool:
        return self.satisfied_by is not None


def _preference(s: SeriesClass, index: int) -> tuple[int, int]:
    return (1 if s.derived else 0, index)


def _augment(root: str, candidates: dict[str, list[SeriesClass]], owner: dict[tuple[str, str | None], str]) -> bool:
    """Kuhn's augmenting path from requirement ``root``, as a loop (a recursion as deep as the chain of
    requirements ran out of stack at ~1,000): True if ``root`` got a series (``owner`` updated, other
    requirements moved along the path)."""
    visited: set[tuple[str, str | None]] = set()
    stack = [(root, iter(candidates[root]))]
    path: list[tuple[str, tuple[str, str | None]]] = []  # (requirement, series key it takes over)
    while stack:
        rid, remaining = stack[-1]
        for s in remaining:
            key = series_key(s)
            if key in visited:
                continue
            visited.add(key)
            if key not in owner:  # a free series: every requirement on the path moves one along
                owner[key] = rid
                owner.update({taken: earlier for earlier, taken in path})
                return True
            path.append((rid, key))  # taken: can its owner move to another series?
            stack.append((owner[key], iter(candidates[owner[key]])))
            break
        else:
            stack.pop()
            if path:
                path.pop()
    return False


def assign(requirements: Sequence[Requirement], series: Sequence[SeriesClass]) -> list[RequirementResult]:
    """Match series to requirements; each series satisfies at most one exclusive requirement."""
    verdicts = {r.id: [judge(r, s) for s in series] for r in requirements}
    order = {series_key(s): i for i, s in enumerate(series)}
    candidates = {
        r.id: sorted((v.series for v in verdicts[r.id] if v.ok), key=lambda s: _preference(s, order[series_key(s)]))
        for r in requirements
    }
    owner: dict[tuple[str, str | None], str] = {}  # series key -> requirement id

    # Required before recommended; within a level the most constrained requirement first, so that
    # when one series could serve two requirements the one that has no other choice gets it and the
    # finding names the more general requirement (e.g. "T2" rather than "fat-suppressed T2").
    specificity = {r.id: max((v.specificity for v in verdicts[r.id] if v.ok), default=0) for r in requirements}
    exclusive = [r for r in requirements if r.exclusive]
    for level in (Level.REQUIRED, Level.RECOMMENDED):
        for r in sorted((r for r in exclusive if r.level is level),
                        key=lambda r: (len(candidates[r.id]), -specificity[r.id])):
            _augment(r.id, candidates, owner)
    by_requirement = {rid: key for key, rid in owner.items()}
    roles = [(key, next(r.label for r in requirements if r.id == rid), True) for key, rid in owner.items()]
    roles += [(series_key(s), r.label, False) for r in requirements for s in candidates[r.id]
              if owner.get(series_key(s)) != r.id]
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
        mine = tuple(item for item in roles if item[1] != r.label)
        results.append(RequirementResult(r, chosen, tuple(verdicts[r.id]), used, mine))
    return results



# --------------------------------------------------------------------------------------------------
# the finding for an unmet requirement


def looked_for(r: Requirement) -> str:
    """What would satisfy the requirement, in the protocol's own words where it gives them."""
    labels = [a.label for a in r.alternatives if a.label]
    if labels and len(labels) == len(r.alternatives):
        text = " or ".join(dict.fromkeys(labels))
    else:
        text = r.describe()
    phase = dict(r.match.values).get("post_contrast") if "contrast" not in text else None
    if phase is not None and True not in phase:
        text += ", acquired before contrast"
    elif phase is not None and tuple(phase) == (True,):
        text += ", acquired after IV contrast"
    if r.limits:
        text += " with " + ", ".join(f"{FIELD_LABELS.get(n, n)} {rng.describe()}{UNITS.get(n, '')}"
                                     for n, rng in r.limits)
    return text


def near_misses(result: RequirementResult) -> list[Verdict]:
    """Series that partly qualify, the near miss first: an orphan (a series no requirement has a use
    for) one condition away — what was probably meant for this one, e.g. a FLAIR where a STIR was
    intended, or a STIR acquired after contrast — then the others, closest first. Near misses are
    always named; other series only when about as close as the closest. A series failing every
    condition is not worth naming; a localizer only when it is the closest."""
    verdicts = [v for v in result.verdicts if not v.ok and v.distance < 1.0]
    if not verdicts:
        return []
    if not result.requirement.allow_localizer:
        others = [v.distance for v in verdicts if not v.series.localizer]
        verdicts = [v for v in verdicts if not v.series.localizer or not others or v.distance < min(others)]
    best = min(v.distance for v in verdicts)

    def near_miss(v: Verdict) -> bool:
        return result.role(v.series) is None and not v.series.localizer and len(v.reasons) <= 1

    verdicts = [v for v in verdicts if v.distance <= best + 0.2 or near_miss(v)]
    return sorted(verdicts, key=lambda v: (not near_miss(v), v.distance, v.series.localizer))


def requirement_finding(protocol: Protocol, result: RequirementResult) -> Finding:
    """The finding for an unmet requirement: what was expected, what was found and why each series
    considered did not count (the near miss first), and what to do."""
    r = result.requirement
    near = near_misses(result)
    only_limits = any(v.limit_reasons and not v.reasons for v in result.verdicts)
    found: list[Considered] = []
    for v in near:
        why = list(v.reasons or v.limit_reasons)
        role = result.role(v.series)
        if role is not None:
            why.append(f"{'counts' if role[1] else 'qualifies'} for {_lower_first(role[0])}")
        found.append(considered(v.series, why))
    for s, other in result.used_elsewhere:
        role = result.role(s)
        label = role[0] if role is not None and role[1] else other
        found.append(considered(s, [f"qualifies, but already counts for {_lower_first(label)}"]))
    note = "no series in the study" if not result.verdicts else \
        f"none of the {len(result.verdicts)} series comes close"
    if only_limits:
        summary = f"{r.level.value.capitalize()} series outside the parameter limits: {r.label}"
        outside = [v for v in result.verdicts if v.limit_reasons and not v.reasons]
        action = (f"Repeat {series_name(outside[0].series)} within the limits "
                  f"({', '.join(outside[0].limit_reasons)})") if outside else f"Acquire {r.label} within the limits"
    else:
        summary = f"{r.level.value.capitalize()} series missing: {r.label}"
        action = r.action or f"Acquire the missing series ({_lower_first(r.label)})"
    return Finding(
        code=FindingCode.PARAMETER if only_limits else FindingCode.MISSING_SEQUENCE,
        severity=r.level.severity,
        summary=summary,
        requirement=r.id,
        requirement_name=r.label,
        expected=looked_for(r),
        found=tuple(found),
        found_note="" if found else note,
        action=action,
        note=r.note,
        series=tuple(dict.fromkeys(c.series for c in found)),
        citations=r.citations,
        guideline=quotes(protocol, r.citations),
        evidence={"expected": r.describe()},
    )


def _lower_first(text: str) -> str:
    """``text`` with a capital first letter lowered unless it starts an abbreviation ("T1", "STIR")."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text
