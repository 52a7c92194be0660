"""The decision rules (``protocols/rules.yaml``): load, schema-validate, cross-check.

Every clinical number and vocabulary the clinical core uses lives in that file (trauma window, eGFR
bounds, ICD-10-CM code prefixes, indication keywords and negations, contraindication words, order
vocabulary, procedures and their ratings, cautions); this module only reads it.  :func:`evaluate` is
the small condition language the file's ``when`` keys are written in.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from protocolcheck import config
from protocolcheck.clinical import safeyaml
from protocolcheck.dicom.safeio import read_text_regular
from protocolcheck.errors import InputError

RULES_FILENAME = config.RULES_FILENAME
SCHEMA_PATH = Path(__file__).with_name("schemas") / "rules.schema.json"

class Appropriateness(str, Enum):
    """ACR Appropriateness Criteria rating categories, best first (ACR AC methodology: 7-9, 4-6, 1-3)."""

    USUALLY = "usually-appropriate"
    MAY_BE = "may-be-appropriate"
    NOT = "usually-not-appropriate"

    @property
    def order(self) -> int:
        return {"usually-appropriate": 0, "may-be-appropriate": 1, "usually-not-appropriate": 2}[self.value]

    @property
    def label(self) -> str:
        return self.value.replace("-", " ")


class RulesError(InputError, ValueError):
    """The rules file cannot be used; ``problems`` names the file and key of every problem."""

    headline = "the decision rules cannot be used"


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
    label: str  # short, for prose: "nontraumatic lumbosacral plexopathy"
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
class Vocabulary:
    """One value an order text can name (a modality, region, contrast or side), its pattern and label."""

    value: str
    pattern: re.Pattern[str]
    label: str = ""


@dataclass(frozen=True)
class TextRule:
    """A labelled pattern for a fact written in free text (a device, a contrast reaction)."""

    label: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class ContraindicationText:
    """The words that name contraindications in free text (``contraindication_text`` of rules.yaml)."""

    mri_devices: tuple[TextRule, ...]
    mri_contraindicated: re.Pattern[str]
    mr_conditional: re.Pattern[str]
    gadolinium: tuple[TextRule, ...]
    iodinated: tuple[TextRule, ...]
    pregnancy: re.Pattern[str]
    negations: tuple[re.Pattern[str], ...]


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
    order_parsing: Mapping[str, tuple[Vocabulary, ...]]
    trauma_date_words: re.Pattern[str]
    trauma_date_window: int
    pregnancy_contraindicates_gadolinium: bool
    contraindication_text: ContraindicationText
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


def shipped_protocols_dir() -> Path:
    """The protocol library and rules that come with this code (:func:`protocolcheck.config.shipped_protocols_dir`)."""
    return config.shipped_protocols_dir()


def default_rules_path(library_dir: str | os.PathLike[str] | None = None) -> Path:
    """rules.yaml from ``library_dir``, ``$PROTOCOLCHECK_RULES``, ``$PROTOCOLCHECK_LIBRARY``, or the package."""
    return config.rules_file(library_dir)


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
        data = safeyaml.load(read_text_regular(file))  # a named pipe: refused, not waited on
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
    """The typed rules of a schema-valid document; RulesError listing every cross-reference problem."""
    return _RulesBuilder(name, d).build()


class _RulesBuilder:
    """Builds :class:`Rules` from a schema-valid ``rules.yaml`` document, collecting every problem the schema
    cannot see (undefined citations, categories, variants and procedures; bad regular expressions and
    templates; inverted ranges) in document order."""

    def __init__(self, name: str, d: dict[str, Any]) -> None:
        self.name = name
        self.d = d
        self.problems: list[str] = []
        self.sources = {k: Source(k, v["origin"], v["title"], v["statement"], v.get("url", ""))
                        for k, v in d["sources"].items()}
        self.categories = {k: Category(k, v["scope"], v["label"], v.get("message", ""))
                           for k, v in d["categories"].items()}
        self.procedures = {
            k: Procedure(k, v["name"], v["protocol"], v["modality"], v["region"], v["contrast"], v.get("agent"),
                         tuple(v.get("codes", ())))
            for k, v in d["procedures"].items()
        }
        self.variant_ids = [v["id"] for v in d["variants"]]

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{self.name}: {where}: {text}")

    # -- the checks -----------------------------------------------------------------------------------

    def compile_re(self, pattern: str, where: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            self.problem(where, f"bad regular expression {pattern!r}: {exc}")
            return re.compile(r"(?!x)x")

    def check_cites(self, ids: Sequence[str], where: str) -> tuple[str, ...]:
        self.problems.extend(f"{self.name}: {where}: citation {cid!r} is not defined under sources"
                             for cid in ids if cid not in self.sources)
        return tuple(ids)

    def check_template(self, text: str, where: str) -> str:
        """A text filled with ``str.format_map`` at decision time: every ``{...}`` must be a plain name
        (fuzz: an unmatched brace raised ValueError in ``recommend``; ``{x.attr}`` or ``{x[0]}`` would
        fail or reach into objects)."""
        try:
            fields = [(field, spec, conversion) for _lit, field, spec, conversion in string.Formatter().parse(text)
                      if field is not None]
        except ValueError as exc:
            self.problem(where, f"not a valid text template ({exc}); write {{{{ and }}}} for braces")
            return text
        for field_name, spec, conversion in fields:
            if not field_name.isidentifier() or spec or conversion:
                self.problem(where, f"placeholder {{{field_name}}} must be a plain name such as "
                                    "{egfr}; write {{{{ and }}}} for braces")
        return text

    def check_cats(self, ids: Iterable[str], where: str) -> tuple[str, ...]:
        ids = tuple(ids)
        self.problems.extend(f"{self.name}: {where}: category {cat!r} is not defined under categories"
                             for cat in ids if cat not in self.categories)
        return ids

    def check_variants(self, ids: Iterable[str], where: str) -> tuple[str, ...]:
        ids = tuple(ids)
        self.problems.extend(f"{self.name}: {where}: variant {vid!r} is not defined under variants"
                             for vid in ids if vid not in self.variant_ids)
        return ids

    def check_condition(self, cond: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        for key, value in cond.items():
            if key in ("any", "all"):
                for i, sub in enumerate(value):
                    self.check_condition(sub, f"{where}.{key}[{i}]")
            elif key == "not":
                self.check_condition(value, f"{where}.not")
            elif key.startswith("categories_"):
                self.check_cats(value, f"{where}.{key}")
            elif key == "variants":
                self.check_variants(value, f"{where}.variants")
        return cond

    # -- the sections ---------------------------------------------------------------------------------

    def variants(self) -> tuple[Variant, ...]:
        if len(set(self.variant_ids)) != len(self.variant_ids):
            self.problem("variants", f"duplicate variant ids {self.variant_ids}")
        variants = []
        for i, v in enumerate(self.d["variants"]):
            where = f"variants[{i}] ({v['id']})"
            ratings = self.ratings(v["ratings"], where)
            variants.append(Variant(v["id"], v["title"], v["label"], self.check_condition(v["when"], f"{where}.when"),
                                    self.check_cites(v["citations"], where), ratings))
        return tuple(variants)

    def ratings(self, ratings: Sequence[dict[str, Any]], where: str) -> tuple[Rating, ...]:
        out = []
        seen: set[str] = set()
        for j, r in enumerate(ratings):
            procedure = r["procedure"]
            if procedure not in self.procedures:
                self.problem(f"{where}.ratings[{j}]", f"procedure {procedure!r} is not defined under procedures")
            if procedure in seen:
                self.problem(f"{where}.ratings[{j}]", f"procedure {procedure!r} is rated twice")
            seen.add(procedure)
            out.append(Rating(procedure, Appropriateness(r["appropriateness"]),
                              self.check_cites(r["citations"], f"{where}.ratings[{j}]"), r["rationale"],
                              r.get("note", "")))
        return tuple(out)

    def exclusions(self) -> tuple[Exclusion, ...]:
        exclusions = []
        for i, e in enumerate(self.d["exclusions"]):
            for key, value in e["applies_to"].items():
                if not any(getattr(p, key) == value for p in self.procedures.values()):
                    self.problem(f"exclusions[{i}].applies_to.{key}", f"no procedure has {key} {value!r}")
            exclusions.append(Exclusion(e["id"], self.check_condition(e["when"], f"exclusions[{i}].when"),
                                        dict(e["applies_to"]),
                                        self.check_template(e["reason"], f"exclusions[{i}].reason"),
                                        self.check_cites(e["citations"], f"exclusions[{i}]")))
        return tuple(exclusions)

    def statements(self, section: str) -> tuple[StatementRule, ...]:
        out = []
        for i, s in enumerate(self.d[section]):
            where = f"{section}[{i}]"
            out.append(StatementRule(
                self.check_template(s["text"], f"{where}.text"), self.check_cites(s["citations"], where),
                self.check_variants(s["variants"], where) if "variants" in s else None,
                self.check_condition(s["when"], f"{where}.when") if "when" in s else None))
        return tuple(out)

    def order_parsing(self) -> dict[str, tuple[Vocabulary, ...]]:
        order_parsing: dict[str, tuple[Vocabulary, ...]] = {}
        fixed = {"contrast": {"without", "with", "without-and-with"}, "laterality": {"left", "right", "bilateral"}}
        for axis, entries in self.d["order_parsing"].items():
            parsed = []
            for i, entry in enumerate(entries):
                if axis in fixed and entry["value"] not in fixed[axis]:
                    self.problem(f"order_parsing.{axis}[{i}]", f"value {entry['value']!r} is not one of "
                                                               f"{', '.join(sorted(fixed[axis]))}")
                if axis in ("modality", "region") and "label" not in entry:
                    self.problem(f"order_parsing.{axis}[{i}]", f"a {axis} needs a label (how messages name it)")
                pattern = self.compile_re(entry["pattern"], f"order_parsing.{axis}[{i}]")
                parsed.append(Vocabulary(entry["value"], pattern, entry.get("label", entry["value"])))
            order_parsing[axis] = tuple(parsed)
        for axis in ("modality", "region"):
            named = {v.value for v in order_parsing[axis]}
            self.problems.extend(f"{self.name}: procedures.{p.key}.{axis}: {getattr(p, axis)!r} is not named under "
                                 f"order_parsing.{axis}, so no order text can name this procedure"
                                 for p in self.procedures.values() if getattr(p, axis) not in named)
        return order_parsing

    def contraindication_text(self) -> ContraindicationText:
        ct = self.d["contraindication_text"]

        def text_rules(key: str) -> tuple[TextRule, ...]:
            return tuple(TextRule(e["label"], self.compile_re(e["pattern"], f"contraindication_text.{key}[{i}]"))
                         for i, e in enumerate(ct[key]))

        return ContraindicationText(
            mri_devices=text_rules("mri_devices"),
            mri_contraindicated=self.compile_re(ct["mri_contraindicated"], "contraindication_text.mri_contraindicated"),
            mr_conditional=self.compile_re(ct["mr_conditional"], "contraindication_text.mr_conditional"),
            gadolinium=text_rules("gadolinium"), iodinated=text_rules("iodinated"),
            pregnancy=self.compile_re(ct["pregnancy"], "contraindication_text.pregnancy"),
            negations=tuple(self.compile_re(n, f"contraindication_text.negations[{i}]")
                            for i, n in enumerate(ct["negations"])))

    # -- the whole ------------------------------------------------------------------------------------

    def build(self) -> Rules:
        """The rules, every section checked in document order; RulesError listing all problems."""
        d = self.d
        variants = self.variants()
        codes = tuple(CodeRule(c["prefix"], self.check_cats(c["categories"], f"codes[{i}]"), c["label"])
                      for i, c in enumerate(d["codes"]))
        keywords = tuple(KeywordRule(self.compile_re(k["pattern"], f"keywords[{i}]"),
                                     self.check_cats(k["categories"], f"keywords[{i}]"))
                         for i, k in enumerate(d["keywords"]))
        negations = tuple(self.compile_re(p, f"negations[{i}]") for i, p in enumerate(d.get("negations", ())))
        context_categories = dict(d.get("context_categories", {}))
        self.check_cats(context_categories.values(), "context_categories")
        conflicts = tuple(Conflict(c["id"], self.check_condition(c["when"], f"conflicts[{i}].when"), c["message"],
                                   self.check_cites(c["citations"], f"conflicts[{i}]"))
                          for i, c in enumerate(d.get("conflicts", ())))
        exclusions = self.exclusions()
        order_parsing = self.order_parsing()
        contraindication_text = self.contraindication_text()
        timing = d["timing"]
        if timing["min_days_after_trauma"] >= timing["max_days_after_trauma"]:
            self.problem("timing", "min_days_after_trauma must be below max_days_after_trauma")
        low, high = d["egfr_range"]
        if low >= high:
            self.problem("egfr_range", "the low end must be below the high end")
        policy = d["contrast_policy"]
        rules = Rules(
            path=self.name, version=d["version"], sources=self.sources,
            min_days_after_trauma=timing["min_days_after_trauma"],
            max_days_after_trauma=timing["max_days_after_trauma"],
            timing_variants=self.check_variants(timing["variants"], "timing.variants"),
            timing_citations=self.check_cites(timing["citations"], "timing.citations"),
            max_timing_citations=self.check_cites(timing.get("max_citations", timing["citations"]),
                                                  "timing.max_citations"),
            gadolinium_avoid_below_egfr=float(policy["gadolinium_avoid_below_egfr"]),
            iodinated_caution_below_egfr=float(policy["iodinated_caution_below_egfr"]),
            egfr_range=(float(low), float(high)), categories=self.categories, context_categories=context_categories,
            codes=codes, keywords=keywords, negations=negations, conflicts=conflicts, procedures=self.procedures,
            order_parsing=order_parsing,
            trauma_date_words=self.compile_re(timing["date_words"], "timing.date_words"),
            trauma_date_window=int(timing["date_window_chars"]),
            pregnancy_contraindicates_gadolinium=bool(policy["pregnancy_contraindicates_gadolinium"]),
            contraindication_text=contraindication_text, variants=variants, exclusions=exclusions,
            companion=self.statements("companion"), follow_up=self.statements("follow_up"),
            cautions=self.statements("cautions"),
        )
        if self.problems:
            raise RulesError(self.problems)
        return rules


def evaluate(condition: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """True when every key of ``condition`` holds for ``facts`` (the condition language of rules.yaml)."""
    return all(_holds(key, value, facts) for key, value in condition.items())


def _holds(key: str, value: Any, facts: Mapping[str, Any]) -> bool:
    """One key of a condition: a combination (any, all, not), an eGFR bound, categories, variants, or a flag."""
    if key == "any":
        return any(evaluate(c, facts) for c in value)
    if key == "all":
        return all(evaluate(c, facts) for c in value)
    if key == "not":
        return not evaluate(value, facts)
    if key == "egfr_below":
        return facts["egfr"] is not None and facts["egfr"] < value
    if key == "categories_any":
        return bool(facts["categories"] & set(value))
    if key == "categories_all":
        return set(value) <= facts["categories"]
    if key == "categories_none":
        return not facts["categories"] & set(value)
    if key == "variants":
        return facts["variant"] in value
    return bool(facts[key]) == value


class Format(dict[str, Any]):
    """``str.format_map`` values that leave unknown ``{names}`` alone (rule texts are data)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
