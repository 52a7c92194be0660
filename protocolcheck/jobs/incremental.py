"""Scheduled-job plumbing: a lock so two runs of one job never overlap, and incremental runs.

Incremental runs: the store keeps a stat index of every file seen (path, size, mtime). A re-run stats
the files under the given folders, parses only new or changed files, and works out each study's
*fingerprint* (its instances' UIDs, sizes and mtimes, plus the audit settings). A study whose latest
stored audit has the same fingerprint and protocol-library version is skipped without reading its
headers; the others are read and handed back for auditing. ``force`` audits everything again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from protocolcheck.audit.engine import AuditOptions, audit_paths, audit_study, orphan_results
from protocolcheck.audit.streaming import MAX_IN_MEMORY, StudyStream, attach_unreadable
from protocolcheck.clinical.findings import AuditResult
from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import iter_files, scan_files, unlistable_folder
from protocolcheck.dicom.study import group_studies
from protocolcheck.errors import RunError
from protocolcheck.jobs.fingerprint import fingerprint, instance_fingerprint
from protocolcheck.jobs.store import FileEntry, FileKind, Store, describe_target, sqlite_path

# progress(items, label, length) -> items: the CLI passes its progress bar; the default is silent.
Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


def _silent(items: Iterable[Any], _label: str, _length: int) -> Iterable[Any]:
    return items


# -- job lock ------------------------------------------------------------------------------------


class LockHeld(RunError, RuntimeError):
    """Another run holds the job lock (the CLI exits 3)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"another run holds the lock ({who}): {path}")


class JobLock:
    """An exclusive, non-blocking ``flock`` on a lock file; the holder's pid is written into it.

    The kernel drops the lock when the process ends, so a crashed run never leaves a stale lock.
    The file itself is left in place (deleting lock files races with the next run).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None

    def acquire(self) -> JobLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the lock is held
        except OSError as exc:
            raise OSError(f"cannot create lock file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                fh.close()
                raise
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            raise LockHeld(self.path, int(text) if text.isdigit() else None) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            try:
                self._fh.seek(0)
                self._fh.truncate()
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def default_lock_path(db_target: str | os.PathLike[str], paths: Iterable[str | os.PathLike[str]]) -> Path:
    """The lock of "this job": one per store and set of inputs, beside a SQLite store (else in /tmp).

    Keyed on real paths (links and ``..`` resolved, relative names made absolute), so ``qa.db`` and
    ``$PWD/qa.db``, or a folder and a link to it, are the same job; a store URL of another database
    counts by its text (password hidden)."""
    db_file = sqlite_path(db_target)
    store_key = os.path.realpath(db_file) if db_file is not None else describe_target(db_target)
    key = "\n".join([store_key] + sorted(os.path.realpath(os.fspath(p)) for p in paths))
    tag = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    if db_file is not None:
        real = Path(os.path.realpath(db_file))
        return real.with_name(f"{real.name}.audit-{tag}.lock")
    return Path(tempfile.gettempdir()) / f"protocolcheck-audit-{tag}.lock"


# -- incremental planning ------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyWork:
    """A study to audit now: its headers (all files read) and the fingerprint to store with it."""

    study_instance_uid: str
    fingerprint: str
    headers: tuple[InstanceHeader, ...]


@dataclass
class Plan:
    """What an incremental run found: studies to audit, studies already current, problem files."""

    files: int = 0
    parsed: int = 0  # files whose headers were read during planning
    to_audit: list[StudyWork] = field(default_factory=list)
    current: dict[str, int] = field(default_factory=dict)  # study uid -> id of its stored audit
    fingerprints: dict[str, str] = field(default_factory=dict)  # every study found -> fingerprint
    unreadable: list[Unreadable] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unreadable_by_study: dict[str, list[Unreadable]] = field(default_factory=dict)  # in a study's folder
    orphans: list[Unreadable] = field(default_factory=list)  # unreadable files that belong to no study

    @property
    def studies(self) -> int:
        return len(self.fingerprints)


@dataclass
class _FileFacts:
    path: str
    size: int
    mtime_ns: int
    entry: FileEntry | None = None  # the index entry when the file is unchanged


def _stat_files(names: Iterable[str]) -> tuple[list[_FileFacts], list[Unreadable]]:
    facts, gone = [], []
    for name in names:
        path = os.path.abspath(name)
        try:
            st = os.stat(path)
        except OSError as exc:  # a folder iter_files could not list (trailing /) says so
            reason = unlistable_folder(name) if name.endswith(os.sep) else None
            gone.append(Unreadable(path, reason or f"cannot open: {exc.strerror or exc}"))
            continue
        facts.append(_FileFacts(path, st.st_size, st.st_mtime_ns))
    return facts, gone


def _read(paths: list[str], progress: Progress, label: str, workers: int = 1, executor: Any = None) -> Iterator[Any]:
    """scan_files() over these files (in ``workers`` processes, or by ``executor``), with progress."""
    if not paths:
        return
    records = executor.read(paths) if executor is not None else scan_files(paths, workers=workers)
    yield from progress(records, label, len(paths))


class _Planner:
    """The stages of an incremental run: survey (stat + index), read new files, decide, read the rest.

    Reading is a stream of scan records so that a caller can collect headers (:func:`plan_run`) or
    feed them to a bounded-memory study stream (:func:`run_audit_job`).
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]], store: Store, *, library_version: str,
                 settings: str, force: bool, progress: Progress, files: Iterable[str] | None, workers: int,
                 executor: Any) -> None:
        self.store = store
        self.library_version = library_version
        self.settings = settings
        self.force = force
        self.progress = progress
        self.workers = workers
        self.executor = executor
        self.roots = [os.path.abspath(os.fspath(p)) for p in paths]
        facts, gone = _stat_files(iter_files(self.roots) if files is None else files)
        self.facts = facts
        self.plan = Plan(files=len(facts), unreadable=list(gone))
        self.index = store.file_index(self.roots)
        self.fresh: list[str] = []
        for fact in facts:
            entry = self.index.get(fact.path)
            if entry is not None and entry.size == fact.size and entry.mtime_ns == fact.mtime_ns:
                fact.entry = entry
            else:
                self.fresh.append(fact.path)
        self.by_path = {f.path: f for f in facts}
        self.new_entries: dict[str, FileEntry] = {}
        self.files_by_study: dict[str, list[FileEntry]] = {}
        self.dirty: list[str] = []
        self.rest: list[str] = []

    def read_fresh(self) -> Iterator[Any]:
        """Read new and changed files, remembering what each one is."""
        for record in _read(self.fresh, self.progress, "Reading new files", self.workers, self.executor):
            fact = self.by_path[os.path.abspath(record.path)]
            if isinstance(record, InstanceHeader):
                self.new_entries[fact.path] = FileEntry(fact.path, fact.size, fact.mtime_ns, FileKind.IMAGE,
                                                        record.study_instance_uid, record.sop_instance_uid)
            elif isinstance(record, Unreadable):
                self.new_entries[fact.path] = FileEntry(fact.path, fact.size, fact.mtime_ns, FileKind.UNREADABLE,
                                                        reason=record.reason)
            else:
                self.new_entries[fact.path] = FileEntry(fact.path, fact.size, fact.mtime_ns, FileKind.SKIPPED,
                                                        reason=record.reason)
            yield record
        self.plan.parsed = len(self.fresh)

    def decide(self) -> None:
        """Index what was read, fingerprint every study, and split them into current and dirty."""
        plan, store = self.plan, self.store
        store.index_files(self.new_entries.values())
        store.forget_files([p for p in self.index if p not in self.by_path])
        for fact in self.facts:  # every file's entry (unchanged from the index, or just read)
            entry = fact.entry or self.new_entries.get(fact.path)
            if entry is None:
                continue
            if entry.kind is FileKind.IMAGE and entry.study_instance_uid:
                self.files_by_study.setdefault(entry.study_instance_uid, []).append(entry)
            elif entry.kind is FileKind.UNREADABLE:
                plan.unreadable.append(Unreadable(entry.path, entry.reason))
            else:
                plan.skipped.append(Skipped(entry.path, entry.reason))

        # Unreadable files belong to the study in their folder (as the audit engine decides): part of
        # its fingerprint, so a new broken file in a study's folder re-audits that study.
        study_dirs = {uid: {os.path.dirname(e.path) for e in entries} for uid, entries in self.files_by_study.items()}
        attached = attach_unreadable(plan.unreadable, study_dirs)
        plan.orphans.extend(attached.orphans)
        plan.unreadable_by_study.update(attached.by_study)
        for uid in self.files_by_study:
            plan.fingerprints[uid] = self._fingerprint(uid)
        stored = {} if self.force else store.current(plan.fingerprints)
        for uid, fp in plan.fingerprints.items():
            latest = stored.get(uid)
            if latest is not None and latest[0] == fp and latest[1] == self.library_version:
                plan.current[uid] = latest[2]
            else:
                self.dirty.append(uid)
        fresh = set(self.fresh)
        self.rest = [e.path for uid in self.dirty for e in self.files_by_study[uid] if e.path not in fresh]

    def _fingerprint(self, uid: str) -> str:
        """A study's fingerprint: its images (SOP Instance UID, size, mtime) and its unreadable files."""
        entries = self.files_by_study.get(uid, [])
        parts: list[tuple[Any, ...]] = [(e.sop_instance_uid or "", e.size, e.mtime_ns) for e in entries]
        parts += [("unreadable", u.path, u.reason) for u in self.plan.unreadable_by_study.get(uid, ())]
        return fingerprint(parts, self.settings)

    def read_rest(self) -> Iterator[Any]:
        """Dirty studies need all their headers: read their unchanged files too.

        A file indexed as an image that no longer reads (changed in place, size and mtime kept) stays in
        its study: an ``unreadable-file`` finding, part of the study's fingerprint, and indexed as
        unreadable for the next run."""
        for record in _read(self.rest, self.progress, "Reading changed studies", self.workers, self.executor):
            if isinstance(record, Unreadable):
                self._became_unreadable(record)
            yield record
        self.plan.parsed += len(self.rest)

    def _became_unreadable(self, record: Unreadable) -> None:
        plan = self.plan
        path = os.path.abspath(record.path)
        plan.unreadable.append(record)
        fact = self.by_path.get(path)
        entry = fact.entry if fact is not None else None
        uid = entry.study_instance_uid if entry is not None else None
        if fact is None or not uid or uid not in self.files_by_study:
            plan.orphans.append(record)
            return
        self.files_by_study[uid] = [e for e in self.files_by_study[uid] if e.path != path]
        plan.unreadable_by_study.setdefault(uid, []).append(record)
        plan.fingerprints[uid] = self._fingerprint(uid)
        self.store.index_files([FileEntry(path, fact.size, fact.mtime_ns, FileKind.UNREADABLE, reason=record.reason)])

    def headers(self) -> Iterator[InstanceHeader]:
        """Every header to audit, in reading order: the new files' (all), then the rest of dirty studies."""
        for record in self.read_fresh():
            if isinstance(record, InstanceHeader):
                yield record
        self.decide()
        for record in self.read_rest():
            if isinstance(record, InstanceHeader):
                yield record


def plan_run(paths: Iterable[str | os.PathLike[str]], store: Store, *, library_version: str, settings: str = "",
             force: bool = False, progress: Progress = _silent, files: Iterable[str] | None = None,
             workers: int = 1, executor: Any = None) -> Plan:
    """Find the studies under ``paths`` that need auditing, reading as few headers as possible.

    The headers of the studies to audit are collected in memory (:func:`run_audit_job` streams them
    instead). ``files`` is the listing of ``paths`` when the caller already has it. Raises
    FileNotFoundError for a missing path (a usage error for the CLI) and StoreError when the store
    cannot be used.
    """
    planner = _Planner(paths, store, library_version=library_version, settings=settings, force=force,
                       progress=progress, files=files, workers=workers, executor=executor)
    headers_by_study: dict[str, list[InstanceHeader]] = {}
    for header in planner.headers():
        headers_by_study.setdefault(header.study_instance_uid, []).append(header)
    plan = planner.plan
    for uid in planner.dirty:
        plan.to_audit.append(StudyWork(uid, plan.fingerprints[uid], tuple(headers_by_study.get(uid, []))))
    return plan


# -- an incremental audit run ------------------------------------------------------------------


@dataclass
class JobOutcome:
    """What a run did: every study's result (audited now or stored before) and the counts."""

    results: list[AuditResult]
    audited: int
    skipped: int
    files: int
    parsed: int
    seconds: float
    run_id: int
    skipped_files: tuple[str, ...] = ()  # files seen and not audited (not DICOM, not an image)


def _order(result: AuditResult) -> tuple[int, str, str]:
    # as audit.engine.audit_records: studies by Study Instance UID, then records of orphan unreadable files
    return (0 if result.study_instance_uid else 1, result.study_instance_uid, result.study_description)


def run_audit_job(paths: Iterable[str | os.PathLike[str]], store: Store, options: AuditOptions, *,
                  library_version: str, settings: str = "", force: bool = False, command: str = "audit",
                  progress: Progress = _silent, files: Iterable[str] | None = None, workers: int = 1,
                  executor: Any = None, max_in_memory: int | None = None) -> JobOutcome:
    """Audit the studies under ``paths`` that changed since their stored audit; save each (one transaction).

    ``executor`` (e.g. :class:`~protocolcheck.jobs.cluster.ClusterExecutor`) reads headers and audits studies
    elsewhere: ``read(paths)`` yields scan records in file order, ``audit(items, options)`` one result
    per (study, unreadable files) in order.

    Studies that did not change are not read: their stored results are returned instead, so the output
    of a re-run equals that of a full run. Without an executor, headers beyond ``max_in_memory`` are
    spilled to disk (:class:`~protocolcheck.audit.streaming.StudyStream`). The run is recorded in ``audit_runs``.
    """
    started = time.monotonic()
    paths = list(paths)
    run_id = store.begin_run(command, library_version)
    audited = 0
    outcome = "failed"
    try:
        results: list[AuditResult] = []
        if executor is not None:
            plan = plan_run(paths, store, library_version=library_version, settings=settings, force=force,
                            progress=progress, files=files, workers=workers, executor=executor)
            todo = [(study, plan.unreadable_by_study.get(study.study_instance_uid, ()), work.fingerprint)
                    for work in plan.to_audit for study in group_studies(work.headers)]
            done: Iterable[AuditResult] = executor.audit([(study, bad) for study, bad, _fp in todo], options)
            for (_study, _bad, study_fingerprint), result in zip(todo, progress(done, "Auditing", len(todo)),
                                                                   strict=True):
                store.save(result, fingerprint=study_fingerprint, library_version=library_version, run_id=run_id)
                results.append(result)
                audited += 1
        else:
            # Headers go through an external sort by study (streaming.py): bounded memory, one study
            # audited and saved at a time.
            planner = _Planner(paths, store, library_version=library_version, settings=settings, force=force,
                               progress=progress, files=files, workers=workers, executor=None)
            plan = planner.plan
            with StudyStream(planner.headers(), max_in_memory=max_in_memory or MAX_IN_MEMORY) as stream:
                # (a study read only because a file of it was renamed is current: nothing to audit)
                studies = (s for s in stream if s.study_instance_uid not in plan.current)
                for study in progress(studies, "Auditing", len(planner.dirty)):
                    uid = study.study_instance_uid
                    result = audit_study(study, options, plan.unreadable_by_study.get(uid, ()))
                    store.save(result, fingerprint=plan.fingerprints.get(uid, ""), library_version=library_version,
                               run_id=run_id)
                    results.append(result)
                    audited += 1
        stored = store.results(plan.current.values())
        for audit_id in plan.current.values():
            result = stored[audit_id]
            if options.contexts is not None:  # mark its context row as used, as an audit would
                options.contexts.lookup(result.accession_number, result.study_instance_uid)
            results.append(result)
        results.extend(orphan_results(plan.orphans, options))  # files that belong to no study: never stored
        results.sort(key=_order)
        outcome = "ok"
    finally:
        store.finish_run(run_id, audited=audited, skipped=len(plan.current) if outcome == "ok" else 0,
                         outcome=outcome)
    return JobOutcome(results, audited, len(plan.current), plan.files, plan.parsed,
                      time.monotonic() - started, run_id, tuple(s.path for s in plan.skipped))


# -- study folders received over the network ------------------------------------------------------


class FolderAuditor:
    """Audits study folders as ``audit`` does and saves each audit in the results store (when given).

    For ``listen`` and ``query``: a folder holds one received study as ``<series>/<instance>.dcm``;
    its fingerprint is the set of instance UIDs (the file names) plus ``settings``.
    """

    def __init__(self, options: AuditOptions, store: Store | None = None, *, library_version: str = "",
                 settings: str = "", source: str = "") -> None:
        self.options = options
        self.store = store
        self.library_version = library_version
        self.settings = settings
        self.source = source

    def audit(self, folder: str | os.PathLike[str]) -> list[AuditResult]:
        """Audit every study under ``folder`` with the same engine as ``audit``."""
        return list(audit_paths([folder], self.options))

    def save(self, folder: str | os.PathLike[str], results: Iterable[AuditResult]) -> None:
        """Save the audits of ``folder`` in the results store (when there is one); StoreError on failure."""
        if self.store is None:
            return
        sops = [p.stem for p in Path(folder).glob("*/*.dcm")]
        for result in results:
            self.store.save(result, fingerprint=instance_fingerprint(sops, self.settings),
                            library_version=self.library_version, source=self.source)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
