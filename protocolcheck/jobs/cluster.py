"""Run the header scan and the audit on a Dask distributed cluster (``audit --scheduler ADDRESS``).

The results, and their order, are those of the local run. Two ways, one per kind of local run:

* Without a results store (:meth:`ClusterExecutor.audit_files`, :func:`audit_on_cluster`), like
  :func:`~protocolcheck.audit.engine.audit_paths`: the client lists the files
  (:func:`~protocolcheck.dicom.scan.iter_files`) and sends them in chunks to the workers, which read the
  headers and keep them, grouped by study, in worker memory; only a summary per chunk (each study's
  folders, the unreadable files) comes back. The client attaches unreadable files to studies exactly as
  :func:`~protocolcheck.audit.engine.audit_records` does, then submits one audit task per study (Study UID
  order) to the workers holding its headers, and yields the results in that order, then the records of
  unreadable files that belong to no study.
* With the results store (:func:`~protocolcheck.jobs.incremental.run_audit_job` with this executor): the
  client plans the incremental run as usual; :meth:`ClusterExecutor.read` reads the new files on the workers (records
  back in file order) and :meth:`ClusterExecutor.audit` audits the changed studies there, in order.

Workers must run the same protocolcheck code (checked before a run) and see the files at the same
absolute paths (a shared file system). Files are read by absolute path and the records carry the
names as given on the client. The client's ``PROTOCOLCHECK_*`` environment (library, rules, reader)
is applied on the workers, and relative library/rules paths are made absolute (the workers run in
another folder); the one visible trace is a message quoting the rules file path (a rules file that
matches no scenario), which then shows it absolute. Dask is an optional extra:
``pip install 'protocolcheck[dask]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocolcheck import __version__, config
from protocolcheck.audit.engine import AuditOptions, audit_study, orphan_results
from protocolcheck.audit.streaming import attach_unreadable
from protocolcheck.clinical.findings import AuditResult
from protocolcheck.dicom.records import InstanceHeader, ScanRecord, Skipped, Unreadable
from protocolcheck.dicom.scan import iter_files, scan_file
from protocolcheck.dicom.study import Study, group_studies
from protocolcheck.errors import InputError, RunError
from protocolcheck.jobs.fingerprint import source_digest

DEFAULT_CHUNK_SIZE = 256  # files per header-reading task (fewer when there are few files per worker thread)
CHUNKS_PER_THREAD = 4  # aim for at least this many chunks per worker thread, for balance
CONNECT_TIMEOUT = 5.0  # seconds to reach the scheduler
WORKER_TIMEOUT = 30.0  # seconds to wait for a first worker
GATHER_BATCH = 32  # study results fetched per round trip (in order)


class ClusterError(RunError, RuntimeError):
    """The cluster cannot run the audit (scheduler unreachable, no workers, workers unsuitable, lost)."""


class BadAddress(InputError, ValueError):
    """The scheduler address is malformed (a usage error, unlike an unreachable scheduler)."""


class DaskMissing(InputError, ImportError):
    """dask.distributed is not installed (it is the optional extra ``protocolcheck[dask]``)."""


# --------------------------------------------------------------------------------------------------
# what travels between client and workers


@dataclass(frozen=True)
class ChunkRecords:
    """The header records of one chunk of files, kept on the worker that read them."""

    by_study: dict[str, list[InstanceHeader]]  # Study UID -> headers, in file order
    unreadable: tuple[Unreadable, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class ChunkSummary:
    """What the client needs of a chunk to plan the audit: the folders of each study, the bad files."""

    study_dirs: dict[str, frozenset[str]]  # Study UID -> absolute folders holding its files
    unreadable: tuple[Unreadable, ...]
    skipped: int


@dataclass(frozen=True)
class ClusterStats:
    """Counts of one cluster run (for the progress line on stderr)."""

    files: int = 0
    studies: int = 0
    unreadable: int = 0
    skipped: int = 0
    workers: int = 0
    threads: int = 0


# --------------------------------------------------------------------------------------------------
# worker side (module-level functions so that they pickle by reference)

_ENV_LOCK = threading.Lock()


def _apply_env(env: dict[str, str]) -> None:
    """Make this worker's ``PROTOCOLCHECK_*`` variables those of the client (no-op when they match)."""
    with _ENV_LOCK:
        config.apply_environment(env)


def _as_given(record: ScanRecord, name: str, absolute: str) -> ScanRecord:
    """The record with the file name as the client gave it (the worker read it by absolute path)."""
    if name == absolute:
        return record
    if isinstance(record, InstanceHeader):
        return dataclasses.replace(record, path=name)
    return dataclasses.replace(record, path=name, reason=record.reason.replace(absolute, name))


def read_chunk(files: Sequence[tuple[str, str]], env: dict[str, str]) -> ChunkRecords:
    """Read the headers of ``files`` (pairs of name as given, absolute path) on a worker."""
    _apply_env(env)
    by_study: dict[str, list[InstanceHeader]] = {}
    unreadable: list[Unreadable] = []
    skipped: list[Skipped] = []
    for name, absolute in files:
        for record in scan_file(absolute):
            record = _as_given(record, name, absolute)
            if isinstance(record, InstanceHeader):
                by_study.setdefault(record.study_instance_uid, []).append(record)
            elif isinstance(record, Unreadable):
                unreadable.append(record)
            else:
                skipped.append(record)
    return ChunkRecords(by_study, tuple(unreadable), tuple(skipped))


def summarize_chunk(chunk: ChunkRecords) -> ChunkSummary:
    """The planning summary of a chunk (folders as :func:`~protocolcheck.audit.engine.audit_records` computes them)."""
    dirs = {uid: frozenset(os.path.dirname(os.path.abspath(h.path)) for h in headers)
            for uid, headers in chunk.by_study.items()}
    return ChunkSummary(dirs, chunk.unreadable, len(chunk.skipped))


def _audit_with_used(study: Study, options: AuditOptions, unreadable: Sequence[Unreadable],
                     env: dict[str, str]) -> tuple[AuditResult, frozenset[str]]:
    """Audit one study on a worker; also return the context keys it looked up.

    The options are shared by the worker's tasks, so the context table is copied with an empty
    ``used`` set: the keys this study looked up go back to the client (for unmatched-row warnings).
    """
    _apply_env(env)
    if options.contexts is not None:
        options = dataclasses.replace(options, contexts=dataclasses.replace(options.contexts, used=set()))
    result = audit_study(study, options, unreadable)
    return result, frozenset(options.contexts.used) if options.contexts is not None else frozenset()


def audit_chunked_study(study_uid: str, options: AuditOptions, unreadable: Sequence[Unreadable],
                        env: dict[str, str], *chunks: ChunkRecords) -> tuple[AuditResult, frozenset[str]]:
    """Audit one study from the chunks (kept on the workers) that hold its headers."""
    headers = [h for chunk in chunks for h in chunk.by_study.get(study_uid, ())]
    (study,) = group_studies(headers)
    return _audit_with_used(study, options, unreadable, env)


def audit_one_study(study: Study, options: AuditOptions, unreadable: Sequence[Unreadable],
                    env: dict[str, str]) -> tuple[AuditResult, frozenset[str]]:
    """Audit one study sent by the client (the results-store path, where the client plans the run)."""
    return _audit_with_used(study, options, unreadable, env)


def read_files(files: Sequence[tuple[str, str]], env: dict[str, str]) -> list[ScanRecord]:
    """The scan records of ``files`` (name as given, absolute path), in order, for the client."""
    _apply_env(env)
    return [_as_given(record, name, absolute) for name, absolute in files for record in scan_file(absolute)]


_FINGERPRINT = f"{__version__}+{source_digest()[:12]}"  # at import, next to when the other modules were loaded


def code_fingerprint() -> str:
    """The version and a digest of this process's protocolcheck sources (taken when it was imported).

    Compared between client and workers before a run: a worker started before the code changed
    (or with another install) would silently give other results."""
    return _FINGERPRINT


# --------------------------------------------------------------------------------------------------
# client side


def _client_env() -> dict[str, str]:
    """The client's ``PROTOCOLCHECK_*`` variables, relative paths made absolute (workers have another cwd)."""
    return config.protocolcheck_environment()


def _for_workers(options: AuditOptions) -> AuditOptions:
    """The options with the library's folder made absolute: the decision rules are read beside it."""
    library = options.library
    if library.path and not os.path.isabs(library.path):
        return dataclasses.replace(options, library=dataclasses.replace(library, path=os.path.abspath(library.path)))
    return options


def chunk_files(files: Sequence[str], threads: int,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[list[tuple[str, str]]]:
    """Split the file list (in order) into chunks of (name, absolute path), at most ``chunk_size`` each."""
    if not files:
        return []
    size = max(1, min(chunk_size, math.ceil(len(files) / max(1, threads * CHUNKS_PER_THREAD))))
    pairs = [(name, os.path.abspath(name)) for name in files]
    return [pairs[i:i + size] for i in range(0, len(pairs), size)]


def resolve_address(address: str) -> str:
    """The scheduler address of ``address`` (``tcp://HOST:PORT``, ``HOST:PORT``, or a scheduler JSON file
    as written by ``dask scheduler --scheduler-file``); :class:`BadAddress` when it is none of these."""
    from distributed.comm import get_address_host_port  # noqa: PLC0415 - optional dependency

    given = address
    if "://" not in address and (os.sep in address or address.endswith(".json")) and not os.path.isfile(address):
        raise BadAddress(f"{given}: no such Dask scheduler file (and not a scheduler address tcp://HOST:PORT)")
    if os.path.isfile(address):
        try:
            address = str(json.loads(Path(address).read_text(encoding="utf-8"))["address"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise BadAddress(f"{given}: not a Dask scheduler file (JSON with an 'address'): {exc}") from None
    try:
        _host, port = get_address_host_port(address)
    except ValueError as exc:
        raise BadAddress(f"bad Dask scheduler address {given!r}: {exc} (expected tcp://HOST:PORT)") from None
    if not 0 < port < 65536:
        raise BadAddress(f"bad Dask scheduler address {given!r}: port {port} is out of range")
    return address


def connect(address: str, connect_timeout: float = CONNECT_TIMEOUT, worker_timeout: float = WORKER_TIMEOUT) -> Any:
    """A dask ``Client`` on the scheduler at ``address`` (see :func:`resolve_address`) with a suitable worker.

    Raises :class:`DaskMissing` without dask, :class:`BadAddress` for a malformed address, and
    :class:`ClusterError` when the scheduler cannot be reached in time, no worker joins, or the
    scheduler or a worker runs other protocolcheck code (the scheduler unpickles the tasks too)."""
    try:
        from distributed import Client  # noqa: PLC0415 - optional dependency, imported only when used
    except ImportError as exc:
        raise DaskMissing("the cluster option needs dask.distributed: pip install 'protocolcheck[dask]'") from exc
    address = resolve_address(address)
    try:
        client = Client(address, timeout=connect_timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within {connect_timeout:g} s: {exc}") from exc
    mine = code_fingerprint()
    try:
        try:
            on_scheduler = client.run_on_scheduler(code_fingerprint)
        except Exception as exc:  # any failure here means the scheduler cannot take our tasks
            raise ClusterError(f"the Dask scheduler at {address} cannot load protocolcheck ({type(exc).__name__}: "
                               f"{exc}); install protocolcheck where the scheduler runs too (it unpickles the "
                               "tasks) and restart it") from exc
        if on_scheduler != mine:
            raise ClusterError(f"the Dask scheduler at {address} runs other protocolcheck code ({on_scheduler}) "
                               f"than this client ({mine}); install the same version there and restart it")
        try:
            client.wait_for_workers(1, timeout=worker_timeout)
        except TimeoutError as exc:
            raise ClusterError(f"no Dask worker joined the scheduler at {address} within {worker_timeout:g} s") from exc
        try:
            versions = client.run(code_fingerprint)
        except Exception as exc:  # any failure here means the workers cannot run our tasks
            raise ClusterError(f"the Dask workers cannot run protocolcheck ({type(exc).__name__}: {exc}); "
                               "install protocolcheck on every worker") from exc
        wrong = sorted(f"{addr} has {v}" for addr, v in versions.items() if v != mine)
        if wrong:
            raise ClusterError(f"Dask workers run other protocolcheck code than this client ({mine}): "
                               f"{'; '.join(wrong)}; install the same version on every worker and restart them")
    except BaseException:
        client.close()
        raise
    return client


def _cluster_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the cluster went away during a run (not a task's own exception)."""
    from distributed.comm.core import CommClosedError  # noqa: PLC0415 - optional dependency, imported only when used

    return (CancelledError, CommClosedError)


class ClusterExecutor:
    """A connection to a Dask cluster that reads headers and audits studies, in the local order.

    :meth:`audit_files` is the whole audit with the headers kept on the workers; :meth:`read` and
    :meth:`audit` are the two steps :func:`~protocolcheck.jobs.incremental.run_audit_job` hands over (the
    results-store path, where the client plans which studies changed). Use as a context manager (closes the client).
    """

    def __init__(self, client: Any, address: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.client = client
        self.address = address
        self.chunk_size = chunk_size
        self.env = _client_env()

    @classmethod
    def connect(cls, address: str, connect_timeout: float = CONNECT_TIMEOUT,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> ClusterExecutor:
        """Connect (see :func:`connect` for the errors)."""
        return cls(connect(address, connect_timeout), address, chunk_size)

    def __enter__(self) -> ClusterExecutor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def workers(self) -> tuple[int, int]:
        """(worker processes, threads) connected now."""
        try:  # newer distributed versions summarize scheduler_info() to 5 workers unless asked for all
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:
            info = self.client.scheduler_info()
        workers = info.get("workers", {})
        return len(workers), sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1

    @contextlib.contextmanager
    def _lost(self) -> Iterator[None]:
        try:
            yield
        except _cluster_errors() as exc:
            raise ClusterError(f"the Dask cluster at {self.address} went away during the audit "
                               f"({type(exc).__name__}: {exc})") from exc

    def _in_order(self, futures: list[Any]) -> Iterator[Any]:
        """The futures' results in order, one round trip per batch, each released once fetched."""
        try:
            for start in range(0, len(futures), GATHER_BATCH):
                batch = futures[start:start + GATHER_BATCH]
                done = self.client.gather(batch)
                for future in batch:
                    future.release()
                yield from done
        finally:
            for future in futures:
                future.release()

    def read(self, paths: Sequence[str]) -> Iterator[ScanRecord]:
        """:func:`~protocolcheck.dicom.scan.scan` of these files on the workers: the same records, in the same order."""
        with self._lost():
            chunks = chunk_files(list(paths), self.workers()[1], self.chunk_size)
            futures = [self.client.submit(read_files, chunk, self.env, pure=False) for chunk in chunks]
            for records in self._in_order(futures):
                yield from records

    def audit(self, items: Sequence[tuple[Study, Sequence[Unreadable]]],
              options: AuditOptions) -> Iterator[AuditResult]:
        """:func:`~protocolcheck.audit.engine.audit_study` of each (study, unreadable files) on the workers,
        in order."""
        if not items:
            return
        with self._lost():
            shared = self.client.scatter(_for_workers(options), hash=False, broadcast=True)
            studies = self.client.scatter([study for study, _bad in items], hash=False)
            futures = [self.client.submit(audit_one_study, study, shared, list(bad), self.env, pure=False)
                       for study, (_study, bad) in zip(studies, items, strict=True)]
            del studies
            yield from self._with_used(futures, options)

    def _with_used(self, futures: list[Any], options: AuditOptions) -> Iterator[AuditResult]:
        """The audit results in order; the context rows they used are marked as a local run does."""
        used: set[str] = set()
        try:
            for result, keys in self._in_order(futures):
                used |= keys
                yield result
        finally:
            if options.contexts is not None:
                options.contexts.used.update(used)

    def audit_files(self, files: Sequence[str], options: AuditOptions,
                    stats: list[ClusterStats] | None = None) -> Iterator[AuditResult]:
        """The whole audit of ``files`` (as listed by :func:`~protocolcheck.dicom.scan.iter_files`); the results of
        :func:`~protocolcheck.audit.engine.audit_records` over their scan, in the same order.

        The workers keep the headers, grouped by study, where they read them; the client gets the
        folders of each study and the unreadable files, attaches those to studies as the audit engine
        does, and sends one audit task per study to the workers that hold its headers."""
        with self._lost():
            nworkers, threads = self.workers()
            chunks = chunk_files(list(files), threads, self.chunk_size)
            records = [self.client.submit(read_chunk, chunk, self.env, pure=False) for chunk in chunks]
            summaries = [self.client.submit(summarize_chunk, r, pure=False) for r in records]
            study_dirs: dict[str, set[str]] = {}
            holders: dict[str, list[int]] = {}
            bad: list[Unreadable] = []
            skipped = 0
            for index, summary in enumerate(self.client.gather(summaries)):
                for uid, dirs in summary.study_dirs.items():
                    study_dirs.setdefault(uid, set()).update(dirs)
                    holders.setdefault(uid, []).append(index)
                bad.extend(summary.unreadable)
                skipped += summary.skipped
            del summaries
            attached = attach_unreadable(bad, study_dirs)
            if stats is not None:
                stats.append(ClusterStats(len(files), len(study_dirs), len(bad), skipped, nworkers, threads))
            shared = self.client.scatter(_for_workers(options), hash=False, broadcast=True) if study_dirs else None
            futures = [self.client.submit(audit_chunked_study, uid, shared, attached.by_study.get(uid, []), self.env,
                                          *(records[i] for i in holders[uid]), pure=False)
                       for uid in sorted(study_dirs)]  # Study UID order, as group_studies
            del records  # each chunk is released once the studies that need it are audited
            yield from self._with_used(futures, options)
        # Unreadable files of no study need no headers: their records are made here, as locally.
        yield from orphan_results(attached.orphans, options)


def audit_on_cluster(paths: Iterable[str | os.PathLike[str]], options: AuditOptions, scheduler_address: str,
                     chunk_size: int = DEFAULT_CHUNK_SIZE, connect_timeout: float = CONNECT_TIMEOUT,
                     stats: list[ClusterStats] | None = None) -> Iterator[AuditResult]:
    """Audit every study under ``paths`` on the cluster; the same results, in the same order, as
    :func:`~protocolcheck.audit.engine.audit_paths`.

    Raises FileNotFoundError for a missing path (before connecting), and :class:`DaskMissing`,
    :class:`BadAddress` and :class:`ClusterError` as :func:`connect`. Context rows used by the
    studies are marked in ``options.contexts`` as a local run does. When ``stats`` is a list, a
    :class:`ClusterStats` is appended once the files are read."""
    files = list(iter_files(paths))
    with ClusterExecutor.connect(scheduler_address, connect_timeout, chunk_size) as executor:
        yield from executor.audit_files(files, options, stats)
