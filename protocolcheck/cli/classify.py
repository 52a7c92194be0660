"""``classify``: the series under some folders, what each is and why."""

from __future__ import annotations

import sys

import click

from protocolcheck.classify import classify_study
from protocolcheck.cli.options import (
    Exit,
    emit,
    format_option,
    output_option,
    progress,
    quiet_option,
    resolve_format,
    warn,
)
from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import iter_files, scan_files
from protocolcheck.dicom.study import group_studies
from protocolcheck.report import text as render


def collect_headers(paths: tuple[str, ...],
                    quiet: bool) -> tuple[list[InstanceHeader], list[Unreadable], list[Skipped]]:
    """Scan paths; usage error (exit 2) when a path does not exist."""
    try:
        files = list(iter_files(paths))
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    headers: list[InstanceHeader] = []
    bad: list[Unreadable] = []
    skipped: list[Skipped] = []
    for record in progress(scan_files(files), "Reading headers", quiet, length=len(files)):
        if isinstance(record, InstanceHeader):
            headers.append(record)
        elif isinstance(record, Unreadable):
            bad.append(record)
        else:
            skipped.append(record)
    return headers, bad, skipped


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@format_option
@output_option
@quiet_option
def classify(paths: tuple[str, ...], fmt: str | None, output: str | None, quiet: bool) -> None:
    """Classify every series under PATHS and say why (weighting, fat suppression, contrast, plane)."""
    headers, bad, _skipped = collect_headers(paths, quiet)
    for item in bad:  # named even with -q: a per-file problem is neither progress nor summary
        warn(f"unreadable: {item.path}: {item.reason}")
    if not headers:
        warn("error: no DICOM images found under " + ", ".join(paths))
        sys.exit(Exit.USAGE)
    records = [c.to_dict() for study in group_studies(headers) for c in classify_study(study)]
    form = resolve_format(fmt, output)
    emit(render.as_text(form.value, records, render.classify_csv, render.classify_table), output)
    warn(f"{len(records)} series/stacks classified in {len({r['study_instance_uid'] for r in records})} studies"
         + (f"; {len(bad)} unreadable files" if bad else ""), quiet)
    sys.exit(Exit.OK)

