"""``listen``: a storage SCP that stores what it receives and audits each study once it is complete."""

from __future__ import annotations

import sys
from typing import Any

import click

from protocolcheck.cli.live import LiveLoop, live_options
from protocolcheck.cli.net import folder_auditor, net_audit_options, net_logging, tls_options
from protocolcheck.cli.options import Exit, quiet_option, warn
from protocolcheck.report import text as render


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), required=True, help="TCP port to listen on.")
@click.option("--bind", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--aet", default="PROTOCOLCHECK", show_default=True, metavar="AET", help="Our AE title.")
@click.option("--allow-aet", "allowed", multiple=True, metavar="AET",
              help="Accept associations only from this calling AE title (repeatable; default: any).")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="IP[/BITS]",
              help="Accept connections only from this address or network, e.g. 10.1.2.3 or 10.1.2.0/24 "
                   "(repeatable; default: any).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Serve DICOM TLS with this certificate (PEM); needs --tls-key. Plain connections are refused.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="The private key (PEM) of --tls-cert.")
@click.option("--tls-ca", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="CA certificates (PEM) to verify client certificates with.")
@click.option("--tls-require-client-cert", is_flag=True,
              help="Refuse TLS clients without a certificate signed by --tls-ca.")
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for received instances: DIR/<study>/<series>/<instance>.dcm.")
@click.option("--idle", type=click.FloatRange(0, 86400), default=30.0, show_default=True, metavar="SECONDS",
              help="A study is audited when no instance of it has arrived for this long (again if more arrive).")
@click.option("--max-per-host", type=click.IntRange(0, 1024), default=None, metavar="N",
              help="Open connections one peer address may hold; more are closed unread (default: 16; 0: no limit).")
@click.option("--max-dataset", default=None, metavar="SIZE",
              help="The largest DIMSE message (data set) one association may send, e.g. 4GiB, 512MiB; a larger one "
                   "aborts its association (default: 4GiB, or $PROTOCOLCHECK_MAX_DATASET).")
@click.option("--max-receiving", default=None, metavar="SIZE",
              help="Bytes of data sets all associations may hold at once while they are received and stored; past "
                   "it the association adding more is aborted (default: 8GiB, at most a quarter of the memory, or "
                   "$PROTOCOLCHECK_MAX_RECEIVING).")
@click.option("--receivers", type=click.IntRange(0, 64), default=0, show_default=True, metavar="N",
              help="Serve storage associations (plain TCP, storage and verification only) in N more processes, so "
                   "receiving uses more than one core; MPPS, TLS and the live loop stay in this one.")
@click.option("--output", "jsonl", type=click.Path(dir_okay=False), default=None, metavar="FILE.jsonl",
              help="Append one audit record per completed study to this JSON-lines file (default: stdout).")
@click.option("--retain-days", type=click.FloatRange(0, None), default=None, metavar="N",
              help="Remove received studies N days after their last instance once audited (at start, then "
                   "hourly); the results stay in the results store (see 'protocolcheck store prune').")
@click.option("--prune-every", type=click.FloatRange(1, None), default=3600.0, hidden=True, metavar="SECONDS",
              help="Seconds between two prunes of --retain-days (tests shorten it).")
@net_audit_options
@live_options
@click.option("-v", "--verbose", is_flag=True, help="Also log pynetdicom's messages.")
@quiet_option
def listen(**opts: Any) -> None:
    """Storage SCP: receive studies over DICOM, store them, and audit each study once it is complete.

    Each instance is written to disk (atomically) before success is returned; an instance that
    cannot be decoded or stored gets a failure status, a log line and a line in DIR/.rejected.jsonl.
    SIGTERM or Ctrl-C: stop accepting, finish running associations, audit what is pending, exit 0.
    Studies received by an earlier run but never audited are audited at start. A full disk is
    answered 0xA700 (out of resources) and the SCP goes on. --allow-host closes connections from
    other addresses unread; --tls-cert/--tls-key serve DICOM TLS only (TLS 1.2+). A DIMSE message larger than
    --max-dataset, or one that would take the messages held by all associations past --max-receiving, aborts
    its association (logged, and a line in DIR/.rejected.jsonl); the other associations go on.

    The live loop: each series is judged as it completes (--series-idle) and the exam so far
    re-audited (provisional); Modality Performed Procedure Step N-CREATE/N-SET (stored like
    instances) shows the exam at once and ends it (final verdict). --web serves the live page,
    --notify posts alerts, --send-sr stores the final verdict in the PACS as a DICOM SR,
    --worklist looks the accession up on the modality worklist.
    """
    from pathlib import Path

    from protocolcheck import config as settings
    from protocolcheck.jobs.listen import JsonLines, ListenJob
    from protocolcheck.net.common import parse_networks, validate_aet
    from protocolcheck.net.scp import ListenConfig, StorageSCP, wait_for_signal

    net_logging(opts["quiet"], opts["verbose"])
    try:
        aet = validate_aet(opts["aet"], "--aet")
        allowed = tuple(validate_aet(a, "--allow-aet") for a in opts["allowed"])
        hosts = tuple(str(n) for n in parse_networks(opts["allowed_hosts"], "--allow-host"))
        limits = settings.receive_limits(opts["max_dataset"], opts["max_receiving"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if (opts["tls_ca"] or opts["tls_require_client_cert"]) and not opts["tls_cert"]:
        raise click.UsageError("--tls-ca and --tls-require-client-cert need --tls-cert and --tls-key")
    tls = tls_options({**opts, "tls": bool(opts["tls_cert"] or opts["tls_key"])}, server=True)
    auditor = folder_auditor(opts, "listen")
    live = LiveLoop(opts, auditor.options, Path(opts["store_dir"]), aet)
    try:
        output = JsonLines(opts["jsonl"])
    except OSError as exc:
        warn(f"error: cannot write {opts['jsonl']}: {exc.strerror or exc}")
        sys.exit(Exit.CANNOT_RUN)
    job = ListenJob(auditor, output, lambda r: render.json_line(r.to_dict(include_patient=opts["include_patient"])),
                    announce=lambda r: warn("audited " + render.describe(r), opts["quiet"]),
                    before=lambda folder: live.on_study(folder.name))
    config = ListenConfig(store=Path(opts["store_dir"]), port=opts["port"], bind=opts["bind"], aet=aet,
                          allowed_aets=allowed, idle=opts["idle"], allowed_hosts=hosts, tls=tls, receive_limits=limits,
                          receivers=opts["receivers"], verbose=opts["verbose"],
                          **({"per_host": opts["max_per_host"]} if opts["max_per_host"] is not None else {}))
    scp = StorageSCP(config, job.on_study, on_instance=live.on_instance, services=live.services())
    try:
        scp.store.prepare()
        live.start(scp.store)
        scp.start()
    except OSError as exc:
        live.stop()
        warn(f"error: cannot listen on {opts['bind']}:{opts['port']} or use {opts['store_dir']}: "
             f"{exc.strerror or exc}")
        sys.exit(Exit.CANNOT_RUN)
    pruner = _pruner(opts, scp)
    host, port = scp.address
    warn(f"listening as {aet} on {host}:{port}{' with TLS' if tls else ''}; storing in {opts['store_dir']}; "
         f"a study is audited after {opts['idle']:g} s without new instances"
         + (f"; only from {', '.join(allowed)}" if allowed else "")
         + (f"; only from hosts {', '.join(hosts)}" if hosts else "") + "; " + live.describe(), opts["quiet"])
    signum = wait_for_signal()
    warn(f"stopping ({'signal ' + str(signum) if signum else 'requested'}): finishing associations, "
         "auditing pending studies", opts["quiet"])
    if pruner is not None:
        pruner.stop()
    scp.stop()
    live.stop()
    job.close()
    c = scp.counters
    warn(f"listen: {c.associations} associations, {c.stored} instances stored, {c.refused} refused, "
         f"{c.rejected_associations} associations rejected, {c.refused_connections} connections refused; "
         f"{job.audited} study audits", opts["quiet"])
    sys.exit(Exit.OK)


def _pruner(opts: dict[str, Any], scp: Any) -> Any:
    """``--retain-days``: the store folder pruned now and then every ``--prune-every`` s (None without it)."""
    if opts["retain_days"] is None:
        return None
    from pathlib import Path

    from protocolcheck import config
    from protocolcheck.jobs.retention import Pruner

    target = None if opts["no_db"] else config.store_target(opts["db"])
    pruner = Pruner(Path(opts["store_dir"]), opts["retain_days"], target, skip=scp.tracker.pending,
                    interval=opts["prune_every"], report=lambda line: warn(line, opts["quiet"]))
    pruner.start()
    return pruner
