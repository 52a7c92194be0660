"""Run the header scan and the audit on a Dask distributed cluster (``audit --scheduler ADDRESS``).

The results, and their order, are those of the local pipeline (:func:`.pipeline.audit_paths`):

1. the client lists the files (:func:`.headers.iter_files`, same order as a local scan) and sends
   them in chunks to the workers, which read the headers (:func:`.headers.scan_file`) and keep the
   records in worker memory, grouped by study; only a small summary per chunk (the folders of each
   study, the unreadable files) comes back to the client;
2. the client attaches unreadable files to studies exactly as :func:`.pipeline.audit_records` does,
   then submits one audit task per study (in Study Instance UID order), which runs on the worker(s)
   holding that study's headers;
3. the results are yielded in submission order, then the records of unreadable files that belong
   to no study (audited on the client, they need no headers).

Workers must run the same protocolcheck version and see the files at the same absolute paths (a
shared file system). Files are read by absolute path and the records carry the names as given on the
client, so reports are byte-identical to a local run. The client's ``PROTOCOLCHECK_*`` environment
(library, rules, reader) is applied on the workers for the same reason, and relative library/rules
paths are made absolute (the workers run in another folder); the one visible trace is a message
quoting the rules file path (a rules file that matches no scenario), which shows it absolute. Dask is an optional extra:
``pip install 'protocolcheck[dask]'``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import __version__
from .findings import AuditResult
from .headers import InstanceHeader, ScanRecord, Skipped, Unreadable, iter_files, scan_file
from .pipeline import AuditOptions, _owner_of, audit_records, audit_study
from .study import group_studies

DEFAULT_CHUNK_SIZE = 256  # files per header-reading task (fewer when there are few files per worker thread)
CHUNKS_PER_THREAD = 4  # aim for at least this many chunks per worker thread, for balance
CONNECT_TIMEOUT = 5.0  # seconds to reach the scheduler
WORKER_TIMEOUT = 30.0  # seconds to wait for a first worker
ENV_PREFIX = "PROTOCOLCHECK_"
PATH_VARIABLES = ("PROTOCOLCHECK_LIBRARY", "PROTOCOLCHECK_RULES")  # made absolute for the workers


class ClusterError(RuntimeError):
    """The cluster cannot run the audit (scheduler unreachable, no workers, workers unsuitable, lost)."""


class BadAddress(ValueError):
    """The scheduler address is malformed (a usage error, unlike an unreachable scheduler)."""


class DaskMissing(ImportError):
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
        current = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        if current == env:
            return
        for key in current.keys() - env.keys():
            del os.environ[key]
        os.environ.update(env)


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
    """The planning summary of a chunk (folders as :func:`.pipeline.audit_records` computes them)."""
    dirs = {uid: frozenset(os.path.dirname(os.path.abspath(h.path)) for h in headers)
            for uid, headers in chunk.by_study.items()}
    return ChunkSummary(dirs, chunk.unreadable, len(chunk.skipped))


def audit_chunked_study(study_uid: str, options: AuditOptions, unreadable: Sequence[Unreadable],
                        env: dict[str, str], *chunks: ChunkRecords) -> tuple[AuditResult, frozenset[str]]:
    """Audit one study from the chunks holding its headers; also return the context keys it used.

    The options are shared by the worker's tasks, so the context table is copied with an empty
    ``used`` set: the keys this study looked up go back to the client (for unmatched-row warnings).
    """
    _apply_env(env)
    if options.contexts is not None:
        options = dataclasses.replace(options, contexts=dataclasses.replace(options.contexts, used=set()))
    headers = [h for chunk in chunks for h in chunk.by_study.get(study_uid, ())]
    (study,) = group_studies(headers)
    result = audit_study(study, options, unreadable)
    used = frozenset(options.contexts.used) if options.contexts is not None else frozenset()
    return result, used


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The version and a digest of this process's protocolcheck sources (read once, at first use).

    Compared between client and workers before a run: a worker started before the code changed
    (or with another install) would silently give other results."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"


# --------------------------------------------------------------------------------------------------
# client side


def _client_env() -> dict[str, str]:
    """The client's ``PROTOCOLCHECK_*`` variables, relative paths made absolute (workers have another cwd)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for key in PATH_VARIABLES:
        if env.get(key, "").strip() and not os.path.isabs(env[key]):
            env[key] = os.path.abspath(env[key])
    return env


def _for_workers(options: AuditOptions) -> AuditOptions:
    """The options with the library's folder made absolute: the decision rules are read beside it."""
    library = options.library
    if library.path and not os.path.isabs(library.path):
        return dataclasses.replace(options, library=dataclasses.replace(library, path=os.path.abspath(library.path)))
    return options


def chunk_files(files: Sequence[str], threads: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[list[tuple[str, str]]]:
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
    workers run other protocolcheck code."""
    try:
        from distributed import Client  # noqa: PLC0415 - optional dependency, imported only when used
    except ImportError as exc:
        raise DaskMissing("the cluster option needs dask.distributed: pip install 'protocolcheck[dask]'") from exc
    address = resolve_address(address)
    try:
        client = Client(address, timeout=connect_timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within {connect_timeout:g} s: {exc}") from exc
    try:
        try:
            client.wait_for_workers(1, timeout=worker_timeout)
        except TimeoutError as exc:
            raise ClusterError(f"no Dask worker joined the scheduler at {address} within {worker_timeout:g} s") from exc
        try:
            versions = client.run(code_fingerprint)
        except Exception as exc:  # noqa: BLE001 - any failure here means the workers cannot run our tasks
            raise ClusterError(f"the Dask workers cannot run protocolcheck ({type(exc).__name__}: {exc}); "
                               "install protocolcheck on every worker") from exc
        mine = code_fingerprint()
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
    from concurrent.futures import CancelledError  # noqa: PLC0415

    from distributed.comm.core import CommClosedError  # noqa: PLC0415

    return (CancelledError, CommClosedError)


def audit_on_cluster(paths: Iterable[str | os.PathLike[str]], options: AuditOptions, scheduler_address: str,
                     chunk_size: int = DEFAULT_CHUNK_SIZE, connect_timeout: float = CONNECT_TIMEOUT,
                     stats: list[ClusterStats] | None = None) -> Iterator[AuditResult]:
    """Audit every study under ``paths`` on the cluster; the same results, in the same order, as
    :func:`.pipeline.audit_paths`.

    Raises FileNotFoundError for a missing path (before connecting), and :class:`DaskMissing`,
    :class:`BadAddress` and :class:`ClusterError` as :func:`connect`. Context rows used by the
    studies are marked in ``options.contexts`` as a local run does. When ``stats`` is a list, a
    :class:`ClusterStats` is appended once the files are read."""
    files = list(iter_files(paths))
    client = connect(scheduler_address, connect_timeout)
    try:
        yield from _run(client, files, options, chunk_size, stats)
    except _cluster_errors() as exc:
        raise ClusterError(f"the Dask cluster at {scheduler_address} went away during the audit "
                           f"({type(exc).__name__}: {exc})") from exc
    finally:
        client.close()


def _run(client: Any, files: list[str], options: AuditOptions, chunk_size: int,
         stats: list[ClusterStats] | None) -> Iterator[AuditResult]:
    env = _client_env()
    info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) else client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    chunks = chunk_files(files, threads, chunk_size)
    records = [client.submit(read_chunk, chunk, env, pure=False) for chunk in chunks]
    summaries = [client.submit(summarize_chunk, r, pure=False) for r in records]

    # Plan exactly as audit_records: every study's folders, then each unreadable file's owner.
    study_dirs: dict[str, set[str]] = {}
    holders: dict[str, list[int]] = {}
    bad: list[Unreadable] = []
    skipped = 0
    for index, summary in enumerate(client.gather(summaries)):
        for uid, dirs in summary.study_dirs.items():
            study_dirs.setdefault(uid, set()).update(dirs)
            holders.setdefault(uid, []).append(index)
        bad.extend(summary.unreadable)
        skipped += summary.skipped
    del summaries
    attached: dict[str, list[Unreadable]] = {}
    orphans: list[Unreadable] = []
    for item in bad:
        owner = _owner_of(item.path, study_dirs)
        if owner is not None:
            attached.setdefault(owner, []).append(item)
        else:
            orphans.append(item)
    if stats is not None:
        stats.append(ClusterStats(len(files), len(study_dirs), len(bad), skipped, len(workers), threads))

    shared_options = client.scatter(_for_workers(options), hash=False) if study_dirs else None
    futures = [client.submit(audit_chunked_study, uid, shared_options, attached.get(uid, []), env,
                             *(records[i] for i in holders[uid]), pure=False)
               for uid in sorted(study_dirs)]
    del records  # the chunks are released once the studies that need them are audited
    used: set[str] = set()
    try:
        for future in futures:
            result, keys = future.result()
            used |= keys
            future.release()
            yield result
    finally:
        for future in futures:
            future.release()
        if options.contexts is not None:
            options.contexts.used.update(used)
    # Unreadable files of no study need no headers: audit_records makes their records as locally.
    yield from audit_records(orphans, options)


def _accepts_n_workers(client: Any) -> bool:
    """Newer distributed versions summarize ``scheduler_info()`` to 5 workers unless asked for all."""
    import inspect  # noqa: PLC0415

    return "n_workers" in inspect.signature(client.scheduler_info).parameters
