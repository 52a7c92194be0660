"""One receiver process of ``listen --receivers N`` (:mod:`.receivers`): it serves the storage associations the main
process hands it, with the main process's own storage code (:func:`~.scp.storage_ae`, :func:`~.scp.store_received`,
:mod:`.fastpath`, :mod:`.receiving`), into the same store with its own write-ahead log.

Run as ``python -m protocolcheck.net.receiver FD`` by the main process only: FD is its end of the control socket.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.uid import UID
from pynetdicom import evt

from protocolcheck.logs import network_logging
from protocolcheck.net.commit import brisk_reactors
from protocolcheck.net.common import Timeouts, deadline_handler
from protocolcheck.net.fastpath import StoreRequest, arm_fast_store
from protocolcheck.net.instances import (
    OUT_OF_RESOURCES,
    PENDING_MARKER,
    SUCCESS,
    InstanceKey,
    InstanceRefused,
    InstanceStore,
)
from protocolcheck.net.receivers import Channel, receive_message
from protocolcheck.net.receiving import Exceeded, receiving_handlers
from protocolcheck.net.scp import (
    Counters,
    InFlight,
    ListenConfig,
    handle_echo,
    handle_store,
    peer_text,
    storage_ae,
    store_received,
)
from protocolcheck.net.transport import GuardedServer, stop_server

LOG = logging.getLogger("protocolcheck.net.receiver")



class ReceiverServer(GuardedServer):
    """The receiver's server: it listens nowhere; the main process hands it connections (:meth:`serve`), and is told
    when each has closed (the main process then lets its copy go)."""

    control: Channel
    connection_ids: dict[int, int]  # id(socket) -> the main process's connection number, until the association opens
    by_association: dict[int, int]  # id(association) -> that number, until its connection closes

    def shutdown(self) -> None:
        """Nothing to stop accepting: it listens nowhere (socketserver's would wait for a serve loop that never ran)."""

    def serve(self, sock: socket.socket, address: tuple[str, int], connection: int) -> None:
        self.connection_ids[id(sock)] = connection
        self._track(sock, address[0])
        self.process_request(sock, address)  # a thread per association, as the main process's server

    def opened(self, event: evt.Event) -> None:
        """EVT_CONN_OPEN: the association of a handed connection."""
        sock = getattr(event.assoc.dul.socket, "socket", None)
        connection = self.connection_ids.pop(id(sock), None)
        if connection is not None:
            self.by_association[id(event.assoc)] = connection

    def closed(self, event: evt.Event) -> None:
        """EVT_CONN_CLOSE: tell the main process."""
        self._closed(self.by_association.pop(id(event.assoc), None))

    def shutdown_request(self, request: Any) -> None:  # only when pynetdicom could not start an association on it
        super().shutdown_request(request)
        self._closed(self.connection_ids.pop(id(request), None))

    def _closed(self, connection: int | None) -> None:
        if connection is not None:
            with contextlib.suppress(OSError):
                self.control.send({"op": "closed", "id": connection})


class Receiver:
    """What one receiver serves with: its store view, its server, its count of C-STOREs being served."""

    def __init__(self, settings: dict[str, Any], control: Channel) -> None:
        limits = settings.get("receive_limits")
        self.config = ListenConfig(
            store=Path(settings["store"]), port=0, aet=settings["aet"], allowed_aets=tuple(settings["allowed_aets"]),
            timeouts=Timeouts(**settings["timeouts"]), fsync=bool(settings["fsync"]),
            receive_limits=(int(limits[0]), int(limits[1])) if limits else None,
            fast_store=bool(settings["fast_store"]), stop_grace=float(settings["stop_grace"]))
        self.control = control
        self.store = InstanceStore(self.config.store, fsync=self.config.fsync, log_folder=settings["log_folder"])
        self.counters = Counters()
        self.marker = f"{PENDING_MARKER}-r{int(settings['index'])}"
        self._marks: dict[str, int] = {}  # study -> sequence number of its last instance noted to the main process
        self._marks_lock = threading.Lock()
        self._sequence = itertools.count(1)
        self._in_flight = InFlight()
        self.server: ReceiverServer | None = None

    def start(self) -> ReceiverServer:
        self.store.prepare(clean=False)
        brisk_reactors()
        ae = storage_ae(self.config)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, handle_echo),
            *receiving_handlers(self.config.receive_limits, self._oversized),
            deadline_handler(self.config.timeouts.pdu),
        ]
        if self.config.fast_store:
            handlers.append((evt.EVT_CONN_OPEN, self._arm_fast_store))
        handlers += [(evt.EVT_CONN_OPEN, self._opened), (evt.EVT_CONN_CLOSE, self._closed),
                     (evt.EVT_ESTABLISHED, self._told, ["established"]), (evt.EVT_REJECTED, self._told, ["rejected"])]
        server = ae.make_server(("127.0.0.1", 0), ssl_context=None, evt_handlers=handlers,
                                server_class=ReceiverServer, per_host=0)
        server.socket.close()  # it listens nowhere: connections come from the main process
        server.control = self.control
        server.connection_ids, server.by_association = {}, {}
        self.server = server
        return server

    def _told(self, event: evt.Event, what: str) -> None:
        LOG.info("association from %s (%s)", peer_text(event.assoc), what)
        with contextlib.suppress(OSError):
            self.control.send({"op": what})

    def _opened(self, event: evt.Event) -> None:
        if self.server is not None:
            self.server.opened(event)

    def _closed(self, event: evt.Event) -> None:
        if self.server is not None:
            self.server.closed(event)

    def _handle_store(self, event: evt.Event) -> int:
        return self._serving(lambda: handle_store(event, self.store, self.counters, self._noted))

    def _arm_fast_store(self, event: evt.Event) -> None:
        arm_fast_store(event.assoc, self._serve_fast)

    def _serve_fast(self, request: StoreRequest, syntax: UID, data: bytes, assoc: Any) -> int:
        return self._serving(lambda: store_received(lambda: data, syntax, request.sop_class, request.sop_instance,
                                                    peer_text(assoc), self.store, self.counters, self._noted))

    def _noted(self, key: InstanceKey, path: Path) -> None:
        """Before an instance is acknowledged: its study marked pending with this receiver's own marker (durably),
        and the main process told. The marker goes only when the main process has audited the study with every
        instance this receiver told it about (:meth:`settled`), so a study is never left unmarked with an
        acknowledged instance it was not audited with."""
        with self._marks_lock:
            self.store.mark_pending(key.study, self.marker)
            sequence = next(self._sequence)
            self._marks[key.study] = sequence
            try:  # the main process's tracker and live loop
                self.control.send({"op": "stored", "study": key.study, "series": key.series, "sop": key.sop,
                                   "path": str(path), "sequence": sequence})
            except OSError as exc:
                raise InstanceRefused(OUT_OF_RESOURCES, f"the main listen process is gone ({exc})") from exc

    def settled(self, study: str, upto: int) -> None:
        """The main process audited ``study`` with this receiver's instances up to number ``upto``."""
        with self._marks_lock:
            if self._marks.get(study, 0) <= upto:
                self._marks.pop(study, None)
                with contextlib.suppress(OSError, ValueError):
                    self.store.clear_pending(study, self.marker)

    def _serving(self, serve: Callable[[], int]) -> int:
        status = self._in_flight.run(serve)
        if status != SUCCESS:
            with contextlib.suppress(OSError):
                self.control.send({"op": "refused"})
        return status

    def _oversized(self, report: Exceeded) -> None:
        self.store.log_rejection(report.rejection())
        with contextlib.suppress(OSError):
            self.control.send({"op": "refused"})

    def stop(self, server: ReceiverServer, grace: float) -> None:
        """As the main process stops its server (:func:`~.transport.stop_server`); then the log is checkpointed."""
        stop_server(server, grace, busy=lambda: self._in_flight.count > 0)
        self.store.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for sig in (signal.SIGINT, signal.SIGTERM):  # the main process stops us (its ctrl-C reaches the whole group)
        signal.signal(sig, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    first = receive_message(sock)
    if first is None or first[0].get("op") != "settings":
        return 2
    settings = first[0]
    network_logging(int(settings.get("log_level", logging.INFO)), bool(settings.get("verbose")))
    control = Channel(sock)
    receiver = Receiver(settings, control)
    try:
        server = receiver.start()
    except Exception as exc:  # noqa: BLE001 - told to the main process, which reports it
        control.send({"op": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        return 3
    control.send({"op": "ready"})
    grace = receiver.config.stop_grace
    while True:
        got = receive_message(sock)
        if got is None:  # the main process is gone: stop as at a stop
            break
        message, fds = got
        op = message.get("op")
        if op == "connection" and fds:
            host, port = message["address"]
            server.serve(socket.socket(fileno=fds[0]), (str(host), int(port)), int(message["id"]))
        elif op == "settled":
            receiver.settled(str(message["study"]), int(message["upto"]))
        elif op == "stop":
            grace = float(message.get("grace", grace))
            break
    receiver.stop(server, grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
