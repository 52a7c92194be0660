"""Storage SCP: receive instances, store each one durably, and hand over studies once they are complete.

Small parts, each usable alone:

- :func:`decode_received` and :func:`instance_key` refuse what cannot be stored without loss (cut, bombed,
  pixel data not matching the image); :func:`handle_store` is the C-STORE handler that stores the bytes the
  peer sent in :mod:`.instances`' :class:`~.instances.InstanceStore` (durable before success is answered).
- :class:`StudyTracker` decides when a study is complete: no instance for ``idle`` seconds. It calls
  the completion callback on its own worker thread (never on an association thread), one study at a
  time, and again if more instances arrive later.
- :class:`StorageSCP` is the pynetdicom server: C-ECHO and C-STORE for :data:`STORAGE_SOP_CLASSES`
  in every transfer syntax, calling AE titles and peer addresses optionally restricted, optionally
  over DICOM TLS, several associations at once. :meth:`StorageSCP.stop` stops accepting, lets
  running associations finish, then hands over every pending study.
- The TCP side is :mod:`.transport`'s :class:`~.transport.GuardedServer`: address allow-list,
  connections per address, TLS handshake off the accepting thread, a deadline on every read, and
  every connection closed on stop.

On start, studies whose ``.pending`` marker survived a crash or a kill are handed over again.
What to do with a complete study (audit it) is the caller's callback, so this module knows
nothing about auditing.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from types import FrameType
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, evt
from pynetdicom.dsutils import decode

from protocolcheck import config
from protocolcheck.dicom.limits import InflateLimitExceeded, InflateTruncated, inflate
from protocolcheck.dicom.pixels import ImageSize, pixel_data_problem
from protocolcheck.dicom.walk import UNDEFINED, Element, top_level
from protocolcheck.net.commit import brisk_reactors, busy
from protocolcheck.net.common import (
    DEFAULT_AET,
    DEFAULT_TIMEOUTS,
    NOT_DEFLATED,
    VERIFICATION,
    Timeouts,
    TlsOptions,
    new_ae,
    parse_networks,
    safe_uid,
    server_ssl_context,
    storage_contexts,
    support_contexts,
    validate_aet,
)
from protocolcheck.net.fastpath import StoreRequest, arm_fast_store
from protocolcheck.net.instances import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    SUCCESS,
    InstanceKey,
    InstanceRefused,
    InstanceStore,
)
from protocolcheck.net.receivers import ReceiverPool
from protocolcheck.net.receiving import Exceeded, receiving_handlers
from protocolcheck.net.transport import (
    DEFAULT_PER_HOST,
    GuardedServer,
    start_guarded_server,
    stop_server,
)

LOG = logging.getLogger("protocolcheck.net.scp")

# The largest PDU we announce (pynetdicom's default: 16,382 bytes). A 256 x 256 MR image then arrives in one
# PDU instead of 8, each of which costs a pass of pynetdicom's reactor; well below common.MAX_PDU_BYTES.
RECEIVE_PDU = 1 << 20


def check_complete(ds: Dataset, size: int) -> None:
    """InstanceRefused unless the decoded elements end exactly where the received bytes end.

    pydicom decodes leniently: a dataset cut short mid-element or mid-value still "decodes". The
    last top-level element's declared end must be the end of the stream (undefined-length items,
    such as encapsulated pixel data, are delimited and checked by the decoder itself).
    """
    tags = list(ds.keys())
    if not tags:
        raise InstanceRefused(CANNOT_UNDERSTAND, "empty dataset")
    last = ds.get_item(max(tags))
    length = getattr(last, "length", None)
    value_tell = getattr(last, "value_tell", None)
    if length is None or value_tell is None or length == 0xFFFFFFFF:
        return
    end = value_tell + length
    if end != size:
        raise InstanceRefused(CANNOT_UNDERSTAND, f"dataset truncated or malformed: its last element {last.tag} "
                                            f"ends at byte {end} but {size} bytes were received")


def decode_received(encoded: bytes, syntax: Any) -> Dataset:
    """Decode the dataset bytes a peer sent in transfer syntax ``syntax`` (a pydicom UID), refusing
    (:class:`InstanceRefused`) what could not be stored without loss or report:

    - a deflated dataset is inflated incrementally under the one cap every reader shares
      (:func:`~protocolcheck.dicom.limits.inflate_limit` of what was sent: 0xA700 past it, before
      pydicom or pynetdicom inflate anything), and must end with its deflate end marker (0xC210);
    - the decoded elements must end exactly where the bytes end (:func:`check_complete`, 0xC210);
    - Pixel Data must be whole (:mod:`~protocolcheck.dicom.pixels`, the readers' check): native as long as
      Rows x Columns x Bits Allocated x Samples x Frames say, encapsulated with its offset table, a fragment
      per frame and its delimiter (0xA900: the dataset does not match its image attributes).
    """
    data = encoded
    if syntax.is_deflated:
        try:
            data = inflate(encoded, complete=True)
        except InflateLimitExceeded as exc:
            raise InstanceRefused(OUT_OF_RESOURCES, f"{exc} ({len(encoded)} bytes sent)") from exc
        except (InflateTruncated, zlib.error) as exc:
            raise InstanceRefused(CANNOT_UNDERSTAND, f"deflated dataset unusable: {exc}") from exc
    try:
        ds = decode(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
    except Exception as exc:  # pydicom raises many types
        raise InstanceRefused(CANNOT_UNDERSTAND, f"cannot decode dataset: {type(exc).__name__}: {exc}") from exc
    check_complete(ds, len(data))
    try:
        short = _pixel_problem(ds, data, syntax.is_little_endian)
    except Exception as exc:  # image attributes that cannot be decoded
        raise InstanceRefused(CANNOT_UNDERSTAND,
                              f"cannot decode image attributes: {type(exc).__name__}: {exc}") from exc
    if short:
        raise InstanceRefused(DATASET_DOES_NOT_MATCH, short)
    return ds


def _pixel_problem(ds: Dataset, data: bytes, little: bool) -> str | None:
    """:func:`~protocolcheck.dicom.pixels.pixel_data_problem` (the readers' check) on the received bytes."""
    pixels = ds.get_item(0x7FE00010)
    length, offset = getattr(pixels, "length", None), getattr(pixels, "value_tell", None)
    if length is None or offset is None:
        return None

    def number(keyword: str) -> int | None:
        try:
            return int(ds.get(keyword))
        except (TypeError, ValueError):
            return None

    size = ImageSize(number("Rows"), number("Columns"), number("BitsAllocated"), number("SamplesPerPixel"),
                     number("NumberOfFrames"))
    return pixel_data_problem(lambda at, n: data[at:at + n], len(data), offset, length, size, little=little)


# The elements quick_key reads (group << 16 | element).
_SOP_INSTANCE, _STUDY, _SERIES = 0x00080018, 0x0020000D, 0x0020000E
_SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS = 0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100
_PIXELS = 0x7FE00010
_QUICK_TAGS = frozenset({_SOP_INSTANCE, _STUDY, _SERIES, _SAMPLES, _FRAMES, _ROWS, _COLUMNS, _BITS, _PIXELS})


class _Doubt(Exception):
    """quick_key cannot tell: decode_received decides."""


def quick_key(encoded: bytes, syntax: Any, fallback_sop: str = "") -> InstanceKey | None:
    """The key of a received data set that is plainly whole and well formed, told from its element headers
    (:func:`~protocolcheck.dicom.walk.top_level`, a fifth of :func:`decode_received`'s time) with the same
    checks: every element inside the data and the last ending where it ends, Pixel Data whole
    (:func:`~protocolcheck.dicom.pixels.pixel_data_problem`), the placing UIDs valid (:func:`safe_uid`). None
    whenever in doubt (another transfer syntax, a problem, an irregular value): :func:`decode_received` and
    :func:`instance_key` then decide, and word any refusal. ``tests/test_dicom_walk.py`` holds both to the same
    answers over a multi-vendor corpus and thousands of damaged copies of it."""
    try:
        if syntax.is_deflated or not syntax.is_little_endian:
            return None
        found = top_level(encoded, syntax.is_implicit_VR, _QUICK_TAGS)
        if found is None:
            return None
        pixels = found.get(_PIXELS)
        if pixels is not None:
            size = ImageSize(_us(found, _ROWS, encoded), _us(found, _COLUMNS, encoded), _us(found, _BITS, encoded),
                             _us(found, _SAMPLES, encoded), _integer_string(found, _FRAMES, encoded))
            if pixel_data_problem(lambda at, n: encoded[at:at + n], len(encoded), pixels.offset, pixels.length,
                                  size):
                return None
        sop = _text(found, _SOP_INSTANCE, encoded) or fallback_sop
        return InstanceKey(safe_uid(_text(found, _STUDY, encoded), "Study Instance UID"),
                           safe_uid(_text(found, _SERIES, encoded), "Series Instance UID"),
                           safe_uid(sop, "SOP Instance UID"))
    except (_Doubt, ValueError, UnicodeDecodeError):
        return None


def _value(found: dict[int, Element], tag: int, data: bytes, vr: bytes) -> bytes | None:
    element = found.get(tag)
    if element is None:
        return None
    if element.vr not in (None, vr) or element.length == UNDEFINED:
        raise _Doubt
    return data[element.offset:element.offset + element.length]


def _us(found: dict[int, Element], tag: int, data: bytes) -> int | None:
    """A US value as pydicom's ``int(ds.get(keyword))`` has it: None when absent, empty or multi-valued."""
    value = _value(found, tag, data, b"US")
    return int.from_bytes(value, "little") if value is not None and len(value) == 2 else None


def _integer_string(found: dict[int, Element], tag: int, data: bytes) -> int | None:
    value = _value(found, tag, data, b"IS")
    if value is None or not value.strip(b" \x00"):
        return None
    try:
        return int(value.decode("ascii"))
    except ValueError:
        raise _Doubt from None  # "1.0", several values ...: pydicom's reading decides


def _text(found: dict[int, Element], tag: int, data: bytes) -> str:
    value = _value(found, tag, data, b"UI")
    return "" if value is None else value.decode("ascii").strip().rstrip("\x00").strip()


def _meta_element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":  # explicit VR little endian; OB has a 4-byte length after 2 reserved bytes
        return struct.pack("<HH2s2xI", 0x0002, elem, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("latin-1", "replace")
    return raw + pad if len(raw) % 2 else raw


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """The File Meta Information group (PS3.10 section 7.1) of a received instance: byte for byte what
    ``encode_file_meta(event.file_meta)`` gives (``tests/test_net_listen.py`` proves it over every storage SOP
    class and transfer syntax), without building and writing a pydicom dataset for it, which took 0.33 ms of
    every C-STORE (a quarter of the handler)."""
    body = b"".join((
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", _padded(sop_class, b"\x00")),
        _meta_element(0x0003, b"UI", _padded(sop_instance, b"\x00")),
        _meta_element(0x0010, b"UI", _padded(transfer_syntax, b"\x00")),
        _meta_element(0x0012, b"UI", _padded(PYNETDICOM_IMPLEMENTATION_UID, b"\x00")),
        _meta_element(0x0013, b"SH", _padded(PYNETDICOM_IMPLEMENTATION_VERSION, b" ")),
    ))
    return _meta_element(0x0000, b"UL", struct.pack("<I", len(body))) + body


def instance_key(ds: Dataset, fallback_sop: str = "") -> InstanceKey:
    """Read and check the placing UIDs of a received dataset; InstanceRefused when unusable."""
    try:
        study = ds.get("StudyInstanceUID", "")
        series = ds.get("SeriesInstanceUID", "")
        sop = ds.get("SOPInstanceUID", "") or fallback_sop
    except Exception as exc:  # pydicom decodes lazily and raises many types
        raise InstanceRefused(CANNOT_UNDERSTAND, f"cannot decode dataset: {type(exc).__name__}: {exc}") from exc
    try:
        return InstanceKey(safe_uid(study, "Study Instance UID"), safe_uid(series, "Series Instance UID"),
                           safe_uid(sop, "SOP Instance UID"))
    except ValueError as exc:
        raise InstanceRefused(DATASET_DOES_NOT_MATCH, str(exc)) from exc


@dataclass
class _StudyState:
    seq: int = 0
    last: float = 0.0
    running: bool = False
    failures: int = 0  # hand-overs that failed in a row (disk full for the output, store down ...)
    retry: float = 0.0  # not handed over again before this time (after a failure)


RETRY_FIRST = 10.0  # seconds before a failed hand-over is tried again; doubled each time ...
RETRY_MAX = 300.0  # ... up to this


class StudyTracker:
    """Calls ``on_complete(study_uid)`` once no instance of the study has arrived for ``idle`` seconds.

    ``on_pending``/``on_settled`` run under the tracker's lock when a study becomes pending and when
    it has been handed over with nothing new meanwhile (the store's markers hang on these). A study
    that receives more instances after its hand-over becomes pending again and is handed over again.
    """

    def __init__(self, idle: float, on_complete: Callable[[str], None], *,
                 on_pending: Callable[[str], None] | None = None,
                 on_settled: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if idle < 0:
            raise ValueError("idle time must be >= 0 seconds")
        self.idle = idle
        self.on_complete = on_complete
        self.on_pending = on_pending
        self.on_settled = on_settled
        self.clock = clock
        self._studies: dict[str, _StudyState] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._flush = False
        self._thread: threading.Thread | None = None
        self.completed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="protocolcheck-study-tracker", daemon=True)
        self._thread.start()

    def arrived(self, study_uid: str) -> None:
        """Note an instance of ``study_uid`` (call after it is stored, before answering success)."""
        with self._cond:
            state = self._studies.get(study_uid)
            new = state is None
            if state is None:
                state = self._studies[study_uid] = _StudyState()
            state.seq += 1
            state.last = self.clock()
            if new:  # a known study's deadline only moves later: the worker's current wait stays right
                self._cond.notify_all()
            if new and self.on_pending:
                self.on_pending(study_uid)  # may raise (disk full): the study is still handed over

    def recover(self, study_uid: str) -> None:
        """Treat a study found pending on disk as just arrived (handed over after ``idle``)."""
        self.arrived(study_uid)

    def pending(self) -> list[str]:
        with self._cond:
            return sorted(self._studies)

    def stop(self, flush: bool = True, timeout: float | None = None) -> None:
        """Stop the worker; with ``flush`` hand over every pending study first, regardless of idle time."""
        with self._cond:
            self._stopping = True
            self._flush = flush
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _due(self, now: float) -> tuple[str, int] | None:
        for uid, state in sorted(self._studies.items(), key=lambda item: item[1].last):
            if state.running:
                continue
            if self._flush or (now - state.last >= self.idle and now >= state.retry):
                return uid, state.seq
        return None

    def _next_wait(self, now: float) -> float | None:
        waits = [max(state.last + self.idle, state.retry) - now for state in self._studies.values()
                 if not state.running]
        return max(0.0, min(waits)) if waits else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = self.clock()
                    due = self._due(now)
                    if due is not None:
                        break
                    if self._stopping and (not self._flush or not self._studies):
                        return
                    self._cond.wait(self._next_wait(now))
                uid, seq = due
                self._studies[uid].running = True
            failed: Exception | None = None
            try:
                self.on_complete(uid)
            except Exception as exc:  # noqa: BLE001 - a failing hand-over must not stop the receiver
                failed = exc
            with self._cond:
                state = self._studies[uid]
                state.running = False
                self.completed += 1
                if failed is not None and not self._flush:
                    state.failures += 1
                    delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (state.failures - 1))
                    state.retry = self.clock() + delay
                    LOG.error("handling completed study %s failed (%s: %s); it stays marked pending and is tried "
                              "again in %g s", uid, type(failed).__name__, failed, delay)
                    LOG.debug("traceback", exc_info=failed)
                elif failed is not None:
                    del self._studies[uid]
                    LOG.error("handling completed study %s failed (%s: %s); it stays marked pending and is "
                              "handled again at the next start", uid, type(failed).__name__, failed)
                    LOG.debug("traceback", exc_info=failed)
                elif state.seq == seq:
                    del self._studies[uid]
                    if self.on_settled:
                        self.on_settled(uid)
                else:
                    state.failures, state.retry = 0, 0.0


class InFlight:
    """The C-STOREs being served: stop() lets them finish writing; each keeps pynetdicom's reactors brisk
    (:func:`~.commit.busy`). One per process that serves them (``listen`` and each of its receivers)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def run(self, serve: Callable[[], int]) -> int:
        with self._lock:
            self.count += 1
        busy()
        try:
            return serve()
        finally:
            with self._lock:
                self.count -= 1


@dataclass(frozen=True)
class ListenConfig:
    """How the storage SCP listens and where it stores."""

    store: Path
    port: int
    bind: str = "127.0.0.1"
    aet: str = DEFAULT_AET
    allowed_aets: tuple[str, ...] = ()  # empty: any calling AE title
    idle: float = 30.0
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    fsync: bool = True
    allowed_hosts: tuple[str, ...] = ()  # IP addresses or networks (CIDR); empty: any address
    tls: TlsOptions | None = None  # DICOM TLS (certificate and key required)
    per_host: int = DEFAULT_PER_HOST  # open connections one peer address may hold (0: no limit)
    stop_grace: float = 3.0  # seconds running associations get to end on stop before they are closed
    receive_limits: tuple[int, int] | None = None  # bytes of one received message, of all (None: config's)
    fast_store: bool = field(default_factory=config.fast_store)  # C-STORE served by net/fastpath.py
    receivers: int = 0  # storage associations served in this many other processes (net/receivers.py)
    verbose: bool = False  # pynetdicom's own log lines (passed on to receiver processes)


@dataclass
class Counters:
    """What the SCP did so far (read for summaries and tests)."""

    associations: int = 0
    rejected_associations: int = 0
    stored: int = 0
    refused: int = 0
    studies_completed: int = 0
    refused_connections: int = 0  # closed before association: address not allowed, or TLS handshake failed
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


def handle_store(event: evt.Event, store: InstanceStore, counters: Counters,
                 on_stored: Callable[[InstanceKey, Path], None] | None = None,
                 accept: Callable[[InstanceKey], str] | None = None) -> int:
    """EVT_C_STORE handler: :func:`store_received` on what pynetdicom received."""
    request = event.request
    return store_received(lambda: event.encoded_dataset(include_meta=False), event.context.transfer_syntax,
                          str(getattr(request, "AffectedSOPClassUID", "") or ""),
                          str(getattr(request, "AffectedSOPInstanceUID", "") or ""), peer_text(event.assoc),
                          store, counters, on_stored, accept)


def store_received(read: Callable[[], bytes], syntax: Any, sop_class: str, sop_instance: str, peer: str,
                   store: InstanceStore, counters: Counters,
                   on_stored: Callable[[InstanceKey, Path], None] | None = None,
                   accept: Callable[[InstanceKey], str] | None = None) -> int:
    """Serve one C-STORE request: decode just enough to place the instance, store it, then ``on_stored``; the
    status to answer. The one place for this, whichever path received the request (pynetdicom's handler,
    :func:`handle_store`, or :mod:`.fastpath`).

    ``read()`` gives the data set as the peer sent it (``syntax``: its transfer syntax, a pydicom UID);
    ``sop_class``/``sop_instance`` are the request's Affected SOP Class/Instance UIDs. ``accept`` may veto an
    instance (it returns a reason). Every refusal is answered with a failure status, logged, and appended to the
    store's rejection log; the association goes on.
    """
    key: InstanceKey | None = None
    try:
        encoded = read()  # the bytes as the peer sent them
        key = quick_key(encoded, syntax, sop_instance)
        if key is None:  # never pynetdicom's event.dataset: it inflates unbounded
            key = instance_key(decode_received(encoded, syntax), sop_instance)
        if accept is not None:
            reason = accept(key)
            if reason:
                raise InstanceRefused(DATASET_DOES_NOT_MATCH, reason)
        path = store.put(key, (b"\x00" * 128, b"DICM", file_meta(sop_class, sop_instance, str(syntax)), encoded))
        if on_stored is not None:
            on_stored(key, path)
    except InstanceRefused as exc:
        counters.add("refused")
        LOG.warning("refused instance %s from %s: %s (status 0x%04X)", key.sop if key else sop_instance or "?",
                    peer, exc.reason, exc.status)
        store.log_rejection({
            "peer": peer, "sop_instance_uid": key.sop if key else sop_instance,
            "study_instance_uid": key.study if key else None, "sop_class_uid": sop_class,
            "status": f"0x{exc.status:04X}", "reason": exc.reason,
        })
        return exc.status
    except Exception as exc:  # never let a handler bug abort the association
        counters.add("refused")
        LOG.exception("refused instance %s from %s: unexpected error", sop_instance, peer)
        store.log_rejection({"peer": peer, "sop_instance_uid": sop_instance, "status": f"0x{PROCESSING_FAILURE:04X}",
                             "reason": f"internal error: {type(exc).__name__}: {exc}"})
        return PROCESSING_FAILURE
    counters.add("stored")
    return SUCCESS


def handle_echo(event: evt.Event) -> int:
    """EVT_C_ECHO handler: verification always succeeds."""
    return SUCCESS


def peer_text(assoc: Any) -> str:
    """``AET@address:port`` of an accepted association's requestor (for log lines and rejection records)."""
    try:
        requestor = assoc.requestor
        return f"{requestor.ae_title.strip()}@{requestor.address}:{requestor.port}"
    except Exception:  # noqa: BLE001 - only for a log line: an association without a requestor is "?"
        return "?"


def _on_established(event: evt.Event, counters: Counters) -> None:
    counters.add("associations")
    LOG.info("association from %s", peer_text(event.assoc))


def _on_rejected(event: evt.Event, counters: Counters, config: ListenConfig) -> None:
    counters.add("rejected_associations")
    assoc_rq = event.assoc.requestor.primitive
    calling = str(getattr(assoc_rq, "calling_ae_title", "") or "").strip()
    called = str(getattr(assoc_rq, "called_ae_title", "") or "").strip()
    if config.allowed_aets and calling not in config.allowed_aets:
        why = f"calling AE title {calling!r} is not allowed (allowed: {', '.join(config.allowed_aets)})"
    elif called != config.aet:
        why = f"called AE title {called!r} is not ours ({config.aet!r})"
    else:
        why = "too many associations"
    LOG.warning("rejected association from %s: %s", peer_text(event.assoc), why)


def storage_ae(config: ListenConfig) -> Any:
    """The AE of a storage SCP (``listen`` and its receiver processes): our AE title and timeouts, the called AE
    title required and the calling ones restricted as configured, a 1 MiB maximum PDU, verification and every
    storage SOP class in every transfer syntax."""
    ae = new_ae(config.aet, config.timeouts)
    ae.require_called_aet = True
    ae.maximum_pdu_size = RECEIVE_PDU
    allowed = [validate_aet(a, "allowed AE title") for a in config.allowed_aets]
    if allowed:
        ae.require_calling_aet = allowed
    ae.add_supported_context(VERIFICATION)
    support_contexts(ae, storage_contexts())
    return ae


class StorageSCP:
    """A storage SCP that stores every instance durably and reports each completed study.

    ``on_study_complete(study_dir)`` runs on the tracker's worker thread, one study at a time.
    Hooks for the live loop: ``on_instance(key, path)`` runs on the association thread after each
    instance is stored (it must return quickly); ``services`` adds SOP classes with their event
    handlers (e.g. MPPS: ``(MPPS_SOP_CLASS,), mpps_handlers(...)``).
    """

    def __init__(self, config: ListenConfig, on_study_complete: Callable[[Path], None], *,
                 on_instance: Callable[[InstanceKey, Path], None] | None = None,
                 services: Sequence[tuple[Sequence[str], Sequence[Any]]] = ()) -> None:
        self.config = config
        self.on_study_complete = on_study_complete
        self.on_instance = on_instance
        self.services = tuple(services)
        self.allowed = tuple(validate_aet(a, "allowed AE title") for a in config.allowed_aets)
        self.allowed_hosts = parse_networks(config.allowed_hosts, "allowed host")
        self.ssl_context = server_ssl_context(config.tls) if config.tls is not None else None
        self.store = InstanceStore(config.store, fsync=config.fsync)
        self.counters = Counters()
        self.tracker = StudyTracker(config.idle, self._complete, on_pending=self.store.mark_pending,
                                    on_settled=self._settled)
        self._server: GuardedServer | None = None
        self._in_flight = InFlight()
        self._pool: ReceiverPool | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (the port is chosen by the OS when configured as 0)."""
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Prepare the store, queue studies left pending by an earlier run, start listening.

        OSError when the store is not writable or the port cannot be bound.
        """
        self.store.prepare()
        for uid in self.store.pending_studies():
            LOG.info("study %s was received earlier but not audited; it will be audited", uid)
            self.tracker.recover(uid)
        self.tracker.start()
        brisk_reactors()
        ae = storage_ae(self.config)
        handlers = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_ESTABLISHED, _on_established, [self.counters]),
            (evt.EVT_REJECTED, _on_rejected, [self.counters, self.config]),
            *receiving_handlers(self.config.receive_limits, self._oversized),
        ]
        if self.config.fast_store:  # after receiving_handlers: its bounds are armed first
            handlers.append((evt.EVT_CONN_OPEN, self._arm_fast_store))
        for sop_classes, service_handlers in self.services:
            for sop_class in sop_classes:
                ae.add_supported_context(sop_class, list(NOT_DEFLATED))  # pynetdicom decodes these whole
            handlers.extend(service_handlers)
        try:
            if self.config.receivers:  # ready before the port is: a sender is never served by receivers still starting
                self._pool = self._start_receivers()
            self._server = start_guarded_server(
                ae, (self.config.bind, self.config.port), ssl_context=self.ssl_context, evt_handlers=handlers,
                pdu_seconds=self.config.timeouts.pdu, allowed=self.allowed_hosts,
                handshake_timeout=self.config.timeouts.acse, per_host=self.config.per_host,
                on_refused=self._refused_connection, dispatch=self._pool.dispatch if self._pool else None)
        except BaseException:
            if self._pool is not None:
                self._pool.stop(0)
                self._pool = None
            self.tracker.stop(flush=False)
            raise
        LOG.debug("listening as %s on %s:%d, storing in %s", self.config.aet, *self.address, self.config.store)

    def _start_receivers(self) -> ReceiverPool:
        """The receiver processes (the logs earlier ones left were placed by the store's prepare())."""
        per_message, total = self.config.receive_limits or config.receive_limits()
        settings = {
            "store": str(self.store.root), "aet": self.config.aet, "allowed_aets": list(self.allowed),
            "timeouts": dataclasses.asdict(self.config.timeouts), "fsync": self.config.fsync,
            "receive_limits": [per_message, total // (self.config.receivers + 1)],  # the bound shared out
            "fast_store": self.config.fast_store, "stop_grace": self.config.stop_grace,
            "log_level": logging.getLogger("protocolcheck").getEffectiveLevel(), "verbose": self.config.verbose,
        }
        pool = ReceiverPool(self.config.receivers, settings, self._noted, lambda: self.counters.add("refused"),
                            self.store.place_log, lambda what: self.counters.add(
                                "associations" if what == "established" else "rejected_associations"))
        pool.start()
        return pool

    def _noted(self, key: InstanceKey, path: Path) -> None:
        """An instance a receiver process stored (and marked its study pending with its own marker)."""
        self.counters.add("stored")
        self._stored(key, path)

    def _settled(self, study_uid: str) -> None:
        """The study was handed over with everything noted so far: its markers go (the receivers' too, unless one
        of them stored more of it meanwhile)."""
        self.store.clear_pending(study_uid)
        if self._pool is not None:
            self._pool.settled(study_uid)

    def _handle_store(self, event: evt.Event) -> int:
        """EVT_C_STORE handler (the C-STOREs :mod:`.fastpath` hands to pynetdicom: over TLS, ...)."""
        return self._in_flight.run(lambda: handle_store(event, self.store, self.counters, self._stored))

    def _arm_fast_store(self, event: evt.Event) -> None:
        arm_fast_store(event.assoc, self._serve_fast)

    def _serve_fast(self, request: StoreRequest, syntax: Any, data: bytes, assoc: Any) -> int:
        """:mod:`.fastpath`'s C-STORE: the same :func:`store_received` as :meth:`_handle_store`."""
        return self._in_flight.run(lambda: store_received(lambda: data, syntax, request.sop_class, request.sop_instance,
                                                    peer_text(assoc), self.store, self.counters, self._stored))

    def _stored(self, key: InstanceKey, path: Path) -> None:
        try:
            self.tracker.arrived(key.study)
        except OSError as exc:  # the study's marker could not be written (disk full): do not acknowledge
            raise InstanceRefused(OUT_OF_RESOURCES, f"cannot mark study {key.study} as pending: "
                                  f"{exc.strerror or exc}") from exc
        if self.on_instance is not None:
            try:
                self.on_instance(key, path)  # the file written (a duplicate's own name) or found
            except Exception:  # stored and marked: the instance is acknowledged regardless
                LOG.exception("instance hook failed for %s", key.sop)

    def _oversized(self, report: Exceeded) -> None:
        self.counters.add("refused")
        self.store.log_rejection(report.rejection())

    def _refused_connection(self, address: str, reason: str) -> None:
        self.counters.add("refused_connections")
        LOG.warning("refused connection from %s: %s", address, reason)

    def _complete(self, study_uid: str) -> None:
        self.counters.add("studies_completed")
        self.on_study_complete(self.store.study_dir(study_uid))

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting; close connections that carry no association at once; give running associations
        ``grace`` s (default ``config.stop_grace``) to end, then close them; let C-STORE handlers finish
        writing; hand over what is pending. Whatever peers do, this returns within about 2 x ``grace``
        plus the hand-over: an instance whose reply could not be sent is stored, and resent by its peer."""
        grace = self.config.stop_grace if grace is None else grace
        server = self._server
        if server is not None:
            stop_server(server, grace, busy=lambda: self._in_flight.count > 0)
            self._server = None
        if self._pool is not None:
            self._pool.stop(grace)
            self._pool = None
        self.tracker.stop(flush=True)
        try:
            self.store.close()
        except OSError as exc:  # the log's records stay: they are placed again at the next start
            LOG.error("cannot checkpoint the write-ahead log of %s: %s", self.store.root, exc.strerror or exc)


def wait_for_signal(stop: threading.Event | None = None) -> int:
    """Block until SIGTERM or SIGINT (or ``stop`` is set); return the signal number (0 for ``stop``)."""
    stop = stop or threading.Event()
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return received[0] if received else 0
