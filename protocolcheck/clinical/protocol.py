"""The protocol records: a protocol file as typed, frozen data (requirements, plane rules, quality limits,
trauma timing, citations), as :mod:`protocolcheck.clinical.library` builds them from validated YAML."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from protocolcheck.clinical.findings import Severity

MATCH_FIELDS = ("modality", "weighting", "inversion", "fat_suppressed", "fat_suppression", "post_contrast",
                "plane", "acquisition", "dixon", "stack", "localizer", "derived")
RANGE_FIELDS = ("obliquity_deg", "slice_thickness", "field_strength")


class Level(str, Enum):
    """How much a requirement matters: required -> error, recommended -> warning."""

    REQUIRED = "required"
    RECOMMENDED = "recommended"

    @property
    def severity(self) -> Severity:
        return Severity.ERROR if self is Level.REQUIRED else Severity.WARNING


@dataclass(frozen=True)
class Citation:
    """A guideline statement that a rule encodes, quoted with its source."""

    id: str
    source: str
    statement: str
    url: str = ""
    doi: str = ""

    def short(self) -> str:
        return f"\u201c{self.statement}\u201d ({self.source})"


@dataclass(frozen=True)
class Range:
    """Inclusive numeric limits; either end may be open."""

    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g}\u2013{self.max:g}"
        if self.min is not None:
            return f"\u2265 {self.min:g}"
        return f"\u2264 {self.max:g}"


@dataclass(frozen=True)
class Match:
    """Declarative conditions on classification fields (all must hold; a tuple of values = any of)."""

    values: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    ranges: tuple[tuple[str, Range], ...] = ()
    negated: Match | None = None
    allow_derived: bool | None = None
    allow_localizer: bool | None = None
    label: str = ""

    def describe(self) -> str:
        """Readable form, e.g. ``weighting T1, post_contrast false``."""
        parts = [f"{name} {_or(values, name)}" for name, values in self.values]
        parts += [f"{name} {rng.describe()}" for name, rng in self.ranges]
        if self.negated is not None:
            parts.append(f"not ({self.negated.describe()})")
        if self.allow_derived:
            parts.append("derived images accepted")
        if self.allow_localizer:
            parts.append("localizers accepted")
        text = ", ".join(parts) or "any series"
        return f"{self.label}: {text}" if self.label else text


# Fields whose null means "none" rather than "unknown".
NULL_IS_NONE = ("inversion", "fat_suppression", "stack", "dixon")


def _fmt(value: Any, name: str = "") -> str:
    if value is None:
        return "none" if name in NULL_IS_NONE else "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _or(values: Sequence[Any], name: str = "") -> str:
    return " or ".join(_fmt(v, name) for v in values)


@dataclass(frozen=True)
class Requirement:
    """One series the protocol needs (or a study-level check when not exclusive)."""

    id: str
    label: str
    level: Level
    match: Match
    alternatives: tuple[Match, ...] = ()
    allow_derived: bool = False
    allow_localizer: bool = False
    limits: tuple[tuple[str, Range], ...] = ()
    exclusive: bool = True
    defines_exam: bool = False
    citations: tuple[str, ...] = ()
    note: str = ""
    action: str = ""  # what to do when unmet (one imperative sentence)

    def describe(self) -> str:
        text = self.match.describe() if (self.match.values or self.match.ranges or self.match.negated) else ""
        if self.alternatives:
            alts = " | ".join(a.describe() for a in self.alternatives)
            text = f"{text}; one of: {alts}" if text else f"one of: {alts}"
        if self.limits:
            text += "; limits " + ", ".join(f"{n} {r.describe()}" for n, r in self.limits)
        return text or "any series"


@dataclass(frozen=True)
class PlaneRule:
    """A rule about slice planes across the study's series (e.g. orthogonal oblique views)."""

    id: str
    label: str
    level: Level
    rule: str
    series: Match = field(default_factory=Match)
    tolerance_deg: float = 10.0
    min_obliquity_deg: float = 10.0
    isotropic_3d_counts: bool = True
    isotropic_max_mm: float = 1.5
    reformats_count: bool = True
    citations: tuple[str, ...] = ()
    note: str = ""
    action: str = ""  # what to do when unmet (one imperative sentence)


@dataclass(frozen=True)
class QualityLimit:
    """A limit on one acquisition parameter (``slice_thickness`` mm, ``field_strength`` T) of the
    series ``series`` selects; its source is ``citations`` or ``site_policy`` (a local decision)."""

    id: str
    label: str
    level: Level
    parameter: str
    range: Range
    series: Match = field(default_factory=Match)
    citations: tuple[str, ...] = ()
    site_policy: str = ""
    action: str = ""


@dataclass(frozen=True)
class TraumaTiming:
    """The protocol has the trauma timing rule: before ``min_days`` after the injury too early (error),
    after ``max_days`` delayed (warning).  The days are the ``timing`` of rules.yaml (the one place for
    them); the protocol file only switches the rule on and names its citations.  Whether an indication
    is traumatic is :attr:`protocolcheck.clinical.scenario.Scenario.traumatic`."""

    min_days: int
    max_days: int
    citations: tuple[str, ...] = ()
    delayed_citations: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppliesTo:
    """How a study is recognised as this exam from its own descriptions and codes."""

    descriptions: tuple[str, ...] = ()
    exclude_descriptions: tuple[str, ...] = ()
    procedure_codes: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True)
class Note:
    text: str
    citations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Protocol:
    """One protocol file, parsed and validated."""

    id: str
    title: str
    modality: str
    version: str
    status: str
    citations: dict[str, Citation]
    requirements: tuple[Requirement, ...]
    planes: tuple[PlaneRule, ...] = ()
    trauma: TraumaTiming | None = None
    applies_to: AppliesTo = field(default_factory=AppliesTo)
    family: str = ""
    description: str = ""
    notes: tuple[Note, ...] = ()
    wrong_exam: Note | None = None
    path: str = ""
    limits: tuple[QualityLimit, ...] = ()

    @property
    def active(self) -> bool:
        return self.status == "active"

    def cite(self, ids: Iterable[str]) -> list[Citation]:
        return [self.citations[i] for i in ids if i in self.citations]

    def rule(self, rule_id: str) -> Requirement | PlaneRule | QualityLimit | None:
        items: tuple[Requirement | PlaneRule | QualityLimit, ...] = (*self.requirements, *self.planes, *self.limits)
        for item in items:
            if item.id == rule_id:
                return item
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (used by ``protocols list/show --format json``)."""
        return {
            "id": self.id, "title": self.title, "modality": self.modality, "version": self.version,
            "status": self.status, "family": self.family or None, "path": self.path,
            "description": self.description,
            "applies_to": {
                "descriptions": list(self.applies_to.descriptions),
                "exclude_descriptions": list(self.applies_to.exclude_descriptions),
                "procedure_codes": list(self.applies_to.procedure_codes),
                "body_parts": list(self.applies_to.body_parts),
            },
            "requirements": [
                {"id": r.id, "label": r.label, "level": r.level.value, "match": r.describe(),
                 "exclusive": r.exclusive, "defines_exam": r.defines_exam, "citations": list(r.citations),
                 "note": r.note or None, "action": r.action or None}
                for r in self.requirements
            ],
            "planes": [
                {"id": p.id, "label": p.label, "level": p.level.value, "rule": p.rule,
                 "tolerance_deg": p.tolerance_deg, "min_obliquity_deg": p.min_obliquity_deg,
                 "isotropic_3d_counts": p.isotropic_3d_counts, "isotropic_max_mm": p.isotropic_max_mm,
                 "reformats_count": p.reformats_count, "citations": list(p.citations), "note": p.note or None,
                 "action": p.action or None}
                for p in self.planes
            ],
            "limits": [
                {"id": q.id, "label": q.label, "level": q.level.value, "parameter": q.parameter,
                 "min": q.range.min, "max": q.range.max, "series": q.series.describe(),
                 "citations": list(q.citations), "site_policy": q.site_policy or None, "action": q.action or None}
                for q in self.limits
            ],
            "timing": None if self.trauma is None else {
                "trauma": {"min_days": self.trauma.min_days, "max_days": self.trauma.max_days,
                           "citations": list(self.trauma.citations),
                           "delayed_citations": list(self.trauma.delayed_citations)}
            },
            "notes": [{"text": n.text, "citations": list(n.citations)} for n in self.notes],
            "wrong_exam": None if self.wrong_exam is None else {"text": self.wrong_exam.text,
                                                                "citations": list(self.wrong_exam.citations)},
            "citations": [
                {"id": c.id, "source": c.source, "statement": c.statement, "url": c.url or None, "doi": c.doi or None}
                for c in self.citations.values()
            ],
        }

