"""What the DICOM network roles share: peers, timeouts, AE titles, UIDs, SOP classes, errors.

Everything here is pynetdicom plumbing without policy: the storage SCP (:mod:`.scp`), the
query/retrieve client (:mod:`.qr`) and the worklist client (:mod:`.mwl`) build on it. Client
associations always carry connect/ACSE/DIMSE/network timeouts, and a failed association is turned
into a :class:`NetError` that says whether the peer was unreachable, rejected us (and why), failed
the TLS handshake, did not answer in time, or aborted. DICOM TLS (PS3.15 Annex B, TLS 1.2 or later)
is configured with :class:`TlsOptions` and turned into :mod:`ssl` contexts here.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context

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
COMPRESSED = (
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99",
)

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
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


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a TCP connection, association negotiation, a DIMSE reply, silence."""

    connect: float = 10.0
    acse: float = 30.0
    dimse: float = 120.0
    network: float = 120.0


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


def retrieve_contexts() -> list[PresentationContext]:
    """Storage contexts for a C-GET requestor (at most 128 in all, with the query/retrieve one).

    Every class gets one context with the uncompressed syntaxes; the image classes also get one
    context per compressed syntax, so the PACS can pick the one matching each stored file.
    """
    contexts = [build_context(uid, list(UNCOMPRESSED)) for uid in STORAGE_SOP_CLASSES]
    for uid in RETRIEVE_IMAGE_CLASSES:
        contexts += [build_context(uid, ts) for ts in COMPRESSED]
    return contexts


def new_ae(aet: str, timeouts: Timeouts = Timeouts()) -> AE:
    """A pynetdicom AE with our timeouts and no limit on concurrent associations."""
    ae = AE(ae_title=validate_aet(aet))
    ae.connection_timeout = timeouts.connect
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    ae.network_timeout = timeouts.network
    ae.maximum_associations = 64
    return ae


def associate(ae: AE, peer: Peer, ext_neg: list[Any] | None = None,
              evt_handlers: list[Any] | None = None) -> Association:
    """Open an association to ``peer``; raise :class:`NetError` saying why it could not be opened."""
    replies: list[Any] = []

    def on_acse_recv(event: evt.Event) -> None:
        replies.append(event.primitive)

    tls_args = None
    if peer.tls is not None:
        try:
            tls_args = (client_ssl_context(peer.tls), peer.host)
        except ValueError as exc:
            raise NetError(NetErrorKind.TLS, f"cannot connect to {peer}: {exc}") from exc
    handlers = [(evt.EVT_ACSE_RECV, on_acse_recv)] + list(evt_handlers or [])
    started = time.monotonic()
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_aet, ext_neg=ext_neg,
                         evt_handlers=handlers, tls_args=tls_args)
    elapsed = time.monotonic() - started
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        detail = ""
        for reply in replies:
            if hasattr(reply, "reason_str"):
                try:
                    detail = f" ({reply.result_str}; {reply.source_str}: {reply.reason_str})"
                except Exception:  # noqa: BLE001 - unusual reply codes
                    detail = ""
        raise NetError(NetErrorKind.REJECTED,
                       f"{peer} rejected the association from {peer.calling_aet}{detail}; "
                       f"check the called AE title and that {peer.calling_aet!r} is configured on the peer")
    if any(hasattr(r, "presentation_context_definition_results_list") for r in replies):
        raise NetError(NetErrorKind.REJECTED,
                       f"{peer} accepted the association but none of the proposed services "
                       f"({', '.join(sorted({str(cx.abstract_syntax) for cx in ae.requested_contexts}))[:200]})")
    connect = ae.connection_timeout or 10.0
    reason = probe(peer.host, peer.port, connect)
    if reason:
        raise NetError(NetErrorKind.UNREACHABLE, f"{peer} is unreachable: {reason}")
    if tls_args is not None:
        reason = probe_tls(peer.host, peer.port, connect, tls_args[0])
        if reason:
            raise NetError(NetErrorKind.TLS, f"TLS with {peer} failed: {reason}")
    acse = ae.acse_timeout or 30.0
    if not replies and elapsed >= 0.9 * acse:
        raise NetError(NetErrorKind.TIMEOUT,
                       f"{peer} accepted the TCP connection but did not answer the association request "
                       f"within {acse:g} s (hung or overloaded, or not a DICOM service)")
    raise NetError(NetErrorKind.ABORTED,
                   f"{peer} accepted the TCP connection but did not complete the association "
                   "(aborted or timed out); is it a DICOM service"
                   + (" speaking TLS?" if tls_args is not None else " (or does it expect TLS)?"))


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
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                # With TLS 1.3 the server judges our certificate after the handshake: read briefly
                # to catch its alert (a healthy DICOM server sends nothing before our request).
                tls.settimeout(min(timeout, 2.0))
                try:
                    if tls.recv(1) == b"":
                        return "the peer closed the connection right after the handshake (does it accept our certificate?)"
                except TimeoutError:
                    pass
                return ""
    except ssl.SSLCertVerificationError as exc:
        return (f"the peer's certificate is not trusted ({_ssl_reason(exc)}); pass the CA that signed it "
                "with --tls-ca")
    except ssl.SSLError as exc:
        text = _ssl_reason(exc)
        if "WRONG_VERSION_NUMBER" in text.upper() or "wrong version number" in text:
            return f"the peer does not speak TLS on this port ({text})"
        if "CERTIFICATE_REQUIRED" in text.upper() or "certificate required" in text:
            return f"the peer requires a client certificate ({text}); pass --tls-cert and --tls-key"
        if any(word in text.upper() for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
            return f"the peer does not accept our certificate ({text}); it must be signed by a CA the peer trusts"
        return f"handshake failed ({text})"
    except TimeoutError:
        return f"no TLS handshake within {timeout:g} s"
    except OSError as exc:
        if isinstance(exc, ConnectionResetError) or exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return "the peer closed the connection during the handshake (does it speak TLS, and accept our certificate?)"
        return exc.strerror or str(exc)


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


def find(peer: Peer, sop_class: Any, identifier: Dataset, timeouts: Timeouts,
         what: str = "C-FIND") -> tuple[list[Dataset], FindEnd]:
    """One C-FIND: the identifiers of the pending replies and how the exchange ended (the caller words
    the abort and silence errors); NetError when the peer cannot be reached or answers a failure."""
    ae = new_ae(peer.calling_aet, timeouts)
    ae.add_requested_context(sop_class)
    assoc = associate(ae, peer)
    replies: list[Dataset] = []
    end = FindEnd.DONE
    started = time.monotonic()
    try:
        for status, ds in assoc.send_c_find(identifier, sop_class):
            code = getattr(status, "Status", None)
            if code is None:
                end = FindEnd.ABORTED if peer_aborted(started, timeouts) else FindEnd.SILENT
                break
            started = time.monotonic()  # the DIMSE timeout applies to each reply
            if code in PENDING:
                if ds is not None:
                    replies.append(ds)
            elif code != 0x0000:
                raise NetError(NetErrorKind.FAILED, f"{what} on {peer} failed: status {status_text(status)}")
    finally:
        release(assoc)
    return replies, end


def echo(peer: Peer, timeouts: Timeouts = Timeouts()) -> None:
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
