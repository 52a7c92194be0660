"""Render stored audit results as one self-contained HTML file with inline SVG charts.

Input is the store's tables (:meth:`Store.latest` and :meth:`Store.findings`), output is a string:
no scripts, no external fonts, styles or images, so the file can be mailed or archived as is. Every
value taken from a DICOM header is HTML-escaped. Charts are small hand-written SVG (bars and a
histogram): no plotting dependency, crisp at any zoom, and their numbers are checkable in tests.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from protocolcheck.clinical.library import Library
from protocolcheck.clinical.rules import load_rules
from protocolcheck.report.sections import (
    concat,
    count_problems,
    modality_group,
    requirement_labels,
    requirement_name,
    short_uid,
    trend_table,
    unreadable_rows,
    upcoming_table,
    vendor_name,
)


def trauma_days() -> tuple[int, int]:
    """The trauma window (earliest, latest days after the injury): ``timing`` of rules.yaml, the one place for it."""
    rules = load_rules()
    return rules.min_days_after_trauma, rules.max_days_after_trauma


STATUS_ORDER = ("pass", "warn", "fail", "no-protocol", "error")
STATUS_LABELS = {"pass": "pass", "warn": "warning", "fail": "fail", "no-protocol": "no protocol", "error": "error"}
STATUS_COLORS = {"pass": "#2f9e66", "warn": "#e3a21a", "fail": "#d64545", "no-protocol": "#a0aab4", "error": "#7d52b8"}
SEVERITY_COLORS = {"error": "#d64545", "warning": "#e3a21a", "info": "#5b8def"}
TIMING_COLORS = {"early": "#e3a21a", "window": "#4a7fd4", "late": "#8d99a6"}
FAILING = ("fail", "error")
MISSING_CODES = ("missing-sequence", "plane")
MAX_TABLE_ROWS = 500

EXPORT_COLUMNS = (
    "study_instance_uid", "accession_number", "study_date", "modality", "study_description", "manufacturer",
    "station_name", "institution", "protocol", "status", "errors", "warnings", "days_after_trauma",
    "finding_codes", "missing_requirements", "audited_at", "library_version", "source",
)


def esc(value: Any) -> str:
    """HTML-escape any value (None becomes an empty string)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


# -- data preparation --------------------------------------------------------------------------


def export_frame(audits: pd.DataFrame, findings: pd.DataFrame, *, include_patient: bool = False) -> pd.DataFrame:
    """One row per study for CSV/Parquet: the audit columns plus its finding codes and missing requirements."""
    df = audits.copy()
    codes: dict[int, str] = {}
    missing: dict[int, str] = {}
    if not findings.empty:
        for audit_id, group in findings.groupby("audit_id"):
            key = int(str(audit_id))
            codes[key] = "|".join(dict.fromkeys(group["code"].astype(str)))
            req = group[group["code"].isin(MISSING_CODES)]["requirement"].dropna().astype(str)
            missing[key] = "|".join(dict.fromkeys(req))
    df["finding_codes"] = [codes.get(int(i), "") for i in df["id"]] if len(df) else pd.Series(dtype=str)
    df["missing_requirements"] = [missing.get(int(i), "") for i in df["id"]] if len(df) else pd.Series(dtype=str)
    columns = list(EXPORT_COLUMNS) + (["patient_name", "patient_id"] if include_patient else [])
    for column in columns:
        if column not in df:
            df[column] = None
    return df[columns].reset_index(drop=True)


def compliance(statuses: pd.Series) -> float | None:
    """Share of studies without errors (pass or warn) among those audited against a protocol."""
    audited = statuses.isin(("pass", "warn", "fail")).sum()
    if not audited:
        return None
    return float(statuses.isin(("pass", "warn")).sum()) / float(audited)


def stack_rate(stack: dict[str, int]) -> float | None:
    """:func:`compliance` of a status-count mapping."""
    audited = stack.get("pass", 0) + stack.get("warn", 0) + stack.get("fail", 0)
    return (stack.get("pass", 0) + stack.get("warn", 0)) / audited if audited else None


def _status_counts(statuses: pd.Series) -> dict[str, int]:
    counts = statuses.value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUS_ORDER}


@dataclass(frozen=True)
class Period:
    """How the time axis is binned: label format and pandas period frequency."""

    name: str
    freq: str


def choose_period(days: pd.Series) -> Period:
    """Weeks for short spans, months up to four years, years beyond."""
    if days.empty:
        return Period("month", "M")
    span = (days.max() - days.min()).days
    if span <= 16 * 7:
        return Period("week", "W-SUN")
    if span <= 4 * 366:
        return Period("month", "M")
    return Period("year", "Y")


def over_time(audits: pd.DataFrame) -> tuple[Period, list[str], list[dict[str, int]]]:
    """Status counts per period, with empty periods in between kept (an honest time axis)."""
    period = choose_period(audits["when"]) if len(audits) else Period("month", "M")
    if audits.empty:
        return period, [], []
    periods = audits["when"].dt.to_period(period.freq)
    full = pd.period_range(periods.min(), periods.max(), freq=period.freq)
    labels, stacks = [], []
    for p in full:
        statuses = audits.loc[periods == p, "status"]
        stacks.append(_status_counts(statuses))
        if period.name == "week":
            labels.append(p.start_time.strftime("%d %b"))
        elif period.name == "month":
            labels.append(p.start_time.strftime("%b %Y"))
        else:
            labels.append(str(p.year))
    return period, labels, stacks


def by_group(audits: pd.DataFrame, column: str, limit: int = 12) -> tuple[list[str], list[dict[str, int]]]:
    """Status counts per value of a column (most studies first; the rest folded into 'other')."""
    if audits.empty:
        return [], []
    values = audits[column].fillna("").astype(str).str.strip().replace("", "(not recorded)")
    order = values.value_counts()
    top = list(order.index[:limit])
    labels, stacks = [], []
    for name in top:
        labels.append(name)
        stacks.append(_status_counts(audits.loc[values == name, "status"]))
    if len(order) > limit:
        rest = audits.loc[~values.isin(top), "status"]
        labels.append(f"other ({len(order) - limit})")
        stacks.append(_status_counts(rest))
    return labels, stacks


def missing_requirements(audits: pd.DataFrame, findings: pd.DataFrame, limit: int = 12,
                         labels: dict[tuple[str, str], str] | None = None) -> list[tuple[str, int, str]]:
    """(requirement name, number of studies missing it, an example message), most frequent first; the
    name is the protocol library's (``labels``, see :func:`.sections.requirement_labels`), else the id."""
    if findings.empty or audits.empty:
        return []
    rows = findings[findings["code"].isin(MISSING_CODES) & findings["audit_id"].isin(audits["id"])].copy()
    if rows.empty:
        return []
    rows["requirement"] = rows["requirement"].fillna(rows["code"]).astype(str)
    if labels:
        protocol_of = dict(zip(audits["id"].astype(int), audits["protocol"], strict=False))
        rows["requirement"] = [requirement_name(labels, protocol_of.get(int(a)), r)
                               for a, r in zip(rows["audit_id"], rows["requirement"], strict=False)]
    counts = rows.drop_duplicates(["audit_id", "requirement"]).groupby("requirement")["audit_id"].nunique()
    counts = counts.sort_values(ascending=False, kind="stable")
    example = rows.drop_duplicates("requirement").set_index("requirement")["message"]
    return [(req, int(n), str(example.get(req, ""))) for req, n in counts.head(limit).items()]


def trauma_histogram(days: pd.Series, width: int = 7, cap_weeks: int = 26) -> tuple[list[int], list[int], int]:
    """Counts per ``width``-day bin from 0; studies beyond ``cap_weeks`` weeks go to a final bin.

    Returns (bin starts, counts, studies before injury (negative days, a data problem)).
    """
    values = days.dropna()
    before = int((values < 0).sum())
    values = values[values >= 0]
    if values.empty:
        return [], [], before
    top = min(int(values.max() // width) + 1, cap_weeks + 1)
    min_days, max_days = trauma_days()
    top = max(top, min_days // width + 2, max_days // width + 2)  # both limits always drawn, room after each
    idx = (values // width).clip(upper=top - 1).astype(int)
    counts = [int((idx == i).sum()) for i in range(top)]
    return [i * width for i in range(top)], counts, before


# -- SVG charts ----------------------------------------------------------------------------------

FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif\""


def _share(count: int, total: int) -> str:
    """A percentage that never reads 0% for a non-zero count."""
    share = count / total
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def _nice_max(value: float) -> int:
    if value <= 5:
        return 5
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return math.ceil(step * exp)
    return int(value)


def _ticks(top: int, count: int = 5) -> list[int]:
    step = max(1, top // count)
    return list(range(0, top + 1, step))


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> str:
    parts, cx = [], x
    for label, color in items:
        parts.append(f'<rect x="{cx:.1f}" y="{y - 9:.1f}" width="11" height="11" rx="2" fill="{color}"/>'
                     f'<text x="{cx + 16:.1f}" y="{y:.1f}" font-size="12" fill="#334">{esc(label)}</text>')
        cx += 26 + 7.2 * len(label)
    return "".join(parts)


def svg_columns(labels: Sequence[str], stacks: Sequence[dict[str, int]], *, caption: str,
                width: int = 1040, height: int = 300) -> str:
    """Stacked columns per period (statuses), with the compliance rate above each column."""
    left, right, top, bottom = 48, 16, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values()) for s in stacks]
    ymax = _nice_max(max(totals, default=0))
    n = max(len(labels), 1)
    slot = plot_w / n
    bar = max(4.0, min(48.0, slot * 0.7))
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(caption)}" {FONT}>']
    out.append(_legend(left, 16, [(STATUS_LABELS[s], STATUS_COLORS[s]) for s in STATUS_ORDER]))
    for tick in _ticks(ymax):
        y = top + plot_h - plot_h * tick / ymax
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e8ee"/>'
                   f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#667">{tick}</text>')
    every = max(1, math.ceil(n / 16))
    for i, (label, stack) in enumerate(zip(labels, stacks, strict=True)):
        x = left + slot * i + (slot - bar) / 2
        y = top + plot_h
        for status in STATUS_ORDER:
            count = stack.get(status, 0)
            if not count:
                continue
            h = plot_h * count / ymax
            y -= h
            out.append(f'<rect class="bar bar-{status}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{STATUS_COLORS[status]}" data-count="{count}">'
                       f'<title>{esc(label)}: {count} {esc(STATUS_LABELS[status])}</title></rect>')
        rate = stack_rate(stack)
        if rate is not None and (n <= 24 or i % every == 0):
            out.append(f'<text x="{x + bar / 2:.1f}" y="{y - 5:.1f}" font-size="10.5" text-anchor="middle" '
                       f'fill="#334">{rate:.0%}</text>')
        if i % every == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle" '
                       f'fill="#556">{esc(label)}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#99a"/>')
    out.append(f'<text x="{left}" y="{height - 8}" font-size="11" fill="#778">{esc(caption)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_hstacked(labels: Sequence[str], stacks: Sequence[dict[str, int]], *, width: int = 520) -> str:
    """One 100% bar per group (statuses), labelled with the number of studies and compliance."""
    row_h, left, right, top = 26, 170, 92, 8
    height = top + row_h * max(len(labels), 1) + 8
    plot_w = width - left - right
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" {FONT}>']
    for i, (label, stack) in enumerate(zip(labels, stacks, strict=True)):
        y = top + i * row_h
        total = sum(stack.values())
        short = label if len(label) <= 24 else label[:23] + "…"
        out.append(f'<text x="{left - 8}" y="{y + 16}" font-size="12" text-anchor="end" fill="#223">'
                   f'<title>{esc(label)}</title>{esc(short)}</text>')
        x = float(left)
        for status in STATUS_ORDER:
            count = stack.get(status, 0)
            if not count or not total:
                continue
            w = plot_w * count / total
            out.append(f'<rect class="bar bar-{status}" x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                       f'fill="{STATUS_COLORS[status]}" data-count="{count}">'
                       f'<title>{esc(label)}: {count} {esc(STATUS_LABELS[status])} of {total}</title></rect>')
            x += w
        rate = stack_rate(stack)
        note = f"n={total}" + (f" · {rate:.0%}" if rate is not None else "")
        out.append(f'<text x="{left + plot_w + 8}" y="{y + 16}" font-size="11.5" fill="#445">{note}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_hbars(items: Sequence[tuple[str, int, str]], *, total: int, width: int = 1040, color: str = "#d64545") -> str:
    """Horizontal bars: how many studies miss each requirement (with the share of studies)."""
    row_h, left, right, top = 28, 260, 170, 6
    height = top + row_h * max(len(items), 1) + 6
    plot_w = width - left - right
    vmax = max((n for _, n, _ in items), default=1)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" {FONT}>']
    for i, (label, count, example) in enumerate(items):
        y = top + i * row_h
        w = plot_w * count / vmax
        short = label if len(label) <= 40 else label[:39] + "…"
        share = f" ({_share(count, total)} of studies)" if total else ""
        out.append(f'<text x="{left - 10}" y="{y + 18}" font-size="12.5" text-anchor="end" fill="#223">'
                   f'<title>{esc(label)}</title>{esc(short)}</text>'
                   f'<rect class="bar" x="{left}" y="{y + 5}" width="{max(w, 2):.1f}" height="{row_h - 10}" rx="3" '
                   f'fill="{color}" data-count="{count}"><title>{esc(example)}</title></rect>'
                   f'<text x="{left + w + 8:.1f}" y="{y + 18}" font-size="12" fill="#334">{count}{esc(share)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_histogram(starts: Sequence[int], counts: Sequence[int], *, width: int = 1040, height: int = 290,
                  bin_days: int = 7, minimum: int | None = None, maximum: int | None = None) -> str:
    """Days-after-injury histogram: too early (amber), in the window (blue), delayed (grey), limits dashed
    (default limits: the trauma window of rules.yaml)."""
    if minimum is None or maximum is None:
        lo, hi = trauma_days()
        minimum = lo if minimum is None else minimum
        maximum = hi if maximum is None else maximum
    left, right, top, bottom = 48, 16, 40, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    ymax = _nice_max(max(counts, default=0))
    n = max(len(starts), 1)
    span = n * bin_days
    slot = plot_w / n
    show_max = maximum is not None and maximum < span
    legend = [(f"before {minimum} days", TIMING_COLORS["early"]), (f"{minimum} days or later", TIMING_COLORS["window"])]
    if show_max:
        legend = [(f"before {minimum} days (too early)", TIMING_COLORS["early"]),
                  (f"{minimum}–{maximum} days", TIMING_COLORS["window"]),
                  (f"after {maximum} days (delayed)", TIMING_COLORS["late"])]
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" {FONT}>']
    out.append(_legend(left, 14, legend))
    for tick in _ticks(ymax):
        y = top + plot_h - plot_h * tick / ymax
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e8ee"/>'
                   f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#667">{tick}</text>')
    for i, (start, count) in enumerate(zip(starts, counts, strict=True)):
        x = left + slot * i + 1
        h = plot_h * count / ymax
        last = i == len(starts) - 1 and start >= 26 * 7
        label = f"{start}+ days" if last else f"{start}–{start + bin_days - 1} days"
        if start + bin_days <= minimum:
            color = TIMING_COLORS["early"]
        elif show_max and maximum is not None and start >= maximum:
            color = TIMING_COLORS["late"]
        else:
            color = TIMING_COLORS["window"]
        out.append(f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{max(slot - 2, 1):.1f}" '
                   f'height="{h:.1f}" fill="{color}" data-count="{count}"><title>{esc(label)}: {count} studies'
                   f'</title></rect>')
        if i % max(1, math.ceil(n / 14)) == 0:
            text = f"≥{start}" if last else str(start)
            out.append(f'<text x="{left + slot * i:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle" '
                       f'fill="#556">{text}</text>')
    mx = left + plot_w * minimum / span
    out.append(f'<line class="minimum" x1="{mx:.1f}" x2="{mx:.1f}" y1="{top - 12}" y2="{top + plot_h}" '
               f'stroke="#b3261e" stroke-width="2" stroke-dasharray="6 4"/>'
               f'<text x="{mx + 6:.1f}" y="{top}" font-size="12" font-weight="600" fill="#b3261e">'
               f'{minimum}-day minimum</text>')
    if show_max and maximum is not None:
        xx = left + plot_w * maximum / span
        out.append(f'<line class="maximum" x1="{xx:.1f}" x2="{xx:.1f}" y1="{top - 12}" y2="{top + plot_h}" '
                   f'stroke="#5d6b7a" stroke-width="1.5" stroke-dasharray="4 4"/>'
                   f'<text x="{xx - 6:.1f}" y="{top}" font-size="12" text-anchor="end" fill="#5d6b7a">'
                   f'{maximum} days: delayed</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#99a"/>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11.5" text-anchor="middle" '
               f'fill="#556">days from injury to the study (weekly bins)</text>')
    out.append("</svg>")
    return "".join(out)


# -- the page ------------------------------------------------------------------------------------

CSS = """
:root { --ink:#1d2733; --muted:#5d6b7a; --line:#e3e8ef; --bg:#f5f7fa; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
header { background:#17324d; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:650; letter-spacing:.2px; }
header .meta { color:#c9d6e3; font-size:12.5px; }
header .filters span { display:inline-block; background:#254a6e; border-radius:10px; padding:1px 9px;
  margin:6px 6px 0 0; }
main { max-width:1120px; margin:0 auto; padding:22px 24px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:18px 22px 16px;
  margin:0 0 18px; }
section h2 { margin:0 0 4px; font-size:16.5px; }
section p.note { margin:0 0 12px; color:var(--muted); font-size:12.5px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(108px,1fr)); gap:12px; margin:0 0 18px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px;
  border-top:4px solid #17324d; }
.card .num { font-size:24px; font-weight:680; line-height:1.15; }
.card .lbl { color:var(--muted); font-size:12px; line-height:1.3; }
.card.pass { border-top-color:#2f9e66 } .card.warn { border-top-color:#e3a21a } .card.fail { border-top-color:#d64545 }
.card.no-protocol { border-top-color:#a0aab4 } .card.error { border-top-color:#7d52b8 }
.grid3 { display:grid; grid-template-columns:repeat(auto-fit,minmax(330px,1fr)); gap:10px 26px; }
.grid3 h3 { font-size:13.5px; margin:6px 0 4px; color:#334; }
svg.chart { width:100%; height:auto; display:block; }
.legend { display:flex; flex-wrap:wrap; gap:4px 16px; font-size:12px; color:#334; margin:2px 0 8px; }
.legend i { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
table { width:100%; border-collapse:collapse; font-size:13px; }
th { text-align:left; font-size:11.5px; text-transform:uppercase; letter-spacing:.4px; color:var(--muted);
  border-bottom:2px solid var(--line); padding:6px 8px; }
td { border-bottom:1px solid var(--line); padding:7px 8px; vertical-align:top; }
tr:nth-child(even) td { background:#fafbfd; }
td.nowrap { white-space:nowrap; }
small.uid { color:var(--muted); font-size:10.5px; }
td.mono { font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:12px; overflow-wrap:anywhere; }
.badge { display:inline-block; border-radius:9px; padding:0 8px; font-size:11.5px; font-weight:600; color:#fff;
  white-space:nowrap; }
td.finding details { display:inline; color:var(--muted); font-size:12px; }
td.finding details summary { display:inline; cursor:pointer; color:#3d6fb6; margin-left:4px; }
td.finding details[open] { display:block; margin:2px 0 0 0; }
td.finding code { background:#eef2f7; border-radius:4px; padding:0 4px; font-size:11.5px; }
td.action { font-weight:600; }
ul.findings { margin:0; padding:0; list-style:none; }
ul.findings li { margin:0 0 4px; }
ul.findings details { display:inline; color:var(--muted); font-size:12px; }
ul.findings details summary { display:inline; cursor:pointer; color:#3d6fb6; margin-left:4px; }
ul.findings details[open] { display:block; margin:2px 0 0 0; }
ul.findings code { background:#eef2f7; border-radius:4px; padding:0 4px; font-size:11.5px; }
.empty { color:var(--muted); font-style:italic; padding:8px 0; }
details.all > summary { cursor:pointer; color:#3d6fb6; margin:2px 0 10px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:6px 0 24px; }
span.req { color:#334; font-weight:600; }
span.uid { cursor:help; border-bottom:1px dotted #a0aab4; }
h3.modality { font-size:14.5px; margin:14px 0 2px; color:#17324d; border-bottom:1px solid var(--line); }
.scroll { max-width:100%; overflow-x:auto; }
table.trend td.trend { text-align:center; font-size:12px; white-space:nowrap; padding:5px 4px; }
table.trend td.none { color:#a0aab4; }
table.trend th.scanner { text-transform:none; letter-spacing:0; color:var(--ink); font-weight:600; white-space:nowrap; }
tr.upcoming.fail td:first-child { border-left:4px solid #d64545; }
tr.upcoming.warn td:first-child { border-left:4px solid #e3a21a; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { background:#fff; font-size:11px; }
  header { background:#fff; color:#000; border-bottom:2px solid #17324d; padding:6px 0; }
  header .meta, header .filters span { color:#333; background:none; }
  main { max-width:none; padding:0; }
  section, .card, tr { break-inside:avoid; }
  section { border:none; padding:6px 0; }
  details > summary { display:none; }
  details.all { display:none; }
  details:not(.all) > *:not(summary) { display:inline; }
  .scroll { overflow:visible; }
  td, th { padding:3px 5px; }
  * { -webkit-print-color-adjust:exact; print-color-adjust:exact; }
}
"""


def _card(number: str, label: str, klass: str = "") -> str:
    return f'<div class="card {klass}"><div class="num">{esc(number)}</div><div class="lbl">{esc(label)}</div></div>'


def _badge(text: str, color: str) -> str:
    return f'<span class="badge" style="background:{color}">{esc(text)}</span>'


def _legend_html() -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{STATUS_COLORS[s]}"></i>{esc(STATUS_LABELS[s])}</span>' for s in STATUS_ORDER
    ) + "</div>"


def _summary(audits: pd.DataFrame, upcoming_problems: int | None = None) -> str:
    counts = _status_counts(audits["status"]) if len(audits) else {s: 0 for s in STATUS_ORDER}
    rate = compliance(audits["status"]) if len(audits) else None
    days = audits["days_after_trauma"].dropna() if len(audits) else pd.Series(dtype=float)
    cards = [_card(str(len(audits)), "studies"), _card("–" if rate is None else f"{rate:.0%}", "compliant")]
    cards += [_card(str(counts[s]), STATUS_LABELS[s], s) for s in STATUS_ORDER]
    if len(days):
        min_days = trauma_days()[0]
        early = int(((days >= 0) & (days < min_days)).sum())
        cards.append(_card(f"{days.median():.0f}", "median days after injury"))
        cards.append(_card(str(early), f"imaged before day {min_days}", "warn" if early else ""))
    if upcoming_problems is not None:
        cards.append(_card(str(upcoming_problems), "upcoming exams with problems", "fail" if upcoming_problems else ""))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _study_cells(row: Any, include_patient: bool) -> list[str]:
    """The cells that name a study in both tables: date, accession/UID, patient (opt-in), station, protocol."""
    when = row["when"].strftime("%Y-%m-%d") if pd.notna(row["when"]) else ""
    uid = f'<br><small>{short_uid(row["study_instance_uid"])}</small>' if _present(row["study_instance_uid"]) else ""
    cells = [f'<td class="nowrap">{esc(when)}</td>',
             f'<td class="mono"><b>{esc(row["accession_number"]) or "–"}</b>{uid}</td>']
    if include_patient:
        cells.append(f"<td>{esc(row.get('patient_name', ''))}<br><small>{esc(row.get('patient_id', ''))}</small></td>")
    vendor = (f"<br><small title=\"{esc(row['manufacturer'])}\">{esc(row['scanner'])}</small>"
              if _present(row["scanner"]) else "")
    described = f"<br><small>{esc(row['study_description'])}</small>" if _present(row["study_description"]) else ""
    return cells + [f"<td>{esc(row['station_name']) or '–'}{vendor}</td>",
                    f"<td>{esc(row['protocol']) or '–'}{described}</td>"]


def _present(value: object) -> bool:
    """A store cell that holds text (not None, NaN or empty)."""
    return isinstance(value, str) and bool(value.strip())


def _failing_table(audits: pd.DataFrame, findings: pd.DataFrame, include_patient: bool,
                   labels: dict[tuple[str, str], str] | None = None) -> str:
    """Failing studies, newest first: one row per finding (the study's cells span them), with what
    was found and, in a column of its own, the action to take."""
    failing = audits[audits["status"].isin(FAILING)]
    if failing.empty:
        return '<p class="empty">No failing studies in this selection.</p>'
    by_audit: dict[int, list[dict[str, Any]]] = {}
    if not findings.empty:  # plain records, errors first within each study (no frame per study: 500 rows stay fast)
        wanted = findings[findings["audit_id"].isin(failing["id"].head(MAX_TABLE_ROWS))]
        rank = wanted["severity"].map({"error": 0, "warning": 1, "info": 2}).fillna(3)
        for record in wanted.assign(_o=rank).sort_values("_o", kind="stable").to_dict("records"):
            by_audit.setdefault(int(record["audit_id"]), []).append(record)
    head = ["Study date", "Accession / Study UID"] + (["Patient"] if include_patient else []) + \
        ["Station · scanner", "Protocol", "Status", "Finding", "Action"]
    rows = []
    for _, row in failing.head(MAX_TABLE_ROWS).iterrows():
        pairs: list[tuple[str, str]] = []
        for f in by_audit.get(int(row["id"]), ()):
            name = requirement_name(labels or {}, row["protocol"], f.get("requirement")) \
                if _present(f.get("requirement")) else ""
            req = f' <span class="req">{esc(name)}:</span>' if name else ""
            detail = f.get("detail")
            text = str(detail) if _present(detail) else str(f["message"] or "")  # a version 1 store: no detail
            cited = str(f["guideline"]) if _present(f.get("guideline")) else ""
            cite = f'<details><summary>guideline</summary>{esc(cited)}</details>' if cited else ""
            action = esc(str(f["action"])) if _present(f.get("action")) else "–"
            pairs.append((f"{_badge(f['severity'], SEVERITY_COLORS.get(f['severity'], '#667'))} "
                          f"<code>{esc(f['code'])}</code>{req} {esc(text)}{cite}", action))
        pairs = pairs or [("–", "–")]
        span = f' rowspan="{len(pairs)}"' if len(pairs) > 1 else ""
        cells = [c.replace("<td>", f"<td{span}>", 1).replace('<td class=', f'<td{span} class=', 1)
                 for c in _study_cells(row, include_patient)]
        badge = _badge(STATUS_LABELS.get(row['status'], row['status']), STATUS_COLORS.get(row['status'], '#667'))
        cells.append(f"<td{span}>{badge}</td>")
        for i, (finding, action) in enumerate(pairs):
            lead = "".join(cells) if i == 0 else ""
            rows.append(f'<tr>{lead}<td class="finding">{finding}</td><td class="action">{action}</td></tr>')
    more = ""
    if len(failing) > MAX_TABLE_ROWS:
        more = (f'<p class="note">Showing the newest {MAX_TABLE_ROWS} of {len(failing)} failing studies; '
                "the CSV export has all.</p>")
    return ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + more)


def _all_studies_table(audits: pd.DataFrame, include_patient: bool) -> str:
    """Every study of the selection, newest first (so each study's description is on the page, whatever its status)."""
    head = ["Study date", "Accession / Study UID"] + (["Patient"] if include_patient else []) + \
        ["Station · scanner", "Protocol · study description", "Status"]
    rows = []
    for _, row in audits.head(MAX_TABLE_ROWS).iterrows():
        cells = _study_cells(row, include_patient) + [
            f"<td>{esc(STATUS_LABELS.get(row['status'], row['status']))}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="note">Showing the newest {MAX_TABLE_ROWS} of {len(audits)} studies; the CSV export has all.</p>'
            if len(audits) > MAX_TABLE_ROWS else "")
    return ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + more)


def with_unreadable(audits: pd.DataFrame, findings: pd.DataFrame,
             unreadable: Sequence[tuple[str, str, dt.datetime]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The audit's records of unreadable files that belong to no study added (never stored as audits,
    yet counted by the audit as errors), and ``scanner`` as a vendor name ("SIEMENS" and "Siemens
    Healthineers" are one)."""
    if unreadable:
        rows, extra = unreadable_rows(unreadable, start_id=-1)
        audits = concat([audits, rows.reindex(columns=audits.columns)])
        findings = concat([findings, extra.reindex(columns=findings.columns)])
    audits = audits.copy()
    audits["scanner"] = audits["manufacturer"].map(vendor_name) if len(audits) else pd.Series(dtype=str)
    return audits, findings


def _groups_section(audits: pd.DataFrame) -> str:
    """Status by vendor, station and institution, MR and CT (each modality) apart."""
    studies = audits[audits["study_instance_uid"].fillna("").astype(str) != ""]
    blocks = []
    modalities = studies["modality"].map(modality_group)
    for modality in modalities.value_counts().index:
        part = studies[modalities == modality]
        groups = []
        for column, heading in (("scanner", "By vendor"), ("station_name", "By station"),
                                ("institution", "By institution")):
            g_labels, g_stacks = by_group(part, column)
            groups.append(f"<div><h3>{esc(heading)}</h3>{svg_hstacked(g_labels, g_stacks)}</div>")
        blocks.append(f'<h3 class="modality">{esc(modality)} ({len(part)} studies)</h3>'
                      f'<div class="grid3">{"".join(groups)}</div>')
    return ('<section><h2>By scanner, station and institution</h2><p class="note">Share of studies per status, '
            "each modality apart; n = studies, % = compliance rate. Manufacturer names are read as one vendor "
            "(SIEMENS and Siemens Healthineers are Siemens).</p>" + _legend_html() + "".join(blocks) + "</section>")


def _timing_section(audits: pd.DataFrame) -> str:
    starts, counts, before = trauma_histogram(audits["days_after_trauma"])
    known = int(audits["days_after_trauma"].notna().sum())
    if starts:
        min_days, max_days = trauma_days()
        note = (f"{known} of {len(audits)} studies have a known injury date. The guideline advises waiting about "
                f"one month ({min_days} days) after trauma so blood and edema resolve, but not much longer "
                f"(the protocol library flags studies after {max_days} days as delayed).")
        if before:
            note += f" {before} studies are dated before the injury (check the context data)."
        body = svg_histogram(starts, counts)
    else:
        note = "No study in this selection has a known injury date (give one with --context or --trauma-date)."
        body = ""
    return f'<section><h2>Timing after injury</h2><p class="note">{esc(note)}</p>{body}</section>'


def _upcoming_section(upcoming: pd.DataFrame | None) -> str:
    badges = {s: _badge(STATUS_LABELS.get(s, s), STATUS_COLORS.get(s, "#667")) for s in ("pass", "warn", "fail")}
    n = 0 if upcoming is None else len(upcoming)
    return (f'<section id="upcoming"><h2>Upcoming scheduled exams ({count_problems(upcoming)} with problems)</h2>'
            f'<p class="note">The latest check of each of the {n} scheduled procedure steps from today on '
            "(<code>worklist --db</code>), problems first: fix these orders before the patient comes.</p>"
            + upcoming_table(upcoming, badges) + "</section>")


def render_html(audits: pd.DataFrame, findings: pd.DataFrame, *, title: str = "Protocol compliance report",
                source: str = "", filters: dict[str, str] | None = None, generated: dt.datetime | None = None,
                include_patient: bool = False, upcoming: pd.DataFrame | None = None,
                unreadable: Sequence[tuple[str, str, dt.datetime]] = (), library: Library | None = None) -> str:
    """The whole report page for the latest audits (``Store.latest``) and their findings, plus the
    upcoming scheduled exams (:func:`protocolcheck.jobs.scheduled.upcoming`) and the unreadable files
    that belong to no study (``Store.orphan_unreadable``); requirement names from ``library``."""
    generated = generated or dt.datetime.now().replace(microsecond=0)
    filters = filters or {}
    audits, findings = with_unreadable(audits, findings, unreadable)
    labels = requirement_labels(library)
    filt = "".join(f"<span>{esc(k)}: {esc(v)}</span>" for k, v in filters.items()) or "<span>all studies</span>"
    first = audits["when"].min() if len(audits) else None
    last = audits["when"].max() if len(audits) else None
    span = (f"studies from {first:%Y-%m-%d} to {last:%Y-%m-%d}" if first is not None and pd.notna(first)
            else "no studies")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f'<header><h1>{esc(title)}</h1><div class="meta">Generated {esc(generated.strftime("%Y-%m-%d %H:%M"))}'
        f' · {esc(span)} · latest audit of each study' + (f" · store {esc(source)}" if source else "")
        + f'</div><div class="meta filters">{filt}</div></header><main>',
        _summary(audits, count_problems(upcoming) if upcoming is not None else None),
    ]
    if upcoming is not None:
        parts.append(_upcoming_section(upcoming))
    if audits.empty:
        parts.append('<section><h2>No audits</h2><p class="empty">No stored audits match these filters. '
                     "Run <code>protocolcheck audit --db …</code> first, or widen the filters.</p></section>")
    else:
        period, p_labels, stacks = over_time(audits)
        parts.append(f'<section><h2>Compliance over time</h2><p class="note">Studies per {period.name} by audit '
                     "status; the figure above each column is the compliance rate (studies without errors among "
                     "those audited against a protocol).</p>"
                     + svg_columns(p_labels, stacks, caption=f"by study date, per {period.name}") + "</section>")
        parts.append('<section><h2>Compliance per scanner, week by week</h2><p class="note">Compliant studies '
                     "among those audited against a protocol, per scanner and week (the last 12 weeks of the "
                     "selection); hover a cell for the counts.</p>" + trend_table(audits) + "</section>")
        parts.append(_groups_section(audits))
        missing = missing_requirements(audits, findings, labels=labels)
        body = svg_hbars(missing, total=len(audits)) if missing else \
            '<p class="empty">No missing-sequence or plane findings in this selection.</p>'
        parts.append('<section><h2>Most often missing requirements</h2><p class="note">Studies with a '
                     "<code>missing-sequence</code> or <code>plane</code> finding, per protocol requirement.</p>"
                     + body + "</section>")
        parts.append(_timing_section(audits))
        n_failing = int(audits["status"].isin(FAILING).sum())
        parts.append(f'<section><h2>Failing studies ({n_failing})</h2><p class="note">Status fail or error, '
                     "newest first, with every finding and the action to take.</p>"
                     + _failing_table(audits, findings, include_patient, labels) + "</section>")
        parts.append(f'<section><h2>All studies ({len(audits)})</h2><details class="all"><summary>Show every study '
                     "in this selection, newest first (the CSV export has the same rows)</summary>"
                     + _all_studies_table(audits, include_patient) + "</details></section>")
    parts.append(f"</main><footer>protocolcheck · {esc(title)}</footer></body></html>\n")
    return "\n".join(parts)
