"""What the network commands share: peer, TLS, timeouts and logging options, and the audit options of
``listen`` and ``query``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from protocolcheck.cli.options import (
    apply_options,
    audit_context_options,
    audit_options_from,
    library_option,
    series_output_options,
)
from protocolcheck.logs import network_logging

if TYPE_CHECKING:
    from protocolcheck.jobs.incremental import FolderAuditor
    from protocolcheck.net.common import Peer, Timeouts, TlsOptions


def net_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """HOST PORT --called-aet [--calling-aet] [--timeout] shared by the DICOM client commands."""
    return apply_options(f, _peer_options(required=True))


def optional_net_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`net_options` for a command that may reach its peer another way (``query --dicomweb``)."""
    return apply_options(f, _peer_options(required=False))


def _peer_options(required: bool) -> list[Callable[..., Any]]:
    return [
        click.argument("host", required=required),
        click.argument("port", type=click.IntRange(1, 65535), required=required),
        click.option("--called-aet", required=required, metavar="AET", help="AE title of the peer."),
        click.option("--calling-aet", default="PROTOCOLCHECK", show_default=True, metavar="AET",
                     help="Our AE title (must be configured on the peer)."),
        click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True, metavar="SECONDS",
                     help="Network, association and reply timeout; a whole C-FIND ends within 5 times this."),
        click.option("--tls", is_flag=True, help="Use DICOM TLS (implied by the other --tls-* options)."),
        click.option("--tls-ca", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="PEM file of the CA certificates trusted for the peer's certificate "
                          "(default: the system's)."),
        click.option("--tls-cert", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Our certificate (PEM), for peers that require client certificates."),
        click.option("--tls-key", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="The private key (PEM) of --tls-cert."),
        click.option("-v", "--verbose", is_flag=True, help="Also log pynetdicom's messages."),
    ]


def tls_options(opts: dict[str, Any], *, server: bool = False) -> TlsOptions | None:
    """TlsOptions from the --tls* options (None when TLS is not asked for); the files are checked here."""
    from protocolcheck.net.common import TlsOptions, client_ssl_context, server_ssl_context

    wanted = opts.get("tls") or any(opts.get(k) for k in ("tls_ca", "tls_cert", "tls_key"))
    if not wanted:
        return None
    if bool(opts.get("tls_cert")) != bool(opts.get("tls_key")):
        raise click.UsageError("--tls-cert and --tls-key go together")
    tls = TlsOptions(cert=opts.get("tls_cert"), key=opts.get("tls_key"), ca=opts.get("tls_ca"),
                     require_client_cert=bool(opts.get("tls_require_client_cert")))
    try:
        (server_ssl_context if server else client_ssl_context)(tls)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    return tls


def net_logging(quiet: bool, verbose: bool = False) -> None:
    """Network progress and refusals as log lines on stderr (pynetdicom's own only with -v)."""
    network_logging(logging.WARNING if quiet else logging.INFO, verbose)


def peer_from(opts: dict[str, Any]) -> Peer:
    """The peer of HOST PORT --called-aet --calling-aet and the --tls* options; usage error when unusable (or
    when the bounds on what peers send us are malformed in the environment: named now, not mid-run)."""
    from protocolcheck import config
    from protocolcheck.net.common import Peer, validate_aet

    try:
        config.receive_limits()
        return Peer(opts["host"], opts["port"], validate_aet(opts["called_aet"], "--called-aet"),
                    validate_aet(opts["calling_aet"], "--calling-aet"), tls=tls_options(opts))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def timeouts_for(seconds: float) -> Timeouts:
    """Every network timeout from ``--timeout`` (:meth:`Timeouts.from_option`)."""
    from protocolcheck.net.common import Timeouts

    return Timeouts.from_option(seconds)


def date_range(_ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """A DICOM date or range option (click callback), checked."""
    from protocolcheck.net.common import validate_date_range

    if not value:
        return ""
    try:
        return validate_date_range(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def net_audit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The audit options of ``listen`` and ``query`` (the same as ``audit``), plus the results store."""
    return apply_options(f, [
        audit_context_options, library_option(), series_output_options,
        click.option("--db", "db", default=None, metavar="PATH|URL",
                     help="Also save each audit in this results store (SQLite file or SQLAlchemy URL; "
                          "default: $PROTOCOLCHECK_DB, else ~/.local/share/protocolcheck/results.db)."),
        click.option("--no-db", is_flag=True, help="Do not save audits in a results store."),
    ])


def folder_auditor(opts: dict[str, Any], source: str) -> FolderAuditor:
    """``listen``'s and ``query``'s auditor from the net audit options (errors when the audit options or
    the results store cannot be used)."""
    from protocolcheck.jobs.incremental import FolderAuditor

    options = audit_options_from(opts, warnings_quiet=opts["quiet"])
    if opts["no_db"]:
        return FolderAuditor(options, source=source)
    from protocolcheck import config
    from protocolcheck.clinical.library import library_path
    from protocolcheck.jobs.fingerprint import library_version, settings_fingerprint
    from protocolcheck.jobs.store import Store

    store = Store.open(config.store_target(opts["db"]), keep_patient=opts.get("include_patient", False))
    return FolderAuditor(options, store, library_version=library_version(library_path(opts["library_dir"])),
                         settings=settings_fingerprint(options, opts["context_file"]), source=source)
