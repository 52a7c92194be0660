"""``report``: an HTML report, and CSV/Parquet exports, of the latest stored audit of each study."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from protocolcheck.cli.options import Exit, emit, quiet_option, warn, write_file

if TYPE_CHECKING:
    from protocolcheck.clinical.library import Library
    from protocolcheck.jobs.store import Filters


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--db PATH|URL``: the results store (SQLite file by default, or a SQLAlchemy URL)."""
    return click.option(
        "--db", "db", default=None, metavar="PATH|URL",
        help="Results store: a SQLite file or a SQLAlchemy URL (default: $PROTOCOLCHECK_DB, else "
             "~/.local/share/protocolcheck/results.db).",
    )(f)


def _iso_day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    """A ``YYYY-MM-DD`` option as a date (click callback)."""
    if not value:
        return None
    from protocolcheck.jobs.store import parse_dicom_date

    day = parse_dicom_date(value)
    if day is None:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)")
    return day


@click.command()
@db_option
@click.option("--since", callback=_iso_day, metavar="DATE", help="Studies on or after DATE (study date).")
@click.option("--until", callback=_iso_day, metavar="DATE", help="Studies on or before DATE.")
@click.option("--protocol", "protocols", multiple=True, metavar="ID", help="Only this protocol (repeatable).")
@click.option("--station", "stations", multiple=True, metavar="TEXT", help="Station name contains TEXT (repeatable).")
@click.option("--scanner", "scanners", multiple=True, metavar="TEXT", help="Manufacturer contains TEXT (repeatable).")
@click.option("--institution", "institutions", multiple=True, metavar="TEXT", help="Institution contains TEXT.")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["pass", "warn", "fail", "no-protocol", "error"]),
              help="Only this status (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the HTML report to FILE (default: stdout, unless only --csv/--parquet are given).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also export the table as CSV.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False), default=None,
              help="Also export the table as Parquet (needs pyarrow).")
@click.option("--upcoming-csv", "upcoming_csv", type=click.Path(dir_okay=False), default=None,
              help="Also export the upcoming scheduled exams (worklist --db), problems first, as CSV.")
@click.option("--include-patient", is_flag=True, help="Show patient names and IDs (hidden by default).")
@click.option("--title", default="Protocol compliance report", show_default=True, help="Report title.")
@quiet_option
def report(db: str | None, since: dt.date | None, until: dt.date | None, protocols: tuple[str, ...],
           stations: tuple[str, ...], scanners: tuple[str, ...], institutions: tuple[str, ...],
           statuses: tuple[str, ...], output: str | None,
           csv_path: str | None, parquet_path: str | None, upcoming_csv: str | None, include_patient: bool, title: str,
           quiet: bool) -> None:
    """Write an HTML report (and CSV/Parquet exports) of the latest stored audit of each study."""
    import importlib.util

    from protocolcheck import config
    from protocolcheck.jobs.scheduled import upcoming
    from protocolcheck.jobs.store import Filters, Store
    from protocolcheck.report.html import export_frame, render_html, with_unreadable
    from protocolcheck.report.sections import upcoming_frame, upcoming_lines
    from protocolcheck.report.tabular import csv_safe_frame

    if parquet_path and importlib.util.find_spec("pyarrow") is None:
        warn("error: --parquet needs pyarrow (pip install pyarrow, or pip install 'protocolcheck[parquet]')")
        sys.exit(Exit.USAGE)
    filters = Filters(since=since, until=until, protocols=protocols, stations=stations, scanners=scanners,
                      institutions=institutions, statuses=statuses)
    target = config.store_target(db)
    with Store.open(target, readonly=True) as store:
        audits = store.latest(filters, include_patient=include_patient)
        findings = store.findings(audits["id"])
        unreadable = store.orphan_unreadable() if _orphans_wanted(filters) else []
        ahead = upcoming(store)
        source = store.target
    written = []
    try:
        if csv_path or parquet_path:
            table = export_frame(*with_unreadable(audits, findings, unreadable), include_patient=include_patient)
            if csv_path:  # cells a spreadsheet would run as formulas are neutralised
                write_file(csv_path, csv_safe_frame(table).to_csv(index=False))
                written.append(csv_path)
            if parquet_path:
                table.to_parquet(parquet_path, index=False)
                written.append(parquet_path)
        if upcoming_csv:
            write_file(upcoming_csv, csv_safe_frame(upcoming_frame(ahead)).to_csv(index=False))
            written.append(upcoming_csv)
        if output or not (csv_path or parquet_path or upcoming_csv):
            page = render_html(audits, findings, title=title, source=source, filters=filters.describe(),
                               include_patient=include_patient, upcoming=ahead, unreadable=unreadable,
                               library=_library())
            emit(page, output)
            written.append(output or "stdout")
    except OSError as exc:
        warn(f"error: cannot write {exc.filename or 'output'}: {exc.strerror or exc}")
        sys.exit(Exit.CANNOT_RUN)
    found: list[str] = list(audits["status"]) + ["error"] * len({os.path.dirname(p) for p, _r, _s in unreadable})
    detail = ", ".join(f"{found.count(s)} {s}" for s in ("pass", "warn", "fail", "no-protocol", "error")
                       if s in found)
    warn(f"report: {len(found)} studies" + (f" ({detail})" if detail else "") + " -> " + ", ".join(written), quiet)
    for line in upcoming_lines(ahead):
        warn(line, quiet)
    sys.exit(Exit.OK)


def _orphans_wanted(filters: Filters) -> bool:
    """Unreadable files that belong to no study have no station, protocol or date: they are shown (as the
    audit's ``error`` records) unless the filters select by something they lack."""
    return not (filters.protocols or filters.stations or filters.scanners or filters.institutions
                or filters.since or filters.until) and (not filters.statuses or "error" in filters.statuses)


def _library() -> Library | None:
    """The installed protocol library (requirement names for the report); None when it cannot be read."""
    from protocolcheck.clinical.library import LibraryError, load_library

    try:
        return load_library()
    except (LibraryError, OSError) as exc:
        warn(f"note: requirement ids shown, the protocol library cannot be read: {exc}")
        return None
