"""Post-contrast, per stack: the Contrast/Bolus Agent, then the series text (negatives win), then for CT
angiography names and the Contrast/Bolus Route. Study-level rules (acquisition order, the bolus start
time, an exam-level agent) are in :mod:`protocolcheck.classify.study`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from protocolcheck.classify.facts import StackFacts
from protocolcheck.classify.model import Evidence, Field, Vendor
from protocolcheck.classify.textmatch import B, E, first_match, rx

CONTRAST_BRANDS = (
    "gadovist", "gadavist", "dotarem", "magnevist", "prohance", "multihance", "clariscan", "omniscan", "elucirem",
    "vueway", "eovist", "primovist", "ablavar", "vasovist", "optimark", "gadoterate", "gadobutrol", "gadoteridol",
    "gadopiclenol", "gadoxetate", "gadobenate", "gadodiamide", "gadopentetate", "artirem", "cyclolux", "dotagraf",
    "gadoversetamide", "feridex", "resovist",
)
_POST_NEG: tuple[tuple[re.Pattern[str], str], ...] = (
    (rx(B + r"pre(?:[\s_\-]*(?:contrast|con|gad|gado|gd|c|km|inj|injection))?" + E
        + r"(?![\s_\-]*(?:sat|op|operative|scan|pulse|puls)(?![a-z]))"), "pre"),
    (rx(B + r"(?:nativ|native|natif|nativo)" + E), "native"),
    (rx(r"(?:w/o|" + B + r"wo" + E + r")(?![\s_\-]*(?:fs|fat|sat|fatsat)(?![a-z]))"), "w/o"),
    (rx(B + r"without" + E + r"(?![\s_\-]*(?:fs|fat|sat|fatsat)(?![a-z]))"), "without"),
    (rx(B + r"non[\s_\-]*(?:contrast|con|enhanced|gad|gd|c)" + E), "non-contrast"),
    (rx(B + r"no[\s_\-]*(?:contrast|gad|gd|km|c)" + E), "no contrast"),
    (rx(B + r"(?:unenhanced|ohne|sans|senza|plain)" + E), "unenhanced"),
)
_POST_POS: tuple[tuple[re.Pattern[str], str], ...] = (
    (rx(r"\+\s*(?:c|gd|gad|gado|km|mdc|contrast|ce)" + E), "+C"),
    (rx(B + r"(?:c|gd|gad)\s*\+"), "C+"),
    (rx(B + r"post(?![\s_\-]*(?:op|proc|process|surg|sat|trauma|treat|ther|ictal|mortem|void|partum))"
        r"(?:[\s_\-]*(?:contrast|con|gad|gado|gd|c|km|inj|injection))?" + E), "post"),
    (rx(B + r"(?:gd|gad|gado|gadolinium|gdcontrast)" + E), "gad"),
    (rx(B + r"(?:contrast|kontrast|contraste|km|mdc)" + E), "contrast"),
    (rx(B + r"(?:ce|dce|dsc|dyn|dynamic|dynamics|enhanced)" + E), "contrast-enhanced/dynamic"),
    (rx(B + r"w/\s*c" + E), "w/C"),
    (rx(B + r"(?:arterial|venous|portal|delayed|equilibrium|hepatobiliary|hbp|nephrographic|excretory)" + E),
     "contrast phase"),
    (rx("|".join(CONTRAST_BRANDS)), "agent brand name"),
)
# Non-contrast angiography, venography and ASL: their names carry phase words ('venous', 'arterial spin
# labelling') with no agent given.
_NONCONTRAST_ANGIO_TEXT = rx(B + r"(?:tof|pc|pca|phase[\s_-]?contrast|inflow|s?3di|qiss|nate|trance|swi|asl|pcasl|"
                             r"pasl|spin[\s_-]?label\w*)" + E)
# GE fMRI series names carry slice-timing labels such as 'GD': a bare GD/GAD on an EPI series is not gadolinium.
_BARE_GD = frozenset({"gd", "gad"})
# Text that plans contrast without saying it was given: 'w/wo', 'WO+W', 'with and without', 'pre/post', '+/-'.
CONTRAST_PLANNED = rx(
    r"(?<![a-z])(?:w|with|wo|w/o|without|pre)\s*(?:/|\+|&|and|-)\s*(?:w|with|wo|w/o|without|post)(?![a-z])|"
    r"\+\s*/\s*-|(?<![a-z])wwo(?![a-z])")
_SUBTRACTION = rx(B + r"(?:sub|subtraction|subtracted)" + E)
_AGENT_EMPTY = {"", "NONE", "NO", "N", "0", "-", "NONE GIVEN", "NOT GIVEN", "NULL", "NIL", "NA", "N/A", "NO CONTRAST"}

# The decision table's line for this field (protocolcheck.classify.table; the order rules are in study.py).
RULES: tuple[str, ...] = (
    ("Contrast/Bolus Agent non-empty and not NONE/NO -> post (unless already on the study's first "
    "acquisition: exam-level, ignored); else SeriesDescription text (ProtocolName only if the description "
    "is empty, never GE's) with negatives pre/native/w/o/without/non-contrast beating positives +C/C+/"
    "post/gad/gd/contrast/KM/CE/dynamic/agent brand names; CT also Route and CTA/angio; else order: "
    "acquired before the first post-contrast acquisition -> pre; after it -> post (localizers stay "
    "unknown)"),
    ("GE (0019,1011) Series contrast non-zero -> post; contrast words count as whole tokens in a contrast sense: "
     "a bare GD/GAD on an EPI series (slice-timing label), phase words in TOF/PC/inflow/ASL names, 'post-op', "
     "'POS', 'C-SPINE' are not contrast"),
    ("study: an MR study where no series shows contrast (no agent, bolus start time or route, no GE Series "
     "contrast flag, no contrast naming or 'w/wo' planning in series, protocol, study or requested-procedure "
     "text) -> every open stack is pre-contrast (post_contrast false)"),
)


_rule = Field.POST_CONTRAST.rule


AGENT = _rule("agent", "Contrast/Bolus Agent '{agent}' -> post-contrast")
GE_FLAG = _rule("ge-flag", "GE (0019,1011) Series contrast {flag} (non-zero: acquired with contrast) -> post-contrast")
AGENT_EXAM_LEVEL = _rule("agent-exam-level", "Contrast/Bolus Agent '{agent}' is already on the study's first "
                         "acquisition (exam-level value), so it does not decide")
AGENT_NONE = _rule("agent-none", "Contrast/Bolus Agent '{agent}' means none")
TEXT_SUBTRACTION = _rule("text-subtraction", "{element} '{positive}' with subtraction -> post-contrast (subtraction "
                         "of pre from post)")
TEXT_NEGATIVE = _rule("text-negative", "{element} '{negative}' -> pre-contrast (negatives win)")
TEXT_NEGATIVE_OVER_POSITIVE = _rule("text-negative-over-positive",
                                    "{element} '{negative}' -> pre-contrast (negatives win); ignored '{positive}'")
TEXT_POSITIVE = _rule("text-positive", "{element} '{positive}' -> post-contrast")
CT_ANGIOGRAPHY = _rule("ct-angiography", "SeriesDescription '{match}' (CT angiography/perfusion) -> post-contrast")
ROUTE = _rule("route", "Contrast/Bolus Route '{route}' -> post-contrast")
NONE = _rule("none", "no contrast agent in header and no contrast words in series text")


def agent_given(values: Iterable[str]) -> str | None:
    """The first value that names an agent (not empty, NONE, NO, ...)."""
    for v in values:
        if v.strip().upper() not in _AGENT_EMPTY:
            return v.strip()
    return None


def _positive(text: str, epi: bool) -> tuple[str, str] | None:
    """The first positive contrast word of ``text`` used in a contrast sense (whole tokens only)."""
    for pattern, label in _POST_POS:
        for m in pattern.finditer(text):
            if label == "gad" and epi and m.group(0).strip().lower() in _BARE_GD:
                continue  # slice-timing label on an EPI time series
            if label == "contrast phase" and _NONCONTRAST_ANGIO_TEXT.search(text):
                continue  # 'venous' in a phase-contrast or inflow venography, 'arterial' in ASL
            return label, m.group(0)
    return None


def contrast_text(element: str, text: str, epi: bool = False) -> tuple[bool | None, Evidence | None]:
    """Pre/post from one lower-case text element (negatives win, except in a subtraction of pre from post)."""
    if not text:
        return None, None
    neg = first_match(text, _POST_NEG)
    pos = _positive(text, epi)
    if neg and pos and _SUBTRACTION.search(text):
        return True, TEXT_SUBTRACTION.cite(element=element, positive=pos[1])
    if neg and pos:
        return False, TEXT_NEGATIVE_OVER_POSITIVE.cite(element=element, negative=neg[1], positive=pos[1])
    if neg:
        return False, TEXT_NEGATIVE.cite(element=element, negative=neg[1])
    if pos:
        return True, TEXT_POSITIVE.cite(element=element, positive=pos[1])
    return None, None


def _agent_note(f: StackFacts, use_agent: bool) -> list[Evidence]:
    """Why a written Contrast/Bolus Agent does not decide (empty when none is written)."""
    if f.agents and not use_agent:
        return [AGENT_EXAM_LEVEL.cite(agent=f.agents[0])]
    if f.agents:
        return [AGENT_NONE.cite(agent=f.agents[0])]
    return []


def ge_contrast_flag(f: StackFacts) -> str | None:
    """GE (0019,1011) Series contrast when non-zero (the series was acquired with contrast), else None."""
    flag = f.first.ge_series_contrast.strip()
    return flag if f.vendor is Vendor.GE and flag not in ("", "0") else None


def post_contrast(f: StackFacts, use_agent: bool = True, epi: bool = False) -> tuple[bool | None, list[Evidence]]:
    """Post-contrast from this stack's own headers; ``use_agent=False`` when the agent is exam-level; ``epi``
    for echo-planar series (whose names carry slice-timing labels)."""
    agent = agent_given(f.agents) if use_agent else None
    if agent:
        return True, [AGENT.cite(agent=agent)]
    flag = ge_contrast_flag(f) if use_agent else None
    if flag:
        return True, [GE_FLAG.cite(flag=flag)]
    note = _agent_note(f, use_agent)
    # Series description first; ProtocolName only when the description is silent (GE: never, exam-level).
    sources = [("SeriesDescription", f.description)]
    if f.vendor is not Vendor.GE or not f.description:
        sources.append(("ProtocolName", f.protocol))
    for element, text in sources:
        value, why = contrast_text(element, text.lower(), epi)
        if value is not None and why is not None:
            return value, note + [why]
    if not f.is_mr:
        m = re.search(B + r"(?:cta|angio\w*|perfusion)" + E, f.description.lower())
        if m:
            return True, note + [CT_ANGIOGRAPHY.cite(match=m.group(0))]
    route = agent_given(f.routes)
    if route and not f.is_mr:
        return True, [ROUTE.cite(route=route)]
    return None, note + [NONE.cite()]
