"""Clinical scenario -> ranked procedures, protocol id, earliest date, companion tests, citations.

The same recommendation checks an ordered or scheduled exam (:func:`check_order`, used by the worklist
job) and names the protocol the audit validates a study against (:func:`select_protocol`), so the
recommender, the order check and the audit always agree for the same context.

The clinical rules are data (``protocols/rules.yaml``, validated by ``schemas/rules.schema.json`` and
cross-checked here); this module only interprets them.  Every statement in the output carries the ids of
its sources, and :attr:`Recommendation.sources` resolves them to the cited text.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from protocolcheck.clinical.findings import Finding, FindingCode, Severity, Status, status_for
from protocolcheck.clinical import safeyaml
from protocolcheck.clinical.context import ClinicalContext

RULES_FILENAME = "rules.yaml"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "rules.schema.json"
LIBRARY_ENV = "PROTOCOLCHECK_LIBRARY"
RULES_ENV = "PROTOCOLCHECK_RULES"


class Appropriateness(str, Enum):
    """ACR Appropriateness Criteria categories, best first."""

    USUALLY = "usually-appropriate"
    MAY_BE = "may-be-appropriate"
    NOT = "usually-not-appropriate"

    @property
    def order(self) -> int:
        return {"usually-appropriate": 0, "may-be-appropriate": 1, "usually-not-appropriate": 2}[self.value]

    @property
    def label(self) -> str:
        return self.value.replace("-", " ")


class TimingStatus(str, Enum):
    NO_TRAUMA = "no-trauma"
    TRAUMA_DATE_MISSING = "trauma-date-missing"
    NOT_APPLICABLE = "not-applicable"
    TOO_EARLY = "too-early"
    IN_WINDOW = "in-window"
    LATE = "late"


class RulesError(ValueError):
    """The rules file cannot be used; ``problems`` names the file and key of every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ScenarioError(ValueError):
    """The clinical inputs cannot be used: malformed, contradictory, or outside these rules."""

    def __init__(self, problems: list[str], out_of_scope: bool = False) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.out_of_scope = out_of_scope


# ----------------------------------------------------------------------------------------------------
# Rules (the parsed rules.yaml)

@dataclass(frozen=True)
class Source:
    id: str
    origin: str
    title: str
    statement: str
    url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "title": self.title, "statement": self.statement, "url": self.url or None}


@dataclass(frozen=True)
class Procedure:
    key: str
    name: str
    protocol: str | None
    modality: str
    region: str
    contrast: str
    agent: str | None = None
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rating:
    procedure: str
    appropriateness: Appropriateness
    citations: tuple[str, ...]
    rationale: str
    note: str = ""


@dataclass(frozen=True)
class Variant:
    id: str
    title: str
    when: Mapping[str, Any]
    citations: tuple[str, ...]
    ratings: tuple[Rating, ...]


@dataclass(frozen=True)
class StatementRule:
    text: str
    citations: tuple[str, ...]
    variants: tuple[str, ...] | None = None
    when: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Exclusion:
    id: str
    when: Mapping[str, Any]
    applies_to: Mapping[str, str]
    reason: str
    citations: tuple[str, ...]


@dataclass(frozen=True)
class Category:
    id: str
    scope: str  # in | modifier | out
    label: str
    message: str = ""


@dataclass(frozen=True)
class CodeRule:
    prefix: str
    categories: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class KeywordRule:
    pattern: re.Pattern[str]
    categories: tuple[str, ...]


@dataclass(frozen=True)
class Conflict:
    id: str
    when: Mapping[str, Any]
    message: str
    citations: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    """The decision rules, validated and cross-checked."""

    path: str
    version: int
    sources: Mapping[str, Source]
    min_days_after_trauma: int
    max_days_after_trauma: int
    timing_variants: tuple[str, ...]
    timing_citations: tuple[str, ...]
    max_timing_citations: tuple[str, ...]
    gadolinium_avoid_below_egfr: float
    iodinated_caution_below_egfr: float
    egfr_range: tuple[float, float]
    categories: Mapping[str, Category]
    context_categories: Mapping[str, str]
    codes: tuple[CodeRule, ...]
    keywords: tuple[KeywordRule, ...]
    negations: tuple[re.Pattern[str], ...]
    conflicts: tuple[Conflict, ...]
    procedures: Mapping[str, Procedure]
    order_parsing: Mapping[str, tuple[tuple[str, re.Pattern[str]], ...]]
    variants: tuple[Variant, ...]
    exclusions: tuple[Exclusion, ...]
    companion: tuple[StatementRule, ...]
    follow_up: tuple[StatementRule, ...]
    cautions: tuple[StatementRule, ...]

    def variant(self, variant_id: str) -> Variant:
        return next(v for v in self.variants if v.id == variant_id)

    def protocol_ids(self) -> set[str]:
        """Every library protocol id these rules can name (for cross-checking with the library)."""
        return {p.protocol for p in self.procedures.values() if p.protocol}


def default_rules_path(library_dir: str | os.PathLike[str] | None = None) -> Path:
    """rules.yaml from ``library_dir``, ``$PROTOCOLCHECK_RULES``, ``$PROTOCOLCHECK_LIBRARY``, or the package."""
    if library_dir is not None:
        return Path(library_dir) / RULES_FILENAME
    if os.environ.get(RULES_ENV):
        return Path(os.environ[RULES_ENV])
    if os.environ.get(LIBRARY_ENV):
        candidate = Path(os.environ[LIBRARY_ENV]) / RULES_FILENAME
        if candidate.is_file():
            return candidate
    try:  # installed: protocols/ is shipped as the package protocolcheck.protocols
        packaged = Path(str(importlib.resources.files("protocolcheck.protocols") / RULES_FILENAME))
        if packaged.is_file():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "protocols" / RULES_FILENAME  # source tree


_CACHE: dict[tuple[str, float], Rules] = {}


def load_rules(path: str | os.PathLike[str] | None = None) -> Rules:
    """Load, schema-validate and cross-check the rules; :class:`RulesError` lists every problem."""
    file = Path(path) if path is not None else default_rules_path()
    name = str(file)
    try:
        key = (str(file.resolve()), file.stat().st_mtime)
    except OSError as exc:
        raise RulesError([f"{name}: cannot read the rules file ({exc.strerror or exc})"]) from exc
    if key in _CACHE:
        return _CACHE[key]
    try:
        data = safeyaml.load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([f"{name}: cannot read the rules file ({exc})"]) from exc
    except yaml.constructor.ConstructorError as exc:  # a tag safe_load refuses (e.g. !!python/object)
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise RulesError([f"{where}: YAML tag not allowed ({exc.problem}); the rules file is plain data, "
                          "tags that build objects or run code are refused"]) from exc
    except yaml.YAMLError as exc:
        raise RulesError([f"{name}: not valid YAML: {exc}"]) from exc
    except RecursionError:
        raise RulesError([f"{name}: nested too deeply to read"]) from None
    except ValueError as exc:  # PyYAML builds dates with Python types: 2026-02-30 raises ValueError
        raise RulesError([f"{name}: a value YAML cannot read ({exc}); correct it or quote it"]) from exc
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise RulesError([f"{name}: {_key_path(e.absolute_path)}: {e.message}" for e in errors])
    rules = _build_rules(name, data)
    _CACHE[key] = rules
    return rules


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _build_rules(name: str, d: dict[str, Any]) -> Rules:
    problems: list[str] = []

    def compile_re(pattern: str, where: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            problems.append(f"{name}: {where}: bad regular expression {pattern!r}: {exc}")
            return re.compile(r"(?!x)x")

    sources = {k: Source(k, v["origin"], v["title"], v["statement"], v.get("url", "")) for k, v in d["sources"].items()}
    categories = {k: Category(k, v["scope"], v["label"], v.get("message", "")) for k, v in d["categories"].items()}
    procedures = {
        k: Procedure(k, v["name"], v["protocol"], v["modality"], v["region"], v["contrast"], v.get("agent"),
                     tuple(v.get("codes", ())))
        for k, v in d["procedures"].items()
    }
    variant_ids = [v["id"] for v in d["variants"]]

    def check_cites(ids: Sequence[str], where: str) -> tuple[str, ...]:
        for cid in ids:
            if cid not in sources:
                problems.append(f"{name}: {where}: citation {cid!r} is not defined under sources")
        return tuple(ids)

    def check_cats(ids: Iterable[str], where: str) -> tuple[str, ...]:
        ids = tuple(ids)
        for cat in ids:
            if cat not in categories:
                problems.append(f"{name}: {where}: category {cat!r} is not defined under categories")
        return ids

    def check_variants(ids: Iterable[str], where: str) -> tuple[str, ...]:
        ids = tuple(ids)
        for vid in ids:
            if vid not in variant_ids:
                problems.append(f"{name}: {where}: variant {vid!r} is not defined under variants")
        return ids

    def check_condition(cond: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        for key, value in cond.items():
            if key in ("any", "all"):
                for i, sub in enumerate(value):
                    check_condition(sub, f"{where}.{key}[{i}]")
            elif key == "not":
                check_condition(value, f"{where}.not")
            elif key.startswith("categories_"):
                check_cats(value, f"{where}.{key}")
            elif key == "variants":
                check_variants(value, f"{where}.variants")
        return cond

    if len(set(variant_ids)) != len(variant_ids):
        problems.append(f"{name}: variants: duplicate variant ids {variant_ids}")
    variants = []
    for i, v in enumerate(d["variants"]):
        where = f"variants[{i}] ({v['id']})"
        ratings = []
        seen: set[str] = set()
        for j, r in enumerate(v["ratings"]):
            if r["procedure"] not in procedures:
                problems.append(f"{name}: {where}.ratings[{j}]: procedure {r['procedure']!r} is not defined under procedures")
            if r["procedure"] in seen:
                problems.append(f"{name}: {where}.ratings[{j}]: procedure {r['procedure']!r} is rated twice")
            seen.add(r["procedure"])
            ratings.append(Rating(r["procedure"], Appropriateness(r["appropriateness"]),
                                  check_cites(r["citations"], f"{where}.ratings[{j}]"), r["rationale"], r.get("note", "")))
        variants.append(Variant(v["id"], v["title"], check_condition(v["when"], f"{where}.when"),
                                check_cites(v["citations"], where), tuple(ratings)))

    codes = tuple(CodeRule(c["prefix"], check_cats(c["categories"], f"codes[{i}]"), c["label"])
                  for i, c in enumerate(d["codes"]))
    keywords = tuple(KeywordRule(compile_re(k["pattern"], f"keywords[{i}]"), check_cats(k["categories"], f"keywords[{i}]"))
                     for i, k in enumerate(d["keywords"]))
    negations = tuple(compile_re(p, f"negations[{i}]") for i, p in enumerate(d.get("negations", ())))
    context_categories = dict(d.get("context_categories", {}))
    check_cats(context_categories.values(), "context_categories")
    conflicts = tuple(Conflict(c["id"], check_condition(c["when"], f"conflicts[{i}].when"), c["message"],
                               check_cites(c["citations"], f"conflicts[{i}]"))
                      for i, c in enumerate(d.get("conflicts", ())))
    exclusions = []
    for i, e in enumerate(d["exclusions"]):
        for key, value in e["applies_to"].items():
            if not any(getattr(p, key) == value for p in procedures.values()):
                problems.append(f"{name}: exclusions[{i}].applies_to.{key}: no procedure has {key} {value!r}")
        exclusions.append(Exclusion(e["id"], check_condition(e["when"], f"exclusions[{i}].when"), dict(e["applies_to"]),
                                    e["reason"], check_cites(e["citations"], f"exclusions[{i}]")))

    def statements(section: str) -> tuple[StatementRule, ...]:
        out = []
        for i, s in enumerate(d[section]):
            where = f"{section}[{i}]"
            out.append(StatementRule(
                s["text"], check_cites(s["citations"], where),
                check_variants(s["variants"], where) if "variants" in s else None,
                check_condition(s["when"], f"{where}.when") if "when" in s else None))
        return tuple(out)

    order_parsing: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {}
    allowed = {"modality": {p.modality for p in procedures.values()}, "region": {p.region for p in procedures.values()},
               "contrast": {"without", "with", "without-and-with"}}
    for axis, entries in d["order_parsing"].items():
        parsed = []
        for i, entry in enumerate(entries):
            if entry["value"] not in allowed[axis]:
                problems.append(f"{name}: order_parsing.{axis}[{i}]: value {entry['value']!r} is used by no procedure "
                                f"(known: {', '.join(sorted(allowed[axis]))})")
            parsed.append((entry["value"], compile_re(entry["pattern"], f"order_parsing.{axis}[{i}]")))
        order_parsing[axis] = tuple(parsed)

    timing = d["timing"]
    if timing["min_days_after_trauma"] >= timing["max_days_after_trauma"]:
        problems.append(f"{name}: timing: min_days_after_trauma must be below max_days_after_trauma")
    low, high = d["egfr_range"]
    if low >= high:
        problems.append(f"{name}: egfr_range: the low end must be below the high end")
    rules = Rules(
        path=name, version=d["version"], sources=sources,
        min_days_after_trauma=timing["min_days_after_trauma"], max_days_after_trauma=timing["max_days_after_trauma"],
        timing_variants=check_variants(timing["variants"], "timing.variants"),
        timing_citations=check_cites(timing["citations"], "timing.citations"),
        max_timing_citations=check_cites(timing.get("max_citations", timing["citations"]), "timing.max_citations"),
        gadolinium_avoid_below_egfr=float(d["contrast_policy"]["gadolinium_avoid_below_egfr"]),
        iodinated_caution_below_egfr=float(d["contrast_policy"]["iodinated_caution_below_egfr"]),
        egfr_range=(float(low), float(high)), categories=categories, context_categories=context_categories,
        codes=codes, keywords=keywords, negations=negations, conflicts=conflicts, procedures=procedures,
        order_parsing=order_parsing, variants=tuple(variants), exclusions=tuple(exclusions),
        companion=statements("companion"), follow_up=statements("follow_up"), cautions=statements("cautions"),
    )
    if problems:
        raise RulesError(problems)
    return rules


# ----------------------------------------------------------------------------------------------------
# Understanding the scenario

_CODEISH = re.compile(r"(?<![\w./-])([A-Za-z]\d\d[\w.\-]*)")
_ICD_STRICT = re.compile(r"[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?")
_ICD_DOTLESS = re.compile(r"[A-Z]\d[0-9A-Z][0-9A-Z]{1,4}")
_SPINAL_LEVEL = re.compile(r"T1[0-2](-[A-Z]?\d{1,2})?")  # T10-T12 are vertebral levels, not ICD-10-CM codes


def extract_icd10(text: str) -> tuple[list[str], list[str]]:
    """ICD-10-CM codes in free text, normalised (``G541`` -> ``G54.1``), and code-like tokens that are malformed."""
    codes: list[str] = []
    malformed: list[str] = []
    for match in _CODEISH.finditer(text):
        token = match.group(1).rstrip(".-").upper()
        if _SPINAL_LEVEL.fullmatch(token):
            continue
        if _ICD_STRICT.fullmatch(token):
            code = token
        elif _ICD_DOTLESS.fullmatch(token):
            code = token[:3] + "." + token[3:]
        else:
            malformed.append(match.group(1))
            continue
        if code not in codes:
            codes.append(code)
    return codes, malformed


@dataclass(frozen=True)
class CodeMatch:
    code: str
    prefix: str
    label: str
    categories: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "matched": self.prefix, "label": self.label, "categories": list(self.categories)}


@dataclass(frozen=True)
class Scenario:
    """The clinical inputs as understood (the ``scenario`` object of ``recommend --format json``)."""

    indication: str
    codes: tuple[CodeMatch, ...]
    unknown_codes: tuple[str, ...]
    keywords: tuple[str, ...]
    categories: tuple[str, ...]
    on: dt.date
    trauma_date: dt.date | None
    mri_contraindicated: bool | None
    gadolinium_contraindicated: bool | None
    iodinated_contrast_contraindicated: bool | None
    egfr: float | None
    dermatomal: bool | None
    known_malignancy: bool | None
    prior_radiation: bool | None
    notes: tuple[str, ...] = ()

    @property
    def days_since_trauma(self) -> int | None:
        return (self.on - self.trauma_date).days if self.trauma_date else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "indication": self.indication,
            "codes": [c.to_dict() for c in self.codes],
            "unknown_codes": list(self.unknown_codes),
            "keywords": list(self.keywords),
            "categories": list(self.categories),
            "on": self.on.isoformat(),
            "trauma_date": self.trauma_date.isoformat() if self.trauma_date else None,
            "days_since_trauma": self.days_since_trauma,
            "mri_contraindicated": self.mri_contraindicated,
            "gadolinium_contraindicated": self.gadolinium_contraindicated,
            "iodinated_contrast_contraindicated": self.iodinated_contrast_contraindicated,
            "egfr": self.egfr,
            "dermatomal": self.dermatomal,
            "known_malignancy": self.known_malignancy,
            "prior_radiation": self.prior_radiation,
            "notes": list(self.notes),
        }


def _match_code(code: str, rules: Rules) -> CodeRule | None:
    best: CodeRule | None = None
    for rule in rules.codes:
        if code.startswith(rule.prefix) and (best is None or len(rule.prefix) > len(best.prefix)):
            best = rule
    return best


def understand(context: ClinicalContext, on: dt.date, rules: Rules, today: dt.date | None = None,
               check_dates: bool = True) -> tuple[Scenario, list[str], bool]:
    """Parse the context into a :class:`Scenario`; also return the input problems and whether it is out of scope."""
    today = today or dt.date.today()
    problems: list[str] = []
    notes: list[str] = []
    text = context.indication or ""
    codes, malformed = extract_icd10(text)
    for token in malformed:
        problems.append(f"indication: {token!r} is not an ICD-10-CM code; write codes as a letter, two digits and "
                        "an optional dot part (e.g. G54.1, G57.01, M54.16, S34.4XXA)")
    matched: list[CodeMatch] = []
    unknown: list[str] = []
    categories: dict[str, None] = {}
    for code in codes:
        rule = _match_code(code, rules)
        if rule is None:
            unknown.append(code)
            continue
        matched.append(CodeMatch(code, rule.prefix, rule.label, rule.categories))
        categories.update(dict.fromkeys(rule.categories))
    free = text.lower()
    negated: set[str] = set()  # categories the text explicitly denies ("non-traumatic", "no history of cancer")
    for negation in rules.negations:
        for hit in negation.finditer(free):
            negated.update(c for kw in rules.keywords if kw.pattern.search(hit.group(0)) for c in kw.categories)
        free = negation.sub(" ", free)
    text_categories: set[str] = set()
    keywords: list[str] = []
    for kw in rules.keywords:
        hit = kw.pattern.search(free)
        if hit:
            keywords.append(hit.group(0).strip())
            text_categories.update(kw.categories)
            categories.update(dict.fromkeys(kw.categories))
    text_categories.update(c for m in matched for c in m.categories)
    for fact, category in rules.context_categories.items():
        value = getattr(context, fact, None)
        if value is True or (fact == "trauma_date" and value is not None):
            categories[category] = None
            if category in negated and category not in text_categories:
                shown = value.isoformat() if isinstance(value, dt.date) else "yes"
                problems.append(f"the indication denies {rules.categories[category].label} but {fact} is {shown}; "
                                "correct one of them")
        elif value is False and category in text_categories:
            problems.append(f"{fact} is 'no' but the indication names {rules.categories[category].label}; "
                            "correct one of them")

    egfr = context.egfr
    low, high = rules.egfr_range
    if egfr is not None and not low <= egfr <= high:
        problems.append(f"eGFR {egfr:g} is outside {low:g}-{high:g} mL/min/1.73 m2; give the estimated GFR, e.g. --egfr 45")
    if check_dates and context.trauma_date is not None:
        if context.trauma_date > today:
            problems.append(f"trauma date {context.trauma_date.isoformat()} is in the future (today is {today.isoformat()})")
        elif context.trauma_date > on:
            problems.append(f"trauma date {context.trauma_date.isoformat()} is after the exam date {on.isoformat()}")

    scenario = Scenario(
        indication=text, codes=tuple(matched), unknown_codes=tuple(unknown), keywords=tuple(keywords),
        categories=tuple(categories), on=on, trauma_date=context.trauma_date,
        mri_contraindicated=context.mri_contraindicated, gadolinium_contraindicated=context.gadolinium_contraindicated,
        iodinated_contrast_contraindicated=getattr(context, "iodinated_contrast_contraindicated", None),
        egfr=egfr, dermatomal=context.dermatomal, known_malignancy=context.known_malignancy,
        prior_radiation=context.prior_radiation,
    )
    facts = _facts(scenario, None)
    for conflict in rules.conflicts:
        if evaluate(conflict.when, facts):
            problems.append(conflict.message)

    out = [c for c in categories if rules.categories[c].scope == "out"]
    in_scope = [c for c in categories if rules.categories[c].scope == "in"] or (
        ["dermatomal"] if context.dermatomal and not out else [])
    out_of_scope = False
    if not text.strip() and not context.dermatomal:
        problems.append("no indication given: give --indication with free text and/or ICD-10-CM codes "
                        "(e.g. 'piriformis syndrome G57.01', 'lumbosacral plexopathy G54.1', 'S34.4XXA')")
        out_of_scope = True
    elif not in_scope:
        out_of_scope = True
        if out:
            problems.extend(f"{rules.categories[c].label}: {rules.categories[c].message}" for c in out)
        else:
            detail = f" (codes not in the rules: {', '.join(unknown)})" if unknown else ""
            problems.append(f"indication {text!r} names no lumbosacral plexopathy, entrapment or radiculopathy term or "
                            f"code known to the rules{detail}; known codes include G54.1, G57.0x, S34.4, M54.1x, "
                            "M51.1x, G54.4")
    else:
        notes.extend(f"{rules.categories[c].label} also named: {rules.categories[c].message}" for c in out)
        notes.extend(f"code {code} is not in the rules and was ignored" for code in unknown)
    if context.gadolinium_contraindicated and context.mri_contraindicated:
        notes.append("gadolinium contraindication noted; it does not change CT options")
    if notes:
        scenario = replace(scenario, notes=tuple(notes))
    return scenario, problems, out_of_scope


def _facts(scenario: Scenario, variant: str | None, none_appropriate: bool = False) -> dict[str, Any]:
    return {
        "categories": set(scenario.categories),
        "dermatomal": bool(scenario.dermatomal),
        "mri_contraindicated": bool(scenario.mri_contraindicated),
        "gadolinium_contraindicated": bool(scenario.gadolinium_contraindicated),
        "iodinated_contrast_contraindicated": bool(scenario.iodinated_contrast_contraindicated),
        "trauma_date_known": scenario.trauma_date is not None,
        "egfr": scenario.egfr,
        "variant": variant,
        "none_appropriate": none_appropriate,
    }


def evaluate(condition: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """True when every key of ``condition`` holds for ``facts`` (the condition language of rules.yaml)."""
    for key, value in condition.items():
        if key == "any":
            ok = any(evaluate(c, facts) for c in value)
        elif key == "all":
            ok = all(evaluate(c, facts) for c in value)
        elif key == "not":
            ok = not evaluate(value, facts)
        elif key == "egfr_below":
            ok = facts["egfr"] is not None and facts["egfr"] < value
        elif key == "categories_any":
            ok = bool(facts["categories"] & set(value))
        elif key == "categories_all":
            ok = set(value) <= facts["categories"]
        elif key == "categories_none":
            ok = not facts["categories"] & set(value)
        elif key == "variants":
            ok = facts["variant"] in value
        else:
            ok = bool(facts[key]) == value
        if not ok:
            return False
    return True


# ----------------------------------------------------------------------------------------------------
# The recommendation

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


class _Format(dict):  # str.format_map that leaves unknown {names} alone
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def recommend(context: ClinicalContext, on: dt.date | None = None, rules: Rules | None = None,
              today: dt.date | None = None) -> Recommendation:
    """Which exam and protocol, when, and what goes with it; :class:`ScenarioError` for unusable inputs."""
    return _recommend(context, on, rules, today, check_dates=True)


def _recommend(context: ClinicalContext, on: dt.date | None, rules: Rules | None, today: dt.date | None,
               check_dates: bool) -> Recommendation:
    rules = rules or load_rules()
    today = today or dt.date.today()
    on = on or today
    scenario, problems, out_of_scope = understand(context, on, rules, today, check_dates)
    if problems:
        raise ScenarioError(problems, out_of_scope=out_of_scope)
    facts = _facts(scenario, None)
    variant = next((v for v in rules.variants if evaluate(v.when, facts)), None)
    if variant is None:  # every in-scope scenario matches a variant in the shipped rules; a site may break that
        raise ScenarioError([f"no variant in {rules.path} matches categories {', '.join(scenario.categories)}"],
                            out_of_scope=True)
    facts["variant"] = variant.id
    values = _Format(egfr=f"{scenario.egfr:g}" if scenario.egfr is not None else "?",
                     gbca_egfr=f"{rules.gadolinium_avoid_below_egfr:g}",
                     icm_egfr=f"{rules.iodinated_caution_below_egfr:g}",
                     min_days=rules.min_days_after_trauma, max_days=rules.max_days_after_trauma)

    ranked: list[tuple[int, int, Rating]] = []
    excluded: list[ExcludedProcedure] = []
    for index, rating in enumerate(variant.ratings):
        proc = rules.procedures[rating.procedure]
        exclusion = next((e for e in rules.exclusions
                          if evaluate(e.when, facts)
                          and all(getattr(proc, k) == v for k, v in e.applies_to.items())), None)
        if exclusion is not None:
            threshold = exclusion.when.get("egfr_below")
            reason = exclusion.reason.format_map(_Format(values, threshold=f"{threshold:g}" if threshold else "?"))
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
                     if (s.variants is None or variant.id in s.variants) and (s.when is None or evaluate(s.when, facts)))

    timing = _timing(scenario, variant, rules)
    result = Recommendation(
        scenario=scenario, variant=variant, recommendations=tuple(recommendations), excluded=tuple(excluded),
        timing=timing, companion=pick(rules.companion), follow_up=pick(rules.follow_up), cautions=pick(rules.cautions),
        sources={}, rules_path=rules.path,
    )
    cited: dict[str, None] = {}
    for ids in ([variant.citations] + [r.citations for r in result.recommendations] + [e.citations for e in excluded]
                + [timing.citations] + [s.citations for s in result.companion + result.follow_up + result.cautions]):
        cited.update(dict.fromkeys(ids))
    object.__setattr__(result, "sources", {cid: rules.sources[cid] for cid in cited})
    return result


def _add_days(day: dt.date, days: int) -> dt.date:
    """``day + days``, saturating at the ends of the calendar (a trauma date of 9999-12-31 must not crash)."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def _timing(scenario: Scenario, variant: Variant, rules: Rules) -> Timing:
    lo, hi = rules.min_days_after_trauma, rules.max_days_after_trauma
    trauma = "trauma" in scenario.categories
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
    earliest = _add_days(scenario.trauma_date, lo)
    latest = _add_days(scenario.trauma_date, hi)
    days = scenario.days_since_trauma
    base = (f"Trauma on {scenario.trauma_date.isoformat()}, {days} days before {scenario.on.isoformat()}. "
            f"Image about 1 month after the injury so blood and soft-tissue edema resolve: on or after "
            f"{earliest.isoformat()} (trauma + {lo} days), and not much beyond {latest.isoformat()} (trauma + {hi} days).")
    if scenario.on < earliest:
        return Timing(TimingStatus.TOO_EARLY, earliest, latest,
                      base + f" {scenario.on.isoformat()} is too early: wait {(earliest - scenario.on).days} more days.",
                      rules.timing_citations)
    if scenario.on > latest:
        return Timing(TimingStatus.LATE, earliest, latest,
                      base + " That window has passed: image now, without further delay.", rules.max_timing_citations)
    return Timing(TimingStatus.IN_WINDOW, earliest, latest,
                  base + f" {scenario.on.isoformat()} is within that window: image now.", rules.timing_citations)


# ----------------------------------------------------------------------------------------------------
# Protocol selection for the audit

@dataclass(frozen=True)
class Selection:
    """The protocol the audit validates a study against: the recommender's first choice for the context."""

    protocol_id: str | None
    procedure: str
    reason: str
    citations: tuple[str, ...]


def _library_has(library: Any, protocol_id: str) -> bool:
    """Duck-typed membership test, so this module does not depend on the library's class."""
    try:
        return protocol_id in library
    except TypeError:
        pass
    getter = getattr(library, "get", None)
    if callable(getter):
        try:
            return getter(protocol_id) is not None
        except (KeyError, LookupError):
            return False
    protocols = getattr(library, "protocols", None)
    if protocols is not None:
        try:
            return protocol_id in protocols
        except TypeError:
            pass
    return True


def select_protocol(context: ClinicalContext, library: Any = None, on: dt.date | None = None,
                    rules: Rules | None = None) -> Selection:
    """The library protocol of the top recommendation for ``context``; never raises for clinical inputs.

    Dates do not change the choice of exam, so date problems (a trauma date after ``on``) are ignored here;
    other input problems give ``protocol_id=None`` with the reason.
    """
    try:
        if rules is None:  # the rules that live with this library, so audit and recommender read the same file
            folder = getattr(library, "path", "") if library is not None else ""
            beside = Path(folder) / RULES_FILENAME if folder else None
            rules = load_rules(beside if beside is not None and beside.is_file() else None)
        rec = _recommend(context, on, rules, None, check_dates=False)
    except ScenarioError as exc:
        return Selection(None, "", "no recommendation: " + "; ".join(exc.problems), ())
    except RulesError as exc:
        return Selection(None, "", "the decision rules cannot be used: " + "; ".join(exc.problems), ())
    top = rec.top
    if top is None:
        return Selection(None, "", f"{rec.variant.title}: no procedure is suitable for this patient", rec.variant.citations)
    reason = f"{rec.variant.title}: {top.procedure} is {top.appropriateness.label} (rank 1). {top.rationale}"
    protocol = top.protocol
    if protocol is None:
        reason += " No library protocol exists for this procedure."
    elif library is not None and not _library_has(library, protocol):
        reason += f" Protocol {protocol!r} is not in the protocol library."
        protocol = None
    return Selection(protocol, top.procedure, reason, top.citations)


# ----------------------------------------------------------------------------------------------------
# Order check

@dataclass(frozen=True)
class ParsedOrder:
    """What an order's description and/or code say about the exam."""

    description: str
    code: str
    modality: str | None
    region: str | None
    contrast: str | None
    region_from_code: bool
    key: str | None
    candidates: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self, rules: Rules | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"description": self.description, "code": self.code or None, "modality": self.modality,
                                "region": self.region, "contrast": self.contrast, "procedure_key": self.key,
                                "notes": list(self.notes)}
        if rules is not None and self.key:
            proc = rules.procedures[self.key]
            data["procedure"] = proc.name
            data["protocol"] = proc.protocol
        return data


def parse_order(description: str, code: str = "", rules: Rules | None = None) -> ParsedOrder:
    """Identify the ordered procedure from its description (region, contrast) and/or CPT code."""
    rules = rules or load_rules()
    text = (description or "").strip()
    code = (code or "").strip().upper()
    notes: list[str] = []

    def first(axis: str) -> str | None:
        return next((value for value, pattern in rules.order_parsing[axis] if pattern.search(text)), None)

    modality, region, contrast = first("modality"), first("region"), first("contrast")
    region_from_code = False
    if code:
        coded = next((p for p in rules.procedures.values() if code in p.codes), None)
        if coded is None:
            notes.append(f"procedure code {code} is not in the rules; the description decides")
        else:
            if modality and modality != coded.modality:
                notes.append(f"code {code} is {coded.name} but the description says {modality}; the description decides")
            else:
                modality = modality or coded.modality
                if region is None:
                    region, region_from_code = coded.region, True
                contrast = contrast or coded.contrast
    if region and modality is None:
        modality = next((p.modality for p in rules.procedures.values() if p.region == region), None)
    candidates = tuple(p.key for p in rules.procedures.values()
                       if (modality is None or p.modality == modality) and (region is None or p.region == region)
                       and (contrast is None or p.contrast == contrast or (contrast == "without" and p.contrast == "none")))
    if region is None:  # the body part decides the exam; without it nothing can be judged
        candidates = ()
    key = candidates[0] if len(candidates) == 1 else None
    return ParsedOrder(text, code, modality, region, contrast, region_from_code, key, candidates, tuple(notes))


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
            "earliest_date": rec.timing.earliest_date.isoformat() if rec and rec.timing.earliest_date else None,
            "timing": rec.timing.to_dict() if rec else None,
            "problems": list(self.problems),
        }


def _cite(rules: Rules, ids: Sequence[str]) -> str:
    """A short quotation of the first cited statement, for finding messages."""
    if not ids:
        return ""
    source = rules.sources[ids[0]]
    return f" [{source.origin}: \"{source.statement}\"]"


def check_order(procedure: str, context: ClinicalContext, procedure_code: str = "", scheduled: dt.date | None = None,
                rules: Rules | None = None, today: dt.date | None = None) -> OrderCheck:
    """Is this order the exam the indication calls for, at the right time?  Never raises for clinical inputs.

    Unusable inputs give status ``error`` (out-of-scope indications ``no-protocol``) with ``problems``.
    """
    rules = rules or load_rules()
    today = today or dt.date.today()
    scheduled = scheduled or today
    try:
        rec = recommend(context, on=scheduled, rules=rules, today=today)
    except ScenarioError as exc:
        status = Status.NO_PROTOCOL if exc.out_of_scope else Status.ERROR
        return OrderCheck(procedure, procedure_code, scheduled, status, (), None, None, None, tuple(exc.problems))
    ordered = parse_order(procedure, procedure_code, rules)
    findings: list[Finding] = []
    top = rec.top
    top_text = f"{top.procedure} ({top.protocol or 'no library protocol'})" if top else "no suitable procedure"
    evidence = {"ordered": ordered.key, "recommended": top.key if top else None, "variant": rec.variant.id}

    def wrong(severity: Severity, message: str, citations: Sequence[str]) -> None:
        findings.append(Finding(FindingCode.WRONG_PROTOCOL, severity, message + _cite(rules, citations),
                                requirement="order:procedure", citations=tuple(citations), evidence=dict(evidence)))

    ranked = {r.key: r for r in rec.recommendations}
    excluded = {e.key: e for e in rec.excluded}
    key = ordered.key
    if key is None and ordered.candidates:
        if top and top.key in ordered.candidates:
            findings.append(Finding(
                FindingCode.CONTEXT_MISSING, Severity.INFO,
                f"The order {procedure!r} does not state the contrast; the recommended exam is {top_text}.",
                requirement="order:contrast", evidence=dict(evidence)))
        else:  # judge the best-ranked exam the order could be
            order_of = {k: i for i, k in enumerate(list(ranked) + list(excluded))}
            key = min(ordered.candidates, key=lambda k: order_of.get(k, len(order_of)))
    if key is None and not ordered.candidates:
        findings.append(Finding(
            FindingCode.CONTEXT_MISSING, Severity.WARNING,
            f"Cannot tell which exam {procedure or procedure_code!r} is (modality {ordered.modality or '?'}, region "
            f"{ordered.region or '?'}, contrast {ordered.contrast or '?'}); the recommended exam is {top_text}.",
            requirement="order:procedure", evidence=dict(evidence)))
    elif key is not None:
        name = rules.procedures[key].name if ordered.key else f"{procedure or procedure_code!r} (contrast not stated)"
        if ordered.contrast == "with" and rules.procedures[key].modality == "MR":
            name += (" - 'with contrast' means post-contrast only (as in ACR and CPT terms); if pre-contrast "
                     "sequences are intended, order 'without and with'")
        soften = ordered.region_from_code and rules.procedures[key].region == "pelvis"
        hedge = (f" The region comes only from code {ordered.code}, which is also used to bill dedicated plexus MRI: "
                 "if this is the plexus protocol, say so in the description." if soften else "")
        if key in excluded:
            e = excluded[key]
            wrong(Severity.ERROR, f"Ordered {name}, but it is not suitable for this patient: {e.reason}. "
                                  f"Recommended instead: {top_text}.", e.citations)
        elif key in ranked:
            r = ranked[key]
            if top is not None and r.key != top.key:
                if r.appropriateness is Appropriateness.NOT:
                    wrong(Severity.WARNING if soften else Severity.ERROR,
                          f"Ordered {name}: {r.appropriateness.label} for {rec.variant.title.split(' - ')[0].lower()}. "
                          f"{r.rationale} Recommended instead: {top_text}.{hedge}", r.citations)
                elif r.appropriateness.order > top.appropriateness.order:
                    wrong(Severity.WARNING, f"Ordered {name}: {r.appropriateness.label}; the first choice is {top_text}, "
                                            f"{top.appropriateness.label}. {r.rationale}", r.citations)
                else:
                    findings.append(Finding(
                        FindingCode.WRONG_PROTOCOL, Severity.INFO,
                        f"Ordered {name}: {r.appropriateness.label}, like the first choice {top_text}.",
                        requirement="order:procedure", citations=r.citations, evidence=dict(evidence)))
            elif r.appropriateness is Appropriateness.NOT:
                wrong(Severity.WARNING, f"Ordered {name}: the best remaining option for this patient, but "
                                        f"{r.appropriateness.label}; discuss with a radiologist.", r.citations)
        else:
            wrong(Severity.WARNING, f"Ordered {name}, which is not among the exams rated for "
                                    f"{rec.variant.title.split(' - ')[0].lower()}. Recommended: {top_text}.",
                  rec.variant.citations)

    timing = rec.timing
    if timing.status is TimingStatus.TOO_EARLY and timing.earliest_date:
        days = rec.scenario.days_since_trauma
        findings.append(Finding(
            FindingCode.TRAUMA_TOO_EARLY, Severity.ERROR,
            f"Scheduled {scheduled.isoformat()}, {days} days after the trauma on {rec.scenario.trauma_date}: too early. "
            f"Image on or after {timing.earliest_date.isoformat()} (about 1 month after the injury, so blood and "
            f"soft-tissue edema resolve)." + _cite(rules, timing.citations),
            requirement="timing:min-days-after-trauma", citations=timing.citations,
            evidence={"trauma_date": str(rec.scenario.trauma_date), "days_since_trauma": days,
                      "earliest_date": timing.earliest_date.isoformat()}))
    elif timing.status is TimingStatus.LATE and timing.latest_date:
        days = rec.scenario.days_since_trauma
        findings.append(Finding(
            FindingCode.TRAUMA_DELAYED, Severity.WARNING,
            f"Scheduled {scheduled.isoformat()}, {days} days after the trauma on {rec.scenario.trauma_date}: later than "
            f"{timing.latest_date.isoformat()} (trauma + {rules.max_days_after_trauma} days); do not delay appropriate "
            "imaging further." + _cite(rules, timing.citations),
            requirement="timing:max-days-after-trauma", citations=timing.citations,
            evidence={"trauma_date": str(rec.scenario.trauma_date), "days_since_trauma": days,
                      "latest_date": timing.latest_date.isoformat()}))
    elif timing.status is TimingStatus.TRAUMA_DATE_MISSING:
        findings.append(Finding(
            FindingCode.CONTEXT_MISSING, Severity.WARNING,
            "The indication names trauma but no trauma date was given, so the timing (about 1 month after the "
            "injury) cannot be checked." + _cite(rules, timing.citations),
            requirement="timing:trauma-date", citations=timing.citations))
    return OrderCheck(procedure, procedure_code, scheduled, status_for(findings), tuple(findings), top, ordered, rec, ())


__all__ = [
    "Appropriateness", "CodeMatch", "ExcludedProcedure", "OrderCheck", "ParsedOrder", "RankedProcedure",
    "Recommendation", "Rules", "RulesError", "Scenario", "ScenarioError", "Selection", "Statement", "Timing",
    "TimingStatus", "check_order", "default_rules_path", "evaluate", "extract_icd10", "load_rules", "parse_order",
    "recommend", "select_protocol", "understand",
]
