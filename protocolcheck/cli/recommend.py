"""``recommend`` and ``check-order``: the clinical scenario, the exam to order, and whether an order is right."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from protocolcheck.cli.options import (
    RULES_LIBRARY_HELP,
    Exit,
    apply_options,
    day_option,
    emit,
    fail_on_option,
    findings_exit,
    library_option,
    load_context_option,
    load_rules_option,
    output_option,
    quiet_option,
    resolve_format,
    warn,
)
from protocolcheck.report import text as render
from protocolcheck.report.tabular import OutputFormat, to_json

if TYPE_CHECKING:
    from protocolcheck.clinical.context import ClinicalContext
    from protocolcheck.clinical.recommend import Rules


def scenario_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The clinical scenario options shared by ``recommend`` and ``check-order`` ."""
    f = apply_options(f, [
        click.option("--indication", default=None, metavar="TEXT",
                     help="Free text and/or ICD-10-CM codes, e.g. 'piriformis syndrome G57.01'."),
        click.option("--trauma-date", callback=day_option, metavar="DATE", help="Date of the injury (YYYY-MM-DD)."),
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
                     help="Decision rules file (default: rules.yaml of --library, $PROTOCOLCHECK_LIBRARY, "
                          "or shipped)."),
        library_option(RULES_LIBRARY_HELP),
        click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None,
                     help="Output format (default: table on a terminal, json otherwise)."),
    ])
    return output_option(quiet_option(f))


def _scenario(opts: dict[str, Any]) -> tuple[ClinicalContext, Rules]:
    """(ClinicalContext, Rules) from the options; exit 2 with a clear message when they are unusable."""
    from protocolcheck.clinical.context import ClinicalContext
    from protocolcheck.clinical.recommend import default_rules_path

    rules = load_rules_option(opts["rules_file"] or default_rules_path(opts["library_dir"]))
    given = ClinicalContext(
        indication=opts["indication"] or "", trauma_date=opts["trauma_date"],
        mri_contraindicated=opts["mri_contraindicated"] or None,
        gadolinium_contraindicated=opts["gadolinium_contraindicated"] or None,
        iodinated_contrast_contraindicated=opts["iodinated_contrast_contraindicated"] or None,
        egfr=opts["egfr"], dermatomal=opts["dermatomal"] or None, known_malignancy=opts["known_malignancy"] or None,
        prior_radiation=opts["prior_radiation"] or None, source="the request")
    if bool(opts["context_file"]) != bool(opts["accession"]):
        warn("error: --context FILE and --accession N go together")
        sys.exit(Exit.USAGE)
    if opts["context_file"]:
        table = load_context_option(opts["context_file"], opts["quiet"])
        row = table.lookup(accession_number=opts["accession"])
        if row is None:
            warn(f"error: accession {opts['accession']!r} is not in {opts['context_file']}")
            sys.exit(Exit.USAGE)
        given = row.merged(given)
    return given, rules


@click.command()
@scenario_options
@click.option("--on", "on", callback=day_option, metavar="DATE", help="Date the exam would be done (default: today).")
def recommend(**opts: Any) -> None:
    """Which exam and protocol to order for suspected lumbosacral plexopathy, when, and what goes with it."""
    from protocolcheck.clinical.recommend import recommend as run_recommend

    context, rules = _scenario(opts)
    result = run_recommend(context, on=opts["on"], rules=rules)
    form = resolve_format(opts["fmt"], opts["output"])
    emit(to_json(result.to_dict()) if form is OutputFormat.JSON else render.format_recommendation(result),
         opts["output"])
    for note in result.scenario.notes:
        warn("note: " + note, opts["quiet"])
    sys.exit(Exit.OK)


@click.command("check-order")
@click.option("--procedure", default="", metavar="TEXT", help="Ordered procedure description, e.g. 'MRI pelvis w/o'.")
@click.option("--procedure-code", default="", metavar="CODE", help="Ordered procedure code (CPT), e.g. 72197.")
@click.option("--scheduled", callback=day_option, metavar="DATE", help="Scheduled date (default: today).")
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
    sys.exit(findings_exit((f.severity for f in result.findings), opts["fail_on"]))
