"""Receiver processes: ``listen --receivers N`` serves storage associations in N processes besides its own.

Why: C-STOREs are Python work (deciding, storing, answering) and one process runs Python on one core at a time;
over several associations `listen` used a whole core and no more. Here the main process accepts every connection
as before (allowed addresses, connections per address, TLS), reads the association request without taking it
from the socket, and hands a plain-TCP connection that proposes only storage SOP classes and verification to the
receiver with the fewest connections, passing the socket itself (``SCM_RIGHTS``). Everything else -- MPPS, TLS,
any other service -- stays in the main process, as do the study tracker, the live loop and the page.

A receiver (:mod:`.receiver`) negotiates and serves the association with the same code as the main process and
stores into the same store with its own write-ahead log (``STORE/.wal-rN``). Before it answers an instance it marks
the study pending with its own marker and tells the main process (``on_stored``: the tracker, the live loop); the
marker goes only once the main process has audited the study with every instance that receiver told it about
(:meth:`ReceiverPool.settled`), so an acknowledged instance is audited after a crash, as in the main process.
Messages between them are JSON on a ``SOCK_SEQPACKET`` socket pair. A receiver dies with the main process
(``PR_SET_PDEATHSIG``); the logs it leaves are placed again by the main process at start, and when a receiver dies
on its own its connections are closed (their senders send again), its log is placed, and it is started again.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom.pdu import A_ASSOCIATE_RQ

from protocolcheck.net.common import MAX_PDU_BYTES, VERIFICATION, shut, storage_service
from protocolcheck.net.instances import InstanceKey, InstanceRefused
from protocolcheck.net.wal import WAL_FOLDER

LOG = logging.getLogger("protocolcheck.net.receivers")

MAX_MESSAGE = 64 << 10  # bytes of one control message (a few UIDs and a path)
LOG_FOLDER = WAL_FOLDER + "-r{index}"  # a receiver's write-ahead log in the store (the main one places it at start)
START_SECONDS = 60.0  # a receiver that is not ready by then is an error
PEEK_SECONDS = 10.0  # time a peer has to send its association request before the main process serves it itself


def send_message(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


class Channel:
    """One end of the control socket pair: messages sent whole from any thread (the reading stays one thread's)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        with self._lock:
            send_message(self.sock, message, fds)


def receive_message(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and the descriptors that came with it; None when the other side is gone."""
    data, fds, _flags, _address = socket.recv_fds(sock, MAX_MESSAGE, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("control message is not an object")
    return message, fds


def storage_only(sock: socket.socket, seconds: float = PEEK_SECONDS) -> bool:
    """Whether the association request waiting on ``sock`` proposes only storage and verification; read without
    taking it from the socket (the receiver reads it again). False on anything else, including silence."""
    try:
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(seconds), 0))
        try:
            head = sock.recv(6, socket.MSG_PEEK | socket.MSG_WAITALL)
            if len(head) < 6 or head[0] != 0x01:
                return False
            length = struct.unpack(">L", head[2:6])[0]
            if length > MAX_PDU_BYTES:
                return False
            data = sock.recv(6 + length, socket.MSG_PEEK | socket.MSG_WAITALL)
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
        if len(data) < 6 + length:
            return False
        request = A_ASSOCIATE_RQ()
        request.decode(data)
        proposed = {str(item.abstract_syntax) for item in request.presentation_context}
    except Exception:  # noqa: BLE001 - whatever it is, the main process serves it and says what is wrong
        return False
    return bool(proposed) and all(uid == VERIFICATION or storage_service(uid) for uid in proposed)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the main process dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class _Receiver:
    index: int
    process: subprocess.Popen[bytes]
    control: Channel
    connections: dict[int, threading.Event] = field(default_factory=dict)
    sockets: dict[int, socket.socket] = field(default_factory=dict)

    def send(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        self.control.send(message, fds)


class ReceiverPool:
    """``count`` receiver processes of one store (started by :meth:`start`, stopped by :meth:`stop`).

    ``settings`` is what a receiver needs to serve as the main process does (JSON); ``on_stored(key, path)``
    notes an instance a receiver stored and marked (the tracker, the live loop; InstanceRefused is logged);
    ``on_refused()`` counts one it refused; ``place_log(folder)`` places the log a dead receiver left;
    ``on_association(what)`` counts an association a receiver accepted (``established``) or rejected
    (``rejected``).
    """

    def __init__(self, count: int, settings: dict[str, Any], on_stored: Callable[[InstanceKey, Path], None],
                 on_refused: Callable[[], None], place_log: Callable[[str], None],
                 on_association: Callable[[str], None] = lambda _: None) -> None:
        if count < 1:
            raise ValueError(f"receivers: {count} (at least 1)")
        self.count = count
        self.settings = settings
        self.on_stored = on_stored
        self.on_refused = on_refused
        self.place_log = place_log
        self.on_association = on_association  # "established" or "rejected"
        self._receivers: dict[int, _Receiver] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._noted: dict[tuple[int, str], int] = {}  # (receiver, study) -> its last instance's number noted here
        self._stopping = False

    def start(self) -> None:
        """Start every receiver and wait until each is ready; OSError (the ones started are stopped) if one is not."""
        try:
            for index in range(self.count):
                receiver = self._spawn(index)
                threading.Thread(target=self._read, args=(receiver,), name=f"protocolcheck-receiver-{index}",
                                 daemon=True).start()
        except BaseException:
            self.stop(0)
            raise

    def _spawn(self, index: int) -> _Receiver:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = subprocess.Popen(
            [sys.executable, "-m", "protocolcheck.net.receiver", str(theirs.fileno())], pass_fds=[theirs.fileno()],
            preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL)
        theirs.close()
        receiver = _Receiver(index, process, Channel(ours))
        try:
            receiver.send({"op": "settings", **self.settings, "index": index, "log_folder": LOG_FOLDER.format(
                index=index)})
            ours.settimeout(START_SECONDS)
            reply = receive_message(ours)
            ours.settimeout(None)
            if reply is None or reply[0].get("op") != "ready":
                raise OSError(f"receiver {index} did not start: {reply[0] if reply else 'it exited'}")
        except BaseException:
            process.kill()
            process.wait()
            ours.close()
            raise
        with self._lock:
            self._receivers[index] = receiver
        LOG.debug("receiver %d started (pid %d)", index, process.pid)
        return receiver

    def dispatch(self, sock: socket.socket, address: Any) -> bool:
        """Serve ``sock`` in a receiver if its association request is for storage; returns once the receiver is
        done with it (True), or at once (False: serve it here)."""
        if self._stopping or not storage_only(sock):
            return False
        with self._lock:
            if not self._receivers:
                return False
            receiver = min(self._receivers.values(), key=lambda r: len(r.connections))
            conn = next(self._ids)
            done = threading.Event()
            receiver.connections[conn] = done
            receiver.sockets[conn] = sock
        try:
            receiver.send({"op": "connection", "id": conn, "address": [str(address[0]), int(address[1])]},
                          (sock.fileno(),))
        except OSError:
            with self._lock:
                receiver.connections.pop(conn, None)
                receiver.sockets.pop(conn, None)
            return False
        done.wait()
        return True

    def _read(self, first: _Receiver) -> None:
        """The receiver's messages, until it is gone; then its replacement's, in this same thread: a receiver dies
        with the thread that started it (PR_SET_PDEATHSIG), so that must not be a thread that ends."""
        receiver: _Receiver | None = first
        while receiver is not None:
            self._serve_messages(receiver)
            receiver = self._gone(receiver)

    def _serve_messages(self, receiver: _Receiver) -> None:
        while True:
            try:
                got = receive_message(receiver.control.sock)
            except (OSError, ValueError) as exc:
                LOG.error("receiver %d: unreadable control message (%s)", receiver.index, exc)
                got = None
            if got is None:
                break
            message, fds = got
            for fd in fds:
                os.close(fd)
            self._handle(receiver, message)

    def _handle(self, receiver: _Receiver, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "stored":
            key = InstanceKey(message["study"], message["series"], message["sop"])
            with self._lock:
                self._noted[(receiver.index, key.study)] = int(message["sequence"])
            try:
                self.on_stored(key, Path(message["path"]))
            except InstanceRefused as exc:  # acknowledged already, and marked pending by the receiver
                LOG.error("instance %s stored by receiver %d: %s", key.sop, receiver.index, exc.reason)
        elif op == "refused":
            self.on_refused()
        elif op in ("established", "rejected"):
            self.on_association(op)
        elif op == "closed":
            with self._lock:
                done = receiver.connections.pop(message["id"], None)
                receiver.sockets.pop(message["id"], None)
            if done is not None:
                done.set()

    def _gone(self, receiver: _Receiver) -> _Receiver | None:
        """The receiver's control socket closed: at a stop, expected; otherwise it died. Its connections are closed
        (their senders send again), its log placed, and it is started again (the new one, or None)."""
        with self._lock:
            self._receivers.pop(receiver.index, None)
            sockets = list(receiver.sockets.values())
            waiting = list(receiver.connections.values())
            receiver.connections.clear()
            receiver.sockets.clear()
        for sock in sockets:
            shut(sock)
        for done in waiting:
            done.set()
        receiver.control.sock.close()
        if self._stopping:
            return None
        try:
            code = receiver.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # its control socket closed but it hangs: it is replaced all the same
            receiver.process.kill()
            code = receiver.process.wait()
        LOG.error("receiver %d ended unexpectedly (exit %s); its connections were closed, it is started again",
                  receiver.index, code)
        try:
            self.place_log(LOG_FOLDER.format(index=receiver.index))
            return self._spawn(receiver.index)
        except Exception:
            LOG.exception("receiver %d could not be started again; its associations are served here",
                          receiver.index)
            return None

    def stop(self, grace: float) -> None:
        """Stop every receiver: its running associations get ``grace`` seconds, then its log is checkpointed."""
        self._stopping = True
        with self._lock:
            receivers = list(self._receivers.values())
        for receiver in receivers:
            with contextlib.suppress(OSError):
                receiver.send({"op": "stop", "grace": grace})
        for receiver in receivers:
            try:
                receiver.process.wait(timeout=2 * grace + 30)
            except subprocess.TimeoutExpired:
                LOG.error("receiver %d did not stop; killed (its log is placed at the next start)", receiver.index)
                receiver.process.kill()
                receiver.process.wait()

    def settled(self, study: str) -> None:
        """The main process audited ``study`` and nothing of it arrived meanwhile: each receiver may drop its marker,
        unless it stored an instance of the study after the last one noted here (then the study is audited again)."""
        with self._lock:
            receivers = list(self._receivers.values())
            upto = {r.index: self._noted.pop((r.index, study), 0) for r in receivers}
        for receiver in receivers:
            with contextlib.suppress(OSError):
                receiver.send({"op": "settled", "study": study, "upto": upto[receiver.index]})

    def connections(self) -> int:
        with self._lock:
            return sum(len(r.connections) for r in self._receivers.values())
