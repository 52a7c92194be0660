"""Load and validate the protocol library: one YAML file per protocol, checked against a JSON schema.

Protocols are data, not code. Every file is validated when the library loads, and *all* problems
are reported at once, each naming the file, the line, the key path and how to fix it (an unknown
key such as ``weigthing`` gets a "did you mean 'weighting'?" hint). A library with any problem is
not used at all: a typo must never silently switch a rule off.

Which files are protocols: every ``*.yaml``/``*.yml`` file in the library folder whose top-level
``kind`` is ``protocol``. Files with another ``kind`` (the recommender's ``rules.yaml``) are skipped,
and so is ``rules.yaml`` by name; a file with no ``kind`` at all is reported, not skipped.
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from protocolcheck import config
from protocolcheck.clinical import safeyaml
from protocolcheck.clinical.findings import Severity
from protocolcheck.clinical.rules import (
    RulesError,
    load_rules,
    shipped_protocols_dir,
)
from protocolcheck.dicom.safeio import read_text_regular
from protocolcheck.errors import InputError

NON_PROTOCOL_FILES = frozenset({"rules.yaml", "rules.yml"})
MATCH_FIELDS = ("modality", "weighting", "inversion", "fat_suppressed", "fat_suppression", "post_contrast",
                "plane", "acquisition", "dixon", "stack", "localizer", "derived")
RANGE_FIELDS = ("obliquity_deg", "slice_thickness", "field_strength")


class LibraryError(InputError, ValueError):
    """The library cannot be used; ``problems`` lists every problem (file, line, key, fix)."""

    headline = "the protocol library cannot be used"


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


@dataclass(frozen=True)
class Library:
    """The validated protocols, by id."""

    protocols: dict[str, Protocol]
    path: str = ""
    skipped: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Protocol]:
        return iter(sorted(self.protocols.values(), key=lambda p: p.id))

    def __len__(self) -> int:
        return len(self.protocols)

    def __contains__(self, protocol_id: object) -> bool:
        return protocol_id in self.protocols

    def get(self, protocol_id: str) -> Protocol:
        """The protocol with this id; KeyError naming close matches otherwise."""
        try:
            return self.protocols[protocol_id]
        except KeyError:
            close = difflib.get_close_matches(protocol_id, list(self.protocols), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"no protocol {protocol_id!r} in the library {self.path}{hint} "
                           f"(known: {', '.join(sorted(self.protocols))})") from None


# --------------------------------------------------------------------------------------------------
# locating files


def default_library_path() -> Path:
    """``protocols/`` of this checkout, or the folder shipped with the package (``protocolcheck.protocols``)."""
    return shipped_protocols_dir()


def library_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Explicit path, else ``$PROTOCOLCHECK_LIBRARY``, else the shipped library."""
    return config.library_dir(path)


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix.lower() in (".yaml", ".yml") and not p.name.startswith("."))


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The protocol JSON schema shipped in ``protocolcheck/schemas``."""
    text = importlib.resources.files("protocolcheck.clinical").joinpath("schemas/protocol.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    # the shipped schema itself is checked against its metaschema by the tests, not on every run
    return jsonschema.validators.validator_for(schema())(schema())


# --------------------------------------------------------------------------------------------------
# loading


@dataclass
class _Source:
    """One YAML file's text, data and the line of every key path (for messages)."""

    name: str
    data: Any = None
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self, path: Sequence[Any]) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def report(self, path: Sequence[Any], message: str, fix: str = "") -> None:
        line = self.line(path)
        where = f"{self.name}:{line}" if line else self.name
        key = _key_path(path)
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        if fix:
            text += f" \u2014 fix: {fix}"
        self.problems.append(text)


def _key_path(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _walk_nodes(node: yaml.Node, path: tuple[Any, ...], source: _Source) -> None:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                source.report(path + (key,), f"key {key!r} given twice (lines {seen[key]} and {line}); "
                              "YAML keeps only the last one", "remove or merge one of them")
            seen[key] = line
            source.lines[path + (key,)] = line
            _walk_nodes(value_node, path + (key,), source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            source.lines[path + (index,)] = item.start_mark.line + 1
            _walk_nodes(item, path + (index,), source)


def _read_yaml(path: Path) -> _Source:
    source = _Source(name=str(path))
    try:
        text = read_text_regular(path)  # a named pipe: refused, not waited on
    except (OSError, UnicodeDecodeError) as exc:
        source.problems.append(f"{path}: cannot read ({exc})")
        return source
    try:
        node, source.data = safeyaml.compose_and_load(text)
    except safeyaml.TooManyValues as exc:
        source.problems.append(f"{path}: {exc.problem}")
        return source
    except yaml.constructor.ConstructorError as exc:  # a tag safe_load refuses (e.g. !!python/object)
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        tag = (re.search(r"tag '([^']*)'", str(exc.problem or "")) or [None, "?"])[1]
        source.problems.append(f"{where}: YAML tag {tag!r} is not allowed (protocol files are plain data: maps, "
                               "lists, text, numbers; tags that build objects or run code are refused) "
                               "\u2014 fix: remove the tag")
        return source
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        source.problems.append(f"{where}: not valid YAML ({problem}) \u2014 fix: check indentation, "
                               "colons and quotes on this line (quote values containing ': ' or '#')")
        return source
    except RecursionError:
        source.problems.append(f"{path}: nested too deeply to read \u2014 fix: a protocol needs only a few levels")
        source.data = None
        return source
    except ValueError as exc:  # PyYAML builds dates and tagged values with Python types: 2026-02-30 raises
        source.problems.append(f"{path}: a value YAML cannot read ({exc}) \u2014 fix: correct the date or number, "
                               "or quote it to keep it as text")
        source.data = None
        return source
    if node is not None:
        try:
            _walk_nodes(node, (), source)
        except RecursionError:  # libyaml reads deeper documents than these Python walks can follow
            source.problems.append(f"{path}: nested too deeply to read \u2014 fix: a protocol needs only a few levels")
            source.data = None
    return source


def _schema_at(path: Sequence[Any]) -> dict[str, Any]:
    """The sub-schema describing the value at ``path`` (following $ref), for hints."""
    root = schema()
    current: dict[str, Any] = root
    for part in path:
        current = _deref(current, root)
        if isinstance(part, int):
            current = current.get("items", {})
        else:
            current = current.get("properties", {}).get(part, {})
    return _deref(current, root)


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _describe_allowed(sub: dict[str, Any]) -> list[Any]:
    root = schema()
    sub = _deref(sub, root)
    if "enum" in sub:
        return list(sub["enum"])
    if "const" in sub:
        return [sub["const"]]
    values: list[Any] = []
    for option in sub.get("anyOf", []) + sub.get("oneOf", []):
        option = _deref(option, root)
        if "enum" in option:
            values.extend(v for v in option["enum"] if v not in values)
    return values


def _schema_problems(source: _Source) -> None:
    errors = sorted(_validator().iter_errors(source.data), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    for error in errors:
        _explain(error, source)


def _explain(error: jsonschema.ValidationError, source: _Source) -> None:
    path = tuple(error.absolute_path)
    validator = error.validator
    instance = error.instance
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        for key in instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(allowed)}"
            source.report(path + (key,), f"unknown key {key!r}", fix)
        return
    if validator == "required":
        found = re.match(r"'([^']+)' is a required property", error.message)
        missing = [found.group(1)] if found else \
            [k for k in error.validator_value if isinstance(instance, dict) and k not in instance]
        for key in missing:
            sub = _schema_at(path + (key,))
            hint = sub.get("description", "")
            source.report(path, f"missing required key {key!r}", f"add '{key}:'" + (f" ({hint})" if hint else ""))
        return
    if validator in ("enum", "const"):
        allowed = error.validator_value if validator == "enum" else [error.validator_value]
        close = difflib.get_close_matches(str(instance), [str(a) for a in allowed], n=1, cutoff=0.5)
        fix = f"did you mean {close[0]!r}?" if close else ""
        fix = (fix + " " if fix else "") + f"allowed: {', '.join(_fmt_value(a) for a in allowed)}"
        source.report(path, f"{_fmt_value(instance)} is not allowed", fix)
        return
    if validator in ("anyOf", "oneOf") and error.context:
        if error.schema.get("anyOf") and all("required" in s for s in error.schema["anyOf"]):
            keys = " or ".join(repr(s["required"][0]) for s in error.schema["anyOf"])
            source.report(path, f"needs {keys}", f"add {keys}")
            return
        allowed = _describe_allowed(error.schema)
        if allowed:
            bad = instance if not isinstance(instance, list) else [v for v in instance if v not in allowed]
            close = difflib.get_close_matches(str(bad[0] if isinstance(bad, list) and bad else bad),
                                              [str(a) for a in allowed], n=1, cutoff=0.5)
            fix = (f"did you mean {close[0]!r}? " if close else "") + \
                f"allowed: {', '.join(_fmt_value(a) for a in allowed)} (one value or a list)"
            source.report(path, f"{_fmt_value(bad)} is not allowed", fix)
            return
        best = jsonschema.exceptions.best_match(error.context)
        _explain(best, source)
        return
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        source.report(path, f"{_fmt_value(instance)} is not of type {expected}", f"write a {expected}")
        return
    if validator == "pattern":
        source.report(path, f"{_fmt_value(instance)} has the wrong form",
                      "use lower-case letters, digits and hyphens, e.g. 'mr-lumbosacral-plexus-wwo'")
        return
    if validator in ("minItems", "minProperties", "minLength"):
        source.report(path, "is empty", "give at least one value or remove the key")
        return
    source.report(path, error.message, "see protocolcheck/clinical/schemas/protocol.schema.json")


def _fmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, list):
        return tuple(value)
    return (value,)


def _range(data: dict[str, Any]) -> Range:
    return Range(min=data.get("min"), max=data.get("max"))


def _match(data: dict[str, Any] | None) -> Match:
    data = data or {}
    return Match(
        values=tuple((name, _tuple(data[name])) for name in MATCH_FIELDS if name in data),
        ranges=tuple((name, _range(data[name])) for name in RANGE_FIELDS if name in data),
        negated=_match(data["not"]) if "not" in data else None,
        allow_derived=data.get("allow_derived"),
        allow_localizer=data.get("allow_localizer"),
        label=data.get("label", ""),
    )


def _semantic_problems(source: _Source, file_path: Path) -> None:
    """Checks a schema cannot express: references, uniqueness, regexes, ranges, file name."""
    data = source.data
    if isinstance(data.get("id"), str) and file_path.stem != data["id"]:
        source.report(("id",), f"id {data['id']!r} differs from the file name {file_path.name!r}",
                      f"rename the file to {data['id']}.yaml (ids are contracts; one protocol per file)")
    citation_ids: list[str] = []
    for index, citation in _items(data.get("citations")):
        cid = citation.get("id")
        if cid in citation_ids:
            source.report(("citations", index, "id"), f"citation id {cid!r} used twice", "give each citation its own id")
        citation_ids.append(cid)

    def check_refs(path: tuple[Any, ...], refs: Any) -> None:
        for i, ref in enumerate(refs if isinstance(refs, list) else []):
            if ref not in citation_ids:
                known = [str(c) for c in citation_ids]
                close = difflib.get_close_matches(str(ref), known, n=1, cutoff=0.5)
                fix = f"did you mean {close[0]!r}?" if close else \
                    f"add a citation with id {ref!r} to 'citations' (known: {', '.join(known)})"
                source.report(path + (i,), f"unknown citation {ref!r}", fix)

    def check_match(path: tuple[Any, ...], match: Any) -> None:
        if not isinstance(match, dict):
            return
        for name in RANGE_FIELDS:
            rng = match.get(name)
            if isinstance(rng, dict) and isinstance(rng.get("min"), (int, float)) \
                    and isinstance(rng.get("max"), (int, float)) and rng["min"] > rng["max"]:
                source.report(path + (name,), f"min {rng['min']} is greater than max {rng['max']}", "swap them")
        if "not" in match:
            check_match(path + ("not",), match["not"])

    rule_ids: list[str] = []
    for section in ("requirements", "planes", "limits"):
        for index, item in _items(data.get(section)):
            path = (section, index)
            rid = item.get("id")
            if rid in rule_ids:
                source.report(path + ("id",), f"rule id {rid!r} used twice", "requirement and plane rule ids must be unique")
            rule_ids.append(rid)
            check_refs(path + ("citations",), item.get("citations"))
            check_match(path + ("match",), item.get("match"))
            check_match(path + ("series",), item.get("series"))
            for j, alt in enumerate(item.get("any_of") if isinstance(item.get("any_of"), list) else []):
                check_match(path + ("any_of", j), alt)
            check_match(path + ("limits",), item.get("limits"))
            if section == "limits" and isinstance(item.get("parameter"), str):  # the schema reports the rest
                check_match(path, {item["parameter"]: {k: item[k] for k in ("min", "max") if k in item}})
    for index, note in _items(data.get("notes")):
        check_refs(("notes", index, "citations"), note.get("citations"))
    if isinstance(data.get("wrong_exam"), dict):
        check_refs(("wrong_exam", "citations"), data["wrong_exam"].get("citations"))
    timing = data.get("timing")
    trauma = timing.get("trauma") if isinstance(timing, dict) else None
    if isinstance(trauma, dict):
        check_refs(("timing", "trauma", "citations"), trauma.get("citations"))
        check_refs(("timing", "trauma", "delayed_citations"), trauma.get("delayed_citations"))
    applies = data.get("applies_to")
    for key in ("descriptions", "exclude_descriptions"):
        patterns = applies.get(key) if isinstance(applies, dict) else None
        for i, pattern in enumerate(patterns if isinstance(patterns, list) else []):
            _check_regex(source, ("applies_to", key, i), pattern)


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(index, item) for the mapping items of a list (other shapes are schema errors, reported elsewhere)."""
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _check_regex(source: _Source, path: tuple[Any, ...], pattern: Any) -> None:
    if not isinstance(pattern, str):
        return
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        source.report(path, f"invalid regular expression {pattern!r} ({exc})",
                      "escape special characters such as ( ) + ? with a backslash, or quote the value")


def _build(data: dict[str, Any], path: Path) -> Protocol:
    citations = {
        c["id"]: Citation(id=c["id"], source=c["source"], statement=" ".join(c["statement"].split()),
                          url=c.get("url", ""), doi=c.get("doi", ""))
        for c in data["citations"]
    }
    requirements = tuple(
        Requirement(
            id=r["id"], label=r["label"], level=Level(r["level"]), match=_match(r.get("match")),
            alternatives=tuple(_match(a) for a in r.get("any_of") or ()),
            allow_derived=r.get("allow_derived", False), allow_localizer=r.get("allow_localizer", False),
            limits=tuple((name, _range(r["limits"][name])) for name in RANGE_FIELDS if name in (r.get("limits") or {})),
            exclusive=r.get("exclusive", True), defines_exam=r.get("defines_exam", False),
            citations=tuple(r["citations"]), note=r.get("note", ""), action=r.get("action", ""),
        )
        for r in data.get("requirements") or ()
    )
    planes = tuple(
        PlaneRule(
            id=p["id"], label=p["label"], level=Level(p["level"]), rule=p["rule"],
            series=_match(p.get("series")),
            tolerance_deg=float(p.get("tolerance_deg", 10.0)),
            min_obliquity_deg=float(p.get("min_obliquity_deg", 10.0)),
            isotropic_3d_counts=p.get("isotropic_3d_counts", True),
            isotropic_max_mm=float(p.get("isotropic_max_mm", 1.5)),
            reformats_count=p.get("reformats_count", True),
            citations=tuple(p["citations"]), note=p.get("note", ""), action=p.get("action", ""),
        )
        for p in data.get("planes") or ()
    )
    limits = tuple(
        QualityLimit(
            id=q["id"], label=q["label"], level=Level(q["level"]), parameter=q["parameter"], range=_range(q),
            series=_match(q.get("series")), citations=tuple(q.get("citations") or ()),
            site_policy=" ".join(str(q.get("site_policy", "")).split()), action=q.get("action", ""),
        )
        for q in data.get("limits") or ()
    )
    trauma = None
    trauma_data = (data.get("timing") or {}).get("trauma")
    if trauma_data is not None:
        rules = load_rules(config.rules_for(path.parent))
        trauma = TraumaTiming(
            min_days=rules.min_days_after_trauma, max_days=rules.max_days_after_trauma,
            citations=tuple(trauma_data.get("citations") or ()),
            delayed_citations=tuple(trauma_data.get("delayed_citations") or trauma_data.get("citations") or ()),
        )
    applies = data.get("applies_to") or {}
    return Protocol(
        id=data["id"], title=data["title"], modality=data["modality"], version=str(data["version"]),
        status=data["status"], citations=citations, requirements=requirements, planes=planes, trauma=trauma,
        applies_to=AppliesTo(
            descriptions=tuple(applies.get("descriptions") or ()),
            exclude_descriptions=tuple(applies.get("exclude_descriptions") or ()),
            procedure_codes=tuple(str(c) for c in applies.get("procedure_codes") or ()),
            body_parts=tuple(b.upper() for b in applies.get("body_parts") or ()),
            priority=applies.get("priority", 0),
        ),
        family=data.get("family", ""), description=" ".join(str(data.get("description", "")).split()),
        notes=tuple(Note(" ".join(n["text"].split()), tuple(n.get("citations") or ())) for n in data.get("notes") or ()),
        wrong_exam=(Note(" ".join(data["wrong_exam"]["text"].split()), tuple(data["wrong_exam"]["citations"]))
                    if data.get("wrong_exam") else None),
        path=str(path), limits=limits,
    )


@dataclass
class FileResult:
    """What loading one file gave: a protocol, a reason it was skipped, or problems."""

    path: str
    protocol: Protocol | None = None
    skipped: str = ""
    problems: list[str] = field(default_factory=list)


def load_protocol_file(path: str | os.PathLike[str]) -> FileResult:
    """Parse and validate one file; never raises for bad content (problems are listed)."""
    file_path = Path(path)
    result = FileResult(path=str(file_path))
    if file_path.name.lower() in NON_PROTOCOL_FILES:
        result.skipped = "recommender rules (not a protocol)"
        return result
    source = _read_yaml(file_path)
    if source.problems and source.data is None:
        result.problems = source.problems
        return result
    data = source.data
    if data is None:
        result.problems = source.problems + [f"{file_path}: empty file \u2014 fix: start with 'kind: protocol' and "
                                             "'id:', or delete the file"]
        return result
    if not isinstance(data, dict):
        result.problems = source.problems + [f"{file_path}:1: the top level must be a mapping (key: value), "
                                             f"not a {type(data).__name__} \u2014 fix: start with 'kind: protocol'"]
        return result
    kind = data.get("kind")
    if kind is not None and kind != "protocol":
        result.skipped = f"kind {kind!r} (not a protocol)"
        return result
    _schema_problems(source)
    _semantic_problems(source, file_path)
    result.problems = source.problems
    if not result.problems:
        try:
            result.protocol = _build(data, file_path)
        except RulesError as exc:  # the trauma window comes from rules.yaml
            result.problems = [f"{file_path}: timing.trauma needs the decision rules, which cannot be used: {p}"
                               for p in exc.problems]
    return result


def lint(paths: Iterable[str | os.PathLike[str]]) -> list[FileResult]:
    """Check protocol files or library folders; one result per file (problems, skip reason or protocol)."""
    results: list[FileResult] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = _yaml_files(p)
            if not files:
                results.append(FileResult(path=str(p), problems=[f"{p}: no *.yaml files in this folder"]))
            results.extend(load_protocol_file(f) for f in files)
        elif p.is_file():
            results.append(load_protocol_file(p))
        else:
            results.append(FileResult(path=str(p), problems=[f"{p}: no such file or folder"]))
    _duplicate_ids(results)
    return results


def _duplicate_ids(results: list[FileResult]) -> None:
    seen: dict[str, str] = {}
    for result in results:
        if result.protocol is None:
            continue
        pid = result.protocol.id
        if pid in seen:
            result.problems.append(f"{result.path}: id {pid!r} is already used by {seen[pid]} \u2014 fix: "
                                   "give each protocol its own id (one protocol per file)")
            result.protocol = None
        else:
            seen[pid] = result.path


def load_library(path: str | Path | None = None) -> Library:
    """Load every protocol in the library folder; raise :class:`LibraryError` listing all problems.

    ``path`` defaults to ``$PROTOCOLCHECK_LIBRARY``, then to the library shipped with the package.
    """
    directory = library_path(path)
    if not directory.exists():
        raise LibraryError([f"{directory}: protocol library not found \u2014 fix: pass --library DIR "
                            f"(a folder of protocol *.yaml files) or set {config.Env.LIBRARY.value}"])
    if not directory.is_dir():
        raise LibraryError([f"{directory}: the protocol library must be a folder of *.yaml files"])
    results = lint([directory])
    problems = [p for r in results for p in r.problems]
    if problems:
        raise LibraryError(problems)
    protocols = {r.protocol.id: r.protocol for r in results if r.protocol is not None}
    if not protocols:
        raise LibraryError([f"{directory}: no protocol files (*.yaml with 'kind: protocol')"])
    skipped = tuple(f"{r.path}: {r.skipped}" for r in results if r.skipped)
    return Library(protocols=protocols, path=str(directory), skipped=skipped)
