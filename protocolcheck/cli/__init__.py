"""Command-line interface: each command parses its options, calls the library, renders, and exits.

One module per command family; :mod:`protocolcheck.cli.options` holds what they share, among it the
one mapping of :mod:`protocolcheck.errors` to exit codes (:class:`~protocolcheck.cli.options.Group`).
This package is the only code that prints or exits.
"""

from __future__ import annotations

import click
from click.core import ParameterSource

from protocolcheck import __version__
from protocolcheck.cli.audit import audit
from protocolcheck.cli.classify import classify
from protocolcheck.cli.configcmd import config_group
from protocolcheck.cli.doctor import doctor
from protocolcheck.cli.listen import listen
from protocolcheck.cli.logsetup import LogFormat, configure
from protocolcheck.cli.options import Group
from protocolcheck.cli.protocols import protocols
from protocolcheck.cli.query import query
from protocolcheck.cli.recommend import check_order_command, recommend
from protocolcheck.cli.report import report
from protocolcheck.cli.siteconfig import SiteConfig, config_path, load
from protocolcheck.cli.store import store_group
from protocolcheck.cli.worklist import worklist

__all__ = ["main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="protocolcheck")
@click.option("--config", "config_file", default=None, metavar="FILE.toml",
              help="Site configuration: option defaults for every command (default: $PROTOCOLCHECK_CONFIG, "
                   "else /etc/protocolcheck/config.toml when it exists).")
@click.option("--log-file", default=None, metavar="FILE",
              help="Also append the run's summary, notes and errors to FILE (for scheduled jobs).")
@click.option("--log-format", type=click.Choice([f.value for f in LogFormat]), default="text", show_default=True,
              help="Log lines as text, or one JSON object a line (time, level, event, message, counts).")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, log_file: str | None, log_format: str) -> None:
    """Recommend and validate imaging protocols for lumbosacral plexopathy from DICOM headers."""
    path = config_path(config_file)
    config = load(path, main) if path is not None else SiteConfig(None)
    ctx.obj = config
    ctx.default_map = config.default_map(main)
    top = ctx.default_map
    if ctx.get_parameter_source("log_file") is ParameterSource.DEFAULT and "log_file" in top:
        log_file = str(top["log_file"])
    if ctx.get_parameter_source("log_format") is ParameterSource.DEFAULT and "log_format" in top:
        log_format = str(top["log_format"])
    try:
        configure(log_file, LogFormat(log_format))
    except OSError as exc:
        raise click.ClickException(f"--log-file {log_file}: cannot write ({exc.strerror or exc})") from exc


for _command in (audit, classify, protocols, recommend, check_order_command, worklist, listen, query, report,
                 doctor, config_group, store_group):
    main.add_command(_command)
