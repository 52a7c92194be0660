"""``listen --receivers N`` (`protocolcheck.net.receivers`, `protocolcheck.net.receiver`): storage associations served
in other processes, with the same durability and the same audits as in the main process.

Real processes and peers: dcmtk's storescu over 4 associations at once, a pynetdicom MPPS SCU (kept in the main
process), kill -9 of the main process and of one receiver.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pydicom
import pytest
from peers import HOST, Listener, acknowledged, association_rq, storescu
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from protocolcheck.net.receivers import storage_only
from protocolcheck.testing import synth

pytestmark = [pytest.mark.network]

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def _studies(tmp_path: Path, count: int = 4, slices: int = 3) -> list[Path]:
    folders = []
    for k in range(count):
        folders.append(tmp_path / f"src{k}")
        synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, f"RCV{k}", slices=slices), folders[-1])
    return folders


def _send_all(port: int, folders: list[Path]) -> list[tuple[list[str], list[str]]]:
    """storescu per folder, all at once; (acknowledged, failed) file names of each."""
    results: list[tuple[list[str], list[str]]] = []
    lock = threading.Lock()

    def one(folder: Path) -> None:
        sent = storescu(port, [folder], extra=["-v"])
        with lock:
            results.append(acknowledged(sent.stdout + sent.stderr))

    threads = [threading.Thread(target=one, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _children(pid: int) -> list[int]:
    """The child processes of ``pid``, whichever of its threads started them."""
    return sorted(int(child) for path in Path(f"/proc/{pid}/task").glob("*/children")
                  for child in path.read_text().split())


def _assert_stored(store: Path, folders: list[Path]) -> int:
    count = 0
    for folder in folders:
        for source in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(source, stop_before_pixels=True)
            path = store / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
            assert path.read_bytes()[132:] != b"" and pydicom.dcmread(path).PixelData == pydicom.dcmread(
                source).PixelData, path
            count += 1
    return count


def test_storage_requests_are_told_apart_without_taking_them_from_the_socket() -> None:
    server = socket.create_server((HOST, 0))
    port = server.getsockname()[1]
    cases = [(association_rq(abstract=MR_IMAGE), True), (association_rq(), True),  # storage; verification
             (association_rq(abstract=ModalityPerformedProcedureStep), False),  # MPPS stays in the main process
             (b"GET / HTTP/1.1\r\n\r\n", False), (b"", False)]
    try:
        for data, expected in cases:
            client = socket.create_connection((HOST, port))
            client.sendall(data)
            conn, _ = server.accept()
            started = time.monotonic()
            assert storage_only(conn, seconds=1) is expected, data[:20]
            assert time.monotonic() - started < 3
            if data:  # still all there for whoever serves it
                conn.settimeout(1)
                assert conn.recv(len(data), socket.MSG_WAITALL) == data
            conn.close()
            client.close()
    finally:
        server.close()


def test_four_associations_are_served_by_receivers_and_audited_by_the_main_process(tmp_path: Path) -> None:
    folders = _studies(tmp_path)
    listener = Listener(tmp_path, "--no-db", "--idle", "1", "--receivers", "2")
    try:
        receivers = _children(listener.pid)
        assert len(receivers) == 2
        results = _send_all(listener.port, folders)
        assert all(not failed and ok for ok, failed in results), results
        records = listener.wait_records(len(folders))
        assert {r["accession_number"] for r in records} == {f"RCV{k}" for k in range(len(folders))}
        assert _assert_stored(listener.store, folders) == sum(len(ok) for ok, _ in results)
        log = listener.text()
        assert log.count("(established)") == len(folders)  # each association's line from a receiver process
        assert (listener.store / ".wal-r0").is_dir() and (listener.store / ".wal-r1").is_dir()
        # every study audited with all its instances: the main process's markers and the receivers' are gone
        deadline = time.monotonic() + 20
        while list(listener.store.glob("*/.pending*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(listener.store.glob("*/.pending*"))
    finally:
        assert listener.terminate(timeout=30) == 0
    assert f"{len(folders)} associations, {sum(len(ok) for ok, _ in results)} instances stored" in listener.text()
    assert not any(Path(f"/proc/{pid}").exists() for pid in receivers)


def test_mpps_stays_in_the_main_process(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "--no-db", "--idle", "3600", "--receivers", "1")
    try:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(ModalityPerformedProcedureStep)
        assoc = ae.associate(HOST, listener.port, ae_title="PROTOCOLCHECK")
        assert assoc.is_established
        step = Dataset()
        step.PerformedProcedureStepStatus = "IN PROGRESS"
        step.ScheduledStepAttributesSequence = [Dataset()]
        step.ScheduledStepAttributesSequence[0].AccessionNumber = "MPPS1"
        step.ScheduledStepAttributesSequence[0].StudyInstanceUID = "1.2.3.4"
        status, _ = assoc.send_n_create(step, ModalityPerformedProcedureStep, "1.2.3.4.5")
        assoc.release()
        assert status is not None and status.Status == 0x0000
        assert "(established)" not in listener.text()  # not a receiver's
    finally:
        assert listener.terminate(timeout=30) == 0


def test_kill_9_of_the_main_process_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    """The receivers die with the main process; what they acknowledged is in their logs. Files deleted as an OS
    crash may leave them are placed again by the next start, which audits the studies."""
    folders = _studies(tmp_path, count=2)
    listener = Listener(tmp_path, "--no-db", "--idle", "3600", "--receivers", "2")
    receivers = _children(listener.pid)
    results = _send_all(listener.port, folders)
    acked = sum(len(ok) for ok, failed in results)
    assert acked and all(not failed for _, failed in results)
    listener.kill()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in receivers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in receivers)  # they died with it
    stored = sorted(listener.store.glob("*/*/*.dcm"))
    assert len(stored) == acked
    assert {p.parent.name for p in listener.store.glob("*/.pending-r*")} == {
        p.parent.parent.name for p in stored}  # each study marked by the receiver that took it, before the answer
    for path in stored[::2]:
        path.unlink()
    again = Listener(tmp_path, "--no-db", "--idle", "0.5", store=listener.store, name="listen-2")
    try:
        records = again.wait_records(len(folders))
        assert "placed again" in again.text()
        assert _assert_stored(listener.store, folders) == acked
        assert sum(int(s["instances"]) for r in records[-len(folders):] for s in r["series"]) == acked
    finally:
        assert again.terminate() == 0


def test_a_receiver_that_dies_is_replaced_and_its_instances_kept(tmp_path: Path) -> None:
    folders = _studies(tmp_path, count=2)
    listener = Listener(tmp_path, "--no-db", "--idle", "3600", "--receivers", "1")
    try:
        first = _children(listener.pid)
        assert len(first) == 1
        results = _send_all(listener.port, folders[:1])
        assert all(not failed and ok for ok, failed in results)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (_children(listener.pid) in ([], first)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _children(listener.pid) not in ([], first), listener.text()
        assert "receiver 0 ended unexpectedly" in listener.text()
        results += _send_all(listener.port, folders[1:])
        assert all(not failed and ok for ok, failed in results)
        assert _assert_stored(listener.store, folders) == sum(len(ok) for ok, _ in results)
        time.sleep(1)
        assert listener.text().count("ended unexpectedly") == 1  # the replacement lives (its parent thread does)
    finally:
        assert listener.terminate(timeout=30) == 0
