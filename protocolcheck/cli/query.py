"""``query``: audit studies in a PACS (C-FIND, then retrieve, audit and delete one study at a time)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from protocolcheck.cli.dicomweb import dicomweb_options, run_dicomweb
from protocolcheck.cli.net import (
    date_range,
    folder_auditor,
    net_audit_options,
    net_logging,
    optional_net_options,
    peer_from,
    timeouts_for,
)
from protocolcheck.cli.options import (
    Exit,
    emit,
    fail_on_option,
    fail_severity,
    format_option,
    output_option,
    progress,
    quiet_option,
    resolve_format,
    warn,
)
from protocolcheck.report import text as render

if TYPE_CHECKING:
    from protocolcheck.clinical.findings import AuditResult
    from protocolcheck.net.common import Peer


@click.command()
@optional_net_options
@click.option("--date", "date", callback=date_range, metavar="RANGE",
              help="Study date or range: YYYYMMDD or YYYYMMDD-YYYYMMDD.")
@click.option("--modality", default="", metavar="MOD", help="Modality in study, e.g. MR.")
@click.option("--accession", default="", metavar="N", help="Accession number.")
@click.option("--description", default="", metavar="TEXT",
              help="Study description contains TEXT, ignoring case (with * or ?: DICOM wildcard matching by the PACS).")
@click.option("--retrieve", type=click.Choice(["get", "move"]), default="get", show_default=True,
              help="C-GET (nothing to configure on the PACS) or C-MOVE to our own storage SCP.")
@click.option("--move-port", type=click.IntRange(1, 65535), default=None, metavar="N",
              help="Port of our storage SCP for C-MOVE (the PACS must know our AE title, host and this port).")
@click.option("--move-bind", default=None, metavar="ADDR",
              help="Address for that SCP (default: 127.0.0.1 when HOST is local, else 0.0.0.0).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Where the one study being audited is kept (default: the system temp folder).")
@dicomweb_options
@net_audit_options
@fail_on_option
@format_option
@output_option
@quiet_option
def query(**opts: Any) -> None:
    """Audit studies in a PACS: C-FIND by date/modality/accession/description, retrieve each, audit it.

    One study at a time is retrieved into a temporary folder, audited and deleted. Unreachable
    peers, rejected associations and failed retrievals are reported and give exit code 3; the
    other studies are still audited. With ``--dicomweb URL`` the archive is searched with QIDO-RS and
    each study's headers are read with WADO-RS metadata (no pixels); the audit is the same.
    """
    from protocolcheck.audit.engine import unmatched_context
    from protocolcheck.jobs.query import audit_matches
    from protocolcheck.net.qr import RetrieveMethod, StudyQuery, default_move_bind, find_studies

    net_logging(opts["quiet"], opts["verbose"])
    study_query = StudyQuery(date=opts["date"], modality=opts["modality"], accession=opts["accession"],
                             description=opts["description"])
    if opts["dicomweb"]:
        run = run_dicomweb(opts, study_query)
        _finish(opts, run.results, run.failures)
    peer = _dimse_peer(opts)
    move_bind = opts["move_bind"] if opts["move_bind"] is not None else default_move_bind(peer.host)
    auditor = folder_auditor(opts, "query")
    timeouts = timeouts_for(opts["timeout"])
    matches = find_studies(peer, study_query, timeouts)
    warn(f"{len(matches)} studies match on {peer}", opts["quiet"])
    results: list[AuditResult] = []
    failures: list[str] = []
    steps = audit_matches(peer, matches, auditor, method=RetrieveMethod(opts["retrieve"]), move_port=opts["move_port"],
                          move_bind=move_bind, workdir=opts["workdir"], timeouts=timeouts,
                          move_tls=peer.tls if opts["retrieve"] == "move" else None)
    try:
        for step in progress(steps, "Auditing studies", opts["quiet"], length=len(matches)):
            for note in step.notes:
                warn(f"note: {step.match.label() if step.match else peer}: {note}", opts["quiet"])
            results.extend(step.results)
            if step.error is not None:
                failures.append(step.error)
                warn(f"error: {step.error}")
    finally:
        steps.close()  # deletes the retrieved files even when interrupted
        auditor.close()
    for message in unmatched_context(auditor.options):
        warn("note: " + message, opts["quiet"])
    _finish(opts, results, failures)


def _dimse_peer(opts: dict[str, Any]) -> Peer:
    """The DIMSE peer and retrieve options, checked (usage errors exit 2)."""
    if not (opts["host"] and opts["port"] and opts["called_aet"]):
        raise click.UsageError("give HOST PORT --called-aet (a DIMSE peer) or --dicomweb URL")
    peer = peer_from(opts)
    if opts["retrieve"] == "move" and not opts["move_port"]:
        raise click.UsageError("--retrieve move needs --move-port N (the port the PACS sends the study to)")
    if opts["retrieve"] == "move" and peer.tls is not None and not peer.tls.cert:
        raise click.UsageError("--retrieve move with TLS needs --tls-cert and --tls-key: the PACS connects to our "
                               "storage SCP over TLS (or use --retrieve get)")
    return peer


def _finish(opts: dict[str, Any], results: list[AuditResult], failures: list[str]) -> NoReturn:
    """Render as ``audit`` does, summarise, exit: 3 when a study could not be read, else by --fail-on."""
    from protocolcheck.audit.engine import Summary, reaches

    form = resolve_format(opts["fmt"], opts["output"])
    records = [r.to_dict(include_patient=opts["include_patient"]) for r in results]
    emit(render.audit_text(records, form.value, empty="(no studies)\n"), opts["output"])  # as ``audit``
    warn(Summary.of(results).line() + (f"; {len(failures)} not retrieved" if failures else ""), opts["quiet"])
    if failures:
        sys.exit(Exit.CANNOT_RUN)
    sys.exit(Exit.FINDINGS if reaches(results, fail_severity(opts["fail_on"])) else Exit.OK)
