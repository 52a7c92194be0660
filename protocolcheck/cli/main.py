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

from protocolcheck import __version__
from protocolcheck.classify.series import classify_study
from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import iter_files, scan_files
from protocolcheck.dicom.study import group_studies
from protocolcheck.report import text as render
from protocolcheck.report.tabular import OutputFormat, to_json

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]  # a click option or argument


class Exit(IntEnum):
    """Exit codes (DESIGN.md section 3)."""

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


# --- options and checks shared by several commands ------------------------------------------------

FAIL_ON = ("error", "warning", "never")
LIBRARY_HELP = "Protocol library (default: $PROTOCOLCHECK_LIBRARY, else the shipped one)."
RULES_LIBRARY_HELP = "Protocol library directory whose rules.yaml to use."


def fail_on_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--fail-on", type=click.Choice(FAIL_ON), default="error", show_default=True,
                        help="Exit 1 when a finding at or above this severity is found.")(f)


def _fail_threshold(fail_on: str) -> int:
    """The lowest severity rank that fails the run (``--fail-on never``: above every rank)."""
    from protocolcheck.clinical.findings import Severity

    return {"error": Severity.ERROR.rank, "warning": Severity.WARNING.rank, "never": 99}[fail_on]


def _fail_severity(fail_on: str) -> Any:
    """``--fail-on`` as the Severity threshold of :func:`pipeline.reaches` (None = never)."""
    from protocolcheck.clinical.findings import Severity

    return {"error": Severity.ERROR, "warning": Severity.WARNING, "never": None}[fail_on]


def library_option(help_text: str = LIBRARY_HELP) -> Decorator:
    """``--library DIR``: the protocol library folder."""
    return click.option("--library", "library_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
                        help=help_text)


def _day_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if not value:
        return None
    from protocolcheck.clinical.context import parse_date

    try:
        return parse_date(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{param.name.replace('_', '-')}" if param.name else None)


def _apply(f: Callable[..., Any], options: list[Decorator]) -> Callable[..., Any]:
    """Decorate ``f`` with ``options`` so that they appear in ``--help`` in the order listed."""
    for option in reversed(options):
        f = option(f)
    return f


def audit_context_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``audit``'s protocol and clinical-context options (also those of ``listen`` and ``query``)."""
    return _apply(f, [
        click.option("--protocol", "protocol_id", default=None, metavar="ID",
                     help="Audit every study against this protocol (default: from the indication, else the "
                          "study's own description/codes)."),
        click.option("--context", "context_file", type=click.Path(dir_okay=False), default=None, metavar="FILE.csv",
                     help="Clinical context per study, keyed by accession_number (or study_instance_uid)."),
        click.option("--trauma-date", callback=_day_option, metavar="DATE",
                     help="Date of the injury (YYYY-MM-DD), for studies without a context row value."),
        click.option("--indication", default=None, metavar="TEXT",
                     help="Indication (free text and/or ICD-10-CM), for studies without a context row value."),
        click.option("--mri-contraindicated", is_flag=True, default=None,
                     help="MRI is contraindicated (default context)."),
        click.option("--gadolinium-contraindicated", is_flag=True, default=None,
                     help="Gadolinium is contraindicated (default context)."),
        click.option("--dermatomal", is_flag=True, default=None, help="Single-dermatome symptoms (default context)."),
    ])


def series_output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--no-series`` and ``--include-patient``: what audit records carry."""
    return _apply(f, [
        click.option("--no-series", is_flag=True, help="Leave the per-series classification out of JSON output."),
        click.option("--include-patient", is_flag=True,
                     help="Include patient name and ID in JSON (hidden by default)."),
    ])


def _library_or_exit(library_dir: str | None) -> Any:
    from protocolcheck.clinical.library import LibraryError, load_library

    try:
        return load_library(library_dir)
    except LibraryError as exc:
        warn(f"error: the protocol library cannot be used ({len(exc.problems)} problems):\n  "
             + "\n  ".join(exc.problems))
        sys.exit(Exit.USAGE)


def _protocol_or_exit(library: Any, protocol_id: str) -> Any:
    try:
        return library.get(protocol_id)
    except KeyError as exc:
        warn(f"error: {exc.args[0]}")
        sys.exit(Exit.USAGE)


def _rules_or_exit(path: Any) -> Any:
    """The recommender's decision rules; exit 2 listing every problem when they cannot be used."""
    from protocolcheck.clinical.recommend import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        warn("error: the decision rules cannot be used:\n  " + "\n  ".join(exc.problems))
        sys.exit(Exit.USAGE)


def _context_table_or_exit(path: str, quiet: bool, *, count_problems: bool = False) -> Any:
    """The context CSV, its warnings on stderr; exit 2 listing every problem when it cannot be used."""
    from protocolcheck.clinical.context import ContextError, load_context_csv

    try:
        table = load_context_csv(path)
    except ContextError as exc:
        what = f"the context file cannot be used ({len(exc.problems)} problems):\n  " if count_problems else ""
        warn("error: " + what + "\n  ".join(exc.problems))
        sys.exit(Exit.USAGE)
    for message in table.warnings:
        warn("warning: " + message, quiet)
    return table


def _audit_options(opts: dict[str, Any], *, warnings_quiet: bool, count_problems: bool = False) -> Any:
    """:class:`pipeline.AuditOptions` from the audit options; exit 2 when the library, the protocol or
    the context file cannot be used."""
    from protocolcheck.audit.engine import AuditOptions
    from protocolcheck.clinical.context import ClinicalContext

    library = _library_or_exit(opts["library_dir"])
    if opts["protocol_id"]:
        _protocol_or_exit(library, opts["protocol_id"])
    contexts = None
    if opts["context_file"]:
        contexts = _context_table_or_exit(opts["context_file"], warnings_quiet, count_problems=count_problems)
    default = ClinicalContext(
        indication=opts["indication"] or "", trauma_date=opts["trauma_date"],
        mri_contraindicated=opts["mri_contraindicated"] or None,
        gadolinium_contraindicated=opts["gadolinium_contraindicated"] or None,
        dermatomal=opts["dermatomal"] or None, source="options")
    has_default = bool(default.indication or default.trauma_date or default.mri_contraindicated
                       or default.gadolinium_contraindicated or default.dermatomal)
    return AuditOptions(library=library, protocol_id=opts["protocol_id"], contexts=contexts,
                        default_context=default if has_default else None, include_series=not opts["no_series"])


def collect_headers(paths: tuple[str, ...], quiet: bool) -> tuple[list[InstanceHeader], list[Unreadable], list[Skipped]]:
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


# --- audit: studies against the protocol library (results store, job lock, Dask cluster) ----------


def store_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``audit``'s results-store options: --db, --no-db, --force, --lock."""
    return _apply(f, [
        click.option("--db", "db", default=None, metavar="PATH|URL",
                     help="Results store: a SQLite file or a SQLAlchemy URL (default: $PROTOCOLCHECK_DB, else "
                          "~/.local/share/protocolcheck/results.db). Unchanged studies are skipped on re-runs."),
        click.option("--no-db", is_flag=True, help="Do not use a results store (audit everything, save nothing)."),
        click.option("--force", is_flag=True, help="Audit every study again, even those unchanged since their "
                                                    "stored audit."),
        click.option("--lock", "lock_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Job lock: exit 3 if another run holds it (default with --db: a lock beside the store, "
                          "one per store and set of folders)."),
    ])


@main.command()
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
    from protocolcheck.audit.engine import Summary, reaches, unmatched_context
    from protocolcheck.audit.streaming import audit_records_streaming

    # context warnings are shown even with -q here (listen and query follow -q)
    options = _audit_options(opts, warnings_quiet=False, count_problems=True)
    if not opts["protocol_id"] and (options.contexts is not None or opts["indication"]):
        from protocolcheck.audit.engine import recommender_rules
        from protocolcheck.clinical.recommend import RulesError

        try:  # protocol choice from the indication uses the recommender's rules: check them up front
            recommender_rules(options.library)
        except RulesError as exc:
            warn("error: the recommender rules cannot be used:\n  " + "\n  ".join(exc.problems))
            sys.exit(Exit.USAGE)
    try:
        files = list(iter_files(opts["paths"]))
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    stored_note = ""
    if opts.get("scheduler"):  # the same run, headers read and studies audited on a Dask cluster
        results, stored_note = _audit_on_cluster(opts, options, files)
    else:
        def plain() -> list[Any]:
            # study by study in bounded memory (streaming.py); same results as pipeline.audit_records
            records_in = progress(scan_files(files, workers=opts["workers"]), "Reading headers", opts["quiet"], len(files))
            return list(progress(audit_records_streaming(records_in, options), "Auditing", opts["quiet"]))

        # with a results store (the default): only new or changed studies are read and audited (jobs.py)
        results, stored_note = _audit_with_store(opts, options, files, plain)
    results.sort(key=lambda r: (not r.study_instance_uid, r.accession_number, r.study_date, r.study_instance_uid))
    records = [r.to_dict(include_patient=opts["include_patient"]) for r in results]
    emit(render.audit_text(records, resolve_format(opts["fmt"], opts["output"]).value), opts["output"])
    if opts["junit_path"]:
        try:
            with open(opts["junit_path"], "w", encoding="utf-8") as fh:
                fh.write(render.audit_junit(records))
        except OSError as exc:
            warn(f"error: cannot write {opts['junit_path']}: {exc.strerror or exc}")
            sys.exit(Exit.CANNOT_RUN)
    for message in unmatched_context(options):
        warn("warning: " + message)
    warn(Summary.of(results).line() + stored_note, opts["quiet"])
    if not any(r.study_instance_uid for r in results):
        bad = sum(len(r.findings) for r in results)
        warn("error: no readable DICOM images under " + ", ".join(opts["paths"])
             + (f" ({bad} unreadable files)" if bad else ""))
        sys.exit(Exit.USAGE)
    sys.exit(Exit.FINDINGS if reaches(results, _fail_severity(opts["fail_on"])) else Exit.OK)


def _audit_with_store(opts: dict[str, Any], options: Any, files: list[str],
                      plain: Callable[[], list[Any]], executor: Any = None) -> tuple[list[Any], str]:
    """Run ``audit`` through the results store (incremental, locked), or ``plain()`` with --no-db;
    returns the results and a note for the summary line. Store or lock problems exit 3."""
    import contextlib
    import os
    import shlex

    from protocolcheck.clinical.library import library_path
    from protocolcheck.jobs.incremental import JobLock, LockHeld, audit_settings, default_lock_path, run_audit_job
    from protocolcheck.jobs.store import Store, StoreError, default_store_path, library_version

    quiet = opts["quiet"]
    if opts["no_db"] and not opts["lock_file"]:
        return plain(), ""
    explicit = opts["db"] or os.environ.get("PROTOCOLCHECK_DB")
    target = opts["db"] or str(default_store_path())
    lock_path = opts["lock_file"] or (default_lock_path(target, opts["paths"]) if explicit and not opts["no_db"] else None)
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
                settings=audit_settings(options, opts["context_file"]),
                command=shlex.join(["audit", *sys.argv[2:]])[:2000],
                progress=lambda items, label, n: progress(items, label, quiet, n), executor=executor)
    except LockHeld as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    except StoreError as exc:
        warn(f"error: {exc} (choose another store with --db, or run without one with --no-db)")
        sys.exit(Exit.CANNOT_RUN)
    except OSError as exc:  # the lock file cannot be created
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    note = (f"; {outcome.audited} audited, {outcome.skipped} unchanged (skipped) in {outcome.seconds:.1f} s"
            f" -> {store.target}")
    return outcome.results, note


def _audit_on_cluster(opts: dict[str, Any], options: Any, files: list[str]) -> tuple[list[Any], str]:
    """``audit --scheduler``: the same run (results store included) with headers read and studies audited
    on a Dask cluster; exit 2 without dask or with a bad address, 3 when the cluster cannot run it."""
    from protocolcheck.jobs.cluster import BadAddress, ClusterError, ClusterExecutor, ClusterStats, DaskMissing

    quiet = opts["quiet"]
    stats: list[ClusterStats] = []
    try:
        with ClusterExecutor.connect(opts["scheduler"]) as executor:
            def plain() -> list[Any]:
                return list(progress(executor.audit_files(files, options, stats), "Auditing on the cluster", quiet))

            results, note = _audit_with_store(opts, options, files, plain, executor=executor)
            workers, threads = executor.workers()
    except (DaskMissing, BadAddress) as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.USAGE)
    except ClusterError as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    line = f"cluster {opts['scheduler']}: {workers} workers ({threads} threads)"
    for s in stats:
        line += f" read {s.files} files ({s.unreadable} unreadable, {s.skipped} skipped), audited {s.studies} studies"
    warn(line, quiet)
    return results, note


# --- protocols: inspect and validate the library --------------------------------------------------


@main.group()
def protocols() -> None:
    """Inspect and validate the protocol library (one YAML file per protocol)."""


@protocols.command("list")
@library_option()
@format_option
@output_option
def protocols_list(library_dir: str | None, fmt: str | None, output: str | None) -> None:
    """The protocols in the library: id, title, modality, version, status."""
    library = _library_or_exit(library_dir)
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
    protocol = _protocol_or_exit(_library_or_exit(library_dir), protocol_id)
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


# --- recommend and check-order: the clinical scenario ---------------------------------------------


def scenario_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The clinical scenario options shared by ``recommend`` and ``check-order`` (DESIGN.md section 3)."""
    f = _apply(f, [
        click.option("--indication", default=None, metavar="TEXT",
                     help="Free text and/or ICD-10-CM codes, e.g. 'piriformis syndrome G57.01'."),
        click.option("--trauma-date", callback=_day_option, metavar="DATE", help="Date of the injury (YYYY-MM-DD)."),
        click.option("--mri-contraindicated", is_flag=True, default=None,
                     help="MRI is contraindicated (e.g. a non-MR-conditional implant)."),
        click.option("--gadolinium-contraindicated", is_flag=True, default=None,
                     help="Gadolinium contrast is contraindicated (e.g. prior reaction)."),
        click.option("--iodinated-contrast-contraindicated", is_flag=True, default=None,
                     help="Iodinated (CT) contrast is contraindicated."),
        click.option("--egfr", type=float, default=None, metavar="N", help="eGFR in mL/min/1.73 m2."),
        click.option("--dermatomal", is_flag=True, default=None, help="Symptoms follow a single dermatome."),
        click.option("--known-malignancy", is_flag=True, default=None, help="Known malignancy."),
        click.option("--prior-radiation", is_flag=True, default=None, help="Prior radiation therapy to the region."),
        click.option("--context", "context_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Context CSV; with --accession, the scenario comes from that row (options override it)."),
        click.option("--accession", default=None, metavar="N", help="Accession number of the row in --context."),
        click.option("--rules", "rules_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Decision rules file (default: rules.yaml of --library, $PROTOCOLCHECK_LIBRARY, or shipped)."),
        library_option(RULES_LIBRARY_HELP),
        click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None,
                     help="Output format (default: table on a terminal, json otherwise)."),
    ])
    return output_option(quiet_option(f))


def _scenario(opts: dict[str, Any]) -> tuple[Any, Any]:
    """(ClinicalContext, Rules) from the options; exits 2 with a clear message when they are unusable."""
    from protocolcheck.clinical.context import ClinicalContext
    from protocolcheck.clinical.recommend import default_rules_path

    rules = _rules_or_exit(opts["rules_file"] or default_rules_path(opts["library_dir"]))
    given = ClinicalContext(
        indication=opts["indication"] or "", trauma_date=opts["trauma_date"],
        mri_contraindicated=opts["mri_contraindicated"] or None,
        gadolinium_contraindicated=opts["gadolinium_contraindicated"] or None,
        iodinated_contrast_contraindicated=opts["iodinated_contrast_contraindicated"] or None,
        egfr=opts["egfr"], dermatomal=opts["dermatomal"] or None, known_malignancy=opts["known_malignancy"] or None,
        prior_radiation=opts["prior_radiation"] or None, source="options")
    if bool(opts["context_file"]) != bool(opts["accession"]):
        warn("error: --context FILE and --accession N go together")
        sys.exit(Exit.USAGE)
    if opts["context_file"]:
        table = _context_table_or_exit(opts["context_file"], opts["quiet"])
        row = table.lookup(accession_number=opts["accession"])
        if row is None:
            warn(f"error: accession {opts['accession']!r} is not in {opts['context_file']}")
            sys.exit(Exit.USAGE)
        given = row.merged(given)
    return given, rules


@main.command()
@scenario_options
@click.option("--on", "on", callback=_day_option, metavar="DATE", help="Date the exam would be done (default: today).")
def recommend(**opts: Any) -> None:
    """Which exam and protocol to order for suspected lumbosacral plexopathy, when, and what goes with it."""
    from protocolcheck.clinical.recommend import ScenarioError
    from protocolcheck.clinical.recommend import recommend as run_recommend

    context, rules = _scenario(opts)
    try:
        result = run_recommend(context, on=opts["on"], rules=rules)
    except ScenarioError as exc:
        warn("error: " + "\n  ".join(exc.problems))
        sys.exit(Exit.USAGE)
    form = resolve_format(opts["fmt"], opts["output"])
    emit(to_json(result.to_dict()) if form is OutputFormat.JSON else render.format_recommendation(result),
         opts["output"])
    for note in result.scenario.notes:
        warn("note: " + note, opts["quiet"])
    sys.exit(Exit.OK)


@main.command("check-order")
@click.option("--procedure", default="", metavar="TEXT", help="Ordered procedure description, e.g. 'MRI pelvis w/o'.")
@click.option("--procedure-code", default="", metavar="CODE", help="Ordered procedure code (CPT), e.g. 72197.")
@click.option("--scheduled", callback=_day_option, metavar="DATE", help="Scheduled date (default: today).")
@fail_on_option
@scenario_options
def check_order_command(**opts: Any) -> None:
    """Is this order (or scheduled exam) the right exam and protocol, at the right time?"""
    from protocolcheck.clinical.recommend import check_order

    if not opts["procedure"] and not opts["procedure_code"]:
        warn("error: give --procedure TEXT and/or --procedure-code CODE")
        sys.exit(Exit.USAGE)
    context, rules = _scenario(opts)
    result = check_order(opts["procedure"], context, opts["procedure_code"], opts["scheduled"], rules=rules)
    form = resolve_format(opts["fmt"], opts["output"])
    emit(to_json(result.to_dict(rules)) if form is OutputFormat.JSON else render.format_order_check(result),
         opts["output"])
    if result.problems:
        warn("error: " + "\n  ".join(result.problems))
        sys.exit(Exit.USAGE)
    worst = max((f.severity.rank for f in result.findings), default=-1)
    sys.exit(Exit.FINDINGS if worst >= _fail_threshold(opts["fail_on"]) else Exit.OK)


# --- network roles: worklist, listen, query -------------------------------------------------------


def net_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """HOST PORT --called-aet [--calling-aet] [--timeout] shared by the DICOM client commands."""
    return _apply(f, [
        click.argument("host"),
        click.argument("port", type=click.IntRange(1, 65535)),
        click.option("--called-aet", required=True, metavar="AET", help="AE title of the peer."),
        click.option("--calling-aet", default="PROTOCOLCHECK", show_default=True, metavar="AET",
                     help="Our AE title (must be configured on the peer)."),
        click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True, metavar="SECONDS",
                     help="Network, association and reply timeout."),
        click.option("--tls", is_flag=True, help="Use DICOM TLS (implied by the other --tls-* options)."),
        click.option("--tls-ca", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="PEM file of the CA certificates trusted for the peer's certificate (default: the system's)."),
        click.option("--tls-cert", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Our certificate (PEM), for peers that require client certificates."),
        click.option("--tls-key", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="The private key (PEM) of --tls-cert."),
        click.option("-v", "--verbose", is_flag=True, help="Also log pynetdicom's messages."),
    ])


def _tls_options(opts: dict[str, Any], *, server: bool = False) -> Any:
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


def _net_logging(quiet: bool, verbose: bool = False) -> None:
    """Network progress and refusals as log lines on stderr (pynetdicom's own only with -v)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    ours = logging.getLogger("protocolcheck")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.WARNING if quiet else logging.INFO)
    ours.propagate = False
    theirs = logging.getLogger("pynetdicom")
    theirs.handlers[:] = [handler] if verbose else [logging.NullHandler()]
    theirs.setLevel(logging.INFO if verbose else logging.CRITICAL)
    theirs.propagate = False


def _peer(opts: dict[str, Any]) -> Any:
    from protocolcheck.net.common import Peer, validate_aet

    try:
        return Peer(opts["host"], opts["port"], validate_aet(opts["called_aet"], "--called-aet"),
                    validate_aet(opts["calling_aet"], "--calling-aet"), tls=_tls_options(opts))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _timeouts(seconds: float) -> Any:
    from protocolcheck.net.common import Timeouts

    return Timeouts(connect=min(seconds, 10.0), acse=seconds, dimse=seconds, network=seconds)


def _date_range(_ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    from protocolcheck.net.common import validate_date_range

    if not value:
        return ""
    try:
        return validate_date_range(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command()
@net_options
@click.option("--station-aet", default="", metavar="AET", help="Scheduled Station AE Title to match.")
@click.option("--date", "date", callback=_date_range, metavar="RANGE",
              help="Scheduled date or range: YYYYMMDD or YYYYMMDD-YYYYMMDD (default: any).")
@click.option("--modality", default="", metavar="MOD", help="Modality to match, e.g. MR.")
@click.option("--context", "context_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Context CSV keyed by accession number; its values override the worklist's own fields.")
@library_option(RULES_LIBRARY_HELP)
@fail_on_option
@format_option
@output_option
@quiet_option
def worklist(**opts: Any) -> None:
    """Check every scheduled procedure step on a modality worklist: right exam, right time, which protocol.

    The indication and trauma date come from the context CSV row of the accession number, else from
    the worklist item (Reason for the Requested Procedure, Admitting Diagnoses, Requested Procedure
    Comments; a date next to "trauma", "injury", "fall"... is the trauma date).
    """
    from protocolcheck.clinical.recommend import check_order, default_rules_path
    from protocolcheck.net.common import NetError
    from protocolcheck.net.mwl import WorklistQuery, find_worklist, order_context

    _net_logging(opts["quiet"], opts["verbose"])
    peer = _peer(opts)
    rules = _rules_or_exit(default_rules_path(opts["library_dir"]))
    table = _context_table_or_exit(opts["context_file"], opts["quiet"]) if opts["context_file"] else None
    query = WorklistQuery(station_aet=opts["station_aet"], modality=opts["modality"], date=opts["date"])
    try:
        items = find_worklist(peer, query, _timeouts(opts["timeout"]))
    except NetError as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    records = []
    worst = -1
    for item in items:
        context = order_context(item, table)
        check = check_order(item.procedure, context, item.procedure_code, item.scheduled, rules=rules)
        record = {**item.to_dict(), "indication": context.indication,
                  "trauma_date": context.trauma_date.isoformat() if context.trauma_date else None,
                  "context_source": context.source, **check.to_dict(rules)}
        record["scheduled_date"] = item.to_dict()["scheduled_date"]
        records.append(record)
        worst = max([worst] + [f.severity.rank for f in check.findings])
        for problem in check.problems:
            warn(f"accession {item.accession_number or '-'}: {problem}", opts["quiet"])
    form = resolve_format(opts["fmt"], opts["output"])
    emit(render.as_text(form.value, records, render.worklist_csv, render.worklist_table), opts["output"])
    if table is not None:
        for key in table.unused():
            warn(f"note: context row for {key} matched no worklist item", opts["quiet"])
    warn(f"{len(records)} scheduled procedure steps checked on {peer}", opts["quiet"])
    sys.exit(Exit.FINDINGS if worst >= _fail_threshold(opts["fail_on"]) else Exit.OK)


def net_audit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The audit options of ``listen`` and ``query`` (the same as ``audit``), plus the results store."""
    return _apply(f, [
        audit_context_options, library_option(), series_output_options,
        click.option("--db", "db", default=None, metavar="PATH|URL",
                     help="Also save each audit in this results store (SQLite file or SQLAlchemy URL; "
                          "default: $PROTOCOLCHECK_DB, else ~/.local/share/protocolcheck/results.db)."),
        click.option("--no-db", is_flag=True, help="Do not save audits in a results store."),
    ])


def _folder_auditor(opts: dict[str, Any], source: str) -> Any:
    """``listen``'s and ``query``'s auditor (:class:`jobs.FolderAuditor`) from the net audit options;
    exit 2 when the audit options are unusable, 3 when the results store is."""
    from protocolcheck.jobs.incremental import FolderAuditor

    options = _audit_options(opts, warnings_quiet=opts["quiet"])
    if opts["no_db"]:
        return FolderAuditor(options, source=source)
    from protocolcheck.clinical.library import library_path
    from protocolcheck.jobs.store import (
        Store,
        StoreError,
        default_store_path,
        file_digest,
        library_version,
        settings_digest,
    )

    try:
        store = Store.open(opts["db"] or str(default_store_path()), keep_patient=opts.get("include_patient", False))
    except StoreError as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    settings = settings_digest(
        protocol=opts["protocol_id"], trauma_date=opts["trauma_date"], indication=opts["indication"],
        mri_contraindicated=opts["mri_contraindicated"], dermatomal=opts["dermatomal"],
        gadolinium_contraindicated=opts["gadolinium_contraindicated"], context=file_digest(opts["context_file"]))
    return FolderAuditor(options, store, library_version=library_version(library_path(opts["library_dir"])),
                         settings=settings, source=source)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), required=True, help="TCP port to listen on.")
@click.option("--bind", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--aet", default="PROTOCOLCHECK", show_default=True, metavar="AET", help="Our AE title.")
@click.option("--allow-aet", "allowed", multiple=True, metavar="AET",
              help="Accept associations only from this calling AE title (repeatable; default: any).")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="IP[/BITS]",
              help="Accept connections only from this address or network, e.g. 10.1.2.3 or 10.1.2.0/24 "
                   "(repeatable; default: any).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Serve DICOM TLS with this certificate (PEM); needs --tls-key. Plain connections are refused.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="The private key (PEM) of --tls-cert.")
@click.option("--tls-ca", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="CA certificates (PEM) to verify client certificates with.")
@click.option("--tls-require-client-cert", is_flag=True,
              help="Refuse TLS clients without a certificate signed by --tls-ca.")
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for received instances: DIR/<study>/<series>/<instance>.dcm.")
@click.option("--idle", type=click.FloatRange(0, 86400), default=30.0, show_default=True, metavar="SECONDS",
              help="A study is audited when no instance of it has arrived for this long (again if more arrive).")
@click.option("--output", "jsonl", type=click.Path(dir_okay=False), default=None, metavar="FILE.jsonl",
              help="Append one audit record per completed study to this JSON-lines file (default: stdout).")
@net_audit_options
@click.option("-v", "--verbose", is_flag=True, help="Also log pynetdicom's messages.")
@quiet_option
def listen(**opts: Any) -> None:
    """Storage SCP: receive studies over DICOM, store them, and audit each study once it is complete.

    Each instance is written to disk (atomically) before success is returned; an instance that
    cannot be decoded or stored gets a failure status, a log line and a line in DIR/.rejected.jsonl.
    SIGTERM or Ctrl-C: stop accepting, finish running associations, audit what is pending, exit 0.
    Studies received by an earlier run but never audited are audited at start. A full disk is
    answered 0xA700 (out of resources) and the SCP goes on. --allow-host closes connections from
    other addresses unread; --tls-cert/--tls-key serve DICOM TLS only (TLS 1.2+).
    """
    import os
    import threading
    from pathlib import Path

    from protocolcheck.net.common import parse_networks, validate_aet
    from protocolcheck.net.scp import ListenConfig, StorageSCP, wait_for_signal

    _net_logging(opts["quiet"], opts["verbose"])
    try:
        aet = validate_aet(opts["aet"], "--aet")
        allowed = tuple(validate_aet(a, "--allow-aet") for a in opts["allowed"])
        hosts = tuple(str(n) for n in parse_networks(opts["allowed_hosts"], "--allow-host"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if (opts["tls_ca"] or opts["tls_require_client_cert"]) and not opts["tls_cert"]:
        raise click.UsageError("--tls-ca and --tls-require-client-cert need --tls-cert and --tls-key")
    tls = _tls_options({**opts, "tls": bool(opts["tls_cert"] or opts["tls_key"])}, server=True)
    auditor = _folder_auditor(opts, "listen")
    lock = threading.Lock()
    out = None
    if opts["jsonl"]:
        try:
            out = open(opts["jsonl"], "a", encoding="utf-8")
        except OSError as exc:
            warn(f"error: cannot write {opts['jsonl']}: {exc.strerror or exc}")
            sys.exit(Exit.CANNOT_RUN)
    audited = [0]

    def on_study(folder: Path) -> None:
        results = auditor.audit(folder)
        with lock:
            for result in results:
                line = render.json_line(result.to_dict(include_patient=opts["include_patient"]))
                if out is not None:
                    out.write(line + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                else:
                    click.echo(line)
                audited[0] += 1
                warn("audited " + render.describe(result), opts["quiet"])
        auditor.save(folder, results)  # after the output, so a store failure loses no record

    config = ListenConfig(store=Path(opts["store_dir"]), port=opts["port"], bind=opts["bind"], aet=aet,
                          allowed_aets=allowed, idle=opts["idle"], allowed_hosts=hosts, tls=tls)
    scp = StorageSCP(config, on_study)
    try:
        scp.start()
    except OSError as exc:
        warn(f"error: cannot listen on {opts['bind']}:{opts['port']} or use {opts['store_dir']}: "
             f"{exc.strerror or exc}")
        sys.exit(Exit.CANNOT_RUN)
    host, port = scp.address
    warn(f"listening as {aet} on {host}:{port}{' with TLS' if tls else ''}; storing in {opts['store_dir']}; "
         f"a study is audited after {opts['idle']:g} s without new instances"
         + (f"; only from {', '.join(allowed)}" if allowed else "")
         + (f"; only from hosts {', '.join(hosts)}" if hosts else ""), opts["quiet"])
    signum = wait_for_signal()
    warn(f"stopping ({'signal ' + str(signum) if signum else 'requested'}): finishing associations, "
         "auditing pending studies", opts["quiet"])
    scp.stop()
    auditor.close()
    if out is not None:
        out.close()
    c = scp.counters
    warn(f"listen: {c.associations} associations, {c.stored} instances stored, {c.refused} refused, "
         f"{c.rejected_associations} associations rejected, {c.refused_connections} connections refused; "
         f"{audited[0]} study audits", opts["quiet"])
    sys.exit(Exit.OK)


@main.command()
@net_options
@click.option("--date", "date", callback=_date_range, metavar="RANGE",
              help="Study date or range: YYYYMMDD or YYYYMMDD-YYYYMMDD.")
@click.option("--modality", default="", metavar="MOD", help="Modality in study, e.g. MR.")
@click.option("--accession", default="", metavar="N", help="Accession number.")
@click.option("--description", default="", metavar="TEXT",
              help="Study description contains TEXT, ignoring case (with * or ?: DICOM wildcard matching by the PACS).")
@click.option("--retrieve", type=click.Choice(["get", "move"]), default="get", show_default=True,
              help="C-GET (nothing to configure on the PACS) or C-MOVE to our own storage SCP.")
@click.option("--move-port", type=click.IntRange(1, 65535), default=None, metavar="N",
              help="Port of our storage SCP for C-MOVE (the PACS must know our AE title, host and this port).")
@click.option("--move-bind", default=None, metavar="ADDR",
              help="Address for that SCP (default: 127.0.0.1 when HOST is local, else 0.0.0.0).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Where the one study being audited is kept (default: the system temp folder).")
@net_audit_options
@fail_on_option
@format_option
@output_option
@quiet_option
def query(**opts: Any) -> None:
    """Audit studies in a PACS: C-FIND by date/modality/accession/description, retrieve each, audit it.

    One study at a time is retrieved into a temporary folder, audited and deleted. Unreachable
    peers, rejected associations and failed retrievals are reported and give exit code 3; the
    other studies are still audited.
    """
    from protocolcheck.audit.engine import Summary, reaches, unmatched_context
    from protocolcheck.jobs.store import StoreError
    from protocolcheck.net.common import NetError
    from protocolcheck.net.qr import RetrieveMethod, StudyQuery, default_move_bind, find_studies, pull_studies

    _net_logging(opts["quiet"], opts["verbose"])
    peer = _peer(opts)
    if opts["retrieve"] == "move" and not opts["move_port"]:
        raise click.UsageError("--retrieve move needs --move-port N (the port the PACS sends the study to)")
    if opts["retrieve"] == "move" and peer.tls is not None and not peer.tls.cert:
        raise click.UsageError("--retrieve move with TLS needs --tls-cert and --tls-key: the PACS connects to our "
                               "storage SCP over TLS (or use --retrieve get)")
    move_bind = opts["move_bind"] if opts["move_bind"] is not None else default_move_bind(peer.host)
    auditor = _folder_auditor(opts, "query")
    timeouts = _timeouts(opts["timeout"])
    study_query = StudyQuery(date=opts["date"], modality=opts["modality"], accession=opts["accession"],
                             description=opts["description"])
    try:
        matches = find_studies(peer, study_query, timeouts)
    except NetError as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    warn(f"{len(matches)} studies match on {peer}", opts["quiet"])
    results: list[Any] = []
    failures: list[str] = []
    pulled_studies = pull_studies(peer, matches, method=RetrieveMethod(opts["retrieve"]),
                                  move_port=opts["move_port"], move_bind=move_bind,
                                  workdir=opts["workdir"], timeouts=timeouts,
                                  move_tls=peer.tls if opts["retrieve"] == "move" else None)
    try:
        for pulled in progress(pulled_studies, "Auditing studies", opts["quiet"], length=len(matches)):
            if pulled.error is not None or pulled.folder is None:
                failures.append(str(pulled.error))
                warn(f"error: {pulled.error}")
                continue
            for note in pulled.notes:
                warn(f"note: {pulled.match.label()}: {note}", opts["quiet"])
            audits = auditor.audit(pulled.folder)
            results.extend(audits)
            try:
                auditor.save(pulled.folder, audits)
            except StoreError as exc:
                failures.append(str(exc))
                warn(f"error: {exc}")
    except NetError as exc:
        failures.append(str(exc))
        warn(f"error: {exc}")
    finally:
        pulled_studies.close()  # deletes the temporary files even when interrupted
        auditor.close()
    form = resolve_format(opts["fmt"], opts["output"])
    records = [r.to_dict(include_patient=opts["include_patient"]) for r in results]
    emit(render.audit_text(records, form.value, empty="(no studies)\n"), opts["output"])  # as ``audit``
    for message in unmatched_context(auditor.options):
        warn("note: " + message, opts["quiet"])
    warn(Summary.of(results).line() + (f"; {len(failures)} not retrieved" if failures else ""), opts["quiet"])
    if failures:
        sys.exit(Exit.CANNOT_RUN)
    sys.exit(Exit.FINDINGS if reaches(results, _fail_severity(opts["fail_on"])) else Exit.OK)


# --- report: HTML and CSV/Parquet from the results store ------------------------------------------


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--db PATH|URL``: the results store (SQLite file by default, or a SQLAlchemy URL)."""
    return click.option(
        "--db", "db", default=None, metavar="PATH|URL",
        help="Results store: a SQLite file or a SQLAlchemy URL (default: $PROTOCOLCHECK_DB, else "
             "~/.local/share/protocolcheck/results.db).",
    )(f)


def _iso_day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if not value:
        return None
    from protocolcheck.jobs.store import parse_dicom_date

    day = parse_dicom_date(value)
    if day is None:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)")
    return day


@main.command()
@db_option
@click.option("--since", callback=_iso_day, metavar="DATE", help="Studies on or after DATE (study date).")
@click.option("--until", callback=_iso_day, metavar="DATE", help="Studies on or before DATE.")
@click.option("--protocol", "protocols", multiple=True, metavar="ID", help="Only this protocol (repeatable).")
@click.option("--station", "stations", multiple=True, metavar="TEXT", help="Station name contains TEXT (repeatable).")
@click.option("--scanner", "scanners", multiple=True, metavar="TEXT", help="Manufacturer contains TEXT (repeatable).")
@click.option("--institution", "institutions", multiple=True, metavar="TEXT", help="Institution contains TEXT.")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["pass", "warn", "fail", "no-protocol", "error"]), help="Only this status (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the HTML report to FILE (default: stdout, unless only --csv/--parquet are given).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also export the table as CSV.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False), default=None,
              help="Also export the table as Parquet (needs pyarrow).")
@click.option("--include-patient", is_flag=True, help="Show patient names and IDs (hidden by default).")
@click.option("--title", default="Protocol compliance report", show_default=True, help="Report title.")
@quiet_option
def report(db: str | None, since: Any, until: Any, protocols: tuple[str, ...], stations: tuple[str, ...],
           scanners: tuple[str, ...], institutions: tuple[str, ...], statuses: tuple[str, ...], output: str | None,
           csv_path: str | None, parquet_path: str | None, include_patient: bool, title: str, quiet: bool) -> None:
    """Write an HTML report (and CSV/Parquet exports) of the latest stored audit of each study."""
    import importlib.util

    from protocolcheck.jobs.store import Filters, Store, StoreError, StoreMissing, default_store_path
    from protocolcheck.report.html import export_frame, render_html

    if parquet_path and importlib.util.find_spec("pyarrow") is None:
        warn("error: --parquet needs pyarrow (pip install pyarrow, or pip install 'protocolcheck[parquet]')")
        sys.exit(Exit.USAGE)
    filters = Filters(since=since, until=until, protocols=protocols, stations=stations, scanners=scanners,
                      institutions=institutions, statuses=statuses)
    target = db or str(default_store_path())
    try:
        with Store.open(target, readonly=True) as store:
            audits = store.latest(filters, include_patient=include_patient)
            findings = store.findings(audits["id"])
            source = store.target
    except StoreMissing as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.USAGE)
    except StoreError as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.CANNOT_RUN)
    written = []
    try:
        if csv_path or parquet_path:
            table = export_frame(audits, findings, include_patient=include_patient)
            if csv_path:
                table.to_csv(csv_path, index=False)
                written.append(csv_path)
            if parquet_path:
                table.to_parquet(parquet_path, index=False)
                written.append(parquet_path)
        if output or not (csv_path or parquet_path):
            page = render_html(audits, findings, title=title, source=source, filters=filters.describe(),
                               include_patient=include_patient)
            emit(page, output)
            written.append(output or "stdout")
    except OSError as exc:
        warn(f"error: cannot write {exc.filename or 'output'}: {exc.strerror or exc}")
        sys.exit(Exit.CANNOT_RUN)
    counts = audits["status"].value_counts()
    detail = ", ".join(f"{int(counts[s])} {s}" for s in ("pass", "warn", "fail", "no-protocol", "error") if s in counts)
    warn(f"report: {len(audits)} studies" + (f" ({detail})" if detail else "") + " -> " + ", ".join(written), quiet)
    sys.exit(Exit.OK)


if __name__ == "__main__":  # pragma: no cover
    main()
