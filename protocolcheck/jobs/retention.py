"""Retention of the ``listen`` store folder: remove received instances once audited and old enough.

The storage SCP writes ``STORE/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` and keeps a ``.pending``
marker in a study's folder from its first instance until the study has been handed over and audited
(:class:`~protocolcheck.net.scp.StudyTracker` removes it only after the audit returned). A study
folder is removed when

- it has no ``.pending`` marker (audited, nothing arrived since),
- its newest file (the last instance received) is older than the retention period, and
- with a results store, the store holds an audit of the study (the results stay there; only the
  received files go).

A folder is first renamed out of the way (``.pruning-<name>``, atomic), then checked again: a file that
arrived in the meantime (new mtime, or a ``.pending`` marker) puts everything back. Only then is it
deleted. The store's file index forgets the removed files.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from protocolcheck.jobs.store import Store, audits_table
from protocolcheck.net.instances import PENDING_MARKER

LOG = logging.getLogger("protocolcheck.jobs.retention")
PRUNING_PREFIX = ".pruning-"
PRUNE_INTERVAL_S = 3600.0


class KeptReason:
    """Why a study folder was kept (the words of the prune summary)."""

    PENDING = "pending"  # received, not yet audited (or more arrived since)
    RECENT = "recent"  # its last instance is newer than the retention period
    NOT_AUDITED = "not in the results store"
    BUSY = "an instance arrived while pruning"


@dataclass
class PruneResult:
    """What a prune did: studies removed (with files and bytes) and studies kept, by reason."""

    removed: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    kept: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def keep(self, reason: str, study: str) -> None:
        self.kept.setdefault(reason, []).append(study)

    def summary(self) -> str:
        kept = ", ".join(f"{len(v)} {k}" for k, v in sorted(self.kept.items())) or "none"
        return (f"{len(self.removed)} studies removed ({self.files} files, {self.bytes / 2**20:.1f} MB); "
                f"kept: {kept}" + (f"; {len(self.errors)} errors" if self.errors else ""))


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _newest(files: Iterable[Path]) -> float:
    return max((p.stat().st_mtime for p in files), default=0.0)


def audited_studies(store: Store, study_uids: Iterable[str]) -> set[str]:
    """The studies among these that have an audit in the results store."""
    uids = list(dict.fromkeys(study_uids))
    found: set[str] = set()
    with store.engine.connect() as conn:
        for start in range(0, len(uids), 500):
            chunk = uids[start:start + 500]
            query = select(audits_table.c.study_instance_uid).where(
                audits_table.c.study_instance_uid.in_(chunk)).distinct()
            found.update(str(uid) for (uid,) in conn.execute(query))
    return found


def _restore(source: Path, target: Path) -> None:
    """Move everything under ``source`` back to ``target`` (merging: ``target`` may exist again)."""
    if not target.exists():
        os.replace(source, target)
        return
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    shutil.rmtree(source, ignore_errors=True)


def _candidates(root: Path, cutoff: float, result: PruneResult,
                skip: Callable[[], Iterable[str]]) -> list[tuple[Path, list[Path]]]:
    busy = set(skip())
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in busy or (folder / PENDING_MARKER).exists():
            result.keep(KeptReason.PENDING, folder.name)
            continue
        files = _files(folder)
        if _newest(files) > cutoff:
            result.keep(KeptReason.RECENT, folder.name)
            continue
        found.append((folder, files))
    return found


def prune(root: str | os.PathLike[str], older_than_days: float, store: Store | None = None, *,
          now: float | None = None, skip: Callable[[], Iterable[str]] = tuple, dry_run: bool = False) -> PruneResult:
    """Remove the study folders under ``root`` that were audited and whose last instance is older than
    ``older_than_days`` (see the module docstring); ``skip()`` names studies in use (the running
    ``listen``'s pending studies); ``dry_run`` removes nothing (``removed`` names what would go).
    Never raises for one folder: its error is in ``errors``."""
    base = Path(root)
    result = PruneResult()
    if not base.is_dir():
        raise FileNotFoundError(f"no store folder at {base}")
    for leftover in () if dry_run else base.glob(f"{PRUNING_PREFIX}*"):  # interrupted between rename and delete
        shutil.rmtree(leftover, ignore_errors=True)
    cutoff = (now if now is not None else time.time()) - older_than_days * 86400
    candidates = _candidates(base, cutoff, result, skip)
    audited = audited_studies(store, [f.name for f, _ in candidates]) if store is not None else None
    gone: list[str] = []
    for folder, files in candidates:
        if audited is not None and folder.name not in audited:
            result.keep(KeptReason.NOT_AUDITED, folder.name)
            continue
        if dry_run:
            result.removed.append(folder.name)
            result.files += len(files)
            result.bytes += sum(p.stat().st_size for p in files)
            continue
        aside = base / f"{PRUNING_PREFIX}{folder.name}"
        try:
            os.replace(folder, aside)
            moved = _files(aside)
            if (aside / PENDING_MARKER).exists() or _newest(moved) > cutoff or len(moved) != len(files):
                _restore(aside, folder)
                result.keep(KeptReason.BUSY, folder.name)
                continue
            size = sum(p.stat().st_size for p in moved)
            shutil.rmtree(aside)
        except OSError as exc:
            result.errors.append(f"{folder}: {exc.strerror or exc}")
            LOG.error("cannot prune %s: %s", folder, exc.strerror or exc)
            continue
        result.removed.append(folder.name)
        result.files += len(moved)
        result.bytes += size
        gone += [str(folder / p.relative_to(aside)) for p in moved]
    if store is not None and gone:
        store.forget_files(gone)
    return result


class Pruner:
    """``listen --retain-days``: :func:`prune` at start and then every ``interval`` seconds on its own
    thread, skipping the studies the running listen still tracks; a failed prune is logged, never fatal."""

    def __init__(self, root: Path, days: float, store_target: str | None, *,
                 skip: Callable[[], Iterable[str]] = tuple, interval: float = PRUNE_INTERVAL_S,
                 report: Callable[[str], None] = LOG.info) -> None:
        self.root, self.days, self.store_target = root, days, store_target
        self.skip, self.interval, self.report = skip, interval, report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="protocolcheck-prune", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)

    def once(self) -> PruneResult:
        store = Store.open(self.store_target) if self.store_target else None
        try:
            return prune(self.root, self.days, store, skip=self.skip)
        finally:
            if store is not None:
                store.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.once()
                self.runs += 1
                stamp = dt.datetime.now().strftime("%H:%M:%S")
                self.report(f"prune ({stamp}, older than {self.days:g} days): {result.summary()}")
            except Exception as exc:  # noqa: BLE001 - retention must never stop the receiver
                LOG.error("prune of %s failed: %s", self.root, exc)
            self._stop.wait(self.interval)
