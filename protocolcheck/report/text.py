"""Records -> text for people and for CI: the classify and audit tables, the audit CSV and JUnit XML,
the recommendation and order-check reports, the protocol description, the worklist table, and the
one-line forms used by ``listen``.

Inputs are the JSON-ready dicts of the records (``to_dict()``), so every output shows the same facts
as ``--format json``; ``report.py`` does the generic table/CSV/JSON work underneath.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from protocolcheck.clinical.findings import Finding, sentence
from protocolcheck.logs import printable
from protocolcheck.report.tabular import to_csv, to_json, to_table, xml_safe

if TYPE_CHECKING:
    from protocolcheck.clinical.recommend import OrderCheck, Recommendation

CLASSIFY_COLUMNS = (
    "series_number", "stack", "series_description", "weighting", "inversion", "fat_suppression",
    "post_contrast", "plane", "obliquity_deg", "acquisition", "localizer", "derived", "instances",
)
CLASSIFY_HEADERS = {
    "series_number": "#", "stack": "stack", "series_description": "description", "weighting": "wt",
    "inversion": "inv", "fat_suppression": "fatsat", "post_contrast": "post", "plane": "plane",
    "obliquity_deg": "obl", "acquisition": "acq", "localizer": "loc", "derived": "der", "instances": "n",
}
CLASSIFY_TABLE_COLUMNS = CLASSIFY_COLUMNS[:-3] + ("flags", "instances")  # localizer/derived as one flags cell
_FAT_SAT_SHORT = {"WATER_EXCITATION": "WATER-EXC"}  # keeps the table within 100 columns
CLASSIFY_CSV_COLUMNS = (("study_instance_uid", "series_instance_uid") + CLASSIFY_COLUMNS[:-1]
                        + ("field_strength", "repetition_time", "echo_time", "inversion_time", "instances",
                           "evidence"))

AUDIT_CSV_COLUMNS = (
    "accession_number", "study_instance_uid", "study_date", "modality", "study_description", "manufacturer",
    "protocol", "status", "severity", "code", "requirement", "series", "action", "message",
)
SEVERITY_LABEL = {"error": "ERROR", "warning": "WARN", "info": "info"}

_WIDTH = 100  # text reports fit a 100-column terminal
WORKLIST_COLUMNS = ("accession_number", "scheduled_date", "station_aet", "procedure", "status", "recommended",
                    "earliest_date", "findings", "actions")
WORKLIST_HEADERS = {"accession_number": "accession", "scheduled_date": "scheduled", "station_aet": "station",
                    "earliest_date": "earliest"}

PROTOCOL_COLUMNS = ("id", "title", "modality", "version", "status", "requirements", "path")


def wrap_lines(text: str, indent: str, width: int = 100, hang: str = "  ") -> list[str]:
    """``text`` wrapped to ``width`` columns; continuation lines indented by ``hang`` more."""
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + hang,
                         break_on_hyphens=False) or [indent]


# -- classify ----------------------------------------------------------------------------------------


def yes_no(value: bool | None) -> str:
    """A tri-state fact for people: ``yes``, ``no``, or ``?`` when unknown (null)."""
    return "?" if value is None else "yes" if value else "no"


def fat_sat_label(fat_suppressed: bool | None, method: str | None) -> str:
    """The fat-suppression cell: the method when one is known, else ``yes``/``no``/``?``."""
    if fat_suppressed and method and method != "UNSPECIFIED":
        return _FAT_SAT_SHORT.get(method, method)
    return yes_no(fat_suppressed)


def _middle_cut(text: str | None, width: int) -> str | None:
    """``text`` cut in the middle to ``width`` (stack labels differ at the end: DIFFUSION/NONE, .../TRACEW)."""
    if text is None or len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (width - 1 - head):]


def _flags(r: dict[str, Any]) -> str:
    return ",".join(flag for flag, key in (("loc", "localizer"), ("der", "derived")) if r.get(key))


def _study_date(value: str | None) -> str:
    """DICOM DA 'YYYYMMDD' as 'YYYY-MM-DD'; other text as given; '?' when absent."""
    text = (value or "").strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text or "?"


def _study_heading(uid: str, first: dict[str, Any]) -> list[str]:
    """'Study <accession>  <date>  <description>  (vendor, modality)' and the Study UID below: no patient names."""
    accession = (first.get("accession_number") or "").strip() or "(no accession)"
    description = (first.get("study_description") or "").strip() or "(no study description)"
    head = (f"Study {accession}  {_study_date(first.get('study_date'))}  {description}  "
            f"({first.get('manufacturer') or 'unknown vendor'}, {first.get('modality') or '?'})")
    return wrap_lines(head, "", hang="      ") + [f"      Study Instance UID {uid}"]


def _b_label(values: Sequence[float]) -> str:
    return "b" + "/".join(f"{b:g}" for b in sorted(values))


def stack_label(r: dict[str, Any]) -> str | None:
    """The stack cell: DWI stacks by b-value ('b0/1000', 'b1000 TRACEW'), others by their stack label."""
    label = r.get("stack")
    b_values = [b for b in r.get("b_values") or () if isinstance(b, (int, float))]
    if r.get("weighting") != "DWI" or not b_values:
        return label
    kind = label.split()[0].split("/")[-1] if label else ""
    return _b_label(b_values) + (f" {kind}" if kind and kind not in ("NONE", "DIFFUSION", "M", "ND") else "")


def _study_order(item: tuple[str, list[dict[str, Any]]]) -> tuple[str, str, str]:
    """Studies by date, then time (first acquisition), then UID; undated studies last."""
    uid, rows = item
    date = (rows[0].get("study_date") or "").strip()
    times = sorted(t for t in (str(r.get("acquisition_time") or "") for r in rows) if t)
    return (date or "99999999", times[0] if times else "~", uid)


def classify_table(records: list[dict[str, Any]]) -> str:
    """One block per study, studies in date order: a heading (accession number, study date, study
    description, vendor and modality; the Study Instance UID below it; never patient names), then a row
    per series or stack in acquisition order.

    Unknown (null) facts show as ``?``, so a blank never hides whether a thing is absent or unknown;
    DWI stacks are labelled by their b-values; localizers and derived images are flagged ``loc``/``der``.
    Rows fit in 100 columns.
    """
    blocks = []
    by_study: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_study.setdefault(r["study_instance_uid"], []).append(r)
    for uid, rows in sorted(by_study.items(), key=_study_order):
        blocks.append("\n".join(_study_heading(uid, rows[0])) + "\n")
        cells = [{**r, "fat_suppression": fat_sat_label(r.get("fat_suppressed"), r.get("fat_suppression")),
                  "post_contrast": yes_no(r.get("post_contrast")), "flags": _flags(r),
                  "stack": _middle_cut(stack_label(r), 11)} for r in rows]
        blocks.append(to_table(cells, CLASSIFY_TABLE_COLUMNS, CLASSIFY_HEADERS, widths={"series_description": 22}))
        blocks.append("\n")
    return printable("".join(blocks), keep_newlines=True)


def classify_csv(records: list[dict[str, Any]]) -> str:
    return to_csv(records, CLASSIFY_CSV_COLUMNS)


# -- audit -------------------------------------------------------------------------------------------


def audit_table(records: list[dict[str, Any]]) -> str:
    """One block per study: header, scanner, status, missing items first (with the reason and the
    guideline statements cited), what was met. Every line fits in 100 columns."""
    lines: list[str] = []
    for r in records:
        title = r["study_description"] or "(no description)"
        head = (f"Study {r['accession_number'] or '-'}  {r['study_date'] or '????-??-??'}  {r['modality'] or '?'}  "
                f"{title}")
        lines.extend(wrap_lines(head, "", hang="      "))
        scanner = " ".join(v for v in (r.get("manufacturer"), r.get("station_name")) if v)
        if scanner:  # a line of its own: with the description it passed 100 columns
            lines.extend(wrap_lines(f"Scanner: {scanner}", "  "))
        if r["study_instance_uid"]:
            lines.append(f"  UID {r['study_instance_uid']}")
        lines.extend(wrap_lines(f"Status: {r['status'].upper()}   Protocol: {r['protocol'] or '-'}", "  "))
        if r.get("protocol_reason"):
            lines.extend(wrap_lines(f"why this protocol: {r['protocol_reason']}", "  "))
        lines.extend(_timing_lines(r.get("timing") or {}))
        for f in r["findings"]:
            lines.extend(_finding_lines(f))
        met = [q for q in r.get("requirements") or () if q.get("met")]
        if met:
            lines.append("  Met:")
            for q in met:
                lines.extend(wrap_lines(f"ok    {q['id']}: {', '.join(q.get('names') or []) or '-'}", "  "))
        if not r["findings"] and not met:
            lines.append("  (no findings)")
        lines.append("")
    return printable("\n".join(lines), keep_newlines=True)


def _timing_lines(timing: dict[str, Any]) -> list[str]:
    """The injury date, the study date and the days between, against the expected window."""
    if not timing.get("trauma_date"):
        return []
    days = timing.get("days_after_trauma")
    return wrap_lines(
        f"Timing: injury {timing['trauma_date']}, study {timing.get('study_date') or '?'} "
        f"(from {timing.get('date_source') or '?'})"
        + (f" = {days} days (expected {timing.get('min_days')}-{timing.get('max_days')})"
           if days is not None else ""), "  ")


def _finding_lines(f: dict[str, Any]) -> list[str]:
    """One finding: severity, code, requirement and text; the action and the sources cited below it."""
    sev = SEVERITY_LABEL.get(f["severity"], f["severity"])
    what = f["code"] + (f" {f['requirement']}" if f.get("requirement") else "")
    finding = Finding.from_dict(f)
    lines = wrap_lines(f"{sev:<5} {what}: {finding.render(action=False, guideline=False)}", "  ")
    if finding.action:
        lines.extend(wrap_lines(f"action: {sentence(finding.action)}", "        "))
    sources = list(dict.fromkeys(q.source for q in finding.guideline))
    if sources:  # the sources by name (the statements and their ids are in the JSON and the HTML report)
        lines.extend(wrap_lines(f"source: {'; '.join(sources)}", "        "))
    return lines


def audit_csv(records: list[dict[str, Any]]) -> str:
    """One row per finding (a study without findings: one row with the finding columns empty)."""
    rows = []
    for r in records:
        base = {k: r.get(k) for k in AUDIT_CSV_COLUMNS[:8]}
        if not r["findings"]:
            rows.append({**base, "severity": None, "code": None, "requirement": None, "series": None, "action": None,
                         "message": None})
        rows.extend({**base, "severity": f["severity"], "code": f["code"], "requirement": f["requirement"],
                     "series": f["series"], "action": f.get("action"), "message": f["message"]}
                    for f in r["findings"])
    return to_csv(rows, AUDIT_CSV_COLUMNS)


def audit_junit(records: list[dict[str, Any]]) -> str:
    """JUnit XML: one test suite, one test case per study (failures = error findings, warnings in system-out).
    Characters XML cannot hold are dropped (:func:`.tabular.xml_safe`)."""
    failures = sum(1 for r in records if r["status"] in ("fail", "error"))
    suite = ET.Element("testsuite", name="protocolcheck audit", tests=str(len(records)), failures=str(failures),
                       errors="0", skipped=str(sum(1 for r in records if r["status"] == "no-protocol")))
    for r in records:
        case = ET.SubElement(suite, "testcase", classname=r["protocol"] or "no-protocol",
                             name=r["accession_number"] or r["study_instance_uid"] or r["study_description"])
        errors = [f for f in r["findings"] if f["severity"] == "error"]
        if r["status"] == "no-protocol":
            ET.SubElement(case, "skipped", message="no protocol applies")
        elif errors:
            node = ET.SubElement(case, "failure", message="; ".join(
                f["code"] + (f" {f['requirement']}" if f["requirement"] else "") for f in errors), type=r["status"])
            node.text = "\n".join(f["message"] for f in errors)
        others = [f for f in r["findings"] if f["severity"] != "error"]
        if others:
            ET.SubElement(case, "system-out").text = "\n".join(f"{f['severity']}: {f['message']}" for f in others)
    ET.indent(suite)
    # text from headers may hold characters XML cannot (\\x01, \\x0b): dropped, the document stays well-formed
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + xml_safe(ET.tostring(suite, encoding="unicode")) + "\n"


def as_text(form: str, records: Any, csv: Callable[[Any], str], table: Callable[[Any], str]) -> str:
    """``records`` in the output ``form``: "json" (the records as they are), "csv" or "table"."""
    if form == "json":
        return to_json(records)
    return csv(records) if form == "csv" else table(records)


def audit_text(records: list[dict[str, Any]], form: str, empty: str = "") -> str:
    """``audit``'s and ``query``'s output in ``form`` (``empty`` as the table of no records)."""
    return as_text(form, records, audit_csv, lambda rs: audit_table(rs) if rs or not empty else empty)


def json_line(record: dict[str, Any]) -> str:
    """One record as a compact JSON line (``listen``'s output), with the same values as ``to_json``."""
    return json.dumps(json.loads(to_json(record)), ensure_ascii=False, separators=(",", ":"))


def describe(result: Any) -> str:
    """One line about an :class:`AuditResult`: accession, study UID, status, protocol, counts by severity."""
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
    detail = ", ".join(f"{n} {sev}" for sev, n in sorted(counts.items())) or "no findings"
    return printable(f"accession {result.accession_number or '-'} (study {result.study_instance_uid}): "
                     f"{result.status.value}, protocol {result.protocol or '-'}, {detail}")


# -- worklist ----------------------------------------------------------------------------------------


def _action(finding: dict[str, Any]) -> str:
    """A finding's action: its own field, else where the order check kept it (older finding records)."""
    return str(finding.get("action") or (finding.get("evidence") or {}).get("action") or "")


def _worklist_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "recommended": (r["recommended"] or {}).get("procedure"),
             "findings": "; ".join(f"{f['severity']}: {f['code']}" for f in r["findings"]),
             "actions": " ".join(dict.fromkeys(a for a in map(_action, r["findings"]) if a))} for r in records]


def worklist_csv(records: list[dict[str, Any]]) -> str:
    return to_csv(_worklist_rows(records),
                  WORKLIST_COLUMNS + ("indication", "trauma_date", "procedure_code", "modality"))


def worklist_table(records: list[dict[str, Any]]) -> str:
    """One block per scheduled step within 100 columns: the short facts on one line, then what was
    ordered, what is recommended and the findings, each in full (wrapped, never cut)."""
    if not records:
        return "(nothing)\n"
    rows = _worklist_rows(records)
    short = ("accession_number", "scheduled_date", "station_aet", "status", "earliest_date")
    widths = {c: max(len(WORKLIST_HEADERS.get(c, c)), *(len(str(r.get(c) or "-")) for r in rows)) for c in short}
    lines = ["  ".join(f"{WORKLIST_HEADERS.get(c, c):<{widths[c]}}" for c in short).rstrip()]
    for r in rows:
        lines.append("  ".join(f"{r.get(c) or '-'!s:<{widths[c]}}" for c in short).rstrip())
        for label, key in (("ordered", "procedure"), ("recommended", "recommended"), ("findings", "findings"),
                           ("action", "actions")):
            if key == "actions" and not r.get(key):
                continue
            lines.append(textwrap.fill(str(r.get(key) or "-"), width=_WIDTH, initial_indent=f"    {label + ':':<13}",
                                       subsequent_indent=" " * 17, break_on_hyphens=False))
    return printable("\n".join(lines), keep_newlines=True) + "\n"


# -- recommend and check-order -----------------------------------------------------------------------


def _wrap(text: str, width: int = 96, indent: str = "    ") -> str:
    """One wrapped paragraph (words are never split: codes and references stay whole)."""
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False, break_long_words=False)


def _refs(ids: Sequence[str], numbers: dict[str, int]) -> str:
    return "".join(f"[{numbers.setdefault(i, len(numbers) + 1)}]" for i in ids)


def _ranked(recommendations: Sequence[Any], numbers: dict[str, int]) -> list[str]:
    """The ranked procedures, one block each within 100 columns: rank, appropriateness, procedure with its
    citations (wrapped), and the library protocol that implements it on the next line."""
    label_width = max((len(r.appropriateness.label) for r in recommendations), default=0)
    indent = " " * (4 + 2 + label_width + 2)
    lines = [f"{'rank':>4}  {'appropriateness':<{label_width}}  procedure [citations] / protocol"]
    for r in recommendations:
        head = f"{r.rank:>4}  {r.appropriateness.label:<{label_width}}  "
        lines.append(textwrap.fill(f"{r.procedure} {_refs(r.citations, numbers)}", width=_WIDTH,
                                   initial_indent=head, subsequent_indent=indent, break_on_hyphens=False))
        lines.append(f"{indent}protocol: {r.protocol or '- (none in the library)'}")
    return lines if recommendations else []


def _scenario_facts(sc: Any) -> list[str]:
    """The scenario as understood, in short phrases (what was read from text says where)."""
    facts = [f"categories {', '.join(sc.categories) or '-'}"]
    if sc.codes:
        facts.append("codes " + ", ".join(f"{c.code} ({c.label})" for c in sc.codes))
    for label, value in (("trauma", sc.trauma_date), ("exam date", sc.on), ("eGFR", sc.egfr)):
        if value is not None:
            facts.append(f"{label} {value}")
    for label, value in (("MRI contraindicated", sc.mri_contraindicated),
                         ("gadolinium contraindicated", sc.gadolinium_contraindicated),
                         ("iodinated contrast contraindicated", sc.iodinated_contrast_contraindicated),
                         ("dermatomal", sc.dermatomal), ("known malignancy", sc.known_malignancy),
                         ("prior radiation", sc.prior_radiation)):
        if value:
            facts.append(label)
    if sc.pregnant:
        facts.append("pregnant")
    if sc.mri_device is not None:
        facts.append(f"{sc.mri_device.label} named in {sc.mri_device.source} (MR safety not recorded)")
    reasons = [r for r in (sc.mri_reason, sc.gadolinium_reason, sc.iodinated_reason)
               if r and not r.startswith("recorded")]
    facts += [f"from the text: {r}" for r in reasons]
    return facts


def format_recommendation(rec: Recommendation) -> str:
    """A readable report: variant, ranked procedures, timing, companion tests, follow-up, cautions, sources."""
    numbers: dict[str, int] = {}
    sc = rec.scenario
    lines = [f"Scenario: {sc.indication or '(no indication text)'}"]
    facts = _scenario_facts(sc)
    lines.append(_wrap("; ".join(facts), indent="  "))
    lines += [f"  note: {n}" for n in sc.notes]
    lines.append(textwrap.fill(f"Variant: {rec.variant.title} {_refs(rec.variant.citations, numbers)}",
                               width=_WIDTH, subsequent_indent="  ", break_on_hyphens=False))
    lines.append("")
    lines += _ranked(rec.recommendations, numbers) or ["  (no suitable procedure)"]
    if rec.top:
        lines.append(_wrap(f"Why rank 1: {rec.top.rationale}", indent="  "))
    lines.extend(_wrap(f"not for this patient: {e.procedure} - {e.reason} {_refs(e.citations, numbers)}", indent="  ")
                 for e in rec.excluded)
    lines.append("")
    date = rec.timing.earliest_date.isoformat() if rec.timing.earliest_date else "-"
    lines.append(f"Earliest date: {date}  ({rec.timing.status.value})")
    lines.append(_wrap(rec.timing.text + " " + _refs(rec.timing.citations, numbers), indent="  "))
    for title, items in (("Companion tests", rec.companion), ("Follow-up", rec.follow_up), ("Cautions", rec.cautions)):
        lines.append(f"{title}:")
        lines += [_wrap(f"- {s.text} {_refs(s.citations, numbers)}", indent="  ") for s in items] or ["  -"]
    lines.append("Sources:")
    for cid, n in numbers.items():
        src = rec.sources.get(cid)
        if src:
            lines.append(_wrap(f"[{n}] {src.title}: \"{src.statement}\"", indent="  "))
    return printable("\n".join(lines), keep_newlines=True) + "\n"


def format_order_check(check: OrderCheck) -> str:
    """A readable order-check report: status, findings, recommended replacement."""
    lines = [f"Order: {check.procedure or '-'}" + (f" (code {check.procedure_code})" if check.procedure_code else "")
             + f"  scheduled {check.scheduled.isoformat()}"]
    if check.ordered and check.ordered.understood:
        side = f", {check.ordered.laterality}" if check.ordered.laterality else ""
        lines.append(f"  read as: {check.ordered.name}{side}")
    lines.extend(f"  note: {note}" for note in (check.ordered.notes if check.ordered else ()))
    if check.recommendation:
        lines.append(f"Variant: {check.recommendation.variant.title}")
    lines.append(f"Status: {check.status.value}")
    lines.extend(_wrap(f"problem: {p}", indent="  ") for p in check.problems)
    for f in check.findings:
        lines.append(_wrap(f"{f.severity.value.upper()} {f.code.value}: {f.render(action=False)}", indent="  "))
        if f.action:
            lines.append(_wrap(f"action: {sentence(f.action)}", indent="    "))
    if check.recommended:
        r = check.recommended
        lines.append(_wrap(f"Recommended: {r.procedure} ({r.appropriateness.label}); protocol: "
                           f"{r.protocol or 'none in the library'}", indent=""))
    if check.recommendation and check.recommendation.timing.earliest_date:
        lines.append(f"Earliest date: {check.recommendation.timing.earliest_date.isoformat()}")
    return printable("\n".join(lines), keep_newlines=True) + "\n"


# -- protocols ---------------------------------------------------------------------------------------


def protocol_rows(library: Iterable[Any]) -> list[dict[str, Any]]:
    """``protocols list``: one row per protocol of the library."""
    return [{"id": p.id, "title": p.title, "modality": p.modality, "version": p.version, "status": p.status,
             "requirements": len(p.requirements) + len(p.planes), "path": p.path} for p in library]


def protocols_csv(rows: list[dict[str, Any]]) -> str:
    return to_csv(rows, PROTOCOL_COLUMNS)


def protocols_table(rows: list[dict[str, Any]], library_path: Any) -> str:
    return (to_table(rows, ("id", "modality", "version", "status", "requirements", "title"),
                     {"requirements": "rules"}, widths={"title": 60}) + f"({library_path})\n")


def protocol_text(p: Any) -> str:
    """A readable rendering of one protocol, its rules and the guideline statements they cite."""
    numbers: dict[str, int] = {}

    def ref(ids: Iterable[str]) -> str:
        marks = []
        for cid in ids:
            numbers.setdefault(cid, len(numbers) + 1)
            marks.append(f"[{numbers[cid]}]")
        return " ".join(marks)

    out = _protocol_head(p)
    out += _requirement_lines(p.requirements, ref)  # citations are numbered in the order they are shown
    out += _plane_lines(p.planes, ref)
    out += _limit_lines(p.limits, ref)
    out += _timing_and_note_lines(p, ref)
    out += ["", "References"]
    for cid, n in numbers.items():
        c = p.citations[cid]
        out += wrap_lines(f"[{n}] {cid}: \u201c{c.statement}\u201d \u2014 {c.source}"
                          + (f" doi:{c.doi}" if c.doi else "") + (f" {c.url}" if c.url else ""), "  ")
    return printable("\n".join(out), keep_newlines=True) + "\n"


def _protocol_head(p: Any) -> list[str]:
    """Title, version, file, description, and how a study is recognised as this exam."""
    out = [f"{p.id} \u2014 {p.title}",
           f"  modality {p.modality} \u00b7 version {p.version} \u00b7 status {p.status}"
           + (f" \u00b7 family {p.family}" if p.family else ""),
           f"  file {p.path}"]
    if p.description:
        out += [""] + wrap_lines(p.description, "  ", hang="")
    a = p.applies_to
    out += ["", "Recognised by (when no --protocol or indication chooses)"]
    out += wrap_lines("descriptions matching: " + (" | ".join(a.descriptions) or "-"), "  ")
    if a.exclude_descriptions:
        out += wrap_lines("unless matching: " + " | ".join(a.exclude_descriptions), "  ")
    out.append(f"  procedure codes: {', '.join(a.procedure_codes) or '-'}   "
               f"body parts: {', '.join(a.body_parts) or '-'}")
    return out


def _rule_head(rule: Any, ref: Callable[[Iterable[str]], str]) -> str:
    """A rule's id, label, level and the severity it gives, and its citations."""
    severity = "error" if rule.level.value == "required" else "warning"
    return f"  {rule.id:<32} {rule.label}  [{rule.level.value} \u2192 {severity}] {ref(rule.citations)}"


def _requirement_lines(requirements: Iterable[Any], ref: Callable[[Iterable[str]], str]) -> list[str]:
    out = ["", "Required series (a series satisfies one requirement; localizers and derived images do not count "
               "unless stated)"]
    for r in requirements:
        out.append(_rule_head(r, ref))
        out += wrap_lines("match: " + r.describe(), "      ")
        flags = []
        if not r.exclusive:
            flags.append("study-level check (does not use up a series)")
        if r.defines_exam:
            flags.append("defines the exam: when unmet, the study is the wrong exam")
        if flags:
            out += wrap_lines("; ".join(flags), "      ")
        if r.note:
            out += wrap_lines("note: " + r.note, "      ")
        if r.action:
            out += wrap_lines("when missing: " + r.action, "      ")
    return out


def _plane_lines(planes: Sequence[Any], ref: Callable[[Iterable[str]], str]) -> list[str]:
    if not planes:
        return []
    out = ["", "Plane rules"]
    for rule in planes:
        out.append(_rule_head(rule, ref))
        text = (f"two acquired series perpendicular within {rule.tolerance_deg:g}\u00b0, each at least "
                f"{rule.min_obliquity_deg:g}\u00b0 off the scanner axes")
        if rule.isotropic_3d_counts:
            text += f"; or one 3D acquisition with slices \u2264 {rule.isotropic_max_mm:g} mm (isotropic)"
        if rule.reformats_count:
            text += "; reformats count as planes when the study has a 3D acquisition"
        out += wrap_lines(text, "      ")
        if rule.action:
            out += wrap_lines("when missing: " + rule.action, "      ")
    return out


def _limit_lines(limits: Sequence[Any], ref: Callable[[Iterable[str]], str]) -> list[str]:
    if not limits:
        return []
    out = ["", "Quality limits (parameter-out-of-range; a site may tighten them)"]
    units = {"slice_thickness": " mm", "field_strength": " T"}
    for q in limits:
        severity = "error" if q.level.value == "required" else "warning"
        out.append(f"  {q.id:<32} {q.label} {q.range.describe()}{units.get(q.parameter, '')}  "
                   f"[{q.level.value} \u2192 {severity}] {ref(q.citations)}".rstrip())
        out += wrap_lines("series: " + q.series.describe(), "      ")
        if q.site_policy:
            out += wrap_lines("site policy: " + q.site_policy, "      ")
    return out


def _timing_and_note_lines(p: Any, ref: Callable[[Iterable[str]], str]) -> list[str]:
    """The trauma timing rule, what to say when this exam was the wrong one, and the notes."""
    out: list[str] = []
    if p.trauma is not None:
        t = p.trauma
        out += ["", "Timing after trauma",
                f"  at least {t.min_days} days after the injury (earlier: trauma-too-early, error) {ref(t.citations)}",
                f"  at most {t.max_days} days (later: trauma-delayed, warning) {ref(t.delayed_citations)}",
                "  a traumatic indication without a trauma date: context-missing (warning)"]
    if p.wrong_exam is not None:
        out += ["", "When this exam was done although another was indicated"]
        out += wrap_lines(f"{p.wrong_exam.text} {ref(p.wrong_exam.citations)}", "  ")
    if p.notes:
        out += ["", "Notes"]
        for note in p.notes:
            out += wrap_lines(f"- {note.text} {ref(note.citations)}", "  ")
    return out
