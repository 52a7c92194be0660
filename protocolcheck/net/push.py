"""Send datasets to a PACS with C-STORE from a durable outbox, retrying while the PACS is down.

:class:`StoreQueue` is what ``listen --send-sr`` uses to put each final audit report into the PACS.
:meth:`StoreQueue.put` writes the dataset into the outbox (:class:`~protocolcheck.net.outbox.Outbox`,
``STORE/.outbox``, fsynced) and returns: receiving never waits on the PACS, and a report that was put
survives a kill -9. One worker thread sends what waits, oldest first, each on its own association,
and deletes a file only once the PACS acknowledged it (a success or warning status). What fails
*for now* (connection refused, association rejected or aborted, no reply, Refused: Out of
Resources A7xx) is retried with exponential back-off up to ``max_delay``, for as long as it takes;
what the PACS refuses *for good* (any other failure status, the SOP class not accepted, an HTTP 4xx
about the request) is moved to ``STORE/.outbox/failed/`` with the reason, logged and counted. The
outbox is bounded; a report that does not fit is refused with a logged error and counted.
:func:`parse_destination` reads ``AET@HOST:PORT``; a DICOMweb service root (``https://…``) is stored
to with STOW-RS instead (:class:`~protocolcheck.net.dicomweb.WebPeer`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from protocolcheck.net.common import (
    DEFAULT_AET,
    NetError,
    NetErrorKind,
    Peer,
    Timeouts,
    associate,
    new_ae,
    release,
    status_text,
    validate_aet,
)
from protocolcheck.net.dicomweb import DicomwebSource, WebPeer
from protocolcheck.net.outbox import Outbox, OutboxFull

LOG = logging.getLogger("protocolcheck.net.push")

SUCCESS_STATUSES = (0x0000, 0xB000, 0xB007, 0xB006)  # success and the storage warnings (PS3.4 B.2.3)
RETRIED_STATUSES = range(0xA700, 0xA800)  # Refused: Out of Resources (PS3.4 B.2.3): the PACS's disk, for now
RESOURCE_LIMITATION = 0x0213  # a general "resource limitation" (PS3.7 C.5): also for now
REFUSED_HTTP = (400, 409, 413, 415, 422)  # STOW-RS answers about the request itself (PS3.18 10.5.3)


class StoreRefused(NetError):
    """The PACS answered with a failure; ``permanent`` when sending the same dataset again cannot help."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(NetErrorKind.FAILED, message)
        self.permanent = permanent
        self.status = status


def permanent_status(code: int) -> bool:
    """Whether a C-STORE failure status refuses the dataset for good: every failure (A9xx, Cxxx, 01xx...)
    except Out of Resources (A7xx) and a resource limitation (0213), which are the PACS full for now."""
    return code not in RETRIED_STATUSES and code != RESOURCE_LIMITATION


def parse_destination(text: str, calling_aet: str = DEFAULT_AET) -> Peer:
    """``AET@HOST:PORT`` as a :class:`Peer`; ValueError naming what is wrong."""
    aet, at, address = text.partition("@")
    host, colon, port = address.rpartition(":")
    if not at or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected AET@HOST:PORT, not {text!r}")
    return Peer(host=host.strip("[]"), port=int(port), called_aet=validate_aet(aet, "destination AE title"),
                calling_aet=validate_aet(calling_aet, "our AE title"))


@dataclass
class PushCounters:
    sent: int = 0  # acknowledged by the PACS (and removed from the outbox)
    retried: int = 0  # rounds that failed for now and were tried again later
    refused: int = 0  # refused for good (moved to failed/)
    full: int = 0  # not queued: the outbox was full
    unwritten: int = 0  # not queued: the outbox could not be written
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


PUSH_TIMEOUTS = Timeouts(connect=5, acse=10, dimse=30, network=30)  # a background push: shorter than the defaults


class StoreQueue:
    """Store the datasets of ``outbox`` in ``peer`` in the background (see the module docstring)."""

    def __init__(self, peer: Peer | WebPeer, outbox: Outbox, *, timeouts: Timeouts = PUSH_TIMEOUTS,
                 first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        self.peer = peer
        self.outbox = outbox
        self.timeouts = timeouts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.counters = PushCounters()
        self._labels: dict[str, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backing_off = False
        self._last_failed: Path | None = None
        self.last_sent: float | None = None

    def prepare(self) -> int:
        """Get the outbox ready (before the first :meth:`put`); how many datasets an earlier run left
        waiting (they are sent first). OSError when its folder cannot be used."""
        waiting = self.outbox.prepare()
        for path in self.outbox.pending():
            self._labels[path.name] = f"{path.name} (left by an earlier run)"
        if waiting:
            LOG.warning("%d reports left by an earlier run wait in %s: sending them to %s", waiting,
                        self.outbox.folder, self.peer)
        return waiting

    def put(self, ds: Dataset, label: str = "") -> bool:
        """Queue ``ds``: written durably to the outbox before this returns True. False (logged as an
        error and counted) when the outbox is full or cannot be written. Never waits on the PACS."""
        label = label or str(ds.get("SOPInstanceUID", ""))
        try:
            path = self.outbox.add(ds)
        except OutboxFull as exc:
            self.counters.add("full")
            LOG.error("not queued for %s: %s (outbox full: %s)", self.peer, label, exc)
            return False
        except (OSError, ValueError) as exc:
            self.counters.add("unwritten")
            LOG.error("not queued for %s: %s (cannot write it to %s: %s)", self.peer, label, self.outbox.folder, exc)
            return False
        self._labels.setdefault(path.name, label)  # the same report queued again keeps its first label
        self._wake.set()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="protocolcheck-push", daemon=True)
        self._thread.start()

    def stop(self, drain: float = 10.0) -> None:
        """Try for up to ``drain`` seconds to send what waits (unless the PACS is failing), then stop;
        what is left stays in the outbox for the next start."""
        deadline = time.monotonic() + drain
        while (self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline
               and not self._backing_off and self.outbox.usage()[0]):
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.timeouts.acse + self.timeouts.dimse + 1)
        left = self.outbox.usage()[0]
        if left:
            LOG.warning("%d reports for %s wait in %s (sent at the next start)", left, self.peer, self.outbox.folder)

    # -- the sender's thread -----------------------------------------------------------------
    def _run(self) -> None:
        delay = self.first_delay
        while not self._stop.is_set():
            self._wake.clear()
            try:
                waiting = self.outbox.pending()
                reason = self._send_all(waiting) if waiting else None
            except Exception as exc:
                LOG.exception("sending reports to %s failed", self.peer)
                waiting, reason = [], str(exc)
            if reason is None:
                self._backing_off = False
                delay = self.first_delay
                if not waiting:
                    self._wake.wait()
                continue
            self._backing_off = True
            self.counters.add("retried")
            LOG.warning("cannot store %d reports in %s (%s); retrying in %g s", len(waiting), self.peer, reason, delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.max_delay)

    def _send_all(self, waiting: list[Path]) -> str | None:
        """Send each in turn, oldest first but starting after the one that failed last time (a report that
        keeps failing for now, a PACS timing out on it, does not hold the others back); the reason of the
        first failure that is for now (the rest wait for the next round), or None."""
        if self._last_failed in waiting:
            k = waiting.index(self._last_failed)
            waiting = waiting[k + 1:] + waiting[:k + 1]
        for path in waiting:
            if self._stop.is_set():
                return None
            reason = self._send_one(path)
            if reason is not None:
                self._last_failed = path
                return reason
        self._last_failed = None
        return None

    def _send_one(self, path: Path) -> str | None:
        label = self._labels.get(path.name) or path.name
        try:
            ds = self.outbox.read(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file cannot become good by waiting
            self._refuse(path, label, f"cannot read {path}: {exc}")
            return None
        try:
            self.send(ds)
        except StoreRefused as exc:
            if not exc.permanent:
                return str(exc)
            self._refuse(path, label, str(exc))
            return None
        except NetError as exc:
            return str(exc)
        self.outbox.remove(path)
        self._labels.pop(path.name, None)
        self.counters.add("sent")
        self.last_sent = time.monotonic()
        LOG.info("stored %s in %s", label, self.peer)
        return None

    def _refuse(self, path: Path, label: str, reason: str) -> None:
        target = self.outbox.fail(path, reason)
        self._labels.pop(path.name, None)
        self.counters.add("refused")
        LOG.error("%s refused %s for good: %s; kept as %s (move it back to %s to send it again)", self.peer, label,
                  reason, target, self.outbox.folder)

    def send(self, ds: Dataset) -> None:
        """One C-STORE on its own association (or one STOW-RS request to a DICOMweb peer). StoreRefused
        for a failure status (``permanent`` as :func:`permanent_status` says) or a SOP class the PACS does
        not accept; NetError when the PACS cannot be reached or does not answer."""
        if isinstance(self.peer, WebPeer):
            _stow(self.peer, ds)
            return
        ae = new_ae(self.peer.calling_aet, self.timeouts)
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
        ae.add_requested_context(ds.SOPClassUID, [syntax] if syntax else None)
        assoc = associate(ae, self.peer)
        try:
            if not any(cx.abstract_syntax == ds.SOPClassUID for cx in assoc.accepted_contexts):
                raise StoreRefused(f"{self.peer} does not accept SOP class {ds.SOPClassUID}"
                                   + (f" in {syntax}" if syntax else ""), permanent=True)
            status = assoc.send_c_store(ds)
        finally:
            release(assoc)
        code = getattr(status, "Status", None)
        if code is None:
            raise NetError(NetErrorKind.TIMEOUT, f"{self.peer} sent no C-STORE response")
        if int(code) not in SUCCESS_STATUSES:
            raise StoreRefused(f"{self.peer} answered C-STORE with {status_text(status)}",
                               permanent=permanent_status(int(code)), status=int(code))


def _stow(peer: WebPeer, ds: Dataset) -> None:
    """STOW-RS ``ds``; an HTTP answer about the request itself (:data:`REFUSED_HTTP`) or a Failed SOP
    Sequence is a refusal for good, anything else (5xx, timeouts, credentials) is retried."""
    try:
        DicomwebSource(peer).store([ds])
    except NetError as exc:
        response = getattr(exc.__cause__, "response", None)
        http = getattr(response, "status_code", None)
        if exc.kind is NetErrorKind.FAILED and ((http is None and exc.__cause__ is None) or http in REFUSED_HTTP):
            raise StoreRefused(str(exc), permanent=True, status=http) from exc
        raise
