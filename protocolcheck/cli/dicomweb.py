"""``query --dicomweb URL``: the DICOMweb options and run (QIDO-RS search, WADO-RS metadata, audit).

Secrets never go on the command line: the basic-authentication password comes from
``$PROTOCOLCHECK_DICOMWEB_PASSWORD`` or ``--password-file``, the bearer token from
``$PROTOCOLCHECK_DICOMWEB_TOKEN`` or ``--token-file`` (a file's first line, whitespace stripped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from protocolcheck import config
from protocolcheck.cli.options import apply_options, progress, warn
from protocolcheck.dicom.safeio import read_text_regular

if TYPE_CHECKING:
    from protocolcheck.jobs.webquery import WebRun
    from protocolcheck.net.common import Peer
    from protocolcheck.net.dicomweb import WebPeer
    from protocolcheck.net.qr import StudyQuery

PASSWORD_ENV = config.Env.DICOMWEB_PASSWORD.value
TOKEN_ENV = config.Env.DICOMWEB_TOKEN.value


def dicomweb_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``query --dicomweb``."""
    return apply_options(f, [
        click.option("--dicomweb", "dicomweb", default=None, metavar="URL",
                     help="Audit a DICOMweb archive (QIDO-RS + WADO-RS metadata, no pixels) at this service root "
                          "instead of a DIMSE peer; HOST PORT --called-aet are then not given."),
        click.option("--user", default=None, metavar="NAME",
                     help=f"DICOMweb: HTTP basic authentication as NAME (password from ${PASSWORD_ENV} or "
                          "--password-file)."),
        click.option("--password-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="DICOMweb: file whose first line is the password of --user."),
        click.option("--password", "password", envvar=PASSWORD_ENV, default=None, hidden=True),
        click.option("--token-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help=f"DICOMweb: bearer token from this file (or from ${TOKEN_ENV})."),
        click.option("--token", "token", envvar=TOKEN_ENV, default=None, hidden=True),
        click.option("--ca-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="DICOMweb: PEM file of the CA certificates trusted for the server (default: the system's)."),
        click.option("--insecure", is_flag=True,
                     help="DICOMweb: do not verify the server's TLS certificate (testing only)."),
        click.option("--client-cert", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="DICOMweb: our TLS client certificate (PEM), with --client-key."),
        click.option("--client-key", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="DICOMweb: the private key (PEM) of --client-cert."),
        click.option("--deadline", type=click.FloatRange(1, 86400), default=3600.0, show_default=True,
                     metavar="SECONDS", help="DICOMweb: the whole run must end within this time."),
        click.option("--page-size", type=click.IntRange(1, 10000), default=100, show_default=True, metavar="N",
                     help="DICOMweb: studies per QIDO-RS page (limit/offset paging)."),
    ])


def _first_line(path: str, what: str) -> str:
    try:
        text = read_text_regular(path).splitlines()  # a named pipe: refused, not waited on
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{what} {path}: cannot read it ({exc})") from exc
    if not text or not text[0].strip():
        raise click.UsageError(f"{what} {path}: the first line is empty")
    return text[0].strip()


def _secret(opts: dict[str, Any], name: str, file_option: str, env: str) -> str | None:
    """A secret from its file or environment variable; refused when typed on the command line."""
    ctx = click.get_current_context()
    if opts.get(name) is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--{name} is not accepted on the command line (other users can see it); "
                               f"set ${env} or use --{file_option}")
    if opts.get(file_option.replace("-", "_")):
        return _first_line(opts[file_option.replace("-", "_")], f"--{file_option}")
    return opts.get(name) or None


def web_peer_from(opts: dict[str, Any]) -> WebPeer:
    """The DICOMweb peer of the options; a usage error (exit 2) naming what is wrong."""
    from protocolcheck.net.dicomweb import WebPeer

    if opts.get("host") or opts.get("port") or opts.get("called_aet"):
        raise click.UsageError("give either HOST PORT --called-aet (a DIMSE peer) or --dicomweb URL, not both")
    password = _secret(opts, "password", "password-file", PASSWORD_ENV)
    token = _secret(opts, "token", "token-file", TOKEN_ENV)
    if opts.get("user") and password is None:
        raise click.UsageError(f"--user needs a password: set ${PASSWORD_ENV} or use --password-file")
    try:
        return WebPeer(opts["dicomweb"], username=opts.get("user"), password=password if opts.get("user") else None,
                       token=None if opts.get("user") else token, ca_file=opts.get("ca_file"),
                       insecure=bool(opts.get("insecure")), client_cert=opts.get("client_cert"),
                       client_key=opts.get("client_key"), timeout=opts["timeout"], deadline=opts["deadline"],
                       page_size=opts["page_size"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def run_dicomweb(opts: dict[str, Any], study_query: StudyQuery) -> WebRun:
    """Search, fetch and audit; NetError (exit 3) when the search itself fails (server down, refused, too slow)."""
    from protocolcheck.cli.net import folder_auditor
    from protocolcheck.jobs.webquery import audit_dicomweb
    from protocolcheck.net.common import NetError
    from protocolcheck.net.dicomweb import DicomwebSource

    peer = web_peer_from(opts)
    auditor = folder_auditor(opts, "query-dicomweb")
    source = DicomwebSource(peer)
    try:
        matches = source.find_studies(study_query)
    except NetError:  # reported (exit 3) by the command group
        auditor.close()
        raise
    warn(f"{len(matches)} studies match on {peer}", opts["quiet"])
    try:
        run = audit_dicomweb(source, matches, auditor.options, store=auditor.store,
                             library_version=auditor.library_version, settings=auditor.settings,
                             progress=lambda items, label, n: progress(items, label, opts["quiet"], length=n))
    finally:
        auditor.close()
    for failure in run.failures:
        warn(f"error: {failure}")
    warn(f"{run.audited} audited, {run.unchanged} unchanged (not fetched again); "
         f"{run.bytes_received / 1e6:.1f} MB received", opts["quiet"])
    return run


def sr_destination(text: str, calling_aet: str) -> Peer | WebPeer:
    """Where ``--send-sr`` stores reports: ``AET@HOST:PORT`` (C-STORE) or a DICOMweb service root
    (STOW-RS; ``https://user@host/dicom-web`` for basic authentication with the password from
    ``$PROTOCOLCHECK_DICOMWEB_PASSWORD``, else a bearer token from ``$PROTOCOLCHECK_DICOMWEB_TOKEN``).
    ValueError naming what is wrong."""
    from urllib.parse import urlsplit, urlunsplit

    from protocolcheck.net.dicomweb import WebPeer
    from protocolcheck.net.push import parse_destination

    if not text.startswith(("http://", "https://")):
        return parse_destination(text, calling_aet)
    parts = urlsplit(text)
    host = parts.hostname or ""
    bare = urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, parts.query, ""))
    if parts.username:
        password = config.dicomweb_password()
        if not password:
            raise ValueError(f"{parts.username}@ in the URL needs the password in ${PASSWORD_ENV}")
        if parts.password:
            raise ValueError("put no password in the URL (other users can see it); set $" + PASSWORD_ENV)
        return WebPeer(bare, username=parts.username, password=password)
    return WebPeer(bare, token=config.dicomweb_token() or None)
