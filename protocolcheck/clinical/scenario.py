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


def interpret(context: ClinicalContext, rules: Rules, on: dt.date | None = None, today: dt.date | None = None,
              check_dates: bool = True) -> tuple[Scenario, list[str], bool]:
    """The :class:`Scenario` for ``context``, the input problems (each naming its field), and whether the
    indication is outside these rules.  Never raises for clinical inputs."""
    today = today or dt.date.today()
    on = on or today
    problems: list[str] = []
    notes: list[str] = []
    sources: dict[str, str] = {}
    text = context.indication or ""
    if text:
        sources["indication"] = context.origin("indication")
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
        found = kw.pattern.search(free)
        if found:
            keywords.append(found.group(0).strip())
            text_categories.update(kw.categories)
            categories.update(dict.fromkeys(kw.categories))
    text_categories.update(c for m in matched for c in m.categories)

    # the trauma date: explicit, else written next to a trauma word in any text
    trauma_date = context.trauma_date
    if trauma_date is not None:
        sources["trauma_date"] = context.origin("trauma_date")
    else:
        for source, body in [*context.texts, (context.origin("indication") or "indication", text)]:
            written = trauma_date_in(body, rules) if body else None
            if written is not None:
                trauma_date, sources["trauma_date"] = written, source
                break
    effective = replace(context, trauma_date=trauma_date)
    for fact, category in rules.context_categories.items():
        value = getattr(effective, fact, None)
        if value is True or (fact == "trauma_date" and value is not None):
            categories[category] = None
            if category in negated and category not in text_categories:
                shown = value.isoformat() if isinstance(value, dt.date) else "yes"
                where = sources.get(fact) or context.origin(fact)
                problems.append(f"{fact} is {shown}{f' ({where})' if where else ''} but the indication denies "
                                f"{rules.categories[category].label}; correct one of them")
        elif value is False and category in text_categories:
            problems.append(f"{fact} is 'no'{f' ({context.origin(fact)})' if context.origin(fact) else ''} but the "
                            f"indication names {rules.categories[category].label}; correct one of them")

    egfr = context.egfr
    low, high = rules.egfr_range
    if egfr is not None:
        sources["egfr"] = context.origin("egfr")
        if not low <= egfr <= high:
            problems.append(f"egfr: {egfr:g} is outside {low:g}-{high:g} mL/min/1.73 m2; give the estimated GFR, "
                            "e.g. 45")
    if check_dates and trauma_date is not None:
        if trauma_date > today:
            problems.append(f"trauma_date: {trauma_date.isoformat()} is in the future (today is {today.isoformat()})")
        elif trauma_date > on:
            problems.append(f"trauma_date: {trauma_date.isoformat()} is after the exam date {on.isoformat()}")

    # contraindications: explicit yes/no wins; else what the text says
    said = _contraindications(context, rules)
    mri_ci = context.mri_contraindicated
    mri_reason = ""
    if mri_ci:
        sources["mri_contraindicated"] = context.origin("mri_contraindicated")
        mri_reason = f"recorded in {sources['mri_contraindicated']}" if sources["mri_contraindicated"] else "recorded"
    elif mri_ci is None and said["mri_contraindicated"] is not None:
        stated = said["mri_contraindicated"]
        mri_ci, sources["mri_contraindicated"] = True, stated.source
        mri_reason = f"\u201c{stated.words}\u201d in {stated.source}"
        if said["mri_device"] is not None:
            mri_reason += f" ({said['mri_device'].label})"
    device: TextFact | None = said["mri_device"] if mri_ci is None else None
    if device is not None:
        sources["mri_device"] = device.source
    gad_ci, gad_reason = context.gadolinium_contraindicated, ""
    pregnant = context.pregnant
    if pregnant is None and said["pregnancy"] is not None:
        pregnant = True
        sources["pregnant"] = said["pregnancy"].source
    elif pregnant is not None:
        sources["pregnant"] = context.origin("pregnant")
    if gad_ci:
        sources["gadolinium_contraindicated"] = context.origin("gadolinium_contraindicated")
        gad_reason = (f"recorded in {sources['gadolinium_contraindicated']}" if sources["gadolinium_contraindicated"]
                      else "recorded")
    elif gad_ci is None:
        if said["gadolinium"] is not None:
            gad_ci, gad_reason = True, f"{said['gadolinium'].label}, in {said['gadolinium'].source}"
            sources["gadolinium_contraindicated"] = said["gadolinium"].source
        elif pregnant and rules.pregnancy_contraindicates_gadolinium:
            gad_ci, gad_reason = True, "pregnancy (site policy: gadolinium is avoided in pregnancy unless essential)"
            sources["gadolinium_contraindicated"] = sources.get("pregnant", "")
    icm_ci, icm_reason = context.iodinated_contrast_contraindicated, ""
    if icm_ci:
        sources["iodinated_contrast_contraindicated"] = context.origin("iodinated_contrast_contraindicated")
        icm_reason = (f"recorded in {sources['iodinated_contrast_contraindicated']}"
                      if sources["iodinated_contrast_contraindicated"] else "recorded")
    elif icm_ci is None and said["iodinated"] is not None:
        icm_ci, icm_reason = True, f"{said['iodinated'].label}, in {said['iodinated'].source}"
        sources["iodinated_contrast_contraindicated"] = said["iodinated"].source
    if context.dermatomal is not None:
        sources["dermatomal"] = context.origin("dermatomal")

    scenario = Scenario(
        indication=text, codes=tuple(matched), unknown_codes=tuple(unknown), keywords=tuple(keywords),
        categories=tuple(categories), on=on, trauma_date=trauma_date,
        mri_contraindicated=mri_ci, gadolinium_contraindicated=gad_ci, iodinated_contrast_contraindicated=icm_ci,
        egfr=egfr, dermatomal=context.dermatomal, known_malignancy=context.known_malignancy,
        prior_radiation=context.prior_radiation, pregnant=pregnant, mri_device=device,
        mr_conditional=said["mr_conditional"] if mri_ci is None else None,
        gadolinium_reason=gad_reason, iodinated_reason=icm_reason, mri_reason=mri_reason,
        sources={k: v for k, v in sources.items() if v},
    )
    facts = scenario_facts(scenario, None)
    for conflict in rules.conflicts:
        if evaluate(conflict.when, facts):
            where = context.origin("dermatomal") if conflict.when.get("dermatomal") else ""
            problems.append(f"dermatomal{f' ({where})' if where else ''}: {conflict.message}")

    out = [c for c in categories if rules.categories[c].scope == "out"]
    in_scope = [c for c in categories if rules.categories[c].scope == "in"] or (
        ["dermatomal"] if context.dermatomal and not out else [])
    out_of_scope = False
    if not text.strip() and not context.dermatomal:
        problems.append("indication: none given; give free text and/or ICD-10-CM codes "
                        "(e.g. 'piriformis syndrome G57.01', 'lumbosacral plexopathy G54.1', 'S34.4XXA')")
        out_of_scope = True
    elif not in_scope:
        out_of_scope = True
        if out:
            problems.extend(f"indication: {rules.categories[c].label}: {rules.categories[c].message}" for c in out)
        else:
            detail = f" (ICD-10-CM codes not in the rules: {', '.join(unknown)})" if unknown else ""
            problems.append(f"indication: {text!r} names no lumbosacral plexopathy, entrapment or radiculopathy term "
                            f"or code known to the rules{detail}; known codes include G54.1, G57.0x, S34.4, M54.1x, "
                            "M51.1x, G54.4")
    else:
        notes.extend(f"{rules.categories[c].label} also named: {rules.categories[c].message}" for c in out)
        notes.extend(f"ICD-10-CM code {code} is not in the rules and was not used" for code in unknown)
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
