"""``audit``: studies against the protocol library, through the results store, the job lock or a Dask cluster."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from protocolcheck.cli.logsetup import log_event
from protocolcheck.cli.options import (
    Exit,
    apply_options,
    audit_context_options,
    audit_options_from,
    emit,
    fail_on_option,
    fail_severity,
    format_option,
    library_option,
    output_option,
    progress,
    quiet_option,
    resolve_format,
    series_output_options,
    warn,
    write_file,
)
from protocolcheck.dicom.records import ScanRecord, Skipped
from protocolcheck.dicom.scan import iter_files, scan_files
from protocolcheck.report import text as render

if TYPE_CHECKING:
    from protocolcheck.audit.engine import AuditOptions
    from protocolcheck.clinical.findings import AuditResult
    from protocolcheck.jobs.cluster import ClusterExecutor


def store_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``audit``'s results-store options: --db, --no-db, --force, --lock."""
    return apply_options(f, [
        click.option("--db", "db", default=None, metavar="PATH|URL",
                     help="Results store: a SQLite file or a SQLAlchemy URL (default: $PROTOCOLCHECK_DB, else "
                          "~/.local/share/protocolcheck/results.db). Unchanged studies are skipped on re-runs."),
        click.option("--no-db", is_flag=True, help="Do not use a results store (audit everything, save nothing)."),
        click.option("--force", is_flag=True, help="Audit every study again, even those unchanged since their "
                                                    "stored audit."),
        click.option("--lock", "lock_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Job lock: exit 3 if another run holds it (default: a lock beside the store, one per "
                          "store and set of folders, by their real paths)."),
    ])


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@audit_context_options
@fail_on_option
@library_option()
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.xml",
              help="Also write a JUnit XML report (one test case per study) for CI dashboards.")
@series_output_options
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Read headers and audit on this Dask distributed scheduler (tcp://HOST:PORT, or its scheduler "
                   "file); same results. Needs protocolcheck[dask] here and on the workers, and the files at the "
                   "same paths.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.json",
              help="Also write the run's accounting as JSON: studies by status, files seen, files skipped "
                   "(named) and the exit code.")
@click.option("--allow-empty", is_flag=True,
              help="A folder with no DICOM images is a normal run (exit 0, one summary line), not exit 2: "
                   "for scheduled jobs on a drop folder that is sometimes empty.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Read headers in this many processes (same results, same order).")
@store_options
@format_option
@output_option
@quiet_option
def audit(**opts: Any) -> None:
    """Audit every study under PATHS against the protocol library: missing sequences, planes, timing.

    Exit codes: 0 nothing at or above --fail-on; 1 such findings; 2 unusable input (bad protocol file,
    bad context file, unknown protocol, no DICOM found); 3 results store unwritable or job lock held.
    """
    from protocolcheck.audit.engine import Summary, audit_records, unmatched_context

    # context warnings are shown even with -q here (listen and query follow -q)
    options = audit_options_from(opts, warnings_quiet=False)
    if not opts["protocol_id"] and (options.contexts is not None or opts["indication"]):
        from protocolcheck.audit.engine import recommender_rules

        recommender_rules(options.library)  # protocol choice from the indication uses them: checked up front
    try:
        files = list(iter_files(opts["paths"]))
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    stored_note = ""
    skipped: list[str] = []  # files seen and deliberately not audited (not DICOM, not an image): named below
    if opts.get("scheduler"):  # the same run, headers read and studies audited on a Dask cluster
        results, stored_note = _audit_on_cluster(opts, options, files)
    else:
        def plain() -> list[AuditResult]:
            # study by study in bounded memory (audit/streaming.py)
            scanned = _noting_skipped(scan_files(files, workers=opts["workers"]), skipped)
            records_in = progress(scanned, "Reading headers", opts["quiet"], len(files))
            return list(progress(audit_records(records_in, options), "Auditing", opts["quiet"]))

        # with a results store (the default): only new or changed studies are read and audited (jobs/incremental.py)
        results, stored_note = _audit_with_store(opts, options, files, plain, skipped=skipped)
    results.sort(key=lambda r: (not r.study_instance_uid, r.accession_number, r.study_date, r.study_instance_uid))
    records = [r.to_dict(include_patient=opts["include_patient"]) for r in results]
    emit(render.audit_text(records, resolve_format(opts["fmt"], opts["output"]).value), opts["output"])
    if opts["junit_path"]:
        write_file(opts["junit_path"], render.audit_junit(records))
    for message in unmatched_context(options):
        warn("warning: " + message)
    summary = Summary.of(results)
    warn(summary.line() + stored_note + _skipped_note(skipped), opts["quiet"])
    code = _exit_code(opts, results)
    counts = {"studies": summary.studies, **summary.counts, "files_seen": len(files), "files_skipped": len(skipped)}
    log_event("audit.finished", summary.line() + stored_note, **counts, exit_code=int(code))
    if opts["summary_path"]:  # every file seen accounted for, in JSON: audited, skipped (named), exit code
        write_file(opts["summary_path"], json.dumps({**counts, "skipped_files": skipped, "exit_code": int(code),
                                                     "paths": list(opts["paths"])}, indent=2) + "\n")
    sys.exit(code)


def _exit_code(opts: dict[str, Any], results: list[AuditResult]) -> Exit:
    """0/1 by --fail-on; 2 when nothing readable was found (0 with --allow-empty and nothing unreadable)."""
    from protocolcheck.audit.engine import reaches

    if any(r.study_instance_uid for r in results):
        return Exit.FINDINGS if reaches(results, fail_severity(opts["fail_on"])) else Exit.OK
    bad = sum(len(r.findings) for r in results)
    if opts["allow_empty"] and not bad:  # a quiet night: nothing arrived
        warn("nothing to audit under " + ", ".join(opts["paths"]) + " (no DICOM images; --allow-empty)")
        return Exit.OK
    warn("error: no readable DICOM images under " + ", ".join(opts["paths"])
         + (f" ({bad} unreadable files)" if bad else "")
         + ("" if bad else "; --allow-empty makes an empty folder a normal, successful run"))
    return Exit.USAGE


def _audit_with_store(opts: dict[str, Any], options: AuditOptions, files: list[str],
                      plain: Callable[[], list[AuditResult]],
                      executor: ClusterExecutor | None = None,
                      skipped: list[str] | None = None) -> tuple[list[AuditResult], str]:
    """Run ``audit`` through the results store (incremental, locked), or ``plain()`` with --no-db;
    returns the results and a note for the summary line."""
    import contextlib
    import shlex

    from protocolcheck import config
    from protocolcheck.clinical.library import library_path
    from protocolcheck.jobs.fingerprint import library_version, settings_fingerprint
    from protocolcheck.jobs.incremental import JobLock, default_lock_path, run_audit_job
    from protocolcheck.jobs.store import Store, StoreError

    quiet = opts["quiet"]
    if opts["no_db"] and not opts["lock_file"]:
        return plain(), ""
    target = config.store_target(opts["db"])
    lock_path = opts["lock_file"]
    if not lock_path and not opts["no_db"]:  # always, the default store too: one run of a job at a time
        lock_path = default_lock_path(target, opts["paths"])
    try:
        with contextlib.ExitStack() as stack:
            store = None if opts["no_db"] else stack.enter_context(
                Store.open(target, keep_patient=opts["include_patient"]))
            if lock_path:
                stack.enter_context(JobLock(lock_path))
            if store is None:
                return plain(), ""
            outcome = run_audit_job(
                opts["paths"], store, options, files=files, force=opts["force"], workers=opts.get("workers") or 1,
                library_version=library_version(library_path(opts["library_dir"])),
                settings=settings_fingerprint(options, opts["context_file"]),
                command=shlex.join(["audit", *sys.argv[2:]])[:2000],
                progress=lambda items, label, n: progress(items, label, quiet, n), executor=executor)
    except StoreError as exc:
        raise StoreError(f"{exc} (choose another store with --db, or run without one with --no-db)") from exc
    except OSError as exc:  # the lock file cannot be created
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    if skipped is not None:
        skipped.extend(outcome.skipped_files)
    note = (f"; {outcome.audited} audited, {outcome.skipped} unchanged (skipped) in {outcome.seconds:.1f} s"
            f" -> {store.target}")
    return outcome.results, note


def _noting_skipped(records: Iterable[ScanRecord], skipped: list[str]) -> Iterator[ScanRecord]:
    """``records``, noting the path of each file deliberately skipped (not DICOM, not an image)."""
    for record in records:
        if isinstance(record, Skipped):
            skipped.append(record.path)
        yield record


def _skipped_note(skipped: Sequence[str], named: int = 3) -> str:
    """The summary's account of skipped files: how many, and the first few by name."""
    if not skipped:
        return ""
    more = f", and {len(skipped) - named} more" if len(skipped) > named else ""
    return f"; {len(skipped)} file{'s' if len(skipped) != 1 else ''} skipped (not DICOM or not an image): " \
           + ", ".join(skipped[:named]) + more


def _audit_on_cluster(opts: dict[str, Any], options: AuditOptions, files: list[str]) -> tuple[list[AuditResult], str]:
    """``audit --scheduler``: the same run (results store included) with headers read and studies audited
    on a Dask cluster (errors without dask, with a bad address, or when the cluster cannot run it)."""
    from protocolcheck.jobs.cluster import ClusterExecutor, ClusterStats

    quiet = opts["quiet"]
    stats: list[ClusterStats] = []
    with ClusterExecutor.connect(opts["scheduler"]) as executor:
        def plain() -> list[AuditResult]:
            return list(progress(executor.audit_files(files, options, stats), "Auditing on the cluster", quiet))

        results, note = _audit_with_store(opts, options, files, plain, executor=executor)
        workers, threads = executor.workers()
    line = f"cluster {opts['scheduler']}: {workers} workers ({threads} threads)"
    for s in stats:
        line += f" read {s.files} files ({s.unreadable} unreadable, {s.skipped} skipped), audited {s.studies} studies"
    warn(line, quiet)
    return results, note

