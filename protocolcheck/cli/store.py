"""``store prune``: remove received instances from a ``listen`` store folder once audited and old enough."""

from __future__ import annotations

import sys

import click

from protocolcheck.cli.options import Exit, quiet_option, warn


def configured_db() -> str | None:
    """The ``db`` of the site configuration's ``[defaults]`` (a subcommand of a group gets no default_map)."""
    from protocolcheck.cli.siteconfig import DEFAULTS_SECTION, SiteConfig

    root = click.get_current_context().find_root().obj
    if not isinstance(root, SiteConfig):
        return None
    found = [s.value for s in root.settings if s.command == DEFAULTS_SECTION and s.key == "db"]
    return str(found[-1]) if found else None


@click.group("store")
def store_group() -> None:
    """The listen store folder: retention."""


@store_group.command("prune")
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="The listen store folder (listen --store DIR).")
@click.option("--older-than", "days", required=True, type=click.FloatRange(0, None), metavar="DAYS",
              help="Remove studies whose last instance arrived more than DAYS days ago.")
@click.option("--db", "db", default=None, metavar="PATH|URL",
              help="The results store that must hold each study's audit (default: $PROTOCOLCHECK_DB, else "
                   "~/.local/share/protocolcheck/results.db).")
@click.option("--no-db", is_flag=True, help="listen ran with --no-db: a study without its .pending marker counts "
                                            "as audited.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@quiet_option
def prune_command(store_dir: str, days: float, db: str | None, no_db: bool, dry_run: bool, quiet: bool) -> None:
    """Remove received studies that were audited and whose last instance is older than DAYS days.

    A study still pending (its .pending marker: not yet audited, or more arrived since), newer than
    DAYS, or (with a results store) without an audit in the store is kept. The audit results stay in
    the results store; only the received files go. Exit 0 done, 2 no such folder or store, 3 a folder
    could not be removed.
    """
    from protocolcheck import config
    from protocolcheck.jobs.retention import prune
    from protocolcheck.jobs.store import Store, StoreError

    store = None
    if not no_db:
        try:
            store = Store.open(config.store_target(db or configured_db()), readonly=dry_run)
        except StoreError as exc:
            warn(f"error: {exc}")
            sys.exit(Exit.USAGE if "no results store" in str(exc) else Exit.CANNOT_RUN)
    try:
        result = prune(store_dir, days, store, dry_run=dry_run)
    except FileNotFoundError as exc:
        warn(f"error: {exc}")
        sys.exit(Exit.USAGE)
    finally:
        if store is not None:
            store.close()
    for name in result.removed:
        warn(f"{'would remove' if dry_run else 'removed'} {name}", quiet)
    for line in result.errors:
        warn(f"error: {line}")
    warn(("dry run: " if dry_run else "") + f"prune {store_dir} (older than {days:g} days): {result.summary()}", quiet)
    sys.exit(Exit.CANNOT_RUN if result.errors else Exit.OK)

