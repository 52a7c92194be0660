"""Hostile TCP peers against the storage SCP (net/transport.py), with raw sockets on 127.0.0.1.

- A peer that sends part of a PDU and stops (before the association, after it, over TLS after the
  handshake) is closed once the PDU deadline passes; a peer that announces a 4 GB PDU is closed
  before any of it is read.
- 70 stalled connections from one address (127.0.0.2) do not keep a real sender (127.0.0.1) out: the
  per-address limit closes the surplus unread.
- ``listen`` stops within a few seconds of SIGTERM whatever its peers do (stalled mid-PDU, connected
  and closed, idle after association).
"""

from __future__ import annotations

import signal
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import HOST, Listener, Pki, association_rq, closed_within, make_pki
from pynetdicom import AE

from protocolcheck.net.common import Timeouts, TlsOptions
from protocolcheck.net.scp import ListenConfig, StorageSCP
from protocolcheck.net.transport import DEFAULT_PER_HOST

pytestmark = [pytest.mark.network]

PDU_DEADLINE = 1.5


@pytest.fixture
def scps() -> Iterator[list[StorageSCP]]:
    started: list[StorageSCP] = []
    yield started
    for server in started:
        server.stop(grace=1)


def start(started: list[StorageSCP], store: Path, pdu: float = PDU_DEADLINE, **options: object) -> StorageSCP:
    timeouts = Timeouts(connect=5, acse=30, dimse=30, network=30, pdu=pdu)
    server = StorageSCP(ListenConfig(store=store, port=0, idle=3600, timeouts=timeouts, **options),  # type: ignore[arg-type]
                        lambda folder: None)
    server.start()
    started.append(server)
    return server


def connect(port: int, bind: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((bind, 0))
    sock.connect((HOST, port))
    return sock


def read_pdu(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    sock.settimeout(timeout)
    head = b""
    while len(head) < 6:
        head += sock.recv(6 - len(head))
    kind, _, length = struct.unpack(">BBL", head)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return kind, body


def echo_status(port: int) -> int | None:
    ae = AE(ae_title="REALSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 10
    assoc = ae.associate(HOST, port, ae_title="PROTOCOLCHECK")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def test_half_sent_association_request_is_closed_at_the_deadline(tmp_path: Path, scps: list[StorageSCP]) -> None:
    port = start(scps, tmp_path / "store").address[1]
    request = association_rq()
    with connect(port) as sock:
        sock.sendall(request[:16])
        waited = closed_within(sock, 10)
    assert waited is not None, "a half-sent A-ASSOCIATE-RQ held the connection open"
    assert waited < PDU_DEADLINE + 2
    assert echo_status(port) == 0x0000


def test_half_sent_pdata_after_association_is_closed(tmp_path: Path, scps: list[StorageSCP]) -> None:
    port = start(scps, tmp_path / "store").address[1]
    with connect(port) as sock:
        sock.sendall(association_rq())
        kind, _ = read_pdu(sock)
        assert kind == 0x02  # A-ASSOCIATE-AC
        sock.sendall(struct.pack(">BBL", 0x04, 0, 1000) + b"\x00" * 20)  # P-DATA-TF, 20 of 1000 bytes
        waited = closed_within(sock, 10)
    assert waited is not None and waited < PDU_DEADLINE + 2


def test_huge_pdu_length_is_refused_unread(tmp_path: Path, scps: list[StorageSCP]) -> None:
    port = start(scps, tmp_path / "store").address[1]
    with connect(port) as sock:
        sock.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + b"\x00" * 1000)
        waited = closed_within(sock, 10)
    assert waited is not None and waited < 1.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_half_sent_pdu_over_tls_is_closed(tmp_path: Path, scps: list[StorageSCP], pki: Pki) -> None:
    tls = TlsOptions(cert=str(pki.server_cert), key=str(pki.server_key), ca=str(pki.ca))
    port = start(scps, tmp_path / "store", tls=tls).address[1]
    context = pki.client_context()
    with context.wrap_socket(connect(port), server_hostname=HOST) as sock:
        sock.sendall(association_rq()[:16])
        waited = closed_within(sock, 10)
    assert waited is not None and waited < PDU_DEADLINE + 2


def test_stalled_connections_from_one_host_do_not_starve_another(tmp_path: Path, scps: list[StorageSCP]) -> None:
    scp = start(scps, tmp_path / "store", pdu=60)  # the stalled ones stay for the whole test
    port = scp.address[1]
    held: list[socket.socket] = []
    try:
        for _ in range(70):
            sock = connect(port, bind="127.0.0.2")
            sock.sendall(association_rq()[:16])
            held.append(sock)
        deadline = time.monotonic() + 20
        while scp.counters.refused_connections < 70 - DEFAULT_PER_HOST and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        assert echo_status(port) == 0x0000
        assert time.monotonic() - started < 5
        assert scp.counters.refused_connections == 70 - DEFAULT_PER_HOST
    finally:
        for sock in held:
            sock.close()


def test_listen_stops_within_seconds_whatever_peers_do(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "--no-db", "--idle", "3600")
    held: list[socket.socket | ssl.SSLSocket] = []
    try:
        with connect(listener.port):
            pass  # a plain TCP connect and close (a port check)
        for _ in range(5):
            sock = connect(listener.port)
            sock.sendall(association_rq()[:16])  # stalled mid-PDU
            held.append(sock)
        idle = connect(listener.port)
        idle.sendall(association_rq())
        assert read_pdu(idle)[0] == 0x02  # associated, then silent
        held.append(idle)
        time.sleep(0.5)
        started = time.monotonic()
        code = listener.terminate(timeout=30, sig=signal.SIGTERM)
        took = time.monotonic() - started
    finally:
        for sock in held:
            sock.close()
        if listener.process.alive():
            listener.kill()
    print(f"\nlisten stopped {took:.1f} s after SIGTERM (5 peers stalled mid-PDU, 1 idle association)")
    assert code == 0, listener.text()
    assert took < 10, f"listen took {took:.1f} s to stop:\n{listener.text()}"


def test_contexts_pynetdicom_decodes_itself_are_never_deflated(tmp_path: Path, scps: list[StorageSCP]) -> None:
    """MPPS datasets (and C-FIND identifiers) are decoded by pynetdicom, which inflates them whole: those
    contexts refuse Deflated; storage keeps it (decoded under the inflation cap)."""
    mpps = "1.2.840.10008.3.1.2.3.3"
    timeouts = Timeouts(connect=5, acse=30, dimse=30, network=30, pdu=PDU_DEADLINE)
    scp = StorageSCP(ListenConfig(store=tmp_path / "store", port=0, idle=3600, timeouts=timeouts),
                     lambda folder: None, services=[((mpps,), [])])
    scp.start()
    scps.append(scp)
    ae = AE(ae_title="DEFLATER")
    ae.add_requested_context(mpps, "1.2.840.10008.1.2.1.99")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2.1.99")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 10
    assoc = ae.associate(HOST, scp.address[1], ae_title="PROTOCOLCHECK")
    try:
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
    assert accepted == {"1.2.840.10008.5.1.4.1.1.4"}
