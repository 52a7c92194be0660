"""What the DICOM network roles share: peers, timeouts, AE titles, UIDs, SOP classes, errors.

Everything here is pynetdicom plumbing without policy: the storage SCP (:mod:`.scp`), the
query/retrieve client (:mod:`.qr`) and the worklist client (:mod:`.mwl`) build on it. Client
associations always carry connect/ACSE/DIMSE/network timeouts, and a failed association is turned
into a :class:`NetError` that says whether the peer was unreachable, rejected us (and why), failed
the TLS handshake, did not answer in time, or aborted. DICOM TLS (PS3.15 Annex B, TLS 1.2 or later)
is configured with :class:`TlsOptions` and turned into :mod:`ssl` contexts here.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class, uid_to_sop_class
from pynetdicom.transport import AssociationSocket

from protocolcheck.errors import RunError

LOG = logging.getLogger("protocolcheck.net")

DEFAULT_AET = "PROTOCOLCHECK"

# Storage SOP classes the SCP and the C-GET client accept. The images the audit reads (MR, CT in
# classic, enhanced and legacy-converted forms), plus what modalities send along with them
# (secondary captures, presentation states, dose and key-object reports, PDFs, raw data), so that a
# study pushed from a scanner is not refused half-way. Kept well below the 128 presentation
# contexts a C-GET association can carry.
STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR Spectroscopy
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.3.12.2.1107.5.9.1",  # Siemens CSA Non-Image (sent along with Siemens MR studies)
)

# The image classes for which a C-GET proposes each compressed transfer syntax in a context of its
# own, so that the PACS can send a file as it is stored instead of having to decompress it (which
# fails when it lacks the codec, e.g. JPEG 2000 in Orthanc).
RETRIEVE_IMAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.4.1",
    "1.2.840.10008.5.1.4.1.1.4.4",
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
    "1.2.840.10008.5.1.4.1.1.7",
)
UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
# Contexts whose datasets pynetdicom decodes itself (C-FIND identifiers, C-GET/C-MOVE replies, MPPS):
# never Deflated (pynetdicom's default list has it), since pynetdicom would inflate those whole.
# Storage contexts take every syntax: their datasets are decoded by scp.decode_received, under the cap.
NOT_DEFLATED = UNCOMPRESSED
COMPRESSED = (
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99",
)

# pynetdicom creates its named SOP classes at import time, out of mypy's sight: look them up by UID (PS3.4).
VERIFICATION = uid_to_sop_class("1.2.840.10008.1.1")


def storage_service(uid: str) -> bool:
    """Whether pynetdicom serves SOP class ``uid`` with its Storage service class (an unknown UID: no)."""
    try:
        return issubclass(uid_to_service_class(uid), StorageServiceClass)
    except Exception:  # noqa: BLE001 - pynetdicom raises several types for a UID it cannot place
        return False
STUDY_ROOT_FIND = uid_to_sop_class("1.2.840.10008.5.1.4.1.2.2.1")
STUDY_ROOT_MOVE = uid_to_sop_class("1.2.840.10008.5.1.4.1.2.2.2")
STUDY_ROOT_GET = uid_to_sop_class("1.2.840.10008.5.1.4.1.2.2.3")
WORKLIST_FIND = uid_to_sop_class("1.2.840.10008.5.1.4.31")
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"

_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII except backslash
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UID_MAX = 128  # the standard says 64; some archives hand out longer ones, accept them as names
_DATE_RE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")


class NetErrorKind(str, Enum):
    """Why a network operation could not be done."""

    UNREACHABLE = "unreachable"  # no TCP connection (refused, timed out, name not resolved)
    REJECTED = "rejected"  # the peer refused the association (wrong AE title, ...)
    ABORTED = "aborted"  # the peer or the network broke the association
    FAILED = "failed"  # the association worked but the operation reported a failure status
    TIMEOUT = "timeout"  # the peer accepted the connection but stopped answering
    TLS = "tls"  # the TLS handshake failed (certificate not trusted, peer not speaking TLS, ...)


class NetError(RunError):
    """A network operation failed; ``str()`` is a complete message naming the peer."""

    def __init__(self, kind: NetErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


FIND_TOTAL_FACTOR = 5  # a whole C-FIND may take this many reply timeouts (--timeout 60: 5 minutes)


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a TCP connection, association negotiation, a DIMSE reply, silence, for one
    PDU to arrive whole once its first byte has (or for a peer to take what we send), and for a whole
    C-FIND exchange."""

    connect: float = 10.0
    acse: float = 30.0
    dimse: float = 120.0
    network: float = 120.0
    pdu: float = 30.0
    total: float = 600.0  # one whole C-FIND, however its replies are spread out

    @classmethod
    def from_option(cls, seconds: float) -> Timeouts:
        """Every timeout from one ``--timeout``: connecting at most 10 s, a PDU at most 30 s, a whole
        C-FIND :data:`FIND_TOTAL_FACTOR` times as long."""
        return cls(connect=min(seconds, 10.0), acse=seconds, dimse=seconds, network=seconds,
                   pdu=min(seconds, 30.0), total=FIND_TOTAL_FACTOR * seconds)


DEFAULT_TIMEOUTS = Timeouts()  # the defaults of every network call that takes timeouts

@dataclass(frozen=True)
class TlsOptions:
    """DICOM TLS settings (PEM files).

    Client side: ``ca`` is the file of trusted CA certificates for the peer's certificate (default:
    the system's), ``cert``/``key`` our own certificate when the peer asks for one. Server side:
    ``cert``/``key`` are required; with ``ca`` a client certificate is verified when presented, and
    ``require_client_cert`` refuses clients without one.
    """

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    require_client_cert: bool = False


@dataclass(frozen=True)
class Peer:
    """A remote application entity and the AE title we use towards it (over TLS when ``tls`` is set)."""

    host: str
    port: int
    called_aet: str
    calling_aet: str = DEFAULT_AET
    tls: TlsOptions | None = None

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}" + (" (TLS)" if self.tls else "")


def _readable(path: str | None, what: str) -> str:
    if not path:
        raise ValueError(f"{what} is missing")
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{what} {path} does not exist or is not a file")
    try:
        with open(file, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    return str(file)


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(getattr(exc, "verify_message", "") or "") or str(exc)
    return f"{reason}: {text}" if reason and str(reason) not in text else text


def _load_chain(context: ssl.SSLContext, tls: TlsOptions) -> None:
    cert = _readable(tls.cert, "TLS certificate file")
    key = _readable(tls.key, "TLS private key file")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"TLS certificate {cert} with key {key} cannot be used ({_ssl_reason(exc)}); "
                         "both must be PEM files, and the key must belong to the certificate") from exc


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    path = _readable(ca, "TLS CA file")
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"TLS CA file {path} cannot be used ({_ssl_reason(exc)}); it must hold PEM "
                         "certificates") from exc


@functools.lru_cache(maxsize=16)
def client_ssl_context(tls: TlsOptions) -> ssl.SSLContext:
    """The context for our TLS client associations; ValueError naming the file that cannot be used.

    TLS 1.2 or later, the peer's certificate verified against ``tls.ca`` (else the system's CAs) and
    its name checked against the host we connect to.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca:
        _load_ca(context, tls.ca)
    if tls.cert or tls.key:
        _load_chain(context, tls)
    return context


def server_ssl_context(tls: TlsOptions) -> ssl.SSLContext:
    """The context for our TLS servers; ValueError naming the file that cannot be used."""
    if tls.require_client_cert and not tls.ca:
        raise ValueError("requiring client certificates needs a CA file to verify them (--tls-ca)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, tls)
    if tls.ca:
        _load_ca(context, tls.ca)
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


class LineLog:
    """A file that whole lines are appended to (JSON lines): a line is there entirely or not at all.

    Each line goes out in ``write()`` calls on an ``O_APPEND`` descriptor; when one fails part-way
    (disk full, file size limit), the file is cut back to its size before the line, so a partial
    record never merges with the next one. A file that already ends mid-line (a crash of an older
    writer) gets a newline first. ``fsync`` makes each appended line durable before ``append`` returns.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = str(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            size = os.fstat(self._fd).st_size
            if size:
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        self._write(b"\n")
        except OSError:
            os.close(self._fd)
            raise

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def append(self, line: str) -> None:
        """Append ``line`` and a newline; OSError (nothing of the line left in the file) on failure."""
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        with self._lock:
            size = os.fstat(self._fd).st_size
            try:
                self._write(data)
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:
                try:
                    os.ftruncate(self._fd, size)
                except OSError as exc:
                    LOG.error("cannot cut the partial line off %s: %s", self.path, exc.strerror or exc)
                raise

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: Sequence[str], what: str = "address") -> tuple[Network, ...]:
    """IP networks from ``10.0.0.5``, ``10.0.0.0/24`` or ``::1`` texts; ValueError naming a bad one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{what} {text!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from exc
    return tuple(networks)


def address_allowed(address: str, networks: Sequence[Network]) -> bool:
    """True when ``address`` is in one of ``networks`` (IPv4-mapped IPv6 addresses count as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def validate_aet(text: str, what: str = "AE title") -> str:
    """Return the AE title stripped; ValueError if it is not 1-16 printable ASCII characters."""
    value = (text or "").strip()
    if not _AET_RE.match(value):
        raise ValueError(f"{what} {text!r} is not valid: use 1-16 printable ASCII characters, no backslash")
    return value


def safe_uid(value: Any, what: str = "UID") -> str:
    """A UID usable as a file or folder name: digits and dots only, so no path can be smuggled in.

    Trailing NUL/space padding is removed; anything else that is not a plain UID raises ValueError.
    """
    text = str(value or "").strip().rstrip("\x00").strip()
    if not text:
        raise ValueError(f"missing {what}")
    if len(text) > _UID_MAX or not _UID_RE.match(text):
        raise ValueError(f"{what} {text[:80]!r} is not a valid UID (digits and dots only)")
    return text


def validate_date_range(text: str) -> str:
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or ``YYYYMMDD-`` (DICOM DA range); ISO dashes allowed."""
    value = (text or "").strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        value = value.replace("-", "")
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}--?\d{4}-\d{2}-\d{2}", value):
        start, end = value[:10], value[-10:]
        value = start.replace("-", "") + "-" + end.replace("-", "")
    if not value or value == "-" or not _DATE_RE.match(value):
        raise ValueError(f"date {text!r} is not a DICOM date or range: use YYYYMMDD or YYYYMMDD-YYYYMMDD")
    return value


def storage_contexts(sop_classes: Sequence[str] = STORAGE_SOP_CLASSES) -> list[PresentationContext]:
    """One presentation context per storage class, offering every transfer syntax (JPEG 2000 included)."""
    return [build_context(uid, ALL_TRANSFER_SYNTAXES) for uid in sop_classes]


def support_contexts(ae: AE, contexts: Iterable[PresentationContext]) -> None:
    """Accept ``contexts`` (as built by :func:`storage_contexts`) when a peer proposes them."""
    for cx in contexts:
        ae.add_supported_context(_abstract_syntax(cx), cx.transfer_syntax)


def request_contexts(ae: AE, contexts: Iterable[PresentationContext]) -> None:
    """Propose ``contexts`` (as built by :func:`retrieve_contexts`) when we open an association."""
    for cx in contexts:
        ae.add_requested_context(_abstract_syntax(cx), cx.transfer_syntax)


def _abstract_syntax(cx: PresentationContext) -> str:
    """The SOP class of a context we built (pynetdicom types it optional: a context being negotiated may lack it)."""
    if cx.abstract_syntax is None:
        raise ValueError(f"presentation context {cx.context_id} has no abstract syntax")
    return cx.abstract_syntax


def retrieve_contexts() -> list[PresentationContext]:
    """Storage contexts for a C-GET requestor (at most 128 in all, with the query/retrieve one).

    Every class gets one context with the uncompressed syntaxes; the image classes also get one
    context per compressed syntax, so the PACS can pick the one matching each stored file.
    """
    contexts = [build_context(uid, list(UNCOMPRESSED)) for uid in STORAGE_SOP_CLASSES]
    for uid in RETRIEVE_IMAGE_CLASSES:
        contexts += [build_context(uid, ts) for ts in COMPRESSED]
    return contexts


# The longest PDU read from a peer. P-DATA PDUs are bounded by the maximum length we negotiate
# (pynetdicom: 16 KB); an A-ASSOCIATE-RQ with 128 presentation contexts and many transfer
# syntaxes each stays well below 1 MB. A 4 GB length field is refused before a byte of it is read.
MAX_PDU_BYTES = 4 << 20


class DeadlineSocket(AssociationSocket):
    """pynetdicom's association socket with a deadline for each PDU read and each send.

    Instances are made by :func:`arm_deadlines` from the socket pynetdicom created (the class of a
    live object is switched, so pynetdicom's connection events and state stay as they are).
    """

    pdu_seconds: float = 30.0

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` within :attr:`pdu_seconds` of the call (fewer when the peer closes);
        TimeoutError past the deadline, OSError for a length beyond :data:`MAX_PDU_BYTES`."""
        sock = self.socket
        if sock is None:
            return bytearray()
        if nr_bytes > MAX_PDU_BYTES:
            self._closing(f"it announced a PDU of {nr_bytes} bytes (at most {MAX_PDU_BYTES} accepted)")
            self._no_request()
            raise OSError(f"PDU of {nr_bytes} bytes refused")
        deadline = time.monotonic() + self.pdu_seconds
        data = bytearray()
        while len(data) < nr_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._closing(f"a PDU did not arrive whole within {self.pdu_seconds:g} s "
                              f"({len(data)} of {nr_bytes} bytes)")
                self._no_request()
                raise TimeoutError("PDU read deadline passed")
            sock.settimeout(remaining)
            with contextlib.suppress(OSError):  # ack at once: a sender's Nagle waits for it (40 ms delayed ACK)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            try:
                chunk = sock.recv(min(1 << 16, nr_bytes - len(data)))
            except TimeoutError:
                continue  # the loop reports it (the deadline has passed)
            if not chunk:
                self._no_request()
                break  # the peer closed: pynetdicom sees a short read
            data.extend(chunk)
        return data

    def _no_request(self) -> None:
        """The connection ends before an association request arrived: wake the acceptor thread that
        waits for it (pynetdicom would keep it, and its place in the association count, for the whole
        ACSE timeout)."""
        assoc = self.assoc
        if assoc.is_acceptor and assoc.requestor.primitive is None and not assoc.is_established:
            # None is what receive_pdu returns on a timeout; pynetdicom types the queue without it
            assoc.dul.to_user_queue.put(None)  # type: ignore[arg-type]

    def send(self, bytestream: bytes) -> None:
        """Send, waiting at most :attr:`pdu_seconds` for a peer that does not read."""
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.settimeout(self.pdu_seconds)
        super().send(bytestream)

    def _closing(self, why: str) -> None:
        try:
            peer = self.assoc.acceptor if self.assoc.is_requestor else self.assoc.requestor
            who = f"{peer.address}:{peer.port}"
        except Exception:  # noqa: BLE001 - best effort for the log line
            who = "?"
        LOG.warning("closing the connection with %s: %s", who, why)


def arm_deadlines(event: evt.Event, pdu_seconds: float) -> None:
    """EVT_CONN_OPEN handler: make the association's socket a :class:`DeadlineSocket`."""
    sock = event.assoc.dul.socket
    if isinstance(sock, AssociationSocket):
        if not isinstance(sock, DeadlineSocket):
            sock.__class__ = DeadlineSocket
        cast(DeadlineSocket, sock).pdu_seconds = pdu_seconds  # its class was just changed


def deadline_handler(pdu_seconds: float) -> tuple[Any, Any, list[Any]]:
    """The ``(EVT_CONN_OPEN, arm_deadlines, [pdu_seconds])`` handler every association gets."""
    return (evt.EVT_CONN_OPEN, arm_deadlines, [pdu_seconds])


def shut(sock: socket.socket | None) -> None:
    """Shut a socket down both ways (wakes a thread blocked in ``recv``/``send`` on it); never raises."""
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)


def association_socket(assoc: Any) -> socket.socket | None:
    """The OS socket under a pynetdicom association (None once closed)."""
    try:
        sock = assoc.dul.socket.socket
    except AttributeError:
        return None
    return sock if isinstance(sock, socket.socket) else None


class NetAE(AE):
    """A pynetdicom AE that also carries the PDU deadline (:attr:`Timeouts.pdu`) of its associations."""

    pdu_seconds: float = Timeouts.pdu


def new_ae(aet: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> NetAE:
    """A pynetdicom AE with our timeouts (every read and send deadline included)."""
    ae = NetAE(ae_title=validate_aet(aet))
    ae.connection_timeout = timeouts.connect
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    ae.network_timeout = timeouts.network
    ae.pdu_seconds = timeouts.pdu
    ae.maximum_associations = 64
    return ae


def associate(ae: AE, peer: Peer, ext_neg: list[Any] | None = None,
              evt_handlers: list[Any] | None = None) -> Association:
    """Open an association to ``peer``; raise :class:`NetError` saying why it could not be opened."""
    replies: list[Any] = []

    def on_acse_recv(event: evt.Event) -> None:
        # pynetdicom sets a notification event's own attributes (here the ACSE primitive) at run time;
        # its Event class declares only the attributes every event has.
        replies.append(event.primitive)  # type: ignore[attr-defined]

    tls_args = None
    if peer.tls is not None:
        try:
            tls_args = (client_ssl_context(peer.tls), peer.host)
        except ValueError as exc:
            raise NetError(NetErrorKind.TLS, f"cannot connect to {peer}: {exc}") from exc
    pdu_seconds = getattr(ae, "pdu_seconds", Timeouts.pdu)
    handlers: list[Any] = [(evt.EVT_ACSE_RECV, on_acse_recv), deadline_handler(pdu_seconds)]
    handlers += list(evt_handlers or [])
    started = time.monotonic()
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_aet, ext_neg=ext_neg,
                         evt_handlers=handlers, tls_args=tls_args)
    elapsed = time.monotonic() - started
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise NetError(NetErrorKind.REJECTED,
                       f"{peer} rejected the association from {peer.calling_aet}{_rejection_detail(replies)}; "
                       f"check the called AE title and that {peer.calling_aet!r} is configured on the peer")
    if any(hasattr(r, "presentation_context_definition_results_list") for r in replies):
        raise NetError(NetErrorKind.REJECTED,
                       f"{peer} accepted the association but none of the proposed services "
                       f"({', '.join(sorted({str(cx.abstract_syntax) for cx in ae.requested_contexts}))[:200]})")
    raise _unanswered(ae, peer, tls_args[0] if tls_args is not None else None, bool(replies), elapsed)


def _rejection_detail(replies: list[Any]) -> str:
    """' (result; source: reason)' from the A-ASSOCIATE-RJ among ``replies``, or ''."""
    detail = ""
    for reply in replies:
        if hasattr(reply, "reason_str"):
            try:
                detail = f" ({reply.result_str}; {reply.source_str}: {reply.reason_str})"
            except Exception:  # noqa: BLE001 - unusual reply codes
                detail = ""
    return detail


def _unanswered(ae: AE, peer: Peer, tls: ssl.SSLContext | None, answered: bool, elapsed: float) -> NetError:
    """Why an association request was neither accepted nor rejected: unreachable, TLS, silence or abort."""
    connect = ae.connection_timeout or 10.0
    reason = probe(peer.host, peer.port, connect)
    if reason:
        return NetError(NetErrorKind.UNREACHABLE, f"{peer} is unreachable: {reason}")
    if tls is not None:
        reason = probe_tls(peer.host, peer.port, connect, tls)
        if reason:
            return NetError(NetErrorKind.TLS, f"TLS with {peer} failed: {reason}")
    acse = ae.acse_timeout or 30.0
    if not answered and elapsed >= 0.9 * acse:
        return NetError(NetErrorKind.TIMEOUT,
                        f"{peer} accepted the TCP connection but did not answer the association request "
                        f"within {acse:g} s (hung or overloaded, or not a DICOM service)")
    return NetError(NetErrorKind.ABORTED,
                    f"{peer} accepted the TCP connection but did not complete the association "
                    "(aborted or timed out); is it a DICOM service"
                    + (" speaking TLS?" if tls is not None else " (or does it expect TLS)?"))


def probe(host: str, port: int, timeout: float) -> str:
    """'' when a TCP connection to host:port can be opened, else a short human reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except socket.gaierror as exc:
        return f"host name {host!r} not resolved ({exc.strerror})"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return "connection refused (nothing listening on that port)"
        return exc.strerror or str(exc)


def probe_tls(host: str, port: int, timeout: float, context: ssl.SSLContext) -> str:
    """'' when a TLS handshake with host:port succeeds, else a short human reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            # With TLS 1.3 the server judges our certificate after the handshake: read briefly
            # to catch its alert (a healthy DICOM server sends nothing before our request).
            tls.settimeout(min(timeout, 2.0))
            try:
                if tls.recv(1) == b"":
                    return ("the peer closed the connection right after the handshake "
                            "(does it accept our certificate?)")
            except TimeoutError:
                pass
            return ""
    except ssl.SSLCertVerificationError as exc:
        return (f"the peer's certificate is not trusted ({_ssl_reason(exc)}); pass the CA that signed it "
                "with --tls-ca")
    except ssl.SSLError as exc:
        return _handshake_failure(_ssl_reason(exc))
    except TimeoutError:
        return f"no TLS handshake within {timeout:g} s"
    except OSError as exc:
        if isinstance(exc, ConnectionResetError) or exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return ("the peer closed the connection during the handshake "
                    "(does it speak TLS, and accept our certificate?)")
        return exc.strerror or str(exc)


def _handshake_failure(text: str) -> str:
    """What an OpenSSL handshake error ``text`` means for the user, and what to pass."""
    if "WRONG_VERSION_NUMBER" in text.upper() or "wrong version number" in text:
        return f"the peer does not speak TLS on this port ({text})"
    if "CERTIFICATE_REQUIRED" in text.upper() or "certificate required" in text:
        return f"the peer requires a client certificate ({text}); pass --tls-cert and --tls-key"
    if any(word in text.upper() for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return f"the peer does not accept our certificate ({text}); it must be signed by a CA the peer trusts"
    return f"handshake failed ({text})"


def status_text(status: Any) -> str:
    """'0xC000' style text for a DIMSE status dataset (or 'no response')."""
    code = getattr(status, "Status", None) if status is not None else None
    if code is None:
        return "no response"
    comment = str(getattr(status, "ErrorComment", "") or "").strip()
    return f"0x{int(code):04X}" + (f" ({comment})" if comment else "")


PENDING = (0xFF00, 0xFF01)  # DIMSE Pending statuses (more replies follow)


def peer_aborted(started: float, timeouts: Timeouts) -> bool:
    """An empty reply well before the DIMSE timeout means the peer aborted (not that it was slow).

    ``started`` is when the last reply arrived: pynetdicom waits up to the DIMSE timeout for each one.
    """
    return time.monotonic() - started < 0.9 * timeouts.dimse


class FindEnd(str, Enum):
    """How a C-FIND exchange ended."""

    DONE = "done"  # a final success status
    ABORTED = "aborted"  # no reply, well before the DIMSE timeout: the peer aborted
    SILENT = "silent"  # no reply within the DIMSE timeout


MAX_FIND_REPLIES = 10_000  # C-FIND matches kept (about 4 KB each in memory); more: narrow the query


def find(peer: Peer, sop_class: Any, identifier: Dataset, timeouts: Timeouts, what: str = "C-FIND",
         max_replies: int = MAX_FIND_REPLIES, evt_handlers: Sequence[Any] = ()) -> tuple[list[Dataset], FindEnd]:
    """One C-FIND: the identifiers of the pending replies and how the exchange ended (the caller words
    the abort and silence errors); NetError when the peer cannot be reached or answers a failure, sends
    more than ``max_replies`` matches, or the whole exchange outlasts ``timeouts.total`` (a peer that
    drips replies just inside the per-reply timeout): the association is then aborted. ``evt_handlers`` go
    to the association (the bound on each reply's size, :mod:`.receiving`)."""
    ae = new_ae(peer.calling_aet, timeouts)
    ae.add_requested_context(sop_class, list(NOT_DEFLATED))
    assoc = associate(ae, peer, evt_handlers=list(evt_handlers))
    replies: list[Dataset] = []
    end = FindEnd.DONE
    with Deadline(assoc, timeouts.total) as deadline:
        started = time.monotonic()
        for status, ds in assoc.send_c_find(identifier, sop_class):
            code = getattr(status, "Status", None)
            if deadline.expired.is_set():
                break
            if code is None:
                end = FindEnd.ABORTED if peer_aborted(started, timeouts) else FindEnd.SILENT
                break
            started = time.monotonic()  # the DIMSE timeout applies to each reply
            if code in PENDING and ds is not None:
                if len(replies) >= max_replies:
                    deadline.abort = True
                    break
                replies.append(ds)
            elif code not in PENDING and code != 0x0000:
                raise NetError(NetErrorKind.FAILED, f"{what} on {peer} failed: status {status_text(status)}")
    if deadline.expired.is_set():
        raise NetError(NetErrorKind.TIMEOUT, f"{what} on {peer}: no complete answer within {timeouts.total:g} s "
                       f"({len(replies)} matches had arrived, each within the reply timeout); aborted")
    if deadline.abort:
        raise NetError(NetErrorKind.FAILED, f"{what} on {peer}: more than {max_replies} matches; narrow the query "
                       "(a shorter date range, a modality)")
    return replies, end


class Deadline:
    """``with Deadline(assoc, seconds)``: past ``seconds`` the association's socket is shut (every wait on
    it ends at once) and ``expired`` is set; on exit the association is aborted when it expired or
    ``abort`` was set, else released."""

    def __init__(self, assoc: Association, seconds: float) -> None:
        self.assoc = assoc
        self.expired = threading.Event()
        self.abort = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired.set()
        shut(association_socket(self.assoc))

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        if self.abort or self.expired.is_set():
            self.assoc.abort()
        else:
            release(self.assoc)


def echo(peer: Peer, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
    """C-ECHO the peer; NetError when it does not answer with success."""
    ae = new_ae(peer.calling_aet, timeouts)
    ae.add_requested_context(VERIFICATION)
    assoc = associate(ae, peer)
    try:
        status = assoc.send_c_echo()
    finally:
        release(assoc)
    if getattr(status, "Status", None) != 0:
        raise NetError(NetErrorKind.FAILED, f"C-ECHO to {peer} answered {status_text(status)}")


def release(assoc: Association) -> None:
    if assoc.is_established:
        assoc.release()
