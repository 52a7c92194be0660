"""The TCP side of every association we accept or open: read deadlines, connection limits, shutdown.

pynetdicom reads a PDU with blocking ``recv()`` calls: a peer that sends 16 bytes of a 300-byte PDU
and stops holds the association's thread in ``recv()`` past every pynetdicom timeout (those are
checked between PDUs, never inside one), and nothing short of closing the socket wakes it.

- :class:`DeadlineSocket` gives every read a deadline: a PDU must arrive whole within
  ``Timeouts.pdu`` seconds of its first byte, and a send must not wait longer than that for a peer
  that stops reading. A PDU longer than :data:`MAX_PDU_BYTES` is refused before it is read.
  :func:`deadline_handler` arms it on every association (accepted or opened, plain or TLS) at the
  moment its connection opens (``EVT_CONN_OPEN``), so no path can forget it.
- :class:`GuardedServer` is the accepting side: a peer-address allow-list (checked before any byte
  is read), at most ``per_host`` open connections from one address (so a host holding stalled
  connections cannot starve the others), the TLS handshake on the connection's own thread within a
  timeout, and :meth:`GuardedServer.close_connections` to wake every thread stuck on a socket when
  the service stops.
"""

from __future__ import annotations

import copy
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from protocolcheck.net.common import (
    Network,
    address_allowed,
    association_socket,
    deadline_handler,
    shut,
)

LOG = logging.getLogger("protocolcheck.net.transport")
DEFAULT_PER_HOST = 16  # open connections from one peer address (a modality sends with 1-8)


class SharedContext(PresentationContext):
    """A presentation context the server offers, copied cheaply: pynetdicom deep-copies the server's contexts for
    every association it accepts, which for ``listen``'s 1,300 storage contexts validated every UID again (20 ms
    of the one core Python code runs on, per association). A copy shares the immutable UIDs and has its own list
    of transfer syntaxes, which is all a deep copy gives."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedContext:
        twin = copy.copy(self)
        twin._transfer_syntax = list(self._transfer_syntax)
        return twin


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with an address allow-list, a per-address connection limit, the
    TLS handshake off the accepting thread, and a way to close every open connection.

    ``allowed``: networks a peer address must belong to (empty: any). ``per_host``: open connections
    one address may hold (0: no limit). ``handshake_timeout``: seconds a client has to complete the
    TLS handshake. ``on_refused(address, reason)`` is called for every connection closed here.
    """

    request_queue_size = 128  # the listen backlog (socketserver's 5 delays real senders behind a burst)

    def __init__(self, *args: Any, allowed: Sequence[Network] = (), handshake_timeout: float = 30.0,
                 per_host: int = DEFAULT_PER_HOST, on_refused: Callable[[str, str], None] | None = None,
                 **kwargs: Any) -> None:
        self.allowed = tuple(allowed)
        self.handshake_timeout = handshake_timeout
        self.per_host = per_host
        self.on_refused = on_refused
        self._open: dict[int, tuple[socket.socket, str]] = {}  # id(socket) -> (socket, peer address)
        self._dispatched: set[int] = set()  # id(socket) of connections served by a receiver process
        # (socket, address) -> whether another process served it (net/receivers.py); None: all served here
        self.dispatch: Callable[[socket.socket, Any], bool] | None = None
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        for context in self.contexts:  # its own copies of the AE's (pynetdicom made them)
            if type(context) is PresentationContext:
                context.__class__ = SharedContext

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept only: no TLS handshake here (it would block every other client while it lasts)."""
        assert self.socket is not None
        client, address = self.socket.accept()
        return client, address

    def open_connections(self, host: str | None = None) -> int:
        """Connections still open (from ``host``, or from anyone)."""
        with self._open_lock:
            for key, (sock, _) in list(self._open.items()):
                if sock.fileno() == -1:
                    del self._open[key]
            return sum(1 for _, peer in self._open.values() if host is None or peer == host)

    def _track(self, sock: socket.socket, host: str, replaces: socket.socket | None = None) -> None:
        with self._open_lock:
            if replaces is not None:
                self._open.pop(id(replaces), None)
            self._open[id(sock)] = (sock, host)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = str(client_address[0])
        if self.allowed and not address_allowed(host, self.allowed):
            self._refused(client_address, "address not in the allowed hosts ("
                          + ", ".join(str(n) for n in self.allowed) + ")")
            return False  # socketserver closes the connection without reading from it
        if self.per_host and self.open_connections(host) >= self.per_host:
            self._refused(client_address, f"{self.per_host} connections from {host} are already open (the limit "
                          "per address); closed unread")
            return False
        self._track(request, host)
        return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            raw = request
            try:
                request.settimeout(self.handshake_timeout)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ValueError) as exc:
                reason = str(getattr(exc, "verify_message", "") or "") or str(exc) or type(exc).__name__
                if "WRONG_VERSION_NUMBER" in reason or "HTTP_REQUEST" in reason:
                    reason = "the client does not speak TLS: plain DICOM on a TLS port? " + reason
                self._refused(client_address, f"TLS handshake failed ({reason})")
                self.shutdown_request(request)
                return
            self._track(request, str(client_address[0]), replaces=raw)
        elif self.dispatch is not None and self._hand_over(request, client_address):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def _hand_over(self, request: socket.socket, client_address: Any) -> bool:
        """Let ``dispatch`` serve the connection in another process; whether it did (it returns when that process is
        done with it). The socket stays tracked here meanwhile: limits per address, and stop() closing it."""
        assert self.dispatch is not None
        with self._open_lock:
            self._dispatched.add(id(request))
        try:
            return self.dispatch(request, client_address)
        except Exception:  # serve it here instead
            LOG.exception("handing the connection from %s:%s to a receiver failed", *client_address[:2])
            return False
        finally:
            with self._open_lock:
                self._dispatched.discard(id(request))

    def dispatched(self) -> int:
        """Connections being served by receiver processes."""
        with self._open_lock:
            return len(self._dispatched)

    def close_connections(self, established: bool = True) -> int:
        """Shut down every open connection (with ``established=False``: only those without an
        established association); returns how many. Threads blocked on them wake up and end."""
        keep: set[int] = set()
        if not established:
            with self._open_lock:
                keep |= self._dispatched  # associations in receiver processes count as established
            for assoc in self.active_associations:
                if assoc.is_established and (sock := association_socket(assoc)) is not None:
                    keep.add(id(sock))
        with self._open_lock:
            victims = [sock for key, (sock, _) in self._open.items() if key not in keep and sock.fileno() != -1]
            for sock in victims:
                del self._open[id(sock)]
        for sock in victims:
            shut(sock)
        return len(victims)

    def _refused(self, client_address: Any, reason: str) -> None:
        address = f"{client_address[0]}:{client_address[1]}"
        if self.on_refused is not None:
            self.on_refused(address, reason)


def start_guarded_server(ae: Any, address: tuple[str, int], *, ssl_context: ssl.SSLContext | None,
                         evt_handlers: list[Any], pdu_seconds: float, allowed: Sequence[Network] = (),
                         handshake_timeout: float = 30.0, per_host: int = DEFAULT_PER_HOST,
                         on_refused: Callable[[str, str], None] | None = None,
                         dispatch: Callable[[socket.socket, Any], bool] | None = None) -> GuardedServer:
    """Start a :class:`GuardedServer` for ``ae`` on its own thread (as ``AE.start_server(block=False)``
    does), every association on it with :class:`DeadlineSocket` reads of ``pdu_seconds``; ``dispatch``: see
    :attr:`GuardedServer.dispatch`."""
    handlers = [*evt_handlers, deadline_handler(pdu_seconds)]
    server = ae.make_server(address, ssl_context=ssl_context, evt_handlers=handlers, server_class=GuardedServer,
                            allowed=allowed, handshake_timeout=handshake_timeout, per_host=per_host,
                            on_refused=on_refused)
    server.dispatch = dispatch
    thread = threading.Thread(target=server.serve_forever, name="protocolcheck-scp-acceptor", daemon=True)
    thread.start()
    ae._servers.append(server)  # pynetdicom's server.shutdown() removes it from this list
    return server


def stop_server(server: GuardedServer, grace: float, busy: Callable[[], bool] = lambda: False) -> None:
    """Stop accepting; close connections without an association at once; give established associations
    ``grace`` seconds to end, then close them too; then wait (up to ``grace`` again) while ``busy()``
    (e.g. a C-STORE handler still writing). Never waits on a peer beyond that."""
    server.shutdown()
    server.close_connections(established=False)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (any(a.is_established for a in server.active_associations)
                                           or server.dispatched()):
        time.sleep(0.05)
    closed = server.close_connections()
    if closed:
        LOG.warning("closed %d connection(s) still open %g s after the stop", closed, grace)
    deadline = time.monotonic() + grace
    while busy() and time.monotonic() < deadline:
        time.sleep(0.05)
