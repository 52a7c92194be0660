"""A bound on the DIMSE messages a peer sends us: per message, and for all associations of the process at once.

pynetdicom gathers a message (command set, then data set) fragment by fragment, over any number of
P-DATA PDUs, in memory, with no limit: each PDU is bounded (:data:`~.common.MAX_PDU_BYTES`, a read deadline),
the message is not, and a peer may send complete messages faster than they are handled (they wait in the
association's message queue). Here every association we accept (``listen``, MPPS, ``query``'s C-MOVE
destination) or that receives C-STOREs (``query``'s C-GET) counts, before pynetdicom keeps them, the bytes of

- the message being received (at most ``per_message``), and
- everything the process holds: messages being received, waiting, or being handled (at most the
  :class:`ReceiveBudget`'s limit, shared by every association of the process).

Past either bound the association is aborted at once (A-ABORT, as pynetdicom does for an invalid PDU: the
message gathered so far is dropped, later PDUs are ignored) and ``on_exceeded`` is told (the SCP logs it and adds
a line to the store's ``.rejected.jsonl``). Messages received whole before it are handled as usual; the other
associations go on. A message's bytes are given back when its handler is done (the association asks for the
next message) or when the association ends.

It is armed by one ``EVT_CONN_OPEN`` handler (:func:`receiving_handler`), like :class:`~.common.DeadlineSocket`:
the association's DIMSE provider becomes a :class:`BoundedDIMSE` (its class is switched; pynetdicom's state
stays as it is) and its message queue a :class:`_CountingQueue`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider

from protocolcheck import config
from protocolcheck.net.common import association_socket

LOG = logging.getLogger("protocolcheck.net.receiving")


class ReceiveBudget:
    """Bytes of received DIMSE messages the process holds (being received, waiting, being handled), and
    their limit (``limit``: bytes; settable, e.g. by ``listen --max-receiving``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.configured = False  # the limit was set by a command's option (not from the environment)
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Add ``n`` bytes unless that would pass the limit (then nothing is added: False)."""
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        if n:
            with self._lock:
                self.held -= n


RECEIVING = ReceiveBudget(config.MAX_RECEIVING_BYTES)  # the process's; its limit set by receiving_handlers()


@dataclass(frozen=True)
class Exceeded:
    """A message that passed a bound: who sent it, what it was, how many bytes, which bound."""

    peer: str  # AE@address:port
    command: str  # e.g. C-STORE-RQ
    sop_class_uid: str
    sop_instance_uid: str
    received: int  # bytes received before it was dropped (the last PDU's included): of the data set, of the
    # command set (``which`` = COMMAND_SET), or of the whole message (ALL_ASSOCIATIONS)
    bound: int
    which: str  # "per message" or "all associations"

    @property
    def reason(self) -> str:
        if self.which == PER_MESSAGE:
            return f"data set larger than {self.bound} bytes, the limit per message ({self.received} bytes received)"
        if self.which == COMMAND_SET:
            return f"command set larger than {self.bound} bytes ({self.received} bytes received)"
        return (f"the messages being received by all associations would pass {self.bound} bytes, their limit "
                f"({self.received} bytes of this one received)")


    def rejection(self) -> dict[str, Any]:
        """The line for a store's ``.rejected.jsonl`` (as :func:`~.scp.handle_store` writes refusals)."""
        return {"peer": self.peer, "sop_instance_uid": self.sop_instance_uid, "study_instance_uid": None,
                "sop_class_uid": self.sop_class_uid, "status": "A-ABORT",
                "reason": f"{self.command} {self.reason}; association aborted"}


PER_MESSAGE = "per message"
COMMAND_SET = "command set"
ALL_ASSOCIATIONS = "all associations"
# A command set is a few hundred bytes (PS3.7 section 9.3, E.1): its fragments are bounded apart from the data set.
MAX_COMMAND_BYTES = 64 << 10


class Account:
    """One association's bytes: the message being received, the messages waiting (in order), the one being
    handled. Kept apart from the association so a finalizer can give them back. (:mod:`.fastpath` keeps a
    :meth:`sibling` for the messages it gathers itself.)"""

    def __init__(self, budget: ReceiveBudget, per_message: int) -> None:
        self.budget = budget
        self.per_message = per_message
        self.lock = threading.Lock()
        self.receiving = 0  # bytes of the message being received (command and data set)
        self.data = 0  # of them, data set bytes
        self.waiting: collections.deque[int] = collections.deque()
        self.handling = 0
        self.closed = False
        self.refused = False  # aborted here for passing a bound

    def charge(self, command: int, data: int) -> str:
        """Count ``command`` more command set bytes and ``data`` more data set bytes of the message being received;
        '' or the bound they would pass."""
        with self.lock:
            if self.closed:
                return ALL_ASSOCIATIONS
            if command and self.receiving - self.data + command > MAX_COMMAND_BYTES:
                return COMMAND_SET
            if self.data + data > self.per_message:
                return PER_MESSAGE
            if not self.budget.take(command + data):
                return ALL_ASSOCIATIONS
            self.receiving += command + data
            self.data += data
            return ""

    def sibling(self) -> Account:
        """A new account under the same bounds (same budget, same bound per message)."""
        return Account(self.budget, self.per_message)

    def drop(self) -> int:
        """Give back the message being received (it will not be kept); its bytes."""
        with self.lock:
            n, self.receiving, self.data = self.receiving, 0, 0
        self.budget.give(n)
        return n

    def queued(self) -> None:
        with self.lock:
            if not self.closed:
                self.waiting.append(self.receiving)
                self.receiving = self.data = 0

    def taken(self) -> None:
        with self.lock:
            if not self.closed and self.waiting:
                self.handling += self.waiting.popleft()

    def done(self) -> None:
        with self.lock:
            n, self.handling = self.handling, 0
        self.budget.give(n)

    def close(self) -> None:
        with self.lock:
            n = self.receiving + sum(self.waiting) + self.handling
            self.receiving, self.data, self.handling, self.closed = 0, 0, 0, True
            self.waiting.clear()
        self.budget.give(n)


class _CountingQueue(queue.Queue[Any]):  # pynetdicom's queue of (context ID, message)
    """The DIMSE message queue: a complete message put on it moves from 'being received' to 'waiting'."""

    account: Account

    def _put(self, item: Any) -> None:
        if item[1] is not None:  # pynetdicom puts (None, None) to wake a reader when the association ends
            self.account.queued()
        super()._put(item)


class BoundedDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider counting what it gathers (made by :func:`arm_receiving` from the provider of
    a live association)."""

    account: Account
    on_exceeded: Callable[[Exceeded], None] | None

    def receive_primitive(self, primitive: Any) -> None:
        account = self.account
        command = data = 0
        for _, value in primitive.presentation_data_value_list:
            if value[0] & 1:  # the message control header (not kept): bit 0 set for command set fragments
                command += len(value) - 1
            else:
                data += len(value) - 1
        which = account.charge(command, data)
        if which:
            self._refuse(which, (account.receiving - account.data + command) if which == COMMAND_SET
                         else account.data + data)
            return
        super().receive_primitive(primitive)
        if self.message is None and account.receiving:  # complete but not queued (C-CANCEL, invalid, ...)
            account.drop()

    def get_msg(self, block: bool = False) -> Any:
        account = self.account
        if account.handling:  # the association asks for the next message: the last one has been handled
            account.done()
        item = super().get_msg(block)
        if item[1] is not None:
            account.taken()
        return item

    def _refuse(self, which: str, received: int) -> None:
        """Drop the message being gathered and abort (:func:`refuse`)."""
        message, self.message = self.message, None
        refuse(self.assoc, self.account, which, received, _command(message), _uid(message, "AffectedSOPClassUID"),
               _uid(message, "AffectedSOPInstanceUID"))


def refuse(assoc: Any, account: Account, which: str, received: int, command: str, sop_class: str,
           sop_instance: str) -> None:
    """A message of ``assoc`` passed the bound ``which`` after ``received`` bytes: drop what it holds, abort the
    association (A-ABORT, then pynetdicom ignores what the peer still sends), and report it once."""
    account.drop()
    accounts = [a for a in (getattr(assoc.dimse, "account", None), getattr(assoc.dul, "account", None), account)
                if isinstance(a, Account)]
    first = not any(a.refused for a in accounts)
    for each in accounts:
        each.refused = True
        each.close()
    if not first:
        return
    assoc.dul.event_queue.put("Evt19")  # pynetdicom's own abort for an unacceptable PDU (AA-8)
    sock = association_socket(assoc)
    if sock is not None:  # no more reading: the A-ABORT goes out, then the connection closes (a peer that
        with contextlib.suppress(OSError):  # went on sending would hold us until the ARTIM timer, 30 s)
            sock.shutdown(socket.SHUT_RD)
    bound = {PER_MESSAGE: account.per_message, COMMAND_SET: MAX_COMMAND_BYTES}.get(which, account.budget.limit)
    report = Exceeded(_peer(assoc), command, sop_class, sop_instance, received, bound, which)
    LOG.warning("aborted the association with %s: %s %s: %s", report.peer, report.command,
                report.sop_instance_uid or "?", report.reason)
    on_exceeded = getattr(assoc.dimse, "on_exceeded", None)
    if on_exceeded is not None:
        try:
            on_exceeded(report)
        except Exception:
            LOG.exception("reporting the aborted message of %s failed", report.peer)


def _peer(assoc: Any) -> str:
    try:
        peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
        return f"{str(peer.ae_title).strip()}@{peer.address}:{peer.port}"
    except Exception:  # noqa: BLE001 - only for the log line
        return "?"


def _command(message: Any) -> str:
    name = type(message).__name__ if message is not None else ""
    return name.replace("_", "-") if name and name != "DIMSEMessage" else "DIMSE message"


def _uid(message: Any, keyword: str) -> str:
    try:
        return str(getattr(message.command_set, keyword, "") or "")
    except AttributeError:
        return ""


def arm_receiving(event: evt.Event, per_message: int, budget: ReceiveBudget,
                  on_exceeded: Callable[[Exceeded], None] | None) -> None:
    """EVT_CONN_OPEN handler: count the association's received messages (:class:`BoundedDIMSE`)."""
    dimse = event.assoc.dimse
    if isinstance(dimse, BoundedDIMSE):
        return
    account = Account(budget, per_message)
    counting = _CountingQueue()
    counting.account = account
    dimse.msg_queue = counting
    dimse.__class__ = BoundedDIMSE
    bounded = cast(BoundedDIMSE, dimse)  # its class was just changed
    bounded.account = account
    bounded.on_exceeded = on_exceeded
    weakref.finalize(event.assoc, account.close)  # whatever way the association ends


def _end(event: evt.Event) -> None:
    """EVT_RELEASED / EVT_ABORTED / EVT_CONN_CLOSE: the association's messages are given back. After our abort,
    a requestor waiting for a reply (``query``'s C-GET) is woken, as pynetdicom does when a connection drops."""
    dimse = event.assoc.dimse
    fast = getattr(event.assoc.dul, "account", None)  # :mod:`.fastpath`'s
    if isinstance(fast, Account):
        fast.close()
    account = getattr(dimse, "account", None)
    if isinstance(account, Account):
        account.close()
        if account.refused and event.assoc.is_requestor and event.event is evt.EVT_CONN_CLOSE:
            dimse.msg_queue.put((None, None))


def receiving_handlers(limits: tuple[int, int] | None = None, on_exceeded: Callable[[Exceeded], None] | None = None,
                       budget: ReceiveBudget = RECEIVING) -> list[Any]:
    """The event handlers that bound an association's received messages. ``limits`` = (bytes of one message,
    bytes of all messages the process holds): given (``listen --max-dataset/--max-receiving``), the second is
    ``budget``'s limit from then on; not given, both come from :func:`protocolcheck.config.receive_limits`
    (ValueError when its environment variables are malformed), the second unless a command set it."""
    if limits is not None:
        per_message, budget.limit = limits
        budget.configured = True
    else:
        per_message, total = config.receive_limits()
        if not budget.configured:
            budget.limit = total
    return [(evt.EVT_CONN_OPEN, arm_receiving, [per_message, budget, on_exceeded]),
            (evt.EVT_RELEASED, _end), (evt.EVT_ABORTED, _end), (evt.EVT_CONN_CLOSE, _end)]
