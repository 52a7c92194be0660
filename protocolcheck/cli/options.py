"""What the commands share: exit codes, output and progress, the shared options and the one ``--fail-on`` rule.

Data goes to stdout (or ``-o FILE``); progress and summaries go to stderr.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from protocolcheck.cli.logsetup import log_line
from protocolcheck.errors import InputError, ProtocolcheckError
from protocolcheck.logs import printable
from protocolcheck.report.tabular import OutputFormat

if TYPE_CHECKING:
    from protocolcheck.audit.engine import AuditOptions
    from protocolcheck.clinical.context import ContextTable
    from protocolcheck.clinical.findings import Severity
    from protocolcheck.clinical.library import Library
    from protocolcheck.clinical.protocol import Protocol
    from protocolcheck.clinical.recommend import Rules

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]  # a click option or argument


class Exit(IntEnum):
    """Exit codes of every command (README, "Exit codes")."""

    OK = 0
    FINDINGS = 1
    USAGE = 2
    CANNOT_RUN = 3


def format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format", "fmt", type=click.Choice([f.value for f in OutputFormat]), default=None,
        help="Output format (default: table on a terminal, json otherwise).",
    )(f)


def output_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                        help="Write the data to FILE instead of stdout.")(f)


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")(f)


def resolve_format(fmt: str | None, output: str | None) -> OutputFormat:
    if fmt:
        return OutputFormat(fmt)
    if output is None and sys.stdout.isatty():
        return OutputFormat.TABLE
    return OutputFormat.JSON


def emit(text: str, output: str | None) -> None:
    """The command's data to ``output`` (whole or not at all) or stdout; a write that fails (missing or
    read-only folder, full disk, closed pipe) exits 3 naming the path and the reason."""
    if output:
        write_file(output, text)
        return
    try:
        click.echo(text, nl=False)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (| head): nothing more to say to it
        sys.stderr.close()
        sys.exit(Exit.CANNOT_RUN)
    except OSError as exc:
        warn(f"error: cannot write to standard output: {exc.strerror or exc}")
        sys.exit(Exit.CANNOT_RUN)


def write_file(path: str, text: str) -> None:
    """``text`` written to ``path`` atomically (:func:`.safeio.write_text_atomic`); exit 3 with the path and
    the reason when it cannot be (the earlier file, if any, is left as it was)."""
    from protocolcheck.dicom.safeio import write_text_atomic

    try:
        write_text_atomic(path, text)
    except OSError as exc:
        warn(f"error: cannot write {path}: {exc.strerror or exc}")
        sys.exit(Exit.CANNOT_RUN)


def warn(message: str, quiet: bool = False) -> None:
    """A message on stderr (not with -q), control characters (from file names or headers) shown escaped,
    our line breaks kept; and in the run log (always)."""
    log_line(printable(message, keep_newlines=True))
    if not quiet:
        click.echo(printable(message, keep_newlines=True), err=True)


def progress(items: Iterable[T], label: str, quiet: bool, length: int | None = None) -> Iterator[T]:
    """A click progress bar on a terminal's stderr; nothing in cron or with -q."""
    if quiet or not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(items, label=label, length=length, file=sys.stderr) as bar:
        yield from bar


# --- options and checks shared by several commands ------------------------------------------------

FAIL_ON = ("error", "warning", "never")
LIBRARY_HELP = "Protocol library (default: $PROTOCOLCHECK_LIBRARY, else the shipped one)."
RULES_LIBRARY_HELP = "Protocol library directory whose rules.yaml to use."


def fail_on_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--fail-on", type=click.Choice(FAIL_ON), default="error", show_default=True,
                        help="Exit 1 when a finding at or above this severity is found.")(f)


def fail_severity(fail_on: str) -> Severity | None:
    """``--fail-on`` as the lowest severity that fails the run (None: ``never``)."""
    from protocolcheck.clinical.findings import Severity

    return {"error": Severity.ERROR, "warning": Severity.WARNING, "never": None}[fail_on]


def findings_exit(severities: Iterable[Severity], fail_on: str) -> Exit:
    """Exit 1 when a severity reaches ``--fail-on``, else 0 (``check-order``, ``worklist``)."""
    threshold = fail_severity(fail_on)
    failed = threshold is not None and any(s.rank >= threshold.rank for s in severities)
    return Exit.FINDINGS if failed else Exit.OK


def library_option(help_text: str = LIBRARY_HELP) -> Decorator:
    """``--library DIR``: the protocol library folder."""
    return click.option("--library", "library_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
                        help=help_text)


def day_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    """A ``YYYY-MM-DD`` option as a date (click callback)."""
    if not value:
        return None
    from protocolcheck.clinical.context import parse_date

    try:
        return parse_date(value)
    except ValueError as exc:
        hint = f"--{param.name.replace('_', '-')}" if param.name else None
        raise click.BadParameter(str(exc), param_hint=hint) from exc


def apply_options(f: Callable[..., Any], options: list[Decorator]) -> Callable[..., Any]:
    """Decorate ``f`` with ``options`` so that they appear in ``--help`` in the order listed."""
    for option in reversed(options):
        f = option(f)
    return f


def audit_context_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``audit``'s protocol and clinical-context options (also those of ``listen`` and ``query``)."""
    return apply_options(f, [
        click.option("--protocol", "protocol_id", default=None, metavar="ID",
                     help="Audit every study against this protocol (default: from the indication, else the "
                          "study's own description/codes)."),
        click.option("--context", "context_file", type=click.Path(dir_okay=False), default=None, metavar="FILE.csv",
                     help="Clinical context per study, keyed by accession_number (or study_instance_uid)."),
        click.option("--trauma-date", callback=day_option, metavar="DATE",
                     help="Date of the injury (YYYY-MM-DD), for studies without a context row value."),
        click.option("--indication", default=None, metavar="TEXT",
                     help="Indication (free text and/or ICD-10-CM), for studies without a context row value."),
        click.option("--mri-contraindicated", is_flag=True, default=None,
                     help="MRI is contraindicated (default context)."),
        click.option("--gadolinium-contraindicated", is_flag=True, default=None,
                     help="Gadolinium is contraindicated (default context)."),
        click.option("--dermatomal", is_flag=True, default=None, help="Single-dermatome symptoms (default context)."),
        click.option("--exception", "exception", default=None, metavar="TEXT",
                     help="A clinical reason to deviate from the protocol, e.g. 'suspected hematoma, imaging needed "
                          "now' (default context): the findings it covers are kept as info with the reason. "
                          "Start with finding codes or requirement ids and a colon to cover only those "
                          "(needed for contrast and device safety findings)."),
    ])


def series_output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--no-series`` and ``--include-patient``: what audit records carry."""
    return apply_options(f, [
        click.option("--no-series", is_flag=True, help="Leave the per-series classification out of JSON output."),
        click.option("--include-patient", is_flag=True,
                     help="Include patient name and ID in JSON (hidden by default)."),
    ])


def exit_code_for(error: ProtocolcheckError) -> Exit:
    """THE mapping of errors to exit codes: unusable input 2, a run that cannot be done here and now 3."""
    return Exit.USAGE if isinstance(error, InputError) else Exit.CANNOT_RUN


def fail(error: ProtocolcheckError) -> NoReturn:
    """Say what went wrong (every problem) on stderr and exit with the error's code."""
    warn("error: " + error.describe())
    sys.exit(exit_code_for(error))


class Group(click.Group):
    """A click group whose commands let :class:`~protocolcheck.errors.ProtocolcheckError` propagate:
    it is reported and mapped to its exit code here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProtocolcheckError as error:
            fail(error)


def load_library_option(library_dir: str | None) -> Library:
    """The protocol library of ``--library`` (LibraryError when it cannot be used)."""
    from protocolcheck.clinical.library import load_library

    return load_library(library_dir)


def protocol_or_exit(library: Library, protocol_id: str) -> Protocol:
    """One protocol of the library; exit 2 when there is none with this id."""
    try:
        return library.get(protocol_id)
    except KeyError as exc:
        warn(f"error: {exc.args[0]}")
        sys.exit(Exit.USAGE)


def load_rules_option(path: str | Path | None) -> Rules:
    """The recommender's decision rules (RulesError when they cannot be used)."""
    from protocolcheck.clinical.recommend import load_rules

    return load_rules(path)


def load_context_option(path: str, quiet: bool) -> ContextTable:
    """The context CSV of ``--context`` (ContextError when it cannot be used); its warnings on stderr."""
    from protocolcheck.clinical.context import load_context_csv

    table = load_context_csv(path)
    for message in table.warnings:
        warn("warning: " + message, quiet)
    return table


def audit_options_from(opts: dict[str, Any], *, warnings_quiet: bool) -> AuditOptions:
    """The audit's options from the command's (errors when the library, the protocol or the context file
    cannot be used)."""
    from protocolcheck.audit.engine import AuditOptions
    from protocolcheck.clinical.context import ClinicalContext

    library = load_library_option(opts["library_dir"])
    if opts["protocol_id"]:
        protocol_or_exit(library, opts["protocol_id"])
    contexts = None
    if opts["context_file"]:
        contexts = load_context_option(opts["context_file"], warnings_quiet)
    default = ClinicalContext(
        indication=opts["indication"] or "", trauma_date=opts["trauma_date"],
        mri_contraindicated=opts["mri_contraindicated"] or None,
        gadolinium_contraindicated=opts["gadolinium_contraindicated"] or None,
        dermatomal=opts["dermatomal"] or None, exception=" ".join((opts.get("exception") or "").split()),
        source="the command line")
    has_default = bool(default.indication or default.trauma_date or default.mri_contraindicated
                       or default.gadolinium_contraindicated or default.dermatomal or default.exception)
    return AuditOptions(library=library, protocol_id=opts["protocol_id"], contexts=contexts,
                        default_context=default if has_default else None, include_series=not opts["no_series"])


