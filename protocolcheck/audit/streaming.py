"""Studies out of a stream of scan records in bounded memory, and the one rule that gives unreadable
files to a study.

:class:`StudyStream` groups headers by an external sort: they are buffered up to ``max_in_memory``,
and beyond that written to temporary runs sorted by Study Instance UID, then merged back one study at
a time. Peak memory is bounded by the buffer plus the largest study, not by the number of studies
(about 6 KB per image otherwise). Studies come out in Study Instance UID order with their headers in
reading order (the sort and the merge are stable), as :func:`~protocolcheck.dicom.study.group_studies`
gives them; only the folders of each study are kept besides, for :func:`attach_unreadable`.
"""

from __future__ import annotations

import heapq
import os
import pickle
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter

from protocolcheck.dicom.records import InstanceHeader, ScanRecord, Unreadable
from protocolcheck.dicom.study import Study, group_studies

__all__ = ["MAX_IN_MEMORY", "UNREADABLE_SEARCH_LEVELS", "Attached", "StudyStream", "attach_unreadable"]

MAX_IN_MEMORY = 10_000  # headers held before spilling to disk (~60 MB)
UNREADABLE_SEARCH_LEVELS = 2  # how many folders up an unreadable file looks for "its" study
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


def _owner_of(path: str, study_dirs: Mapping[str, Collection[str]]) -> str | None:
    """The one study with files in the unreadable file's folder (or up to two folders above)."""
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(UNREADABLE_SEARCH_LEVELS + 1):
        prefix = folder.rstrip(os.sep) + os.sep
        owners = [uid for uid, dirs in study_dirs.items() if any(d == folder or d.startswith(prefix) for d in dirs)]
        if len(owners) == 1:
            return owners[0]
        if len(owners) > 1:
            return None  # the folder holds several studies: the file is nobody's in particular
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


@dataclass(frozen=True)
class Attached:
    """Unreadable files given to the study whose folder holds them, and those of no study (in order)."""

    by_study: dict[str, list[Unreadable]] = field(default_factory=dict)
    orphans: list[Unreadable] = field(default_factory=list)


def attach_unreadable(unreadable: Iterable[Unreadable], study_dirs: Mapping[str, Collection[str]]) -> Attached:
    """Give each unreadable file to the one study with files in its folder (or up to
    :data:`UNREADABLE_SEARCH_LEVELS` folders above); ``study_dirs`` maps each Study UID to the absolute
    folders of its files. A folder shared by several studies makes the file nobody's."""
    attached = Attached()
    for item in unreadable:
        owner = _owner_of(item.path, study_dirs)
        if owner is None:
            attached.orphans.append(item)
        else:
            attached.by_study.setdefault(owner, []).append(item)
    return attached
