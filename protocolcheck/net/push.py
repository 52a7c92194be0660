"""Send datasets to a PACS with C-STORE from a background queue, retrying while the PACS is down.

:class:`StoreQueue` is what ``listen --send-sr`` uses to put each final audit report into the PACS:
:meth:`StoreQueue.put` returns at once (receiving never waits on the PACS); one worker thread sends
each dataset on its own association and retries failures (connection refused, association
rejected, a failure status, no reply) with exponential back-off up to ``max_delay``, for at most
``give_up`` seconds. The queue is bounded: when it is full the oldest dataset is dropped, logged and
counted. :func:`parse_destination` reads ``AET@HOST:PORT``; a DICOMweb service root (``https://…``)
is stored to with STOW-RS instead (:class:`~protocolcheck.net.dicomweb.WebPeer`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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

LOG = logging.getLogger("protocolcheck.net.push")

SUCCESS_STATUSES = (0x0000, 0xB000, 0xB007, 0xB006)  # success and the storage warnings (PS3.4 B.2.3)


def parse_destination(text: str, calling_aet: str = DEFAULT_AET) -> Peer:
    """``AET@HOST:PORT`` as a :class:`Peer`; ValueError naming what is wrong."""
    aet, at, address = text.partition("@")
    host, colon, port = address.rpartition(":")
    if not at or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected AET@HOST:PORT, not {text!r}")
    return Peer(host=host.strip("[]"), port=int(port), called_aet=validate_aet(aet, "destination AE title"),
                calling_aet=validate_aet(calling_aet, "our AE title"))


Payload = Dataset | Callable[[], Dataset]


@dataclass
class PushCounters:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


PUSH_TIMEOUTS = Timeouts(connect=5, acse=10, dimse=30, network=30)  # a background push: shorter than the defaults


class StoreQueue:
    """C-STORE datasets to ``peer`` in the background (see the module docstring)."""

    def __init__(self, peer: Peer | WebPeer, *, timeouts: Timeouts = PUSH_TIMEOUTS,
                 max_queue: int = 200, first_delay: float = 1.0, max_delay: float = 30.0,
                 give_up: float = 3600.0) -> None:
        self.peer = peer
        self.timeouts = timeouts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.give_up = give_up
        self.counters = PushCounters()
        self._queue: queue.Queue[tuple[Payload, str, float] | None] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_sent: float | None = None

    def put(self, ds: Payload, label: str = "") -> None:
        """Queue ``ds``, or a function that builds it (called on the sender's thread, once); ``label``
        names it in log lines. Never blocks."""
        if not label:
            label = str(ds.get("SOPInstanceUID", "")) if isinstance(ds, Dataset) else "dataset"
        while True:
            try:
                self._queue.put_nowait((ds, label, time.monotonic()))
                return
            except queue.Full:
                try:
                    old = self._queue.get_nowait()
                    self._queue.task_done()
                    self.counters.add("dropped")
                    LOG.error("queue to %s full: dropped %s", self.peer, old[1] if old else "")
                except queue.Empty:
                    pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="protocolcheck-push", daemon=True)
        self._thread.start()

    def stop(self, drain: float = 10.0) -> None:
        """Try for ``drain`` seconds to send what is queued, then stop (what is left is logged)."""
        deadline = time.monotonic() + drain
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(self.timeouts.acse + self.timeouts.dimse + 1)
        left = self._queue.qsize()
        if left:
            LOG.error("%d datasets for %s not sent (stopping)", left, self.peer)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            try:
                if item is not None:
                    self._deliver(*item)
            finally:
                self._queue.task_done()

    def _deliver(self, payload: Payload, label: str, queued: float) -> None:
        try:
            ds = payload if isinstance(payload, Dataset) else payload()
        except Exception:
            self.counters.add("failed")
            LOG.exception("cannot build %s", label)
            return
        delay = self.first_delay
        while True:
            try:
                self.send(ds)
            except NetError as exc:
                reason = str(exc)
            else:
                self.counters.add("sent")
                self.last_sent = time.monotonic()
                LOG.info("stored %s in %s", label, self.peer)
                return
            if time.monotonic() - queued + delay > self.give_up:
                self.counters.add("failed")
                LOG.error("giving up on %s for %s after %g s: %s", label, self.peer, self.give_up, reason)
                return
            self.counters.add("retried")
            LOG.warning("cannot store %s in %s (%s); retrying in %g s", label, self.peer, reason, delay)
            if self._stop.wait(delay):
                self.counters.add("failed")
                LOG.error("not stored (stopping): %s for %s", label, self.peer)
                return
            delay = min(delay * 2, self.max_delay)

    def send(self, ds: Dataset) -> None:
        """One C-STORE on its own association (or one STOW-RS request to a DICOMweb peer); NetError
        unless the status is a success or a warning."""
        if isinstance(self.peer, WebPeer):
            DicomwebSource(self.peer).store([ds])
            return
        ae = new_ae(self.peer.calling_aet, self.timeouts)
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
        ae.add_requested_context(ds.SOPClassUID, [syntax] if syntax else None)
        assoc = associate(ae, self.peer)
        try:
            status = assoc.send_c_store(ds)
        finally:
            release(assoc)
        code = getattr(status, "Status", None)
        if code is None:
            raise NetError(NetErrorKind.TIMEOUT, f"{self.peer} sent no C-STORE response")
        if int(code) not in SUCCESS_STATUSES:
            raise NetError(NetErrorKind.FAILED, f"{self.peer} answered C-STORE with {status_text(status)}")

