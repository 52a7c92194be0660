"""One interpretation of the clinical facts, whatever path they came by.

:func:`interpret` turns a :class:`~protocolcheck.clinical.context.ClinicalContext` (options, a context
CSV row, a worklist item, an order text, merged) into a :class:`Scenario`: the indication's categories
(ICD-10-CM codes and free text, with negation), the trauma date and whether the indication is traumatic,
and the contraindications to MRI, gadolinium and iodinated contrast, each with the place it was read
from.  ``recommend``, ``check-order``, ``worklist``, the audit (``audit``, ``listen``, ``query``) all
call this function; nothing else in the code base reads clinical meaning from text.

Every word and number used here comes from ``protocols/rules.yaml`` (:mod:`protocolcheck.clinical.rules`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from protocolcheck.clinical.context import ClinicalContext, parse_date
from protocolcheck.clinical.indication import extract_icd10
from protocolcheck.clinical.rules import CodeRule, Rules, TextRule, evaluate
from protocolcheck.errors import InputError


class ScenarioError(InputError, ValueError):
    """The clinical inputs cannot be used: malformed, contradictory, or outside these rules."""

    def __init__(self, problems: list[str], out_of_scope: bool = False) -> None:
        super().__init__(problems)
        self.out_of_scope = out_of_scope


@dataclass(frozen=True)
class CodeMatch:
    """An ICD-10-CM code of the indication and the rules entry (longest prefix) that classifies it."""

    code: str
    prefix: str
    label: str
    categories: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "matched": self.prefix, "label": self.label, "categories": list(self.categories)}


@dataclass(frozen=True)
class TextFact:
    """A fact read from free text: what it is, the words that said it, and where they were written."""

    label: str
    words: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "words": self.words, "source": self.source}


@dataclass(frozen=True)
class Scenario:
    """The clinical facts as understood (the ``scenario`` object of ``recommend --format json``).

    ``mri_contraindicated``, ``gadolinium_contraindicated`` and ``iodinated_contrast_contraindicated`` are
    the effective answers: an explicit yes/no (option, context column) wins; otherwise a contraindication
    written in the text (a gadolinium reaction, a pregnancy under the site policy) makes it ``True``.  A
    device named in the text (``mri_device``) makes MRI only *possibly* contraindicated: it is not
    excluded, but every path asks to confirm the device's MR safety status.
    """

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
    pregnant: bool | None = None
    mri_device: TextFact | None = None  # a device named in the text whose MR safety is not recorded
    mr_conditional: TextFact | None = None  # a device named as MR Conditional / MR safe
    gadolinium_reason: str = ""
    iodinated_reason: str = ""
    mri_reason: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)  # fact -> where it was read from
    laterality: str | None = None  # the side the indication names: "left", "right", "bilateral"

    @property
    def days_since_trauma(self) -> int | None:
        return (self.on - self.trauma_date).days if self.trauma_date else None

    @property
    def traumatic(self) -> bool:
        """Whether the indication (codes, text, or a trauma date) describes an injury: THE answer for every path."""
        return "trauma" in self.categories

    def source(self, fact: str) -> str:
        return self.sources.get(fact, "")

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
            "traumatic": self.traumatic,
            "mri_contraindicated": self.mri_contraindicated,
            "gadolinium_contraindicated": self.gadolinium_contraindicated,
            "iodinated_contrast_contraindicated": self.iodinated_contrast_contraindicated,
            "egfr": self.egfr,
            "dermatomal": self.dermatomal,
            "known_malignancy": self.known_malignancy,
            "prior_radiation": self.prior_radiation,
            "pregnant": self.pregnant,
            "mri_device": self.mri_device.to_dict() if self.mri_device else None,
            "mr_conditional": self.mr_conditional.to_dict() if self.mr_conditional else None,
            "sources": dict(self.sources),
            "laterality": self.laterality,
            "notes": list(self.notes),
        }


def _match_code(code: str, rules: Rules) -> CodeRule | None:
    best: CodeRule | None = None
    for rule in rules.codes:
        if code.startswith(rule.prefix) and (best is None or len(rule.prefix) > len(best.prefix)):
            best = rule
    return best


def trauma_date_in(text: str, rules: Rules) -> dt.date | None:
    """A date written next to a trauma word ("fall from ladder 2026-01-10", "DOI 20260110"), else None."""
    window = rules.trauma_date_window
    dates = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2}|\d{8})(?!\d)")
    for word in rules.trauma_date_words.finditer(text):
        after = dates.search(text, word.end(), min(len(text), word.end() + window))
        candidates = [after] if after else list(dates.finditer(text, max(0, word.start() - window), word.start()))[-1:]
        for match in candidates:
            try:
                return parse_date(match.group(1))
            except ValueError:
                continue
    return None


def _strip(text: str, negations: tuple[re.Pattern[str], ...]) -> str:
    for negation in negations:
        text = negation.sub(" ", text)
    return text


def _first(rules_: tuple[TextRule, ...], texts: list[tuple[str, str]]) -> TextFact | None:
    for source, text in texts:
        for rule in rules_:
            hit = rule.pattern.search(text)
            if hit:
                return TextFact(rule.label, hit.group(0), source)
    return None


def _sentence_around(text: str, start: int, end: int) -> str:
    lo = max(text.rfind(sep, 0, start) for sep in ".;\n") + 1
    his = [i for i in (text.find(sep, end) for sep in ".;\n") if i >= 0]
    return text[lo:min(his) if his else len(text)]


def _contraindications(context: ClinicalContext, rules: Rules) -> dict[str, Any]:
    """Contraindications named in any free text, each with its words and source (denials removed first)."""
    ct = rules.contraindication_text
    texts = [(label, text) for label, text in context.texts if text]
    if context.indication:
        texts.append((context.origin("indication") or "the indication", context.indication))
    cleaned = [(source, _strip(text, ct.negations)) for source, text in texts]
    found: dict[str, Any] = {}
    device: TextFact | None = None
    conditional: TextFact | None = None
    for source, text in cleaned:
        for rule in ct.mri_devices:
            for hit in rule.pattern.finditer(text):
                sentence = _sentence_around(text, hit.start(), hit.end())
                cond = ct.mr_conditional.search(sentence)
                if cond:
                    conditional = conditional or TextFact(rule.label, sentence.strip(), source)
                elif device is None:
                    device = TextFact(rule.label, hit.group(0), source)
    found["mri_device"], found["mr_conditional"] = device, conditional
    stated = next(((src, m.group(0)) for src, t in cleaned for m in [ct.mri_contraindicated.search(t)] if m), None)
    found["mri_contraindicated"] = TextFact("MRI contraindicated", stated[1], stated[0]) if stated else None
    found["gadolinium"] = _first(ct.gadolinium, cleaned)
    found["iodinated"] = _first(ct.iodinated, cleaned)
    pregnancy = next(((s, m.group(0)) for s, t in cleaned for m in [ct.pregnancy.search(t)] if m), None)
    found["pregnancy"] = TextFact("pregnancy", pregnancy[1], pregnancy[0]) if pregnancy else None
    return found


@dataclass
class _Indication:
    """What the indication text and its codes say (the first step of :func:`interpret`)."""

    codes: list[CodeMatch] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    categories: dict[str, None] = field(default_factory=dict)  # ordered set
    keywords: list[str] = field(default_factory=list)
    negated: set[str] = field(default_factory=set)  # categories the text denies ("non-traumatic")
    named: set[str] = field(default_factory=set)  # categories the text or codes name
    problems: list[str] = field(default_factory=list)


def _read_indication(text: str, rules: Rules) -> _Indication:
    out = _Indication()
    codes, malformed = extract_icd10(text)
    out.problems.extend(f"indication: {token!r} is not an ICD-10-CM code; write codes as a letter, two digits and "
                        "an optional dot part (e.g. G54.1, G57.01, M54.16, S34.4XXA)" for token in malformed)
    for code in codes:
        rule = _match_code(code, rules)
        if rule is None:
            out.unknown.append(code)
        else:
            out.codes.append(CodeMatch(code, rule.prefix, rule.label, rule.categories))
            out.categories.update(dict.fromkeys(rule.categories))
    free = text.lower()
    for negation in rules.negations:
        for hit in negation.finditer(free):
            out.negated.update(c for kw in rules.keywords if kw.pattern.search(hit.group(0)) for c in kw.categories)
        free = negation.sub(" ", free)
    for kw in rules.keywords:
        found = kw.pattern.search(free)
        if found:
            out.keywords.append(found.group(0).strip())
            out.named.update(kw.categories)
            out.categories.update(dict.fromkeys(kw.categories))
    out.named.update(c for m in out.codes for c in m.categories)
    return out


def _trauma_date(context: ClinicalContext, rules: Rules, sources: dict[str, str]) -> dt.date | None:
    """The trauma date given, else one written next to a trauma word in any text (with where it was read)."""
    if context.trauma_date is not None:
        sources["trauma_date"] = context.origin("trauma_date")
        return context.trauma_date
    for source, body in [*context.texts, (context.origin("indication") or "indication", context.indication)]:
        written = trauma_date_in(body, rules) if body else None
        if written is not None:
            sources["trauma_date"] = source
            return written
    return None


def _context_categories(context: ClinicalContext, reading: _Indication, rules: Rules,
                        sources: dict[str, str]) -> None:
    """Categories that context facts add (a trauma date: trauma), and facts that contradict the text."""
    for fact, category in rules.context_categories.items():
        value = getattr(context, fact, None)
        where = sources.get(fact) or context.origin(fact)
        at = f" ({where})" if where else ""
        label = rules.categories[category].label
        if value is True or (fact == "trauma_date" and value is not None):
            reading.categories[category] = None
            if category in reading.negated and category not in reading.named:
                shown = value.isoformat() if isinstance(value, dt.date) else "yes"
                reading.problems.append(f"{fact} is {shown}{at} but the indication denies {label}; correct one of them")
        elif value is False and category in reading.named:
            reading.problems.append(f"{fact} is 'no'{at} but the indication names {label}; correct one of them")


def _values(context: ClinicalContext, trauma_date: dt.date | None, rules: Rules, on: dt.date, today: dt.date,
            check_dates: bool) -> list[str]:
    """Problems with the eGFR (outside the rules' range) and the trauma date (future, after the exam)."""
    problems = []
    low, high = rules.egfr_range
    if context.egfr is not None and not low <= context.egfr <= high:
        problems.append(f"egfr: {context.egfr:g} is outside {low:g}-{high:g} mL/min/1.73 m2; give the estimated "
                        "GFR, e.g. 45")
    if check_dates and trauma_date is not None:
        if trauma_date > today:
            problems.append(f"trauma_date: {trauma_date.isoformat()} is in the future (today is {today.isoformat()})")
        elif trauma_date > on:
            problems.append(f"trauma_date: {trauma_date.isoformat()} is after the exam date {on.isoformat()}")
    return problems


def _side(text: str, rules: Rules) -> str | None:
    """The side the indication names (the order vocabulary's laterality words); None when none or both."""
    sides = {v.value for v in rules.order_parsing["laterality"] if v.pattern.search(text)}
    return sides.pop() if len(sides) == 1 else ("bilateral" if "bilateral" in sides else None)


def _recorded(context: ClinicalContext, name: str, sources: dict[str, str]) -> str:
    sources[name] = context.origin(name)
    return f"recorded in {sources[name]}" if sources[name] else "recorded"


def _mri(context: ClinicalContext, said: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """MRI: recorded yes/no, else "MRI contraindicated" written; a device named makes it only possible."""
    out: dict[str, Any] = {"mri": context.mri_contraindicated, "mri_reason": ""}
    if out["mri"]:
        out["mri_reason"] = _recorded(context, "mri_contraindicated", sources)
    elif out["mri"] is None and said["mri_contraindicated"] is not None:
        stated = said["mri_contraindicated"]
        out["mri"], sources["mri_contraindicated"] = True, stated.source
        out["mri_reason"] = f"\u201c{stated.words}\u201d in {stated.source}" + (
            f" ({said['mri_device'].label})" if said["mri_device"] is not None else "")
    out["device"] = said["mri_device"] if out["mri"] is None else None
    out["conditional"] = said["mr_conditional"] if out["mri"] is None else None
    if out["device"] is not None:
        sources["mri_device"] = out["device"].source
    return out


def _contra(context: ClinicalContext, rules: Rules, sources: dict[str, str]) -> dict[str, Any]:
    """The effective contraindications: an explicit yes/no wins; else what the text says (with where)."""
    said = _contraindications(context, rules)
    out = _mri(context, said, sources)
    out.update(gad=context.gadolinium_contraindicated, gad_reason="", icm=context.iodinated_contrast_contraindicated,
               icm_reason="", pregnant=context.pregnant)
    if out["pregnant"] is None and said["pregnancy"] is not None:
        out["pregnant"], sources["pregnant"] = True, said["pregnancy"].source
    elif out["pregnant"] is not None:
        sources["pregnant"] = context.origin("pregnant")
    if out["gad"]:
        out["gad_reason"] = _recorded(context, "gadolinium_contraindicated", sources)
    elif out["gad"] is None and said["gadolinium"] is not None:
        out["gad"], out["gad_reason"] = True, f"{said['gadolinium'].label}, in {said['gadolinium'].source}"
        sources["gadolinium_contraindicated"] = said["gadolinium"].source
    elif out["gad"] is None and out["pregnant"] and rules.pregnancy_contraindicates_gadolinium:
        out["gad"] = True
        out["gad_reason"] = "pregnancy (site policy: gadolinium is avoided in pregnancy unless essential)"
        sources["gadolinium_contraindicated"] = sources.get("pregnant", "")
    if out["icm"]:
        out["icm_reason"] = _recorded(context, "iodinated_contrast_contraindicated", sources)
    elif out["icm"] is None and said["iodinated"] is not None:
        out["icm"], out["icm_reason"] = True, f"{said['iodinated'].label}, in {said['iodinated'].source}"
        sources["iodinated_contrast_contraindicated"] = said["iodinated"].source
    return out


def _scope(context: ClinicalContext, reading: _Indication, rules: Rules) -> tuple[list[str], list[str], bool]:
    """(problems, notes, out_of_scope): no indication, only out-of-scope categories, or notes on the rest."""
    text = context.indication or ""
    out = [c for c in reading.categories if rules.categories[c].scope == "out"]
    in_scope = [c for c in reading.categories if rules.categories[c].scope == "in"] or (
        ["dermatomal"] if context.dermatomal and not out else [])
    if not text.strip() and not context.dermatomal:
        return (["indication: none given; give free text and/or ICD-10-CM codes (e.g. 'piriformis syndrome G57.01', "
                 "'lumbosacral plexopathy G54.1', 'S34.4XXA')"], [], True)
    if not in_scope:
        if out:
            return [f"indication: {rules.categories[c].label}: {rules.categories[c].message}" for c in out], [], True
        detail = f" (ICD-10-CM codes not in the rules: {', '.join(reading.unknown)})" if reading.unknown else ""
        return ([f"indication: {text!r} names no lumbosacral plexopathy, entrapment or radiculopathy term or code "
                 f"known to the rules{detail}; known codes include G54.1, G57.0x, S34.4, M54.1x, M51.1x, G54.4"],
                [], True)
    notes = [f"{rules.categories[c].label} also named: {rules.categories[c].message}" for c in out]
    notes += [f"ICD-10-CM code {code} is not in the rules and was not used" for code in reading.unknown]
    return [], notes, False


def interpret(context: ClinicalContext, rules: Rules, on: dt.date | None = None, today: dt.date | None = None,
              check_dates: bool = True) -> tuple[Scenario, list[str], bool]:
    """The :class:`Scenario` for ``context``, the input problems (each naming its field), and whether the
    indication is outside these rules.  Never raises for clinical inputs."""
    today = today or dt.date.today()
    on = on or today
    text = context.indication or ""
    sources: dict[str, str] = {"indication": context.origin("indication")} if text else {}
    reading = _read_indication(text, rules)
    trauma_date = _trauma_date(context, rules, sources)
    _context_categories(replace(context, trauma_date=trauma_date), reading, rules, sources)
    problems = reading.problems + _values(context, trauma_date, rules, on, today, check_dates)
    for name in ("egfr", "dermatomal"):
        if getattr(context, name) is not None:
            sources[name] = context.origin(name)
    contra = _contra(context, rules, sources)
    scenario = Scenario(
        indication=text, codes=tuple(reading.codes), unknown_codes=tuple(reading.unknown),
        keywords=tuple(reading.keywords), categories=tuple(reading.categories), on=on, trauma_date=trauma_date,
        mri_contraindicated=contra["mri"], gadolinium_contraindicated=contra["gad"],
        iodinated_contrast_contraindicated=contra["icm"], egfr=context.egfr, dermatomal=context.dermatomal,
        known_malignancy=context.known_malignancy, prior_radiation=context.prior_radiation,
        pregnant=contra["pregnant"], mri_device=contra["device"], mr_conditional=contra["conditional"],
        gadolinium_reason=contra["gad_reason"], iodinated_reason=contra["icm_reason"], mri_reason=contra["mri_reason"],
        sources={k: v for k, v in sources.items() if v},
        laterality=_side(text, rules),
    )
    facts = scenario_facts(scenario, None)
    for conflict in rules.conflicts:
        if evaluate(conflict.when, facts):
            where = context.origin("dermatomal") if conflict.when.get("dermatomal") else ""
            problems.append(f"dermatomal{f' ({where})' if where else ''}: {conflict.message}")
    scope_problems, notes, out_of_scope = _scope(context, reading, rules)
    problems += scope_problems
    if scenario.mr_conditional is not None:
        notes.append(f"{scenario.mr_conditional.label} named as MR Conditional ({scenario.mr_conditional.source}): "
                     "scan under its labelled conditions")
    if notes:
        scenario = replace(scenario, notes=tuple(notes))
    return scenario, problems, out_of_scope


def scenario_facts(scenario: Scenario, variant: str | None, none_appropriate: bool = False) -> dict[str, Any]:
    """The facts the ``when`` conditions of rules.yaml are evaluated on."""
    return {
        "categories": set(scenario.categories),
        "dermatomal": bool(scenario.dermatomal),
        "mri_contraindicated": bool(scenario.mri_contraindicated),
        "mri_device_named": scenario.mri_device is not None,
        "gadolinium_contraindicated": bool(scenario.gadolinium_contraindicated),
        "iodinated_contrast_contraindicated": bool(scenario.iodinated_contrast_contraindicated),
        "trauma_date_known": scenario.trauma_date is not None,
        "egfr": scenario.egfr,
        "variant": variant,
        "none_appropriate": none_appropriate,
    }


def contrast_contraindications(scenario: Scenario, rules: Rules) -> dict[str, str]:
    """Why each contrast agent should not be given to this patient (``{"gadolinium": reason, ...}``),
    including the eGFR bounds of the rules; empty when nothing is known against it.  For the audit's
    contrast-despite-contraindication check."""
    out: dict[str, str] = {}
    if scenario.gadolinium_contraindicated:
        out["gadolinium"] = scenario.gadolinium_reason or "gadolinium recorded as contraindicated"
    elif scenario.egfr is not None and scenario.egfr < rules.gadolinium_avoid_below_egfr:
        out["gadolinium"] = (f"eGFR {scenario.egfr:g} is below {rules.gadolinium_avoid_below_egfr:g} "
                             "mL/min/1.73 m2")
    if scenario.iodinated_contrast_contraindicated:
        out["iodinated"] = scenario.iodinated_reason or "iodinated contrast recorded as contraindicated"
    return out
