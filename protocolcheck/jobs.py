"""Scheduled-job plumbing: a lock so two runs of one job never overlap, and incremental runs.

Incremental runs: the store keeps a stat index of every file seen (path, size, mtime). A re-run stats
the files under the given folders, parses only new or changed files, and works out each study's
*fingerprint* (its instances' UIDs, sizes and mtimes, plus the audit settings). A study whose latest
stored audit has the same fingerprint and protocol-library version is skipped without reading its
headers; the others are read and handed back for auditing. ``force`` audits everything again.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .findings import AuditResult
from .headers import InstanceHeader, Skipped, Unreadable, iter_files, scan
from .store import FileEntry, FileKind, Store, file_digest, fingerprint, settings_digest, sqlite_path
from .study import group_studies

if TYPE_CHECKING:
    from .pipeline import AuditOptions

# progress(items, label, length) -> items: the CLI passes its progress bar; the default is silent.
Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


def _silent(items: Iterable[Any], _label: str, _length: int) -> Iterable[Any]:
    return items


# -- job lock ------------------------------------------------------------------------------------


class LockHeld(RuntimeError):
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

    def acquire(self) -> "JobLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")
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

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def default_lock_path(db_target: str | os.PathLike[str], paths: Iterable[str | os.PathLike[str]]) -> Path:
    """The lock of "this job": one per store and set of folders, beside a SQLite store (else in /tmp)."""
    key = "\n".join([os.fspath(db_target)] + sorted(os.path.abspath(os.fspath(p)) for p in paths))
    tag = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    db_file = sqlite_path(db_target)
    if db_file is not None:
        return db_file.with_name(f"{db_file.name}.audit-{tag}.lock")
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
        except OSError as exc:
            gone.append(Unreadable(path, f"cannot open: {exc.strerror or exc}"))
            continue
        facts.append(_FileFacts(path, st.st_size, st.st_mtime_ns))
    return facts, gone


def _read(paths: list[str], progress: Progress, label: str, workers: int = 1, executor: Any = None) -> Iterator[Any]:
    """scan() over these files (in ``workers`` processes, or by ``executor``), with progress."""
    if not paths:
        return
    records = executor.read(paths) if executor is not None else scan(paths, workers=workers)
    yield from progress(records, label, len(paths))


def plan_run(paths: Iterable[str | os.PathLike[str]], store: Store, *, library_version: str, settings: str = "",
             force: bool = False, progress: Progress = _silent, files: Iterable[str] | None = None,
             workers: int = 1, executor: Any = None) -> Plan:
    """Find the studies under ``paths`` that need auditing, reading as few headers as possible.

    ``files`` is the listing of ``paths`` when the caller already has it. Raises FileNotFoundError for
    a missing path (a usage error for the CLI) and StoreError when the store cannot be used.
    """
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    facts, gone = _stat_files(iter_files(roots) if files is None else files)
    plan = Plan(files=len(facts), unreadable=list(gone))
    index = store.file_index(roots)
    fresh: list[str] = []
    for fact in facts:
        entry = index.get(fact.path)
        if entry is not None and entry.size == fact.size and entry.mtime_ns == fact.mtime_ns:
            fact.entry = entry
        else:
            fresh.append(fact.path)
    by_path = {f.path: f for f in facts}

    # Read new and changed files; remember what each one is.
    headers_by_study: dict[str, list[InstanceHeader]] = {}
    new_entries: dict[str, FileEntry] = {}
    for record in _read(fresh, progress, "Reading new files", workers, executor):
        fact = by_path[os.path.abspath(record.path)]
        if isinstance(record, InstanceHeader):
            headers_by_study.setdefault(record.study_instance_uid, []).append(record)
            new_entries[fact.path] = FileEntry(fact.path, fact.size, fact.mtime_ns, FileKind.IMAGE,
                                               record.study_instance_uid, record.sop_instance_uid)
        elif isinstance(record, Unreadable):
            new_entries[fact.path] = FileEntry(fact.path, fact.size, fact.mtime_ns, FileKind.UNREADABLE,
                                               reason=record.reason)
        else:
            new_entries[fact.path] = FileEntry(fact.path, fact.size, fact.mtime_ns, FileKind.SKIPPED,
                                               reason=record.reason)
    plan.parsed = len(fresh)
    store.index_files(new_entries.values())
    vanished = [p for p in index if p not in by_path]
    store.forget_files(vanished)

    # Every file's entry (unchanged from the index, or just read), grouped by study.
    files_by_study: dict[str, list[FileEntry]] = {}
    for fact in facts:
        entry = fact.entry or new_entries.get(fact.path)
        if entry is None:
            continue
        if entry.kind is FileKind.IMAGE and entry.study_instance_uid:
            files_by_study.setdefault(entry.study_instance_uid, []).append(entry)
        elif entry.kind is FileKind.UNREADABLE:
            plan.unreadable.append(Unreadable(entry.path, entry.reason))
        else:
            plan.skipped.append(Skipped(entry.path, entry.reason))

    # Unreadable files belong to the study in their folder (as the audit engine decides): part of its
    # fingerprint, so a new broken file in a study's folder re-audits that study.
    from .pipeline import _owner_of

    study_dirs = {uid: {os.path.dirname(e.path) for e in entries} for uid, entries in files_by_study.items()}
    for item in plan.unreadable:
        owner = _owner_of(item.path, study_dirs)
        if owner is None:
            plan.orphans.append(item)
        else:
            plan.unreadable_by_study.setdefault(owner, []).append(item)
    for uid, entries in files_by_study.items():
        parts: list[tuple[Any, ...]] = [(e.sop_instance_uid or "", e.size, e.mtime_ns) for e in entries]
        parts += [("unreadable", u.path, u.reason) for u in plan.unreadable_by_study.get(uid, ())]
        plan.fingerprints[uid] = fingerprint(parts, settings)
    stored = {} if force else store.current(plan.fingerprints)
    dirty: list[str] = []
    for uid, fp in plan.fingerprints.items():
        latest = stored.get(uid)
        if latest is not None and latest[0] == fp and latest[1] == library_version:
            plan.current[uid] = latest[2]
        else:
            dirty.append(uid)

    # Dirty studies need all their headers: read the unchanged files of those studies too.
    fresh_set = set(fresh)
    rest = [e.path for uid in dirty for e in files_by_study[uid] if e.path not in fresh_set]
    for record in _read(rest, progress, "Reading changed studies", workers, executor):
        if isinstance(record, InstanceHeader):
            headers_by_study.setdefault(record.study_instance_uid, []).append(record)
        elif isinstance(record, Unreadable):  # changed between stat and read
            plan.unreadable.append(record)
    plan.parsed += len(rest)
    for uid in dirty:
        headers = headers_by_study.get(uid, [])
        # a file may have moved to another study since it was indexed: fingerprint what was read
        plan.to_audit.append(StudyWork(uid, plan.fingerprints[uid], tuple(headers)))
    return plan


# -- an incremental audit run ------------------------------------------------------------------


def audit_settings(options: "AuditOptions", context_file: str | os.PathLike[str] | None = None) -> str:
    """Every audit option that can change a result, as text for the study fingerprint.

    All fields of :class:`AuditOptions` count (so options added later count too) except the library,
    which :func:`store.library_version` covers. Context rows count by content: editing a trauma date
    in the CSV re-audits (every study: cheap, and always right).
    """
    values: dict[str, Any] = {}
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        if item.name == "library":
            continue
        if item.name == "contexts" and value is not None:
            value = {"by_accession": {k: dataclasses.asdict(v) for k, v in sorted(value.by_accession.items())},
                     "by_study_uid": {k: dataclasses.asdict(v) for k, v in sorted(value.by_study_uid.items())}}
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        values[item.name] = value
    if context_file:
        values["context_file"] = file_digest(context_file)
    return settings_digest(**values)


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


def _order(result: AuditResult) -> tuple[int, str, str]:
    # as pipeline.audit_records: studies by Study Instance UID, then records of orphan unreadable files
    return (0 if result.study_instance_uid else 1, result.study_instance_uid, result.study_description)


def run_audit_job(paths: Iterable[str | os.PathLike[str]], store: Store, options: "AuditOptions", *,
                  library_version: str, settings: str = "", force: bool = False, command: str = "audit",
                  progress: Progress = _silent, files: Iterable[str] | None = None, workers: int = 1,
                  executor: Any = None) -> JobOutcome:
    """Audit the studies under ``paths`` that changed since their stored audit; save each (one transaction).

    ``executor`` (e.g. :class:`protocolcheck.cluster.ClusterExecutor`) reads headers and audits studies
    elsewhere: ``read(paths)`` yields scan records in file order, ``audit(items, options)`` one result
    per (study, unreadable files) in order.

    Studies that did not change are not read: their stored results are returned instead, so the output
    of a re-run equals that of a full run. The run is recorded in ``audit_runs``.
    """
    from .pipeline import audit_records, audit_study

    started = time.monotonic()
    paths = list(paths)
    run_id = store.begin_run(command, library_version)
    audited = 0
    outcome = "failed"
    try:
        plan = plan_run(paths, store, library_version=library_version, settings=settings, force=force,
                        progress=progress, files=files, workers=workers, executor=executor)
        results: list[AuditResult] = []
        todo = [(study, plan.unreadable_by_study.get(study.study_instance_uid, ()), work.fingerprint)
                for work in plan.to_audit for study in group_studies(work.headers)]
        if executor is not None:
            done: Iterable[AuditResult] = executor.audit([(study, bad) for study, bad, _fp in todo], options)
        else:
            done = (audit_study(study, options, bad) for study, bad, _fp in todo)
        for (_study, _bad, study_fingerprint), result in zip(todo, progress(done, "Auditing", len(todo)), strict=True):
            store.save(result, fingerprint=study_fingerprint, library_version=library_version, run_id=run_id)
            results.append(result)
            audited += 1
        stored = store.results(plan.current.values())
        for audit_id in plan.current.values():
            result = stored[audit_id]
            if options.contexts is not None:  # mark its context row as used, as an audit would
                options.contexts.lookup(result.accession_number, result.study_instance_uid)
            results.append(result)
        results.extend(audit_records(plan.orphans, options))  # files that belong to no study: never stored
        results.sort(key=_order)
        outcome = "ok"
    finally:
        store.finish_run(run_id, audited=audited, skipped=len(plan.current) if outcome == "ok" else 0,
                         outcome=outcome)
    return JobOutcome(results, audited, len(plan.current), plan.files, plan.parsed,
                      time.monotonic() - started, run_id)
