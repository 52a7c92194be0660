"""Access control and transport security of the network roles, against real peers.

- ``listen --allow-host``: a connection from an address outside the list is closed before any byte
  of it is read (and logged); pynetdicom clients bound to 127.0.0.1 and 127.0.0.2 tell the two apart.
- DICOM TLS for ``listen``: dcmtk's storescu (built with OpenSSL) and pynetdicom send over TLS with
  a client certificate from a throw-away CA; plain clients, clients without or with an untrusted
  certificate are refused; a client that connects and never starts the handshake does not hold up
  the others.
- DICOM TLS for ``query`` and ``worklist``: against Orthanc serving DICOM TLS only (its
  ``DicomTls*`` options) with the same CA, C-GET and C-MOVE (Orthanc connecting back to our TLS
  storage SCP), and the worklist plugin; wrong or missing trust and certificates are exit 3 with a
  message that says what to fix.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from peers import HOST, Listener, Pki, free_port, make_pki, orthanc, storescu, today_dicom, write_worklist_item
from pynetdicom import AE

from protocolcheck.audit.engine import AuditOptions, audit_paths
from protocolcheck.cli import main
from protocolcheck.clinical.library import load_library
from protocolcheck.net.common import NetError, NetErrorKind, Peer, TlsOptions, echo
from protocolcheck.net.scp import ListenConfig, StorageSCP
from protocolcheck.testing import synth

pytestmark = [pytest.mark.network, pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls_study")
    synth.write_study(synth.plexus_study(synth.Vendor.GE, "TLS-GE-01", study_date="20250611"), folder)
    return folder


def folder_audits(*folders: Path) -> dict[str, dict]:
    options = AuditOptions(library=load_library())
    return {r.study_instance_uid: r.to_dict() for r in audit_paths(list(folders), options)}


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[list[StorageSCP]]:
    started: list[StorageSCP] = []
    yield started
    for server in started:
        server.stop(grace=5)


def start_scp(started: list[StorageSCP], store: Path, **options: object) -> StorageSCP:
    server = StorageSCP(ListenConfig(store=store, port=0, idle=3600, **options), lambda folder: None)  # type: ignore[arg-type]
    server.start()
    started.append(server)
    return server


def send_one(port: int, path: Path, *, bind: str | None = None, tls: ssl.SSLContext | None = None) -> int | None:
    """C-STORE one file with pynetdicom; the status, or None when no association was made."""
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(MR_IMAGE, pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 10
    assoc = ae.associate(HOST, port, ae_title="PROTOCOLCHECK", bind_address=(bind, 0) if bind else None,
                         tls_args=(tls, HOST) if tls else None)
    if not assoc.is_established:
        return None
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


# --------------------------------------------------------------------------------- peer address allow-list


def test_allow_host_refuses_other_addresses(tmp_path: Path, study: Path, scp: list[StorageSCP]) -> None:
    files = sorted(study.glob("*.dcm"))
    only_2 = start_scp(scp, tmp_path / "s2", allowed_hosts=("127.0.0.2/32",))
    assert send_one(only_2.address[1], files[0]) is None  # from 127.0.0.1: closed before the association
    refused = storescu(only_2.address[1], [study])
    assert refused.returncode != 0
    assert not list(only_2.store.root.glob("*/*/*.dcm"))
    assert only_2.counters.refused_connections == 2 and only_2.counters.associations == 0
    assert send_one(only_2.address[1], files[0], bind="127.0.0.2") == 0  # the allowed address gets in
    assert len(list(only_2.store.root.glob("*/*/*.dcm"))) == 1

    loopback = start_scp(scp, tmp_path / "s8", allowed_hosts=("10.0.0.0/8", "127.0.0.0/8"))
    accepted = storescu(loopback.address[1], [study])
    assert accepted.returncode == 0, accepted.stderr
    assert len(list(loopback.store.root.glob("*/*/*.dcm"))) == len(files)
    assert loopback.counters.refused_connections == 0


def test_listen_allow_host_option(tmp_path: Path, study: Path) -> None:
    listener = Listener(tmp_path, "--no-db", "--idle", "0.3", "--allow-host", "127.0.0.2")
    try:
        assert storescu(listener.port, [study]).returncode != 0
        deadline = time.monotonic() + 10
        while "refused connection from 127.0.0.1:" not in listener.text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "refused connection from 127.0.0.1:" in listener.text()
        assert "address not in the allowed hosts (127.0.0.2/32)" in listener.text()
        assert "only from hosts 127.0.0.2/32" in listener.text()
        assert listener.terminate() == 0
        assert "1 connections refused" in listener.text() and listener.records() == []
    finally:
        listener.process.stop()
    bad = CliRunner().invoke(main, ["listen", "--port", "0", "--store", str(tmp_path / "x"), "--no-db",
                                    "--allow-host", "not-an-address"])
    assert bad.exit_code == 2 and "--allow-host 'not-an-address' is not an IP address" in bad.stderr


# --------------------------------------------------------------------------------- TLS: listen


def test_listen_over_tls_with_dcmtk_and_pynetdicom(tmp_path: Path, study: Path, pki: Pki) -> None:
    """The whole command: dcmtk's TLS storescu is received and audited; plain and uncertified clients are not."""
    listener = Listener(tmp_path, "--no-db", "--idle", "0.5", "--tls-cert", str(pki.server_cert), "--tls-key",
                        str(pki.server_key), "--tls-ca", str(pki.ca), "--tls-require-client-cert")
    try:
        assert "with TLS" in listener.text()
        plain = storescu(listener.port, [study])
        assert plain.returncode != 0
        sent = storescu(listener.port, [study], tls=pki)
        assert sent.returncode == 0, sent.stderr
        listener.wait_latest(folder_audits(study))
        files = sorted(study.glob("*.dcm"))
        assert len(list(listener.store.glob("*/*/*.dcm"))) == len(files)
        assert send_one(listener.port, files[0], tls=pki.client_context()) == 0  # pynetdicom with a certificate
        assert send_one(listener.port, files[0], tls=pki.client_context(cert=False)) is None
        assert listener.terminate() == 0
        log = listener.text()
        assert "TLS handshake failed (the client does not speak TLS" in log  # plain storescu
        assert "TLS handshake failed ([SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE]" in log
        assert "2 connections refused" in log
    finally:
        listener.process.stop()


def test_tls_scp_refusals_and_a_silent_client_does_not_block(tmp_path: Path, study: Path, pki: Pki,
                                                              scp: list[StorageSCP]) -> None:
    tls = TlsOptions(cert=str(pki.server_cert), key=str(pki.server_key), ca=str(pki.ca), require_client_cert=True)
    server = start_scp(scp, tmp_path / "s", tls=tls)
    port = server.address[1]
    path = sorted(study.glob("*.dcm"))[0]
    # A client that opens the connection and never starts the handshake: the others still get in.
    with socket.create_connection((HOST, port)):
        started = time.monotonic()
        assert send_one(port, path, tls=pki.client_context()) == 0
        assert time.monotonic() - started < 10
    rogue = pki.client_context(cert=False)
    rogue.load_cert_chain(str(pki.rogue_cert), str(pki.rogue_key))
    assert send_one(port, path, tls=rogue) is None  # a certificate our CA did not sign
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.rogue_cert))
    untrusting.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    assert send_one(port, path, tls=untrusting) is None  # the client does not trust our certificate
    assert send_one(port, path) is None  # plain
    deadline = time.monotonic() + 10
    while server.counters.refused_connections < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.counters.refused_connections >= 3
    assert len(list(server.store.root.glob("*/*/*.dcm"))) == 1

    # our own client: the peer's certificate and ours
    peer = Peer(HOST, port, "PROTOCOLCHECK", "ECHOER", tls=TlsOptions(ca=str(pki.ca), cert=str(pki.client_cert),
                                                                      key=str(pki.client_key)))
    echo(peer)
    with pytest.raises(NetError) as err:
        echo(Peer(HOST, port, "PROTOCOLCHECK", tls=TlsOptions(ca=str(pki.rogue_cert))))
    assert err.value.kind is NetErrorKind.TLS and "certificate is not trusted" in str(err.value)
    with pytest.raises(NetError) as err:
        echo(Peer(HOST, port, "PROTOCOLCHECK", tls=TlsOptions(ca=str(pki.ca))))
    assert err.value.kind is NetErrorKind.TLS and "requires a client certificate" in str(err.value)


def test_listen_tls_options_are_checked(tmp_path: Path, pki: Pki) -> None:
    runner = CliRunner()
    base = ["listen", "--port", "0", "--store", str(tmp_path / "s"), "--no-db"]
    result = runner.invoke(main, base + ["--tls-cert", str(pki.server_cert)])
    assert result.exit_code == 2 and "--tls-cert and --tls-key go together" in result.stderr
    result = runner.invoke(main, base + ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key)])
    assert result.exit_code == 2 and "the key must belong to the certificate" in result.stderr
    result = runner.invoke(main, base + ["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(pki.server_key)])
    assert result.exit_code == 2 and "missing.pem does not exist" in result.stderr
    result = runner.invoke(main, base + ["--tls-require-client-cert"])
    assert result.exit_code == 2 and "need --tls-cert" in result.stderr


# --------------------------------------------------------------------------------- TLS: query and worklist


@dataclass
class TlsPacs:
    port: int
    move_port: int
    expected: dict[str, dict]
    accession: str


@pytest.fixture(scope="module")
def tls_pacs(pki: Pki, study: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPacs]:
    base = tmp_path_factory.mktemp("tls_pacs")
    move_port = free_port()
    with orthanc(base / "orthanc", modalities={"PROTOCOLCHECK": (HOST, move_port)}, tls=pki) as server:
        sent = storescu(server.port, [study], called=server.aet, tls=pki)  # dcmtk over TLS into Orthanc
        assert sent.returncode == 0, sent.stderr
        write_worklist_item(server.worklists / "tls1.wl", accession="TLS-WL-1", station_aet="MRI1",
                            scheduled_date=today_dicom(3), procedure="MRI lumbosacral plexus w/o and w contrast",
                            reason="suspected lumbosacral plexopathy")
        yield TlsPacs(server.port, move_port, folder_audits(study), "TLS-GE-01")


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def tls_args(pki: Pki) -> list[str]:
    return ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]


@pytest.mark.parametrize("method", ["get", "move"])
def test_query_over_tls(tls_pacs: TlsPacs, pki: Pki, method: str) -> None:
    extra = ["--move-port", str(tls_pacs.move_port)] if method == "move" else []
    code, out, err = cli("query", HOST, str(tls_pacs.port), "--called-aet", "ORTHANC", *tls_args(pki), "--no-db",
                         "--timeout", "20", "--format", "json", "--accession", tls_pacs.accession,
                         "--retrieve", method, *extra)
    assert code in (0, 1), err
    assert {r["study_instance_uid"]: r for r in json.loads(out)} == tls_pacs.expected


def test_worklist_over_tls(tls_pacs: TlsPacs, pki: Pki) -> None:
    code, out, err = cli("worklist", HOST, str(tls_pacs.port), "--called-aet", "ORTHANC", *tls_args(pki),
                         "--timeout", "20", "--format", "json", "--fail-on", "never")
    assert code == 0, err
    assert [r["accession_number"] for r in json.loads(out)] == ["TLS-WL-1"]
    assert "(TLS)" in err


def test_tls_misconfigurations_are_clear(tls_pacs: TlsPacs, pki: Pki, tmp_path: Path) -> None:
    peer = [HOST, str(tls_pacs.port), "--called-aet", "ORTHANC", "--timeout", "5"]
    code, _, err = cli("query", *peer, "--no-db", "--accession", tls_pacs.accession)
    assert code == 3 and "or does it expect TLS" in err
    code, _, err = cli("worklist", *peer, "--tls", "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))
    assert code == 3 and "certificate is not trusted" in err and "--tls-ca" in err  # the system CAs do not know it
    code, _, err = cli("query", *peer, "--no-db", "--tls-ca", str(pki.ca))
    assert code == 3 and "requires a client certificate" in err
    code, _, err = cli("query", *peer, "--no-db", "--tls-ca", str(pki.ca), "--tls-cert", str(pki.rogue_cert),
                       "--tls-key", str(pki.rogue_key))
    assert code == 3 and "TLS with ORTHANC@127.0.0.1" in err
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    code, _, err = cli("query", *peer, "--no-db", "--tls-ca", str(bad))
    assert code == 2 and f"TLS CA file {bad} cannot be used" in err
    code, _, err = cli("query", *peer, "--no-db", *tls_args(pki)[:2], "--retrieve", "move", "--move-port", "11112")
    assert code == 2 and "--retrieve move with TLS needs --tls-cert" in err
