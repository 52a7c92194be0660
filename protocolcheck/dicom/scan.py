"""Files in, records out: list the files under folders, read each one (lean reader first, pydicom
for the rest), in one process or several. This is the only place that opens DICOM files for their
headers; everything downstream works on the records of :mod:`.records`."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

from protocolcheck import config
from protocolcheck.dicom.reader import read_file_pydicom
from protocolcheck.dicom.records import (
    FOLDER_NOT_LISTED,
    InstanceHeader,
    ScanRecord,
    Skipped,
    Unreadable,
    problem_text,
)
from protocolcheck.dicom.safeio import open_regular


def read_file(path: str | os.PathLike[str], *, fast: bool | None = None) -> list[InstanceHeader] | Skipped:
    """Read one file's header into one record (several for enhanced multi-frame objects).

    The lean reader (:mod:`.fastheaders`) goes first; whatever it does not handle is read with
    pydicom (:func:`read_file_pydicom`), the reference both agree with. ``fast=False`` or the
    environment variable ``PROTOCOLCHECK_READER=pydicom`` forces pydicom.
    """
    if fast is None:
        fast = not config.pydicom_reader_forced()
    if fast:
        result = load_fast_reader().read_fast(os.fspath(path))
        if result is not None:
            return result
    return read_file_pydicom(path)


_fastheaders: Any = None  # the lean reader's module, imported on first use


def load_fast_reader() -> Any:
    """The lean reader's module (imported on first use: it builds on this one). A long-running receiver loads it
    at start, so its first instance does not wait for the import (tens of milliseconds)."""
    global _fastheaders
    if _fastheaders is None:
        from protocolcheck.dicom import lean as fastheaders  # noqa: PLC0415 - fastheaders builds on this module

        _fastheaders = fastheaders
    return _fastheaders



def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """Every file under the given files/folders, in a stable (sorted) order, and every folder that could
    not be listed (permission denied, a path longer than the system allows): :func:`scan_file` makes it an
    :class:`Unreadable` record (an ``unreadable-folder`` finding), so no part of a tree goes unaudited
    without a word. The walk is iterative (any depth) and does not follow links to folders."""
    for path in paths:
        p = Path(path)
        try:
            is_dir = stat.S_ISDIR(os.stat(p).st_mode)  # one stat per path: scan() re-checks long file lists
        except (FileNotFoundError, NotADirectoryError):
            if os.path.lexists(p) or "\\x" in str(p):  # a broken link, or a name _text_path escaped:
                yield str(p)  # an unreadable file (read_file says why), not a usage error
                continue
            raise FileNotFoundError(f"no such file or folder: {p}") from None
        except OSError:  # too long a name, a loop of links: scan_file says why
            yield _text_path(str(p))
            continue
        if is_dir:
            yield from _walk(str(p))
        else:
            yield _text_path(str(p))


def _walk(top: str) -> Iterator[str]:
    """Files under ``top`` as ``os.walk`` (top-down, folders and files sorted, hidden files left out, links
    to folders not followed) would give them, without recursion; a folder that cannot be listed is given
    itself, in place of its files."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError:
            yield _text_path(folder.rstrip(os.sep) + os.sep)  # a folder (trailing /): scan_file says why
            continue
        files: list[str] = []
        folders: list[str] = []
        for entry in listed:
            try:
                descend = entry.is_dir() and not entry.is_symlink()
                linked_folder = entry.is_dir()
            except OSError:
                descend = linked_folder = False
            if descend:
                folders.append(entry.name)
            elif not linked_folder and not entry.name.startswith("."):
                files.append(entry.name)
        for name in sorted(files):
            yield _text_path(os.path.join(folder, name))
        stack.extend(os.path.join(folder, name) for name in sorted(folders, reverse=True))


def _text_path(path: str) -> str:
    """``path`` as valid text for reports and the results store. A name that is not UTF-8 (Python
    keeps its bytes as lone surrogates, which no output can encode) gets \\x escapes instead; the
    file is then reported as unreadable under that name (see :func:`scan_file`) rather than
    breaking every output it reaches."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


# Files that are obviously not DICOM by name; skipped quietly only when they also lack the marker.
_TEXT_SUFFIXES = (".md", ".txt", ".csv", ".json", ".yaml", ".yml", ".py", ".html", ".jsonl")


def scan(paths: Iterable[str | os.PathLike[str]], workers: int = 1) -> Iterator[ScanRecord]:
    """Read every file under ``paths``; yield headers, unreadable files and skipped files.

    Documentation files shipped beside DICOM (README.md, context CSVs) are skipped, not errors.
    ``workers > 1`` reads in that many processes (:func:`.fastheaders.scan_parallel`); the records
    come in the same order either way.
    """
    yield from scan_files(iter_files(paths), workers)


def scan_files(files: Iterable[str], workers: int = 1) -> Iterator[ScanRecord]:
    """:func:`scan` over files already listed by :func:`iter_files` (not walked or checked again)."""
    if workers > 1:
        yield from scan_parallel(files, workers)
        return
    for name in files:
        yield from scan_file(name)


def scan_file(name: str) -> list[ScanRecord]:
    """The records of one file for :func:`scan`: headers, or one Unreadable / Skipped record (also for a
    folder :func:`iter_files` could not list)."""
    folder_problem = unlistable_folder(name)
    if folder_problem:
        return [Unreadable(name, folder_problem)]
    if name.lower().endswith(_TEXT_SUFFIXES) and not _has_dicom_marker(name):
        return [Skipped(name, "not DICOM (documentation or data file)")]
    try:
        result = read_file(name)
    except ValueError as exc:
        return [Unreadable(name, str(exc))]
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the scan
        return [Unreadable(name, f"unexpected error reading file: {problem_text(exc)}")]
    if isinstance(result, Skipped):
        return [result]
    return list(result)


def unlistable_folder(name: str) -> str | None:
    """The reason text if ``name`` is a folder that cannot be listed (``None`` for anything else); a name
    ending in ``/`` is one :func:`iter_files` could not list."""
    is_folder = name.endswith(os.sep)
    try:
        is_folder = is_folder or stat.S_ISDIR(os.stat(name).st_mode)
        if not is_folder:
            return None
        with os.scandir(name):
            return None
    except OSError as exc:
        if not is_folder:
            return None  # a file: read_file says what is wrong with it
        if exc.errno == errno.ENAMETOOLONG:
            return f"{FOLDER_NOT_LISTED}: its path is longer than the system allows; the files in it were not audited"
        return f"{FOLDER_NOT_LISTED}: {exc.strerror or exc}; the files in it were not audited"


def _has_dicom_marker(name: str) -> bool:
    """Whether a regular file has the DICM marker; a named pipe or device is never opened for reading (a
    plain ``open()`` of a pipe waits for a writer forever)."""
    try:
        with open_regular(name, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


# ------------------------------------------------------------------------------ parallel scanning

CHUNK_FILES = 256  # files per task: large enough to amortise inter-process traffic, small for balance


def _scan_chunk(names: list[str]) -> list[ScanRecord]:
    return [record for name in names for record in scan_file(name)]


def scan_parallel(names: Iterable[str], workers: int, chunk: int = CHUNK_FILES) -> Iterator[ScanRecord]:
    """:func:`headers.scan_file` over ``names`` in ``workers`` processes, records in input order.

    Files go to the workers in chunks; at most ``2 * workers`` chunks are in flight, so memory stays
    bounded however many files there are (the caller consumes records as they come). If a worker
    process dies (killed, out of memory), the files in flight are read again one per task in a fresh
    pool, and only a file that stops the process again becomes :class:`Unreadable`.
    """
    workers = max(1, workers)
    iterator = iter(names)
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: deque[tuple[list[str], Future[list[ScanRecord]]]] = deque()

    def submit() -> bool:
        batch = list(islice(iterator, chunk))
        if batch:
            pending.append((batch, pool.submit(_scan_chunk, batch)))
        return bool(batch)

    def fill() -> None:
        """Up to ``2 * workers`` chunks in flight."""
        for _ in range(2 * workers):
            if not submit():
                break

    try:
        fill()
        while pending:
            batch, future = pending.popleft()
            try:
                records = future.result()
            except BrokenProcessPool:
                again = [batch] + [b for b, _f in pending]
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=workers)
                for lost in again:
                    for name in lost:
                        records, pool = _isolated(pool, name, workers)
                        yield from records
                fill()
                continue
            submit()
            yield from records
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _isolated(pool: ProcessPoolExecutor, name: str, workers: int) -> tuple[list[ScanRecord], ProcessPoolExecutor]:
    """One file in its own task; a process that dies on it makes it Unreadable (and a fresh pool)."""
    try:
        return pool.submit(_scan_chunk, [name]).result(), pool
    except BrokenProcessPool:
        pool.shutdown(wait=False, cancel_futures=True)
        reason = "reading this file stopped the header reader process (killed or out of memory); not read"
        return [Unreadable(name, reason)], ProcessPoolExecutor(max_workers=workers)
