"""Command-line interface: each command parses its options, calls the library, renders, and exits.

One module per command family; :mod:`protocolcheck.cli.options` holds what they share, among it the
one mapping of :mod:`protocolcheck.errors` to exit codes (:class:`~protocolcheck.cli.options.Group`).
This package is the only code that prints or exits.
"""

from __future__ import annotations

import click

from protocolcheck import __version__
from protocolcheck.cli.audit import audit
from protocolcheck.cli.classify import classify
from protocolcheck.cli.doctor import doctor
from protocolcheck.cli.listen import listen
from protocolcheck.cli.options import Group
from protocolcheck.cli.protocols import protocols
from protocolcheck.cli.query import query
from protocolcheck.cli.recommend import check_order_command, recommend
from protocolcheck.cli.report import report
from protocolcheck.cli.worklist import worklist

__all__ = ["main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="protocolcheck")
def main() -> None:
    """Recommend and validate imaging protocols for lumbosacral plexopathy from DICOM headers."""


for _command in (audit, classify, protocols, recommend, check_order_command, worklist, listen, query, report,
                 doctor):
    main.add_command(_command)
