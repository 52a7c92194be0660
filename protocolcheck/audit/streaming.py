"""Study-by-study auditing in bounded memory, however many files a run reads.

:func:`protocolcheck.pipeline.audit_records` keeps every header of the run in memory before it audits
the first study, so its peak memory grows with the corpus (about 6 KB per image). Here the headers
are grouped by an external sort instead: they are buffered up to ``max_in_memory``, and beyond that
written to temporary runs sorted by Study Instance UID, then merged back one study at a time. Peak
memory is then bounded by the buffer plus the largest study, not by the number of studies.

The results are the same as the pipeline's, in the same order: studies come out in Study Instance UID
order with their headers in reading order (the sort and the merge are stable), unreadable files are
attached to the study whose folder holds them exactly as the pipeline does (only the folders of each
study are kept for that, not its headers), and files that belong to no study come last.
"""

from __future__ import annotations

import heapq
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from itertools import groupby
from operator import attrgetter

from protocolcheck.audit.engine import AuditOptions, _owner_of, audit_records, audit_study
from protocolcheck.clinical.findings import AuditResult
from protocolcheck.dicom.records import InstanceHeader, ScanRecord, Unreadable
from protocolcheck.dicom.study import Study, group_studies

__all__ = ["MAX_IN_MEMORY", "StudyStream", "audit_records_streaming"]

MAX_IN_MEMORY = 10_000  # headers held before spilling to disk (~60 MB)
_RUN_CHUNK = 64  # headers per pickle record in a run: the merge holds one chunk per run

_study_uid = attrgetter("study_instance_uid")


class StudyStream:
    """The studies of a stream of scan records, in Study Instance UID order, in bounded memory.

    Creating it reads ``records`` to the end (headers beyond ``max_in_memory`` go to sorted runs in a
    temporary folder); iterating it yields one :class:`Study` at a time. Unreadable files are kept in
    :attr:`unreadable`, and :attr:`study_dirs` maps each Study UID to the folders of its files.
    """

    def __init__(self, records: Iterable[ScanRecord], *, max_in_memory: int = MAX_IN_MEMORY,
                 tmpdir: str | None = None) -> None:
        self.max_in_memory = max(1, max_in_memory)
        self.unreadable: list[Unreadable] = []
        self.study_dirs: dict[str, set[str]] = {}
        self.headers = 0
        self._buffer: list[InstanceHeader] = []
        self._folders: dict[str, str] = {}  # dirname as given -> absolute folder
        self._runs: list[str] = []
        self._tmpdir = tmpdir
        self._workdir: str | None = None
        try:
            for record in records:
                if isinstance(record, InstanceHeader):
                    self._add(record)
                elif isinstance(record, Unreadable):
                    self.unreadable.append(record)
        except BaseException:
            self.close()
            raise

    @property
    def spilled(self) -> bool:
        """Whether the headers did not fit in memory (sorted runs were written)."""
        return bool(self._runs)

    def _add(self, header: InstanceHeader) -> None:
        self.headers += 1
        parent = os.path.dirname(header.path)
        folder = self._folders.get(parent)
        if folder is None:
            folder = self._folders[parent] = os.path.dirname(os.path.abspath(header.path))
        dirs = self.study_dirs.get(header.study_instance_uid)
        if dirs is None:
            self.study_dirs[header.study_instance_uid] = {folder}
        elif folder not in dirs:
            dirs.add(folder)
        self._buffer.append(header)
        if len(self._buffer) >= self.max_in_memory:
            self._spill()

    def _spill(self) -> None:
        if not self._buffer:
            return
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="protocolcheck-stream-", dir=self._tmpdir)
        self._buffer.sort(key=_study_uid)  # stable: reading order within a study is kept
        path = os.path.join(self._workdir, f"run{len(self._runs):05d}.pickle")
        with open(path, "wb") as fh:
            for start in range(0, len(self._buffer), _RUN_CHUNK):
                pickle.dump(self._buffer[start:start + _RUN_CHUNK], fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._runs.append(path)
        self._buffer = []

    @staticmethod
    def _read_run(path: str) -> Iterator[InstanceHeader]:
        with open(path, "rb") as fh:
            while True:
                try:
                    chunk = pickle.load(fh)
                except EOFError:
                    return
                yield from chunk

    def _sorted_headers(self) -> Iterator[InstanceHeader]:
        if not self._runs:
            self._buffer.sort(key=_study_uid)
            buffer, self._buffer = self._buffer, []
            yield from buffer
            return
        self._spill()
        # heapq.merge is stable across runs (earlier run first), so reading order survives
        yield from heapq.merge(*(self._read_run(p) for p in self._runs), key=_study_uid)

    def __iter__(self) -> Iterator[Study]:
        try:
            for _uid, headers in groupby(self._sorted_headers(), key=_study_uid):
                yield from group_studies(list(headers))
        finally:
            self.close()

    def close(self) -> None:
        """Remove the temporary runs (also done when iteration ends)."""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._runs = []

    def __enter__(self) -> StudyStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def audit_records_streaming(records: Iterable[ScanRecord], options: AuditOptions, *,
                            max_in_memory: int = MAX_IN_MEMORY, tmpdir: str | None = None) -> Iterator[AuditResult]:
    """:func:`pipeline.audit_records` with bounded memory: the same results in the same order.

    Headers beyond ``max_in_memory`` are spilled to a temporary folder (``tmpdir``, default the
    system's) and studies are audited one at a time as they are merged back.
    """
    stream = StudyStream(records, max_in_memory=max_in_memory, tmpdir=tmpdir)
    with stream:
        attached: dict[str, list[Unreadable]] = {}
        orphans: list[Unreadable] = []
        for item in stream.unreadable:
            owner = _owner_of(item.path, stream.study_dirs)
            if owner is not None:
                attached.setdefault(owner, []).append(item)
            else:
                orphans.append(item)
        for study in stream:
            yield audit_study(study, options, attached.get(study.study_instance_uid, ()))
        if orphans:
            # files of no study: the pipeline's own records for them (no headers -> all orphans)
            yield from audit_records(orphans, options)

