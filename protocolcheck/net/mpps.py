"""Modality Performed Procedure Step SCP (PS3.4 Annex F.7): the scanner says when an exam starts and ends.

:class:`MppsStore` writes every N-CREATE and N-SET as received to
``STORE/.mpps/<MPPS SOP Instance UID>_<NNNN>-<create|set>.dcm`` (one folder level, so that
``STORE/*/*/*.dcm`` stays the received instances) (temp file, fsync, rename, fsync of
the folder) *before* the response is sent, and keeps each step's merged state (the N-CREATE's
attributes with every N-SET applied). On start, :meth:`MppsStore.load` replays the files, so a
killed ``listen`` knows every step it acknowledged.

:func:`handle_n_create` and :func:`handle_n_set` are the pynetdicom event handlers (plain functions,
bound with their store and callback); ``on_message(sop_instance_uid, merged)`` is called after the
message is on disk. What the messages mean for an exam is the caller's business.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import evt

from protocolcheck.net.commit import fsync_path, replace_durably
from protocolcheck.net.common import safe_uid

LOG = logging.getLogger("protocolcheck.net.mpps")

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class (PS3.4 F.7)
_TEMP_PREFIX = ".incoming-"  # a message being written (swept at start)
MPPS_FOLDER = ".mpps"

# N-CREATE / N-SET statuses (PS3.7 Annex C; PS3.4 F.7.2.1.2 and F.7.2.2.2)
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110  # also: "Performed Procedure Step Object may no longer be updated"
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_ATTRIBUTE_VALUE = 0x0106
MISSING_ATTRIBUTE = 0x0120
OUT_OF_RESOURCES = 0x0213  # N-CREATE/N-SET "resource limitation" (PS3.7 C.5.x)

IN_PROGRESS = "IN PROGRESS"
FINAL_STATUSES = ("COMPLETED", "DISCONTINUED")


class MppsRefused(Exception):
    """A message we answer with a failure ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class MppsStore:
    """Received MPPS messages on disk, and each step's merged state in memory (thread-safe)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root) / MPPS_FOLDER
        self.fsync = fsync
        self._lock = threading.Lock()
        self._steps: dict[str, Dataset] = {}
        self._counts: dict[str, int] = {}

    def load(self) -> dict[str, Dataset]:
        """Replay the stored messages (in order) into merged steps; return them by SOP Instance UID."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for temp in self.root.glob(f"{_TEMP_PREFIX}*"):
                temp.unlink(missing_ok=True)
            for path in sorted(self.root.glob("*_*.dcm")):
                uid, _, kind = path.stem.rpartition("_")
                try:
                    ds = dcmread(path)
                except Exception as exc:  # noqa: BLE001 - a damaged file is reported, the rest replayed
                    LOG.error("cannot read stored MPPS message %s: %s", path, exc)
                    continue
                ds.file_meta = FileMetaDataset()
                if kind.endswith("-create") or uid not in self._steps:
                    self._steps[uid] = ds
                else:
                    _apply(self._steps[uid], ds)
                self._counts[uid] = self._counts.get(uid, 0) + 1
            return {uid: _copy(ds) for uid, ds in self._steps.items()}

    def step(self, uid: str) -> Dataset | None:
        with self._lock:
            ds = self._steps.get(uid)
            return _copy(ds) if ds is not None else None

    def create(self, uid: str, attributes: Dataset) -> Dataset:
        """Store an N-CREATE; the step as created. MppsRefused for a duplicate or an unwritable disk."""
        uid = _checked(uid)
        with self._lock:
            if uid in self._steps:
                raise MppsRefused(DUPLICATE_SOP_INSTANCE, f"MPPS {uid} exists already")
            status = str(attributes.get("PerformedProcedureStepStatus", "") or "").strip().upper()
            if status != IN_PROGRESS:
                raise MppsRefused(INVALID_ATTRIBUTE_VALUE, f"an MPPS is created IN PROGRESS, not {status or 'empty'!r}")
            self._write(uid, "create", attributes)
            self._steps[uid] = _copy(attributes)
            return _copy(attributes)

    def update(self, uid: str, modifications: Dataset) -> Dataset:
        """Store an N-SET; the merged step. MppsRefused for an unknown or already final step."""
        uid = _checked(uid)
        with self._lock:
            current = self._steps.get(uid)
            if current is None:
                raise MppsRefused(NO_SUCH_SOP_INSTANCE, f"no MPPS {uid} was created")
            status = str(current.get("PerformedProcedureStepStatus", "") or "").strip().upper()
            if status in FINAL_STATUSES:
                raise MppsRefused(PROCESSING_FAILURE, f"MPPS {uid} is {status} and may no longer be updated")
            new = str(modifications.get("PerformedProcedureStepStatus", status) or status).strip().upper()
            if new not in (IN_PROGRESS, *FINAL_STATUSES):
                raise MppsRefused(INVALID_ATTRIBUTE_VALUE, f"unknown Performed Procedure Step Status {new!r}")
            self._write(uid, "set", modifications)
            _apply(current, modifications)
            return _copy(current)

    def _write(self, uid: str, kind: str, ds: Dataset) -> Path:
        n = self._counts.get(uid, 0) + 1
        target = self.root / f"{uid}_{n:04d}-{kind}.dcm"
        try:
            created = not self.root.is_dir()
            self.root.mkdir(parents=True, exist_ok=True)
            if created and self.fsync:
                fsync_path(self.root.parent)
            out = _copy(ds)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(MPPS_SOP_CLASS)
            meta.MediaStorageSOPInstanceUID = UID(uid)
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            out.file_meta = meta
            replace_durably(target, lambda fh: out.save_as(fh, enforce_file_format=True), fsync=self.fsync,
                            prefix=_TEMP_PREFIX)
            if self.fsync:
                fsync_path(self.root)
        except OSError as exc:
            raise MppsRefused(OUT_OF_RESOURCES, f"cannot write {target}: {exc.strerror or exc}") from exc
        self._counts[uid] = n
        return target


def _checked(uid: str) -> str:
    try:
        return safe_uid(uid, "MPPS SOP Instance UID")
    except ValueError as exc:
        raise MppsRefused(INVALID_ATTRIBUTE_VALUE, str(exc)) from exc


def _copy(ds: Dataset) -> Dataset:
    out = Dataset()
    out.update(ds)
    return out


def _apply(target: Dataset, modifications: Dataset) -> None:
    """N-SET semantics: each attribute given replaces ours (sequences as a whole)."""
    for element in modifications:
        target[element.tag] = element


MessageCallback = Callable[[str, Dataset], None]


def handle_n_create(event: evt.Event, store: MppsStore, on_message: MessageCallback | None = None
                    ) -> tuple[int, Dataset | None]:
    """EVT_N_CREATE handler for the MPPS SOP class: store, then ``on_message``; (status, attributes)."""
    request = event.request
    if str(getattr(request, "AffectedSOPClassUID", "")) != MPPS_SOP_CLASS:
        return PROCESSING_FAILURE, None
    uid = str(getattr(request, "AffectedSOPInstanceUID", "") or "")

    def create() -> tuple[Dataset, Dataset]:
        if not uid:
            raise MppsRefused(MISSING_ATTRIBUTE, "the N-CREATE names no Affected SOP Instance UID")
        attributes = event.attribute_list
        return attributes, store.create(uid, attributes)

    return _serve("N-CREATE", uid, create, on_message)


def handle_n_set(event: evt.Event, store: MppsStore, on_message: MessageCallback | None = None
                 ) -> tuple[int, Dataset | None]:
    """EVT_N_SET handler for the MPPS SOP class: store, then ``on_message``; (status, modifications)."""
    request = event.request
    if str(getattr(request, "RequestedSOPClassUID", "")) != MPPS_SOP_CLASS:
        return PROCESSING_FAILURE, None
    uid = str(getattr(request, "RequestedSOPInstanceUID", "") or "")

    def update() -> tuple[Dataset, Dataset]:
        modifications = event.attribute_list
        return modifications, store.update(uid, modifications)

    return _serve("N-SET", uid, update, on_message)


def _serve(message: str, uid: str, change: Callable[[], tuple[Dataset, Dataset]],
           on_message: MessageCallback | None) -> tuple[int, Dataset | None]:
    """Apply an N-CREATE or N-SET (``change`` stores it durably and gives (the attributes to answer with, the
    step now)); refusals answered with their status and logged; then ``on_message``."""
    try:
        attributes, step = change()
    except MppsRefused as exc:
        LOG.warning("refused MPPS %s %s: %s (status 0x%04X)", message, uid or "?", exc.reason, exc.status)
        return exc.status, None
    except Exception:
        LOG.exception("refused MPPS %s %s: unexpected error", message, uid or "?")
        return PROCESSING_FAILURE, None
    LOG.info("MPPS %s %s: %s", uid, message, step.get("PerformedProcedureStepStatus", ""))
    _deliver(on_message, uid, step)
    return SUCCESS, attributes


def _deliver(on_message: MessageCallback | None, uid: str, step: Dataset) -> None:
    if on_message is None:
        return
    try:
        on_message(uid, step)
    except Exception:
        LOG.exception("MPPS listener failed for %s", uid)


def mpps_handlers(store: MppsStore, on_message: MessageCallback | None = None) -> list[tuple]:
    """The pynetdicom event handlers that serve MPPS with ``store``."""
    return [(evt.EVT_N_CREATE, handle_n_create, [store, on_message]),
            (evt.EVT_N_SET, handle_n_set, [store, on_message])]
