"""Parts of the HTML report a manager acts on: vendor names, requirement names, shortened UIDs, the
per-scanner compliance trend over weeks, the upcoming scheduled exams with problems, and the records
of unreadable files the audit reported (so the report's error count equals the audit's).

:mod:`protocolcheck.report.html` assembles the page; this module prepares and renders these pieces.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from protocolcheck.classify.facts import vendor_of
from protocolcheck.classify.model import Vendor
from protocolcheck.clinical.library import Library

# The one table of vendor names the report shows: Manufacturer (0008,0070) is free text (PS3.3 C.7.5.1),
# so "SIEMENS" and "Siemens Healthineers" are one vendor; classify.facts.vendor_of holds the spellings.
VENDOR_NAMES: dict[Vendor, str] = {
    Vendor.SIEMENS: "Siemens", Vendor.GE: "GE", Vendor.PHILIPS: "Philips", Vendor.CANON: "Canon (Toshiba)",
    Vendor.HITACHI: "Hitachi (Fujifilm)", Vendor.UIH: "United Imaging", Vendor.UNKNOWN: "(not recorded)",
}
TREND_WEEKS = 12


def esc(value: Any) -> str:
    """HTML-escape any value (None and NaN become an empty string)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


def vendor_name(manufacturer: object) -> str:
    """The vendor a Manufacturer value names (``VENDOR_NAMES``); another maker keeps its own words."""
    text = " ".join(str(manufacturer or "").split())
    vendor = vendor_of(text)
    return VENDOR_NAMES.get(vendor) or text


def modality_group(modality: object) -> str:
    """MR and CT apart; anything else under its own modality (or "other")."""
    text = str(modality or "").strip().upper()
    return text or "other"


def requirement_labels(library: Library | None) -> dict[tuple[str, str], str]:
    """(protocol id, requirement id) -> the requirement's name in the protocol library."""
    if library is None:
        return {}
    return {(p.id, r.id): r.label for p in library for r in p.requirements}


def requirement_name(labels: dict[tuple[str, str], str], protocol: object, requirement: object) -> str:
    """A requirement's name for this protocol; else its name in any protocol; else the id as stored."""
    req = str(requirement or "")
    if not req:
        return ""
    found = labels.get((str(protocol or ""), req))
    if found:
        return found
    return next((label for (_p, r), label in labels.items() if r == req), req)


def short_uid(uid: object, keep: int = 10) -> str:
    """A UID shortened to its start and end (``1.2.826.0…4711.3``) with the full value in ``title``."""
    text = str(uid or "")
    if not text:
        return ""
    shown = text if len(text) <= 2 * keep + 1 else f"{text[:keep]}…{text[-keep:]}"
    return f'<span class="uid" title="{esc(text)}">{esc(shown)}</span>'


def unreadable_rows(orphans: Sequence[tuple[str, str, dt.datetime]], start_id: int = -1,
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The audit's ``error`` records of unreadable files that belong to no study (one per folder, as
    :func:`protocolcheck.audit.engine.orphan_results`), as report rows and findings (negative ids)."""
    by_folder: dict[str, list[tuple[str, str, dt.datetime]]] = {}
    for path, reason, seen in orphans:
        by_folder.setdefault(os.path.dirname(path) or ".", []).append((path, reason, seen))
    rows, findings = [], []
    for i, (folder, items) in enumerate(sorted(by_folder.items())):
        audit_id = start_id - i
        when = pd.Timestamp(max(seen for _, _, seen in items)).normalize()
        rows.append({"id": audit_id, "study_instance_uid": "", "accession_number": "", "when": when,
                     "status": "error", "modality": "", "manufacturer": "", "scanner": "", "station_name": "",
                     "institution": "", "protocol": "", "study_description": f"unreadable files in {folder}",
                     "days_after_trauma": float("nan"), "errors": len(items), "warnings": 0})
        for path, reason, _seen in items:
            findings.append({"audit_id": audit_id, "code": "unreadable-file", "severity": "error", "requirement": None,
                             "message": f"{os.path.basename(path)}: {reason}",
                             "detail": f"{os.path.basename(path)} cannot be read: {reason}",
                             "action": "Check the file: re-send it from the scanner or PACS, or remove it.",
                             "guideline": None, "deviation": None})
    return pd.DataFrame(rows), pd.DataFrame(findings)


Trend = list[tuple[str, list[tuple[int, int]]]]


def weekly_trend(audits: pd.DataFrame, weeks: int = TREND_WEEKS) -> tuple[list[str], Trend]:
    """Per scanner (modality · vendor · station), the last ``weeks`` weeks: (compliant, audited) per week."""
    rated = audits[audits["status"].isin(("pass", "warn", "fail"))]
    if rated.empty:
        return [], []
    periods = rated["when"].dt.to_period("W-SUN")
    last = periods.max()
    span = pd.period_range(last - (weeks - 1), last, freq="W-SUN")
    labels = [p.start_time.strftime("%d %b") for p in span]
    names = (rated["modality"].map(modality_group) + " · " + rated["manufacturer"].map(vendor_name) + " · "
             + rated["station_name"].fillna("").astype(str).replace("", "(no station)"))
    out = []
    for name in names.value_counts().index:
        mine = names == name
        cells = []
        for p in span:
            week = rated.loc[mine & (periods == p), "status"]
            cells.append((int(week.isin(("pass", "warn")).sum()), len(week)))
        out.append((str(name), cells))
    return labels, out


def _shade(rate: float) -> str:
    """Red (0%) through amber to green (100%)."""
    if rate >= 0.9:
        return "#cdebd9"
    if rate >= 0.7:
        return "#f6e3b4"
    return "#f5c6c6"


def trend_table(audits: pd.DataFrame) -> str:
    """The per-scanner weekly compliance table (a cell per week: compliant of audited, shaded)."""
    labels, rows = weekly_trend(audits)
    if not rows:
        return '<p class="empty">No study audited against a protocol in this selection.</p>'
    head = "".join(f"<th>{esc(lbl)}</th>" for lbl in labels)
    body = []
    for name, cells in rows:
        tds = []
        for good, total in cells:
            if not total:
                tds.append('<td class="trend none">–</td>')
                continue
            rate = good / total
            tds.append(f'<td class="trend" style="background:{_shade(rate)}" data-rate="{rate:.2f}" '
                       f'title="{good} of {total} compliant">{rate:.0%}</td>')
        body.append(f'<tr><th class="scanner">{esc(name)}</th>{"".join(tds)}</tr>')
    return (f'<div class="scroll"><table class="trend"><thead><tr><th>Scanner (modality · vendor · station), week of'
            f'</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _findings_list(data: str) -> list[dict[str, str]]:
    try:
        items = json.loads(data or "[]")
    except (TypeError, ValueError):
        return []
    return [d for d in items if isinstance(d, dict)]


def upcoming_table(upcoming: pd.DataFrame | None, badges: dict[str, str]) -> str:
    """Upcoming scheduled exams, problems first: accession, date, station, procedure, verdict, findings, action."""
    if upcoming is None or upcoming.empty:
        return ('<p class="empty">No upcoming scheduled exams in the store (run <code>protocolcheck worklist … '
                "--db</code> to check them).</p>")
    rows = []
    for _, row in upcoming.iterrows():
        items = _findings_list(row.get("findings_json", "[]"))
        shown = [f for f in items if f.get("severity") in ("error", "warning")] or items
        found = "<br>".join(f'<code>{esc(f.get("code"))}</code> {esc(f.get("message"))}' for f in shown) or "–"
        actions = "<br>".join(esc(a) for a in dict.fromkeys(f.get("action", "") for f in shown) if a) or "–"
        day = row.get("scheduled_day")
        when = day.isoformat() if isinstance(day, dt.date) else esc(row.get("scheduled_date"))
        status = str(row.get("status") or "")
        rows.append(f'<tr class="upcoming {esc(status)}"><td class="nowrap">{esc(when)}</td>'
                    f'<td class="mono"><b>{esc(row.get("accession_number")) or "–"}</b></td>'
                    f'<td>{esc(row.get("station_aet")) or "–"}</td><td>{esc(row.get("procedure"))}</td>'
                    f'<td>{badges.get(status, esc(status))}</td><td class="finding">{found}</td>'
                    f'<td class="action">{actions}</td></tr>')
    head = ("Scheduled", "Accession", "Station", "Procedure ordered", "Verdict", "Finding", "Action")
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


UPCOMING_COLUMNS = ("scheduled_date", "accession_number", "station_aet", "modality", "procedure", "status",
                    "finding_codes", "findings", "actions", "checked_at")


def upcoming_frame(upcoming: pd.DataFrame) -> pd.DataFrame:
    """The upcoming scheduled exams as export rows (problems first, as :func:`.scheduled.upcoming` sorts)."""
    rows = []
    for _, row in upcoming.iterrows():
        items = _findings_list(row.get("findings_json", "[]"))
        day = row.get("scheduled_day")
        rows.append({"scheduled_date": day.isoformat() if isinstance(day, dt.date) else row.get("scheduled_date"),
                     "accession_number": row.get("accession_number"), "station_aet": row.get("station_aet"),
                     "modality": row.get("modality"), "procedure": row.get("procedure"), "status": row.get("status"),
                     "finding_codes": "|".join(str(f.get("code")) for f in items),
                     "findings": " | ".join(str(f.get("message")) for f in items),
                     "actions": " | ".join(dict.fromkeys(str(f.get("action")) for f in items if f.get("action"))),
                     "checked_at": row.get("checked_at")})
    return pd.DataFrame(rows, columns=list(UPCOMING_COLUMNS))


def upcoming_lines(upcoming: pd.DataFrame, limit: int = 20) -> list[str]:
    """One stderr line per upcoming scheduled exam with a problem (for the cron mail), problems first."""
    frame = upcoming_frame(upcoming)
    bad = frame[frame["status"] != "pass"]
    if bad.empty:
        return [f"upcoming: {len(frame)} scheduled exams checked, none with a problem"] if len(frame) else []
    lines = [f"upcoming: {len(bad)} of {len(frame)} scheduled exams with a problem"]
    for _, row in bad.head(limit).iterrows():
        action = row["actions"] or "see the report"
        lines.append(f"  {row['scheduled_date']}  {row['accession_number'] or '-'}  {row['status']}: "
                     f"{row['finding_codes'] or '-'} -> {action}")
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more (report --upcoming-csv has all)")
    return lines


def count_problems(upcoming: pd.DataFrame | None) -> int:
    """Upcoming steps whose latest check is not a pass."""
    if upcoming is None or upcoming.empty:
        return 0
    return int((upcoming["status"] != "pass").sum())


def concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate the non-empty frames (an empty first one keeps its columns)."""
    frames = list(frames)
    kept = [f for f in frames if not f.empty]
    if not kept:
        return frames[0]
    return pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0]
