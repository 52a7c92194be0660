"""C-STORE requests served where they are read: the data phase of ``listen``'s storage associations without
pynetdicom's per-message machinery.

Why: pynetdicom passes every P-DATA PDU through its state machine and DIMSE assembler to a queue, where the
association's own thread picks the message up, decodes its command set with pydicom, calls the handler,
encodes the response with pydicom and queues it back to the reader thread, which encodes the PDU and sends it.
That round trip costs about 1.5 ms of the one core Python code runs on per C-STORE -- more than deciding and
storing the instance durably (0.9 ms) -- and it is what kept ``listen`` below Orthanc's ingest rate
(``benchmarks/live_ingest.py``). Here the reader thread of an accepted association (pynetdicom's DUL thread)
gathers a C-STORE-RQ from the PDVs it reads, serves it with the same function pynetdicom's handler calls
(:func:`~protocolcheck.net.scp.store_received`), and writes the C-STORE-RSP itself: byte for byte the response
pynetdicom would send (``tests/test_net_fastpath.py`` compares them).

What stays pynetdicom's: association negotiation, release and abort, its timers, TLS connections, and every
message that is not a well-formed C-STORE-RQ of a storage SOP class on an accepted presentation context (C-ECHO,
MPPS, a malformed command set, a C-STORE without data set ...): such a message's PDVs are handed to pynetdicom
whole and in order, as PDUs it decodes itself, so it answers them exactly as before. Only state Sta6 (association
established) is served here; the PS3.8 state machine does not move on P-DATA in that state, so skipping it for
these PDUs leaves it right. The received bytes are bounded as pynetdicom's are (:mod:`.receiving`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import struct
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pydicom.uid import UID
from pynetdicom.dul import DULServiceProvider

from protocolcheck.net.common import MAX_PDU_BYTES, storage_service
from protocolcheck.net.receiving import COMMAND_SET, Account, BoundedDIMSE, refuse

LOG = logging.getLogger("protocolcheck.net.fastpath")

# PS3.8 section 9.3.1: PDU type and the header of a P-DATA-TF PDU; section 9.3.5.1: a PDV item (length, context ID,
# message control header: bit 0 set for a command fragment, bit 1 set for the last fragment).
P_DATA_TF = 0x04
PDU_HEADER = struct.Struct(">BBL")
PDV_HEADER = struct.Struct(">LBB")
COMMAND_FRAGMENT = 0x01
LAST_FRAGMENT = 0x02
# PS3.7 section 9.3.1.1/9.3.1.2 and E.1: command fields and the Command Data Set Type meaning "no data set".
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
# PS3.7 section 6.3.1: command elements are implicit VR little endian, group 0000.
ELEMENT_HEADER = struct.Struct("<HHL")
US = struct.Struct("<H")
# After answering, the reader waits this long for the next request before pynetdicom's loop polls again (its poll
# sleeps cost a quarter of a millisecond per request), and hands itself back to that loop (its timers, its queue
# of primitives to send) at least this often.
SERVE_WAIT = 0.002
SERVE_SLICE = 0.1
# Below this maximum PDU length of the peer our one-PDV response might not fit: pynetdicom answers (fragments).
SMALLEST_PEER_PDU = 1024

# Tags (group 0000) of the command elements read and written here.
AFFECTED_SOP_CLASS = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_RESPONDED = 0x0120
DATA_SET_TYPE = 0x0800
STATUS = 0x0900
AFFECTED_SOP_INSTANCE = 0x1000


@dataclass(frozen=True)
class StoreRequest:
    """What a C-STORE-RQ asks, as far as serving it needs."""

    context_id: int
    message_id: int
    sop_class: str
    sop_instance: str


# The callable that serves one request: (request, transfer syntax, data set bytes, association) -> status.
Serve = Callable[[StoreRequest, UID, bytes, Any], int]


def command_elements(command: bytes) -> dict[int, bytes] | None:
    """The elements of a command set (element number -> value bytes); None when it is not a well-formed group
    0000 in implicit VR little endian (pynetdicom then decodes it, and answers or aborts as it does)."""
    elements: dict[int, bytes] = {}
    at, end = 0, len(command)
    while at < end:
        if at + 8 > end:
            return None
        group, element, length = ELEMENT_HEADER.unpack_from(command, at)
        at += 8
        if group != 0 or at + length > end:
            return None
        elements[element] = command[at:at + length]
        at += length
    return elements


def _uid(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        text = value.decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError:
        return None
    return text or None


def store_request(context_id: int, elements: dict[int, bytes]) -> StoreRequest | None:
    """The C-STORE-RQ these command elements make, or None (another command, or one lacking what a C-STORE-RQ
    must have: PS3.7 table 9.1-1)."""
    field, message_id, kind = (elements.get(t) for t in (COMMAND_FIELD, MESSAGE_ID, DATA_SET_TYPE))
    if field is None or len(field) != 2 or US.unpack(field)[0] != C_STORE_RQ:
        return None
    if message_id is None or len(message_id) != 2 or kind is None or len(kind) != 2:
        return None
    if US.unpack(kind)[0] == NO_DATA_SET:
        return None
    sop_class, sop_instance = _uid(elements.get(AFFECTED_SOP_CLASS)), _uid(elements.get(AFFECTED_SOP_INSTANCE))
    if sop_class is None or sop_instance is None:
        return None
    return StoreRequest(context_id, US.unpack(message_id)[0], sop_class, sop_instance)


def _element(number: int, value: bytes) -> bytes:
    return ELEMENT_HEADER.pack(0, number, len(value)) + value


def _uid_value(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def store_response(request: StoreRequest, status: int) -> bytes:
    """The P-DATA-TF PDU answering ``request`` with ``status``: one PDV holding the whole C-STORE-RSP command set
    (PS3.7 table 9.1-1), the elements pynetdicom's response has, in its order."""
    body = b"".join((
        _element(AFFECTED_SOP_CLASS, _uid_value(request.sop_class)),
        _element(COMMAND_FIELD, US.pack(C_STORE_RSP)),
        _element(MESSAGE_ID_RESPONDED, US.pack(request.message_id)),
        _element(DATA_SET_TYPE, US.pack(NO_DATA_SET)),
        _element(STATUS, US.pack(status)),
        _element(AFFECTED_SOP_INSTANCE, _uid_value(request.sop_instance)),
    ))
    command = _element(0x0000, struct.pack("<L", len(body))) + body
    pdv = PDV_HEADER.pack(len(command) + 2, request.context_id, COMMAND_FRAGMENT | LAST_FRAGMENT) + command
    return PDU_HEADER.pack(P_DATA_TF, 0, len(pdv)) + pdv


class _Message:
    """The message being received: undecided until its command set is whole, then served here (``request``
    set) or handed to pynetdicom (``handed``)."""

    __slots__ = ("command", "context_id", "data", "handed", "has_data", "items", "request", "syntax")

    def __init__(self, context_id: int) -> None:
        self.context_id = context_id
        self.items: list[memoryview] = []  # raw PDV items while undecided (handed to pynetdicom if it is not ours)
        self.command: list[bytes] = []
        self.data: list[bytes] = []
        self.request: StoreRequest | None = None
        self.syntax: UID | None = None
        self.handed = False
        self.has_data = True


class FastStoreDUL(DULServiceProvider):
    """pynetdicom's DUL provider of an accepted storage association, serving C-STORE requests itself in state
    Sta6 (made by :func:`arm_fast_store` from the provider of a new connection)."""

    serves_stores = True  # read by commit._paced_sleep(): the association's own reactor has nothing to hurry for
    serve: Serve
    account: Account
    message: _Message | None
    handover: list[memoryview]

    def _read_pdu_data(self) -> None:
        if self.state_machine.current_state != "Sta6" or self.socket is None:
            super()._read_pdu_data()
            return
        start = time.monotonic()
        while True:
            pdu = self._read_pdu()
            if pdu is None:
                return
            header, body = pdu
            if header[0] != P_DATA_TF:  # A-RELEASE-RQ, A-ABORT ...: pynetdicom's, in the order read
                self._hand_over(header + body)
                return
            self._data(body)
            if not self._quiet() or time.monotonic() - start > SERVE_SLICE or not self._next_ready():
                return
            self._idle_timer.restart()

    def _quiet(self) -> bool:
        """Whether pynetdicom's loop has nothing to do (no event to act on, nothing to send, not stopping)."""
        return (self.event_queue.empty() and not self.to_provider_queue.queue and not self._kill_thread
                and self.state_machine.current_state == "Sta6")

    def _next_ready(self) -> bool:
        """Whether the next PDU starts arriving within :data:`SERVE_WAIT`."""
        sock = getattr(self.socket, "socket", None)
        if sock is None:
            return False
        try:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():  # decrypted already: select cannot see it
                return True
            return bool(select.select([sock], [], [], SERVE_WAIT)[0])
        except (OSError, ValueError):  # closed meanwhile: pynetdicom's loop finds out
            return False

    def _read_pdu(self) -> tuple[bytes, bytes] | None:
        """One whole PDU from the socket (its header, its body), or None with the event pynetdicom queues for what
        went wrong."""
        sock = cast(Any, self.socket)
        try:
            with contextlib.suppress(OSError):  # ack at once: a sender's Nagle waits for it (as DeadlineSocket does)
                sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            header = self._receive(6)
            if len(header) == 6:
                pdu_type, _, length = PDU_HEADER.unpack(header)
                if pdu_type not in range(0x01, 0x08):
                    LOG.error("unknown PDU type 0x%02X received", pdu_type)
                    self.event_queue.put("Evt19")  # unrecognised or invalid PDU
                    return None
                body = self._receive(length) if length <= MAX_PDU_BYTES else bytes(sock.recv(length))  # refused
                if len(body) == length:
                    return header, body
        except (OSError, TimeoutError) as exc:  # the socket's own log line names what happened
            LOG.debug("connection closed before the entire PDU was received: %s", exc)
        self.event_queue.put("Evt17")  # transport connection closed
        return None

    def _receive(self, n: int) -> bytes:
        """``n`` bytes: what has arrived already, read without waiting (one system call; a socket read with a
        timeout costs four), the rest through the socket's reads with their deadline (fewer when the peer closes)."""
        sock = cast(Any, self.socket)
        raw = sock.socket
        data = b""
        if not isinstance(raw, ssl.SSLSocket):
            with contextlib.suppress(BlockingIOError, InterruptedError):
                data = os.read(raw.fileno(), n)  # the socket is non-blocking (it has a timeout)
        if len(data) < n:
            data += bytes(sock.recv(n - len(data)))
        return data

    def _send_now(self, data: bytes) -> None:
        """Send ``data`` as far as the socket takes it at once, the rest through the socket's deadline send."""
        sock = cast(Any, self.socket)
        raw = sock.socket
        sent = 0
        if not isinstance(raw, ssl.SSLSocket):
            with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                sent = os.write(raw.fileno(), data)
        if sent < len(data):
            sock.send(data[sent:])

    def _hand_over(self, pdu: bytes) -> None:
        """Let pynetdicom decode ``pdu`` and act on it, as if it had read it itself."""
        try:
            decoded, event = self._decode_pdu(bytearray(pdu))
        except Exception:  # pynetdicom's own reaction to an undecodable PDU
            LOG.exception("unable to decode the received PDU")
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(decoded)

    def _data(self, pdu: bytes) -> None:
        """Route each PDV of a P-DATA-TF PDU's body: gathered here, or handed to pynetdicom with its message."""
        view = memoryview(pdu)
        at, end = 0, len(pdu)
        self.handover = []
        # One pass per PDV, up to a few per PDU: a plain loop, as pynetdicom's own decoder does.
        while at < end:
            if at + 6 > end:
                return self._malformed()
            length, context_id, control = PDV_HEADER.unpack_from(pdu, at)
            if length < 2 or at + 4 + length > end:
                return self._malformed()
            item = view[at:at + 4 + length]  # views, not copies: a data set fragment is copied once, when kept
            value = view[at + 6:at + 4 + length]
            at += 4 + length
            if not self._pdv(item, context_id, control, value):
                return None
        self._flush_handover()
        return None

    def _pdv(self, item: memoryview, context_id: int, control: int, value: memoryview) -> bool:
        """One PDV; False when the association is being aborted (nothing more of the PDU is read)."""
        message = self.message
        if message is None:
            message = self.message = _Message(context_id)
        if message.handed:
            self.handover.append(item)
            if self._ends(message, control):
                self.message = None
                self._flush_handover()  # one message per PDU: pynetdicom drops what follows a message's end
            return True
        if context_id != message.context_id or (message.request is None) != bool(control & COMMAND_FRAGMENT):
            return self._not_ours(message, item)  # pynetdicom decides what such a stream deserves
        if message.request is None:
            return self._command(message, item, control, bytes(value))
        which = self.account.charge(0, len(value))
        if which:
            return self._exceeded(message, which, self.account.data + len(value))
        message.data.append(bytes(value))
        if control & LAST_FRAGMENT:
            self.message = None
            self._answer(message)
        return True

    def _command(self, message: _Message, item: memoryview, control: int, value: bytes) -> bool:
        which = self.account.charge(len(value), 0)
        if which:
            return self._exceeded(message, which, self.account.receiving - self.account.data + len(value))
        message.items.append(item)
        message.command.append(value)
        if not control & LAST_FRAGMENT:
            return True
        elements = command_elements(b"".join(message.command))
        request = store_request(message.context_id, elements) if elements is not None else None
        syntax = self._syntax(request) if request is not None and not self._behind() else None
        if request is None or syntax is None:
            if elements is not None:
                kind = elements.get(DATA_SET_TYPE)
                message.has_data = kind is None or len(kind) != 2 or US.unpack(kind)[0] != NO_DATA_SET
            return self._not_ours(message, None)
        message.request, message.syntax, message.items = request, syntax, []
        return True

    def _syntax(self, request: StoreRequest) -> UID | None:
        """The transfer syntax of the request's presentation context when it is ours to serve: accepted, a
        storage SOP class, a peer able to take our one-PDV response; None otherwise."""
        assoc = self.assoc
        context = assoc._accepted_cx.get(request.context_id)  # pynetdicom's table of accepted contexts
        if context is None or not context.transfer_syntax:
            return None
        peer_pdu = assoc.requestor.maximum_length
        if peer_pdu and peer_pdu < SMALLEST_PEER_PDU:
            return None
        if not storage_service(request.sop_class):  # an unknown or other SOP class: pynetdicom answers it
            return None
        return UID(context.transfer_syntax[0])

    def _not_ours(self, message: _Message, item: memoryview | None) -> bool:
        """Hand ``message`` (what was gathered of it, and ``item``) to pynetdicom, which counts it again."""
        self.account.drop()
        message.handed = True
        self.handover.extend(message.items)
        message.items, message.command = [], []
        if item is not None:
            self.handover.append(item)
            control = item[5]
        else:
            control = COMMAND_FRAGMENT | LAST_FRAGMENT
        if self._ends(message, control):
            self.message = None
            self._flush_handover()
        return True

    def _behind(self) -> bool:
        """Whether pynetdicom has yet to answer a message handed to it (one served here now would be answered
        first: answers go out in the order of the requests)."""
        dimse = self.assoc.dimse
        account = getattr(dimse, "account", None)
        return bool(self.handover or not self.event_queue.empty() or self.to_provider_queue.queue
                    or dimse.message is not None or account is None or account.waiting or account.handling)

    @staticmethod
    def _ends(message: _Message, control: int) -> bool:
        """Whether a PDV with this control header ends a message handed to pynetdicom."""
        if not control & LAST_FRAGMENT:
            return False
        if control & COMMAND_FRAGMENT:
            return not message.has_data
        return True

    def _flush_handover(self) -> None:
        items, self.handover = self.handover, []
        if items:
            body = b"".join(items)
            self._hand_over(PDU_HEADER.pack(P_DATA_TF, 0, len(body)) + body)

    def _answer(self, message: _Message) -> None:
        request, syntax = cast(StoreRequest, message.request), cast(UID, message.syntax)
        data = message.data[0] if len(message.data) == 1 else b"".join(message.data)
        message.data = []
        try:
            status = self.serve(request, syntax, data, self.assoc)
        finally:
            self.account.drop()
        self._send_now(store_response(request, status))

    def _malformed(self) -> None:
        """A P-DATA-TF PDU whose items do not add up: pynetdicom's answer to an invalid PDU (abort)."""
        LOG.error("invalid P-DATA-TF PDU received")
        self.message = None
        self.account.drop()
        self.event_queue.put("Evt19")

    def _exceeded(self, message: _Message, which: str, received: int) -> bool:
        self.message = None
        request = message.request
        refuse(self.assoc, self.account, which, received, "C-STORE-RQ" if request or which != COMMAND_SET
               else "DIMSE message", request.sop_class if request else "", request.sop_instance if request else "")
        return False


def arm_fast_store(assoc: Any, serve: Serve) -> None:
    """Serve the C-STORE requests of ``assoc`` (an accepted association, its connection just opened) with ``serve``
    in its reader thread. Its bytes are bounded by the account :mod:`.receiving` armed for it (armed first)."""
    dul = assoc.dul
    dimse = assoc.dimse
    if isinstance(dul, FastStoreDUL) or not isinstance(dimse, BoundedDIMSE):
        return
    fast = cast(FastStoreDUL, dul)
    fast.serve = serve
    fast.account = dimse.account.sibling()
    fast.message = None
    fast.handover = []
    weakref.finalize(assoc, fast.account.close)  # whatever way the association ends
    with contextlib.suppress(TypeError):  # its class changes last: everything it reads is set
        dul.__class__ = FastStoreDUL
