"""``worklist``: check every scheduled procedure step on a modality worklist (right exam, right time)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import Any

import click

from protocolcheck.cli.net import net_logging, net_options, peer_from, timeouts_for
from protocolcheck.cli.options import (
    RULES_LIBRARY_HELP,
    Exit,
    emit,
    fail_on_option,
    findings_exit,
    format_option,
    library_option,
    load_context_option,
    load_rules_option,
    output_option,
    quiet_option,
    resolve_format,
    warn,
)
from protocolcheck.report import text as render


def relative_dates(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    """``--date``: a DICOM date or range, or today/tomorrow/yesterday/+Nd/-Nd and ranges of them (click callback)."""
    from protocolcheck.jobs.scheduled import resolve_dates

    if not value:
        return ""
    try:
        return resolve_dates(value, dt.date.today())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command()
@net_options
@click.option("--station-aet", default="", metavar="AET", help="Scheduled Station AE Title to match.")
@click.option("--date", "date", callback=relative_dates, metavar="RANGE",
              help="Scheduled date or range: YYYYMMDD[-YYYYMMDD], today, tomorrow, yesterday, +Nd, -Nd, or a "
                   "range A-B / A..B of them, e.g. today..+7d (default: any).")
@click.option("--modality", default="", metavar="MOD", help="Modality to match, e.g. MR.")
@click.option("--context", "context_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Context CSV keyed by accession number; its values override the worklist's own fields.")
@click.option("--db", "db", is_flag=False, flag_value="-", default=None, metavar="[PATH|URL]",
              help="Keep each checked step in the results store (history; an unchanged step adds no row). "
                   "--db alone: $PROTOCOLCHECK_DB, else ~/.local/share/protocolcheck/results.db.")
@click.option("--no-db", is_flag=True, help="Keep no history, even when the site configuration names a store.")
@library_option(RULES_LIBRARY_HELP)
@fail_on_option
@format_option
@output_option
@quiet_option
def worklist(**opts: Any) -> None:
    """Check every scheduled procedure step on a modality worklist: right exam, right time, which protocol.

    The indication and trauma date come from the context CSV row of the accession number, else from
    the worklist item (Reason for the Requested Procedure, Admitting Diagnoses, Requested Procedure
    Comments; a date next to "trauma", "injury", "fall"... is the trauma date; a device or a contrast
    reaction written there counts too). Each item gets exactly the check-order record.
    """
    from protocolcheck.clinical.recommend import default_rules_path
    from protocolcheck.jobs.worklist import check_worklist
    from protocolcheck.net.mwl import WorklistQuery, find_worklist

    net_logging(opts["quiet"], opts["verbose"])
    peer = peer_from(opts)
    rules = load_rules_option(default_rules_path(opts["library_dir"]))
    table = load_context_option(opts["context_file"], opts["quiet"]) if opts["context_file"] else None
    query = WorklistQuery(station_aet=opts["station_aet"], modality=opts["modality"], date=opts["date"])
    items = find_worklist(peer, query, timeouts_for(opts["timeout"]))
    steps = list(check_worklist(items, rules, table))
    for step in steps:
        for problem in step.check.problems:
            warn(f"accession {step.item.accession_number or '-'}: {problem}", opts["quiet"])
    records = [step.record for step in steps]
    form = resolve_format(opts["fmt"], opts["output"])
    replaced = bool(opts["output"]) and os.path.exists(opts["output"])
    emit(render.as_text(form.value, records, render.worklist_csv, render.worklist_table), opts["output"])
    if replaced:  # written beside it and renamed over it: never half a file, but say so
        warn(f"note: replaced the earlier {opts['output']}", opts["quiet"])
    if opts["db"] is not None and not opts["no_db"]:
        _save_history(steps, opts)
    if table is not None:
        for key in table.unused():
            warn(f"note: context row for {key} matched no worklist item", opts["quiet"])
    warn(f"{len(records)} scheduled procedure steps checked on {peer}", opts["quiet"])
    sys.exit(findings_exit((f.severity for step in steps for f in step.check.findings), opts["fail_on"]))


def _save_history(steps: list[Any], opts: dict[str, Any]) -> None:
    """``--db``: the checked steps into the results store's scheduled-exam history (exit 3 when it cannot)."""
    from protocolcheck import config
    from protocolcheck.clinical.library import library_path
    from protocolcheck.jobs.fingerprint import library_version
    from protocolcheck.jobs.scheduled import record_steps
    from protocolcheck.jobs.store import Store, StoreError

    configured = (click.get_current_context().default_map or {}).get("db")  # the site configuration's
    target = config.store_target(configured if opts["db"] == "-" else opts["db"])
    try:
        with Store.open(target) as store:
            saved = record_steps(store, steps, library_version(library_path(opts["library_dir"])))
            shown = store.target
    except StoreError as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    warn(f"worklist history: {saved.summary()} -> {shown}", opts["quiet"])
