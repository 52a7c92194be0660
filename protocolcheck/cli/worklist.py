"""``worklist``: check every scheduled procedure step on a modality worklist (right exam, right time)."""

from __future__ import annotations

import sys
from typing import Any

import click

from protocolcheck.cli.net import date_range, net_logging, net_options, peer_from, timeouts_for
from protocolcheck.cli.options import (
    RULES_LIBRARY_HELP,
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


@click.command()
@net_options
@click.option("--station-aet", default="", metavar="AET", help="Scheduled Station AE Title to match.")
@click.option("--date", "date", callback=date_range, metavar="RANGE",
              help="Scheduled date or range: YYYYMMDD or YYYYMMDD-YYYYMMDD (default: any).")
@click.option("--modality", default="", metavar="MOD", help="Modality to match, e.g. MR.")
@click.option("--context", "context_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Context CSV keyed by accession number; its values override the worklist's own fields.")
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
    emit(render.as_text(form.value, records, render.worklist_csv, render.worklist_table), opts["output"])
    if table is not None:
        for key in table.unused():
            warn(f"note: context row for {key} matched no worklist item", opts["quiet"])
    warn(f"{len(records)} scheduled procedure steps checked on {peer}", opts["quiet"])
    sys.exit(findings_exit((f.severity for step in steps for f in step.check.findings), opts["fail_on"]))
