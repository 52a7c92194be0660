"""Command-line interface: parse options, call the library, render, choose the exit code.

This is the only module that prints or exits. Data goes to stdout (or ``-o FILE``); progress and
summaries go to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from enum import IntEnum
from typing import Any, TypeVar

import click

from . import __version__
from .classify import classify_study
from .headers import InstanceHeader, Skipped, Unreadable, iter_files, scan
from .report import OutputFormat, to_csv, to_json, to_table
from .study import group_studies

T = TypeVar("T")


class Exit(IntEnum):
    """Exit codes (DESIGN.md section 3)."""

    OK = 0
    FINDINGS = 1
    USAGE = 2
    CANNOT_RUN = 3


CLASSIFY_COLUMNS = (
    "series_number", "stack", "series_description", "weighting", "inversion", "fat_suppression",
    "post_contrast", "plane", "obliquity_deg", "acquisition", "localizer", "derived", "instances",
)
CLASSIFY_HEADERS = {
    "series_number": "#", "stack": "stack", "series_description": "description", "weighting": "wt",
    "inversion": "inv", "fat_suppression": "fatsat", "post_contrast": "post", "plane": "plane",
    "obliquity_deg": "obl", "acquisition": "acq", "localizer": "loc", "derived": "der", "instances": "n",
}


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
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


def warn(message: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(message, err=True)


def progress(items: Iterable[T], label: str, quiet: bool, length: int | None = None) -> Iterator[T]:
    """A click progress bar on a terminal's stderr; nothing in cron or with -q."""
    if quiet or not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(items, label=label, length=length, file=sys.stderr) as bar:
        yield from bar


def collect_headers(paths: tuple[str, ...], quiet: bool) -> tuple[list[InstanceHeader], list[Unreadable], list[Skipped]]:
    """Scan paths; usage error (exit 2) when a path does not exist."""
    try:
        files = list(iter_files(paths))
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    headers: list[InstanceHeader] = []
    bad: list[Unreadable] = []
    skipped: list[Skipped] = []
    for record in progress(scan(files), "Reading headers", quiet, length=len(files)):
        if isinstance(record, InstanceHeader):
            headers.append(record)
        elif isinstance(record, Unreadable):
            bad.append(record)
        else:
            skipped.append(record)
    return headers, bad, skipped


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="protocolcheck")
def main() -> None:
    """Recommend and validate imaging protocols for lumbosacral plexopathy from DICOM headers."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@format_option
@output_option
@quiet_option
def classify(paths: tuple[str, ...], fmt: str | None, output: str | None, quiet: bool) -> None:
    """Classify every series under PATHS and say why (weighting, fat suppression, contrast, plane)."""
    headers, bad, _skipped = collect_headers(paths, quiet)
    for item in bad:
        warn(f"unreadable: {item.path}: {item.reason}", quiet)
    if not headers:
        warn("error: no DICOM images found under " + ", ".join(paths))
        sys.exit(Exit.USAGE)
    records = [c.to_dict() for study in group_studies(headers) for c in classify_study(study)]
    form = resolve_format(fmt, output)
    if form is OutputFormat.JSON:
        text = to_json(records)
    elif form is OutputFormat.CSV:
        text = to_csv(records, ("study_instance_uid", "series_instance_uid") + CLASSIFY_COLUMNS[:-1]
                      + ("field_strength", "repetition_time", "echo_time", "inversion_time", "instances", "evidence"))
    else:
        text = _classify_table(records)
    emit(text, output)
    warn(f"{len(records)} series/stacks classified in {len({r['study_instance_uid'] for r in records})} studies"
         + (f"; {len(bad)} unreadable files" if bad else ""), quiet)
    sys.exit(Exit.OK)


def _classify_table(records: list[dict[str, Any]]) -> str:
    blocks = []
    by_study: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_study.setdefault(r["study_instance_uid"], []).append(r)
    for uid, rows in by_study.items():
        blocks.append(f"Study {uid}  ({rows[0]['manufacturer'] or 'unknown vendor'}, {rows[0]['modality']})\n")
        blocks.append(to_table(rows, CLASSIFY_COLUMNS, CLASSIFY_HEADERS,
                               widths={"series_description": 22, "stack": 8}))
        blocks.append("\n")
    return "".join(blocks)


if __name__ == "__main__":  # pragma: no cover
    main()
