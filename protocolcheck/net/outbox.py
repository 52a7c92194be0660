"""A durable outbox: datasets waiting for a PACS survive a crash, a kill -9 and a power cut.

``listen --send-sr`` puts each final verdict's Structured Report here before it counts as queued:
``STORE/.outbox/<SOP Instance UID>.dcm`` (DICOM file format), written into a temporary file that is
fsynced, renamed into place, and made durable with an fsync of the folder. A file leaves the outbox
only when the PACS has acknowledged it (:meth:`Outbox.remove`) or refused it for good
(:meth:`Outbox.fail` moves it to ``STORE/.outbox/failed/`` with the reason beside it in
``<UID>.reason.txt``; move it back into ``.outbox/`` to send it again). An acknowledged report leaves an
empty marker ``STORE/.outbox/sent/<UID>`` (kept ``sent_keep`` seconds), so that the same verdict judged
again after a restart is not sent twice (:meth:`Outbox.known`). On start everything in the folder is
queued again (:meth:`Outbox.pending`); the UID of a report is derived from its content, so storing it
twice gives the PACS the same instance. Beside them, ``STORE/.outbox/reported/<Study Instance UID>.json``
keeps what the last report queued for a study was (:meth:`Outbox.record_report`, written like the
reports; kept ``reported_keep`` seconds): a later verdict that says the same is not stored again, one
that differs is stored as a new version naming it as its predecessor.

The outbox is bounded (count and bytes, :func:`protocolcheck.config.outbox_limits`): when it is full
:meth:`Outbox.add` raises :class:`OutboxFull` at once (the caller logs and counts it; receiving never
waits). Nothing here touches the network (:class:`protocolcheck.net.push.StoreQueue` sends).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from protocolcheck.net.commit import fsync_path, replace_durably
from protocolcheck.net.common import safe_uid

LOG = logging.getLogger("protocolcheck.net.outbox")

OUTBOX_FOLDER = ".outbox"
FAILED_FOLDER = "failed"
SENT_FOLDER = "sent"
REPORTED_FOLDER = "reported"
_TEMP_PREFIX = ".incoming-"


class OutboxFull(Exception):
    """The outbox holds its maximum of reports or bytes; ``str()`` says which."""


class Outbox:
    """Datasets waiting to be sent, one file each, in ``root/.outbox`` (see the module docstring).

    Thread-safe: :meth:`add` runs on the thread that makes reports, :meth:`remove` and :meth:`fail` on
    the sender's.
    """

    def __init__(self, root: str | os.PathLike[str], *, max_items: int, max_bytes: int, sent_keep: float = 7 * 86400.0,
                 reported_keep: float = 365 * 86400.0, fsync: bool = True) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("the outbox must hold at least one report and one byte")
        self.folder = Path(root) / OUTBOX_FOLDER
        self.failed_folder = self.folder / FAILED_FOLDER
        self.sent_folder = self.folder / SENT_FOLDER
        self.reported_folder = self.folder / REPORTED_FOLDER
        self.sent_keep = sent_keep
        self.reported_keep = reported_keep
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}  # file name -> bytes, of what is waiting
        self._prepared = False

    # -- set-up ------------------------------------------------------------------------------
    def prepare(self) -> int:
        """Create the folders, remove half-written temporary files, count what waits; the count.
        OSError when the folder cannot be made."""
        with self._lock:
            for folder in (self.folder, self.failed_folder, self.sent_folder, self.reported_folder):
                if not folder.is_dir():
                    folder.mkdir(parents=True, exist_ok=True)
                    self._sync(folder.parent)
            for folder in (self.folder, self.reported_folder):
                for temp in folder.glob(_TEMP_PREFIX + "*"):
                    temp.unlink(missing_ok=True)
            for folder, keep in ((self.sent_folder, self.sent_keep), (self.reported_folder, self.reported_keep)):
                old = time.time() - keep
                for marker in folder.iterdir():
                    with contextlib.suppress(OSError):
                        if marker.stat().st_mtime < old:
                            marker.unlink()
            self._sizes = {p.name: p.stat().st_size for p in self.folder.glob("*.dcm") if p.is_file()}
            self._prepared = True
            return len(self._sizes)

    # -- the report-maker's side -------------------------------------------------------------
    def add(self, ds: Dataset) -> Path:
        """Write ``ds`` durably as ``<SOPInstanceUID>.dcm``; its path. A dataset already waiting is not
        written again. OutboxFull when the limits would be passed; ValueError when it has no usable
        SOP Instance UID; OSError when it cannot be written (nothing is left behind)."""
        name = safe_uid(ds.get("SOPInstanceUID"), "SOP Instance UID") + ".dcm"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        with self._lock:
            if not self._prepared:
                raise RuntimeError("Outbox.prepare() was not called")
            target = self.folder / name
            if name in self._sizes:
                return target
            items, size = len(self._sizes), sum(self._sizes.values())
            if items + 1 > self.max_items:
                raise OutboxFull(f"{self.folder} holds {items} reports (the maximum)")
            if size + len(data) > self.max_bytes:
                raise OutboxFull(f"{self.folder} holds {size} bytes; {len(data)} more would pass the "
                                 f"maximum of {self.max_bytes}")
            replace_durably(target, lambda fh: fh.write(data), fsync=self.fsync, prefix=_TEMP_PREFIX)
            self._sync(self.folder)
            self._sizes[name] = len(data)
            return target

    def known(self, sop_instance_uid: str) -> str | None:
        """``"waiting"``, ``"sent"`` (acknowledged within ``sent_keep``), ``"refused"`` (in ``failed/``), or None."""
        with self._lock:
            if f"{sop_instance_uid}.dcm" in self._sizes:
                return "waiting"
        if (self.sent_folder / sop_instance_uid).exists():
            return "sent"
        if (self.failed_folder / f"{sop_instance_uid}.dcm").is_file():
            return "refused"
        return None

    def record_report(self, study_uid: str, record: dict[str, Any]) -> None:
        """Keep ``record`` (JSON) durably as what the last report queued for ``study_uid`` was (temporary
        file, fsync, rename, folder fsync). ValueError for a UID unusable as a file name; OSError."""
        target = self.reported_folder / f"{safe_uid(study_uid, 'Study Instance UID')}.json"
        data = json.dumps(record, sort_keys=True, ensure_ascii=False).encode()
        with self._lock:
            replace_durably(target, lambda fh: fh.write(data), fsync=self.fsync, prefix=_TEMP_PREFIX)
            self._sync(self.reported_folder)

    def last_report(self, study_uid: str) -> dict[str, Any] | None:
        """The record :meth:`record_report` kept for ``study_uid``; None when there is none (or it cannot be
        read: logged, and taken as none)."""
        try:
            path = self.reported_folder / f"{safe_uid(study_uid, 'Study Instance UID')}.json"
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            LOG.warning("cannot read what was reported for study %s: %s", study_uid, exc)
            return None
        return record if isinstance(record, dict) else None

    # -- the sender's side -------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """What waits, oldest first."""
        with self._lock:
            paths = [self.folder / name for name in self._sizes]

        def age(path: Path) -> tuple[float, str]:
            try:
                return path.stat().st_mtime, path.name
            except OSError:
                return 0.0, path.name

        return sorted(paths, key=age)

    def read(self, path: Path) -> Dataset:
        """The dataset in ``path`` (any error reading it is the caller's to handle)."""
        return dcmread(path)

    def remove(self, path: Path) -> None:
        """The PACS acknowledged ``path``: leave its ``sent/`` marker, delete it (durably)."""
        with self._lock:
            with contextlib.suppress(OSError):  # the marker only saves sending the same report again
                (self.sent_folder / path.stem).touch()
                self._sync(self.sent_folder)
            path.unlink(missing_ok=True)
            self._sync(self.folder)
            self._sizes.pop(path.name, None)

    def fail(self, path: Path, reason: str) -> Path:
        """The PACS refused ``path`` for good: move it to ``failed/`` with ``<UID>.reason.txt``; the new path."""
        target = self.failed_folder / path.name
        with self._lock:
            with contextlib.suppress(OSError):
                (self.failed_folder / f"{path.stem}.reason.txt").write_text(reason.rstrip() + "\n", encoding="utf-8")
            os.replace(path, target)
            self._sync(self.failed_folder)
            self._sync(self.folder)
            self._sizes.pop(path.name, None)
        return target

    def usage(self) -> tuple[int, int]:
        """(reports, bytes) waiting."""
        with self._lock:
            return len(self._sizes), sum(self._sizes.values())

    def _sync(self, folder: Path) -> None:
        if self.fsync:
            fsync_path(folder)
