"""Study-level rules: what one stack's headers leave open, the rest of the study can decide.

Applied in this order by :func:`apply_study_rules`:

* exam-level contrast agent: when the study's first acquisition already carries a Contrast/Bolus
  Agent, the element is exam-level and text plus order decide instead;
* fat-suppression naming: when headers cannot prove absence and other series of the study name
  fat suppression in their descriptions, a description without such a word means no fat suppression;
* no contrast in the study: when no series of an MR study shows that contrast was given (no agent,
  bolus start time or route, no GE contrast flag, no contrast naming or 'w/wo' planning anywhere in
  the series, protocol, study or requested-procedure text), every open stack is pre-contrast;
* contrast start time: a stack left open is post when acquired after the Contrast/Bolus Start
  Time written on any series of the study, pre when acquired before it;
* contrast order: a stack whose contrast phase the headers and text leave open is post-contrast
  when it was acquired after the first post-contrast acquisition of the same modality (whatever
  its weighting: a T2 after the injection is a post-contrast acquisition), and pre-contrast when
  acquired before it; localizers stay unknown.
"""

from __future__ import annotations

import re
from dataclasses import replace

from protocolcheck.classify.contrast import CONTRAST_PLANNED, agent_given, contrast_text, post_contrast
from protocolcheck.classify.facts import facts_of, vendor_of
from protocolcheck.classify.fat import FATSAT_TEXT
from protocolcheck.classify.model import Evidence, Field, Rule, SeriesClass, Technique, Vendor, Weighting
from protocolcheck.classify.textmatch import B, E, rx
from protocolcheck.dicom.study import Stack, Study

NAMING_CONVENTION = Rule(Field.FAT_SUPPRESSION, "naming-convention", "series {series} ('{description}') names fat "
                         "suppression ('{word}') and this description does not -> not fat suppressed (site naming "
                         "convention)")
START_TIME = Rule(Field.POST_CONTRAST, "start-time", "acquired at {time} {order} Contrast/Bolus Start Time {start} -> "
                  "{phase}-contrast")
NO_CONTRAST = Rule(Field.POST_CONTRAST, "no-contrast", "nothing in the study's {series} MR series shows contrast was "
                   "given (no Contrast/Bolus Agent, start time or route, no contrast naming or 'w/wo' in series, "
                   "protocol or study text) -> pre-contrast")
NO_CONTRAST_GE_ZERO = Rule(Field.POST_CONTRAST, "no-contrast-ge-zero", "nothing in the study's {series} MR series "
                           "shows contrast was given (no Contrast/Bolus Agent, start time or route, no contrast naming "
                           "or 'w/wo' in series, protocol or study text; GE (0019,1011) Series contrast 0 on {zero} "
                           "stacks) -> pre-contrast")
SIGN_AGENT = Rule(Field.POST_CONTRAST, "sign-agent", "Contrast/Bolus Agent '{agent}'")
SIGN_START_TIME = Rule(Field.POST_CONTRAST, "sign-start-time", "Contrast/Bolus Start Time {start}")
SIGN_ROUTE = Rule(Field.POST_CONTRAST, "sign-route", "Contrast/Bolus Route '{route}'")
SIGN_GE_FLAG = Rule(Field.POST_CONTRAST, "sign-ge-flag", "GE (0019,1011) Series contrast {flag}")
SIGN_PLANNED = Rule(Field.POST_CONTRAST, "sign-planned", "{element} '{match}' (contrast planned)")
OPEN_CONTRAST = Rule(Field.POST_CONTRAST, "open", "the study names or shows contrast (series {series}: {sign}), but "
                     "this series has no agent, flag or contrast word and there is no post-contrast acquisition or "
                     "bolus start time to order it against -> unknown")
ORDER_LOCALIZER = Rule(Field.POST_CONTRAST, "order-localizer", "localizer acquired after {first} ('{description}') "
                       "-> left unknown")
ORDER_AFTER = Rule(Field.POST_CONTRAST, "order-after", "acquired after {first} ('{description}'), the first "
                   "post-contrast acquisition: the agent was already given -> post-contrast")
ORDER_BEFORE = Rule(Field.POST_CONTRAST, "order-before", "acquired before {first} ('{description}'), the first "
                    "post-contrast acquisition -> pre-contrast")

_INHERENT_FAT_SUPPRESSION = rx(B + r"(?:lava|vibrant|disco|thrive|ethrive|e-thrive|dwibs|mrcp|flex|dixon|ideal)" + E)

# The decision table's lines for the study-level rules (protocolcheck.classify.table).
FAT_RULES: tuple[str, ...] = (
    ("study naming convention: if another series of the study names fat suppression (FS/fatsat/SPAIR/"
    "SPIR) and this one's description does not, an otherwise unknown stack is not fat suppressed"),
)


def acquisition_stamp(stack: Stack) -> str:
    """Earliest 'YYYYMMDDHHMMSS.frac' of the stack (acquisition, then series, then content time)."""
    best = ""
    for h in stack.instances:
        for date, time in ((h.acquisition_date or h.series_date or h.study_date, h.acquisition_time),
                           (h.series_date or h.study_date, h.series_time),
                           (h.acquisition_date or h.series_date or h.study_date, h.content_time)):
            t = time.strip()
            if t:
                stamp = (date.strip() or "00000000") + t
                if not best or stamp < best:
                    best = stamp
                break
    return best


def stamp_seconds(stamp: str) -> float | None:
    """'YYYYMMDDHHMMSS[.frac]' (time part may be short) -> sortable seconds; None if unusable."""
    m = re.match(r"^(\d{8})(\d{2})(\d{2})?(\d{2})?(\.\d+)?", stamp.replace(":", ""))
    if not m:
        return None
    date, hh, mm, ss, frac = m.groups()
    try:
        day = int(date)
        return day * 86400.0 + int(hh) * 3600 + int(mm or 0) * 60 + int(ss or 0) + float(frac or 0)
    except ValueError:
        return None


def _with_reason(r: SeriesClass, why: Evidence) -> SeriesClass:
    """``r`` with a study-level reason appended to its field's evidence (callers change the field itself)."""
    reasons = dict(r.reasons)
    reasons[why.field] = (*r.reasons.get(why.field, ()), why)
    return replace(r, reasons=reasons)


# --------------------------------------------------------------------------------------------------
# exam-level agent


def _agent_written(stack: Stack) -> bool:
    """Whether any image of the stack carries a Contrast/Bolus Agent (0018,0010) value, even 'NONE'."""
    return any(h.contrast_agent.strip() for h in stack.instances)


def exam_level_agent(results: list[SeriesClass], study: Study) -> list[SeriesClass]:
    """Contrast/Bolus Agent already on the first acquisition of an MR study (the localizer is never
    acquired after injection) is an exam-level value: decide those stacks from text and order instead."""
    timed = [(t, i) for i, r in enumerate(results)
             if r.modality == "MR" and not r.derived and (t := stamp_seconds(r.acquisition_time)) is not None]
    if len(timed) < 2:
        return results
    _t, first = min(timed)
    if not (results[first].post_contrast is True and _agent_written(study.stacks[first])):
        return results
    out = list(results)
    for i, (r, stack) in enumerate(zip(results, study.stacks, strict=True)):
        if r.modality == "MR" and r.post_contrast is True and _agent_written(stack):
            value, why = post_contrast(facts_of(stack), use_agent=False, epi=r.technique is Technique.EPI)
            reasons = dict(r.reasons)
            reasons[Field.POST_CONTRAST] = tuple(why)
            out[i] = replace(r, post_contrast=value, reasons=reasons)
    return out


# --------------------------------------------------------------------------------------------------
# fat-suppression naming convention


def _names_fat_suppression(description: str) -> str | None:
    """The fat-suppression word in a series description (not STIR, which names its own technique)."""
    text = description.lower()
    for pattern, label in FATSAT_TEXT:
        if label == "STIR":
            continue
        m = pattern.search(text)
        if m:
            return m.group(0)
    return None


def fat_naming_convention(results: list[SeriesClass]) -> list[SeriesClass]:
    """Where headers cannot prove absence, a study whose other series *name* fat suppression in their
    descriptions ('T2 FSE FS AX') tells us an unnamed one ('T2 FSE AX') is not fat suppressed."""
    namers = [r for r in results if r.modality == "MR" and r.fat_suppressed is True
              and _names_fat_suppression(r.series_description)]
    if not namers:
        return results
    example = namers[0]
    word = _names_fat_suppression(example.series_description)
    out = []
    for r in results:
        if (r.fat_suppressed is None and r.modality == "MR" and r.series_description.strip() and not r.localizer
                and r.dixon is None and r.weighting not in (Weighting.DWI, Weighting.OTHER, Weighting.UNKNOWN)
                and not _INHERENT_FAT_SUPPRESSION.search(r.series_description.lower())):
            why = NAMING_CONVENTION.cite(series=example.series_number, description=example.series_description,
                                         word=word)
            out.append(replace(_with_reason(r, why), fat_suppressed=False, fat_suppression=None))
        else:
            out.append(r)
    return out


# --------------------------------------------------------------------------------------------------
# contrast timing


def contrast_start_time(results: list[SeriesClass], study: Study) -> list[SeriesClass]:
    """Contrast/Bolus Start Time dates the injection: a stack the headers and text leave open is
    post-contrast when acquired after it and pre-contrast when acquired before it (same day)."""
    # Contrast/Bolus Start Time is a time of day (TM): date it with the series' own acquisition date.
    starts = sorted(
        (t, r.acquisition_time[:8] + " " + stack.first.contrast_start_time)
        for r, stack in zip(results, study.stacks, strict=True)
        if stack.first.contrast_start_time and r.acquisition_time[:8].isdigit()
        and (t := stamp_seconds(r.acquisition_time[:8] + stack.first.contrast_start_time)) is not None
    )
    if not starts:
        return results
    start, stamp = starts[0]
    out = list(results)
    for i, r in enumerate(results):
        t = stamp_seconds(r.acquisition_time)
        if r.post_contrast is not None or r.localizer or t is None or t == start:
            continue
        value = t > start
        why = START_TIME.cite(time=r.acquisition_time, order="after" if value else "before", start=stamp,
                              phase="post" if value else "pre")
        out[i] = replace(_with_reason(r, why), post_contrast=value)
    return out


def contrast_order(results: list[SeriesClass]) -> list[SeriesClass]:
    """A stack left open is post when acquired after the first post-contrast acquisition of its modality,
    pre when acquired before it (localizers stay unknown)."""
    known_post = [
        (t, r) for r in results
        if r.post_contrast is True and not r.derived and (t := stamp_seconds(r.acquisition_time)) is not None
    ]
    if not known_post:
        return results
    out: list[SeriesClass] = []
    for r in results:
        t = stamp_seconds(r.acquisition_time)
        same = [(pt, p) for pt, p in known_post if p.modality == r.modality]
        if r.post_contrast is not None or t is None or not same:
            out.append(r)
            continue
        first_t, first = min(same, key=lambda x: x[0])
        label = f"series {first.series_number}" if first.series_number is not None else "the first post-contrast series"
        facts = {"first": label, "description": first.series_description}
        if t > first_t and r.localizer:
            out.append(_with_reason(r, ORDER_LOCALIZER.cite(**facts)))
        elif t > first_t:
            out.append(replace(_with_reason(r, ORDER_AFTER.cite(**facts)), post_contrast=True))
        elif t < first_t:
            out.append(replace(_with_reason(r, ORDER_BEFORE.cite(**facts)), post_contrast=False))
        else:
            out.append(r)
    return out


# --------------------------------------------------------------------------------------------------
# no contrast anywhere in the study


def _header_sign(stack: Stack) -> Evidence | None:
    """A contrast element in one stack's headers: agent, bolus start time, route, GE Series contrast flag."""
    h = stack.first
    agent = agent_given(x.contrast_agent for x in stack.instances)
    if agent:
        return SIGN_AGENT.cite(agent=agent)
    if h.contrast_start_time.strip():
        return SIGN_START_TIME.cite(start=h.contrast_start_time.strip())
    route = agent_given(x.contrast_route for x in stack.instances)
    if route:
        return SIGN_ROUTE.cite(route=route)
    flag = h.ge_series_contrast.strip()
    if vendor_of(h.manufacturer) is Vendor.GE and flag not in ("", "0"):
        return SIGN_GE_FLAG.cite(flag=flag)
    return None


def _text_sign(stack: Stack, epi: bool) -> Evidence | None:
    """Contrast named (whole tokens, contrast sense) or planned ('w/wo') in the series, protocol or study text."""
    h = stack.first
    for element, text in (("SeriesDescription", h.series_description), ("ProtocolName", h.protocol_name),
                          ("StudyDescription", h.study_description),
                          ("RequestedProcedureDescription", h.requested_procedure_description)):
        low = text.lower()
        value, why = contrast_text(element, low, epi)
        if value is True and why is not None:
            return why
        planned = CONTRAST_PLANNED.search(low)
        if planned:
            return SIGN_PLANNED.cite(element=element, match=planned.group(0))
    return None


def contrast_sign(stack: Stack, r: SeriesClass) -> Evidence | None:
    """The first sign in one stack's headers that contrast was given (or planned), or None."""
    return _header_sign(stack) or _text_sign(stack, r.technique is Technique.EPI)


def no_contrast_in_study(results: list[SeriesClass], study: Study) -> list[SeriesClass]:
    """An MR study in which nothing shows that contrast was given: every open stack is pre-contrast (the
    expert's reading too; any sign anywhere leaves the decision to the stack evidence and the order)."""
    mr = [(r, stack) for r, stack in zip(results, study.stacks, strict=True) if r.modality == "MR"]
    if not mr or any(contrast_sign(stack, r) for r, stack in mr):
        return results
    zero = sum(1 for _r, stack in mr if stack.first.ge_series_contrast.strip() == "0")
    series = len({r.series_instance_uid for r, _s in mr})
    why = NO_CONTRAST_GE_ZERO.cite(series=series, zero=zero) if zero else NO_CONTRAST.cite(series=series)
    return [replace(_with_reason(r, why), post_contrast=False) if r.modality == "MR" and r.post_contrast is None else r
            for r in results]


def explain_open_contrast(results: list[SeriesClass], study: Study) -> list[SeriesClass]:
    """Every MR stack still open says what was missing: the study names or shows contrast, nothing places this one."""
    open_mr = [i for i, r in enumerate(results) if r.modality == "MR" and r.post_contrast is None
               and not any(e.rule is ORDER_LOCALIZER for e in r.reasons.get(Field.POST_CONTRAST, ()))]
    if not open_mr:
        return results
    found = next(((r, s) for r, stack in zip(results, study.stacks, strict=True)
                  if r.modality == "MR" and (s := contrast_sign(stack, r))), None)
    if found is None:
        return results
    r_sign, sign = found
    out = list(results)
    for i in open_mr:
        out[i] = _with_reason(out[i], OPEN_CONTRAST.cite(series=r_sign.series_number, sign=sign.text()))
    return out


def apply_study_rules(results: list[SeriesClass], study: Study) -> list[SeriesClass]:
    """The study-level rules of the module docstring, in order, over the per-stack results."""
    results = exam_level_agent(results, study)
    results = fat_naming_convention(results)
    results = no_contrast_in_study(results, study)
    results = contrast_start_time(results, study)
    return explain_open_contrast(contrast_order(results), study)
