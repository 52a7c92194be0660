"""History of scheduled-exam checks (``worklist --db``) and the relative dates of ``worklist --date``.

Each checked scheduled procedure step is stored in the results store's ``scheduled_checks`` table:
accession number, scheduled date, procedure, verdict, findings with their actions, and the whole
``check-order`` record. A step is identified by its accession number and Scheduled Procedure Step ID;
a new row is added only when the step's *digest* (its worklist fields, the clinical context it was
checked with and the protocol-library version) differs from its latest stored check, so an unchanged
step costs no row and a changed one keeps its earlier checks (history, never an update).

:func:`upcoming` gives the latest check of each step scheduled from a day on, problems first: the
``report`` command's "upcoming scheduled exams" list.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, inspect, select

from protocolcheck.jobs.fingerprint import lenient_json_default
from protocolcheck.jobs.store import Store, _utcnow, parse_dicom_date, scheduled_table

if TYPE_CHECKING:  # (``report`` reads the history without importing the network layer)
    import pandas as pd

    from protocolcheck.jobs.worklist import CheckedStep

# Verdict order of the upcoming list: problems first (the order check's statuses).
PROBLEMS_FIRST = {"fail": 0, "error": 0, "warn": 1, "pass": 2}

_TOKEN = r"(?:today|tomorrow|yesterday|[+-]\d{1,4}d|\d{8})"
_RANGE = re.compile(rf"^(?P<a>{_TOKEN})?(?P<sep>\.\.|-)?(?P<b>{_TOKEN})?$")


def resolve_day(token: str, today: dt.date) -> dt.date:
    """One date word: ``today``, ``tomorrow``, ``yesterday``, ``+Nd``/``-Nd`` (days from today), ``YYYYMMDD``."""
    word = token.lower()
    if word in ("today", "tomorrow", "yesterday"):
        return today + dt.timedelta(days={"today": 0, "tomorrow": 1, "yesterday": -1}[word])
    if word.endswith("d"):
        return today + dt.timedelta(days=int(word[:-1]))
    day = parse_dicom_date(word)
    if day is None:
        raise ValueError(f"{token!r} is not a date (YYYYMMDD)")
    return day


def resolve_dates(value: str, today: dt.date | None = None) -> str:
    """A ``--date`` value as a DICOM date or range (``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, open ``A-``/``-B``).

    Accepts ``today``, ``tomorrow``, ``yesterday``, ``+2d``, ``-1d`` and ``YYYYMMDD``, alone or as a range
    ``A-B`` or ``A..B`` (``today..+7d``, ``tomorrow-+2d``, ``-1d..today``). Raises ``ValueError`` with
    what is accepted when the value is none of these or the range runs backwards.
    """
    text = value.strip().lower()
    match = _RANGE.match(text)
    if not text or not match or (match["sep"] and not (match["a"] or match["b"])) \
            or (not match["sep"] and match["a"] and match["b"]):
        raise ValueError(f"{value!r} is not a date or range: use YYYYMMDD, today, tomorrow, yesterday, +Nd or "
                         "-Nd (days from today), or a range A-B or A..B of them (e.g. today..+7d)")
    today = today or dt.date.today()
    first = resolve_day(match["a"], today) if match["a"] else None
    last = resolve_day(match["b"], today) if match["b"] else None
    if first and last and last < first:
        raise ValueError(f"{value!r} runs backwards ({first.isoformat()} to {last.isoformat()})")
    fmt = "%Y%m%d"
    if not match["sep"]:
        return (first or last or today).strftime(fmt)
    return (first.strftime(fmt) if first else "") + "-" + (last.strftime(fmt) if last else "")


def step_key(step: CheckedStep) -> str:
    """What identifies a scheduled step across runs: accession number and Scheduled Procedure Step ID."""
    item = step.item
    return f"{item.accession_number}|{item.step_id or item.requested_procedure_id}"[:160]


def step_digest(step: CheckedStep, library_version: str = "") -> str:
    """SHA-256 of the step's worklist fields, the clinical context it was checked with and the library."""
    record = step.record
    context = {k: record.get(k) for k in ("indication", "trauma_date", "context_source")}
    payload = json.dumps([dataclasses.asdict(step.item), context, library_version], sort_keys=True,
                         default=lenient_json_default)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Saved:
    """What :func:`record_steps` did: steps checked for the first time, changed since, and unchanged."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0

    def summary(self) -> str:
        return f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged"


def _row(step: CheckedStep, key: str, digest: str, now: dt.datetime) -> dict[str, Any]:
    item, check = step.item, step.check
    findings = [{"code": getattr(f.code, "value", f.code), "severity": getattr(f.severity, "value", f.severity),
                 "message": f.render(action=False, guideline=False), "action": f.action or ""}
                for f in check.findings]
    return {
        "step_key": key, "digest": digest, "accession_number": item.accession_number,
        "scheduled_date": item.scheduled_date, "scheduled_day": item.scheduled, "station_aet": item.station_aet,
        "modality": item.modality, "procedure": item.procedure, "status": check.status.value,
        "findings_json": json.dumps(findings, ensure_ascii=False),
        "actions": "\n".join(dict.fromkeys(f["action"] for f in findings if f["action"])),
        "checked_at": now,
        "record_json": json.dumps(step.record, default=lenient_json_default, ensure_ascii=False),
    }


def latest_digests(store: Store, keys: Iterable[str]) -> dict[str, str]:
    """The digest of the latest stored check of each of these steps."""
    wanted = list(dict.fromkeys(keys))
    out: dict[str, str] = {}
    table = scheduled_table
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            latest = (select(func.max(table.c.id).label("id")).where(table.c.step_key.in_(chunk))
                      .group_by(table.c.step_key)).subquery()
            query = select(table.c.step_key, table.c.digest).join(latest, table.c.id == latest.c.id)
            out.update({str(key): str(digest) for key, digest in conn.execute(query)})
    return out


def record_steps(store: Store, steps: Iterable[CheckedStep], library_version: str = "") -> Saved:
    """Store each step whose digest differs from its latest stored check (one transaction); keep the rest."""
    steps = list(steps)
    keyed = [(step, step_key(step), step_digest(step, library_version)) for step in steps]
    known = latest_digests(store, [key for _, key, _ in keyed])
    now = _utcnow()
    rows, new, changed, seen = [], 0, 0, set()
    for step, key, digest in keyed:
        if known.get(key) == digest or (key, digest) in seen:
            continue
        seen.add((key, digest))
        new += key not in known
        changed += key in known
        rows.append(_row(step, key, digest, now))
    if rows:
        with store._write() as conn:
            conn.execute(insert(scheduled_table), rows)
    return Saved(new=new, changed=changed, unchanged=len(keyed) - len(rows))


def history(store: Store, accession: str) -> list[dict[str, Any]]:
    """Every stored check of the steps of one accession number, oldest first (without the record JSON)."""
    columns = [c for c in scheduled_table.c if c.name != "record_json"]
    with store.engine.connect() as conn:
        rows = conn.execute(select(*columns).where(scheduled_table.c.accession_number == accession)
                            .order_by(scheduled_table.c.id)).mappings().all()
    return [dict(r) for r in rows]


def upcoming(store: Store, since: dt.date | None = None, limit: int = 500) -> pd.DataFrame:
    """The latest check of each step scheduled on or after ``since`` (default today), problems first,
    then by date; an empty frame for a store without scheduled checks (or written before they existed)."""
    import pandas as pd  # noqa: PLC0415 - pandas only where a frame is built (the worklist command needs none)

    since = since or dt.date.today()
    columns = [c for c in scheduled_table.c if c.name != "record_json"]
    names = [c.name for c in columns]
    with store.engine.connect() as conn:
        if not inspect(conn).has_table(scheduled_table.name):
            return pd.DataFrame(columns=names)
        latest = select(func.max(scheduled_table.c.id).label("id")).group_by(scheduled_table.c.step_key).subquery()
        query = (select(*columns).join(latest, scheduled_table.c.id == latest.c.id)
                 .where(scheduled_table.c.scheduled_day >= since))
        df = pd.read_sql(query, conn)
    if df.empty:
        return pd.DataFrame(columns=names)
    df["_rank"] = df["status"].map(PROBLEMS_FIRST).fillna(0)
    df = df.sort_values(["_rank", "scheduled_day", "accession_number"], kind="stable").drop(columns="_rank")
    return df.head(limit).reset_index(drop=True)


def findings_of(row: Any) -> list[dict[str, str]]:
    """The stored findings of an :func:`upcoming` row (code, severity, message, action)."""
    try:
        data = json.loads(row["findings_json"] or "[]")
    except (TypeError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict)]
