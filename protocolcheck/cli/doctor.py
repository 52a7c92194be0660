"""``doctor``: check the library, the results store, the peers, TLS files and disk space, one line each."""

from __future__ import annotations

import sys
from typing import Any

import click

from protocolcheck.cli.options import Exit


@click.command()
@click.option("--library", "library_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Protocol library to check (default: $PROTOCOLCHECK_LIBRARY, else the shipped one).")
@click.option("--db", default=None, metavar="PATH|URL",
              help="Results store to check (default: $PROTOCOLCHECK_DB, else the default store).")
@click.option("--pacs", nargs=3, default=None, metavar="HOST PORT AET", help="C-ECHO this PACS.")
@click.option("--worklist", nargs=3, default=None, metavar="HOST PORT AET", help="C-ECHO this worklist SCP.")
@click.option("--calling-aet", default="PROTOCOLCHECK", show_default=True, metavar="AET",
              help="Our AE title towards the peers.")
@click.option("--dicomweb", default=None, metavar="URL",
              help="Search this DICOMweb service root once (credentials as for query --dicomweb, from the "
                   "environment).")
@click.option("--tls-ca", default=None, metavar="FILE", help="Check this CA file loads.")
@click.option("--tls-cert", default=None, metavar="FILE", help="Check this certificate file is readable PEM.")
@click.option("--tls-key", default=None, metavar="FILE", help="Check this key file is readable PEM.")
@click.option("--folder", "folders", multiple=True, metavar="DIR",
              help="A folder the jobs write to (listen store, outputs): free space and write access. Repeatable.")
@click.option("--timeout", type=click.FloatRange(1, 120), default=10.0, show_default=True, metavar="SECONDS",
              help="Network timeout of each peer check.")
def doctor(**opts: Any) -> None:
    """Check that everything protocolcheck needs here works; exit 0 only when every check passes.

    Run it after installing or changing anything (configuration, certificates, peers, storage).
    """
    from protocolcheck.cli.dicomweb import sr_destination
    from protocolcheck.jobs.doctor import DoctorSettings, run_checks
    from protocolcheck.net.common import Peer, validate_aet
    from protocolcheck.net.dicomweb import WebPeer

    def peer(values: tuple[str, str, str] | None, option: str) -> Peer | None:
        if not values:
            return None
        host, port, aet = values
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise click.UsageError(f"{option}: PORT must be 1-65535, not {port!r}")
        try:
            return Peer(host, int(port), validate_aet(aet, option), validate_aet(opts["calling_aet"], "--calling-aet"))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc

    try:
        web = sr_destination(opts["dicomweb"], opts["calling_aet"]) if opts["dicomweb"] else None
    except ValueError as exc:
        raise click.UsageError(f"--dicomweb: {exc}") from exc
    if web is not None and not isinstance(web, WebPeer):
        raise click.UsageError("--dicomweb needs an http:// or https:// URL")
    tls = {role: opts[key] for role, key in (("ca", "tls_ca"), ("cert", "tls_cert"), ("key", "tls_key"))
           if opts[key]}
    settings = DoctorSettings(library=opts["library_dir"], store=opts["db"], folders=tuple(opts["folders"]),
                              pacs=peer(opts["pacs"], "--pacs"), worklist=peer(opts["worklist"], "--worklist"),
                              dicomweb=web, tls_files=tls, timeout=opts["timeout"])
    failed = 0
    for check in run_checks(settings):
        click.echo(check.line())
        failed += not check.passed
    click.echo(f"{'all checks passed' if not failed else f'{failed} check(s) failed'}", err=True)
    sys.exit(Exit.CANNOT_RUN if failed else Exit.OK)
