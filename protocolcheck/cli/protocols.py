"""``protocols list|show|lint``: inspect and validate the protocol library."""

from __future__ import annotations

import sys

import click

from protocolcheck.cli.options import (
    Exit,
    Group,
    emit,
    format_option,
    library_option,
    load_library_option,
    output_option,
    protocol_or_exit,
    quiet_option,
    resolve_format,
    warn,
)
from protocolcheck.report import text as render
from protocolcheck.report.tabular import to_json


@click.group(cls=Group)
def protocols() -> None:
    """Inspect and validate the protocol library (one YAML file per protocol)."""


@protocols.command("list")
@library_option()
@format_option
@output_option
def protocols_list(library_dir: str | None, fmt: str | None, output: str | None) -> None:
    """The protocols in the library: id, title, modality, version, status."""
    library = load_library_option(library_dir)
    rows = render.protocol_rows(library)
    form = resolve_format(fmt, output)
    emit(render.as_text(form.value, rows, render.protocols_csv, lambda rs: render.protocols_table(rs, library.path)),
         output)
    sys.exit(Exit.OK)


@protocols.command("show")
@click.argument("protocol_id", metavar="ID")
@library_option()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Readable text or JSON.")
@output_option
def protocols_show(protocol_id: str, library_dir: str | None, fmt: str, output: str | None) -> None:
    """Show one protocol: what it requires, its plane and timing rules, and the guideline statements cited."""
    protocol = protocol_or_exit(load_library_option(library_dir), protocol_id)
    emit(to_json(protocol.to_dict()) if fmt == "json" else render.protocol_text(protocol), output)
    sys.exit(Exit.OK)


@protocols.command("lint")
@click.argument("paths", nargs=-1, type=click.Path())
@quiet_option
def protocols_lint(paths: tuple[str, ...], quiet: bool) -> None:
    """Validate protocol files or library folders (default: the library in use); list every problem.

    Exit 0 when every file is valid, 2 otherwise.
    """
    from protocolcheck.clinical.library import library_path, lint

    targets = list(paths) or [str(library_path())]
    results = lint(targets)
    problems = 0
    for result in results:
        if result.problems:
            problems += len(result.problems)
            for problem in result.problems:
                click.echo(problem)
        elif result.skipped:
            warn(f"skipped {result.path}: {result.skipped}", quiet)
        elif result.protocol is not None:
            warn(f"ok      {result.path}: {result.protocol.id} ({len(result.protocol.requirements)} requirements, "
                 f"{len(result.protocol.planes)} plane rules)", quiet)
    files = len(results)
    if problems:
        warn(f"{problems} problems in {sum(1 for r in results if r.problems)} of {files} files")
        sys.exit(Exit.USAGE)
    warn(f"{files} files checked, no problems", quiet)
    sys.exit(Exit.OK)
