"""The folder of received instances: each one durable before it is acknowledged, never overwritten.

``STORE/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` from the bytes the peer sent; durable through the
store's write-ahead log (:mod:`.wal`), or the direct way (temp file, fdatasync, link, folder fsync in a round
shared by concurrent writers: :class:`~.commit.FolderSync`) for what the log cannot take. A ``.pending`` marker
in each study folder until the study has been handed over; every refused instance with its reason in
``STORE/.rejected.jsonl``. Also the C-STORE statuses and the refusal every receiving path raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocolcheck.net.commit import FolderSync, fsync_path
from protocolcheck.net.common import LineLog, safe_uid
from protocolcheck.net.wal import SEGMENT_BYTES, WAL_FOLDER, Record, StoreInUse, WriteAheadLog

LOG = logging.getLogger("protocolcheck.net.instances")

# C-STORE statuses (PS3.4 Annex B; 0xC210 is pynetdicom's "cannot decode").
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
PROCESSING_FAILURE = 0x0110

PENDING_MARKER = ".pending"
REJECTED_LOG = ".rejected.jsonl"
_TEMP_PREFIX = ".incoming-"


class InstanceRefused(Exception):
    """An instance that cannot be stored; ``status`` is the C-STORE status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class InstanceKey:
    """The three UIDs that place an instance in the store (already checked by :func:`safe_uid`)."""

    study: str
    series: str
    sop: str


class InstanceStore:
    """A folder of received instances, written so that an acknowledged instance is never lost.

    With ``fsync`` (``listen``), an instance is durable through the store's write-ahead log
    (:mod:`.wal`): its record is flushed before :meth:`put` returns, then its file is written without a
    flush of its own; at :meth:`prepare` the log's records are placed again. An instance too large for a
    log segment, or a store where the log cannot be created, is written the direct way: temp file,
    fdatasync, rename, folder fsync (:class:`~.commit.FolderSync`)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True,
                 wal_segment_bytes: int = SEGMENT_BYTES, log_folder: str = WAL_FOLDER) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.wal_segment_bytes = wal_segment_bytes
        self.log_folder = log_folder  # a receiver process has its own (net/receivers.py)
        self.wal: WriteAheadLog | None = None
        self._log_tried = False
        self._log_lock = threading.Lock()
        self._rejected: LineLog | None = None
        self.folders = FolderSync()  # group commit of the folder fsyncs of direct puts
        self._names = threading.Condition()  # claims: a file being written has one writer
        self._claimed: set[Path] = set()
        self._folders_made: set[Path] = set()  # series folders known to exist (a lost one is made again)

    def prepare(self, *, clean: bool = True) -> None:
        """Create the folder (OSError if it cannot be written), drop temp files left by a crash (unless ``clean`` is
        off: a receiver process leaves that to the main one), open the write-ahead log and place its records again
        (the studies of files it had to rewrite are marked pending; an intact file's study keeps the state its
        marker says)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=_TEMP_PREFIX, delete=True):
            pass
        if clean:
            for path in self.root.glob(f"*/*/{_TEMP_PREFIX}*"):
                LOG.info("removing incomplete file left by an earlier run: %s", path)
                path.unlink(missing_ok=True)
        if self.fsync and not self._log_tried:
            self._log_tried = True
            self._open_log()
            if clean:  # the logs and markers receiver processes left (listen --receivers): this process's now
                for folder in sorted(self.root.glob(f"{WAL_FOLDER}-*")):
                    if folder.is_dir():
                        self.place_log(folder.name)
                self.adopt_markers()

    def _open_log(self) -> None:
        wal = WriteAheadLog(self.root, self.wal_segment_bytes, self.log_folder)
        try:
            self._place(wal.open(), self.log_folder)
        except StoreInUse:
            raise
        except OSError as exc:
            wal.close_without_checkpoint()
            LOG.warning("no write-ahead log in %s (%s): each instance is flushed on its own (slower)",
                        self.root, exc.strerror or exc)
            return
        wal.checkpoint()
        self.wal = wal

    def place_log(self, folder: str) -> None:
        """Place again the records of another process's log in this store (a receiver's, left by a crash) and empty
        it; StoreInUse while that process runs."""
        wal = WriteAheadLog(self.root, self.wal_segment_bytes, folder)
        try:
            self._place(wal.open(), folder)
            wal.checkpoint()
        finally:
            wal.close_without_checkpoint()

    def _place(self, records: Sequence[Record], folder: str) -> None:
        replayed = 0
        for record in records:
            path = self.root / record.name
            if not _holds(path, (record.payload,)):  # lost with the file system's cache: audit its study again
                self._write(path, (record.payload,), sync=False, replace=True)
                self.mark_pending(record.name.split("/", 1)[0])
                replayed += 1
        if records:
            LOG.info("write-ahead log %s: %d instance(s) logged before the last stop, %d placed again",
                     folder, len(records), replayed)

    def close(self) -> None:
        """Checkpoint and close the write-ahead log (the next start has nothing to place again)."""
        if self.wal is not None:
            self.wal.close()
            self.wal = None

    def study_dir(self, study_uid: str) -> Path:
        return self.root / safe_uid(study_uid, "Study Instance UID")

    def path_for(self, key: InstanceKey) -> Path:
        return self.root / key.study / key.series / f"{key.sop}.dcm"

    def put(self, key: InstanceKey, data: bytes | Sequence[bytes]) -> Path:
        """Store ``data`` (bytes, or pieces) as the instance's file, atomically and durably; the path
        written (or found); InstanceRefused on failure.

        An instance is never overwritten: the same bytes again are taken as stored (a resend), other
        bytes under the same SOP Instance UID are kept beside the first as ``<SOP>+<digest>.dcm`` (the
        audit reports both as ``duplicate-instance``)."""
        pieces: Pieces = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else tuple(data)
        target = self.path_for(key)
        try:
            final, stored = self._claim(target, pieces)
            if stored:
                if self.fsync:  # found, perhaps left unflushed by a run that crashed before answering: flush it now
                    self._flush_found(final)
                return final
            try:
                self._persist(final, pieces)
            finally:
                self._release(final)
        except OSError as exc:
            raise InstanceRefused(OUT_OF_RESOURCES, f"cannot write {target}: {exc.strerror or exc}") from exc
        return final

    def _claim(self, target: Path, pieces: Pieces) -> tuple[Path, bool]:
        """The file name for the bytes of ``pieces``, claimed for this writer; (path, True) when it is stored already.
        ``target`` unless it holds other bytes, then the duplicate's own name beside it. The lock guards
        only the claims; the file system is looked at outside it."""
        candidate = target
        while True:
            with self._names:
                while candidate in self._claimed:  # the same name being written by another association
                    self._names.wait()
                self._claimed.add(candidate)
            try:
                if not candidate.exists():
                    if candidate != target:
                        LOG.warning("SOP Instance UID %s arrived again with different content; kept beside the "
                                    "first as %s (duplicate-instance)", target.name[:-4], candidate.name)
                    return candidate, False  # claimed: the caller writes it and releases the claim
                stored = _holds(candidate, pieces)
            except BaseException:
                self._release(candidate)
                raise
            self._release(candidate)
            if stored:
                return candidate, True  # the same bytes again (a resend): stored already
            if candidate != target:
                raise OSError(f"{target.name} and its duplicate name hold other content")
            candidate = target.with_name(f"{target.name[:-4]}+{_digest(pieces)[:16]}.dcm")

    def _release(self, claimed: Path) -> None:
        with self._names:
            self._claimed.discard(claimed)
            self._names.notify_all()

    def _persist(self, final: Path, pieces: Pieces) -> None:
        """Make the bytes durable as ``final``: logged then written, or (too large for the log, or no log)
        written the direct way from the pieces, never joined (a large instance is not copied once more)."""
        if self.wal is not None and sum(len(p) for p in pieces) <= self.wal.largest_payload:
            payload = b"".join(pieces)
            segment = self.wal.append(final.relative_to(self.root).as_posix(), payload)
            try:
                self._write_in_place(final, (payload,))
            finally:
                self.wal.placed(segment)
            return
        self._write(final, pieces, sync=self.fsync)

    def _flush_found(self, path: Path) -> None:
        """Make a file found under its name durable (its data, then its folder entry) before a resend of it is
        acknowledged: a run killed between writing it and answering never flushed it (resends are rare)."""
        fsync_path(path)
        self.folders.sync([path.parent])

    def _write_in_place(self, final: Path, pieces: Pieces) -> None:
        """Write a logged instance straight under its name (no temp file, no link: half the file system
        operations): its record is durable already, so a crash mid-write leaves a file the next start
        rewrites from the log; the name is this writer's by its claim, and the store is locked to this process."""
        if final.parent not in self._folders_made:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._folders_made.add(final.parent)
        try:
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # its folder was removed meanwhile (a retention run): made again
            self._folders_made.discard(final.parent)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, pieces)
        except BaseException:
            os.close(fd)
            final.unlink(missing_ok=True)
            raise
        os.close(fd)

    def _write(self, final: Path, pieces: Pieces, *, sync: bool, replace: bool = False) -> None:
        """Write ``final`` through a temp file beside it; with ``sync`` the data, then the name, flushed.
        ``link`` never replaces a file (another process's, even); ``replace`` (placing the log again) does."""
        created = not final.parent.is_dir()
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f"{_TEMP_PREFIX}{final.name}.{threading.get_ident()}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, pieces)
                if sync:
                    os.fdatasync(fd)  # the data and the size; the name comes next
            finally:
                os.close(fd)
            if replace:
                os.replace(temp, final)
            else:
                os.link(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        if sync:  # the new entry (and any new folder's) durable, in a round shared with other writers
            self.folders.sync([final.parent, *((final.parent.parent, self.root) if created else ())])

    # -- pending markers: a study with a marker has instances that were not yet handed over
    def mark_pending(self, study_uid: str, marker_name: str = PENDING_MARKER) -> None:
        """Mark the study received but not yet handed over (durably). ``marker_name``: a receiver process marks
        with its own (net/receiver.py), which the main process adopts at start."""
        folder = self.study_dir(study_uid)
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / marker_name
        if not marker.exists():
            with open(marker, "w", encoding="ascii") as fh:
                fh.write(_now() + "\n")
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            if self.fsync:
                fsync_path(folder)

    def clear_pending(self, study_uid: str, marker_name: str = PENDING_MARKER) -> None:
        (self.study_dir(study_uid) / marker_name).unlink(missing_ok=True)

    def adopt_markers(self) -> None:
        """Receiver processes' markers left by an earlier run become this process's (their studies are pending)."""
        for marker in sorted(self.root.glob(f"*/{PENDING_MARKER}-*")):
            self.mark_pending(marker.parent.name)
            marker.unlink(missing_ok=True)

    def pending_studies(self) -> list[str]:
        """Study UIDs whose marker is still there (received but not handed over before a stop)."""
        return sorted(p.parent.name for p in self.root.glob(f"*/{PENDING_MARKER}"))

    def log_rejection(self, record: dict[str, Any]) -> None:
        """Append one refused instance (time, peer, UIDs, status, reason) to ``.rejected.jsonl`` (whole
        lines only, see :class:`~.common.LineLog`)."""
        line = json.dumps({"time": _now(), **record}, ensure_ascii=False)
        with self._log_lock:
            try:
                if self._rejected is None:
                    self._rejected = LineLog(self.root / REJECTED_LOG, fsync=False)
                self._rejected.append(line)
            except OSError as exc:
                LOG.error("cannot append to %s: %s", self.root / REJECTED_LOG, exc.strerror or exc)

    def rejections(self) -> list[dict[str, Any]]:
        path = self.root / REJECTED_LOG
        if not path.exists():
            return []
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def instances(self, study_uid: str) -> Iterator[Path]:
        yield from sorted(self.study_dir(study_uid).glob("*/*.dcm"))


Pieces = Sequence[bytes | bytearray | memoryview]  # an instance's bytes, in the pieces they arrived in


def _write_all(fd: int, pieces: Pieces) -> None:
    """Write every piece, in one system call when the kernel takes them all at once (it does for a file)."""
    written = os.writev(fd, pieces) if len(pieces) <= 64 else 0  # the kernel's limit is 1024 (IOV_MAX)
    for piece in pieces:
        view = memoryview(piece)[written:]
        written = max(0, written - len(piece))
        while view:
            view = view[os.write(fd, view):]


def _digest(pieces: Pieces) -> str:
    sha = hashlib.sha256()
    for piece in pieces:
        sha.update(piece)
    return sha.hexdigest()


def _holds(path: Path, pieces: Pieces) -> bool:
    """Whether the file at ``path`` holds exactly the bytes of ``pieces`` (False when it is missing);
    read piece by piece, so a large instance is never held twice."""
    try:
        if path.stat().st_size != sum(len(p) for p in pieces):
            return False
        with open(path, "rb") as fh:
            return all(fh.read(len(piece)) == piece for piece in pieces)
    except FileNotFoundError:
        return False


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
