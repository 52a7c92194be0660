"""Group commit of folder fsyncs (`protocolcheck.net.commit`) and the acknowledgement it guards.

Every writer returns only after an fsync of its folder that started after its call; concurrent writers
share rounds; a failed round fails its writers (and only them); and against a real `listen` process,
an instance acknowledged to a real association is on disk even when the process is killed -9 at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pydicom
import pytest
from peers import HOST, Listener
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE

from protocolcheck.net.commit import FolderSync, accepted, fsync_path

pytestmark = [pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]


def test_only_accepted_associations_are_paced_briskly(tmp_path: Path) -> None:
    """The brisk poll applies to the threads of associations we accept, never to those we request (where
    pynetdicom's reactor racing for a response is made likelier by a faster poll)."""
    from pynetdicom.association import Association
    from pynetdicom.dul import DULServiceProvider

    from protocolcheck.net.scp import ListenConfig, StorageSCP

    scp = StorageSCP(ListenConfig(store=tmp_path / "store", port=0), lambda folder: None)
    scp.start()
    try:
        ae = AE("PACETEST")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate(HOST, scp.address[1], ae_title="PROTOCOLCHECK")
        assert assoc.is_established
        try:
            threads = {t: t if isinstance(t, Association) else t.assoc for t in threading.enumerate()
                       if isinstance(t, (Association, DULServiceProvider))}
            sides = {(a.is_acceptor, accepted(t)) for t, a in threads.items()}
        finally:
            assoc.release()
    finally:
        scp.stop(grace=2)
    assert sides == {(True, True), (False, False)}, sides
    assert len(threads) == 4  # both sides' reactor and reader


def test_each_writer_waits_for_a_round_started_after_its_call(tmp_path: Path) -> None:
    started: list[tuple[float, Path]] = []
    lock = threading.Lock()

    def slow_fsync(folder: Path) -> None:
        with lock:
            started.append((time.monotonic(), folder))
        time.sleep(0.02)
        fsync_path(folder)

    sync = FolderSync(slow_fsync)
    folders = [tmp_path / f"f{i % 3}" for i in range(24)]
    for folder in folders:
        folder.mkdir(exist_ok=True)
    problems: list[str] = []

    def writer(folder: Path) -> None:
        called = time.monotonic()
        sync.sync([folder])
        with lock:
            if not any(at >= called and f == folder for at, f in started):
                problems.append(f"{folder.name}: no fsync started after the call at {called}")

    threads = [threading.Thread(target=writer, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not problems
    assert sync.rounds < len(folders)  # concurrent writers shared rounds
    assert len(started) < len(folders)


def test_many_writers_on_few_folders_never_trip_over_each_other(tmp_path: Path) -> None:
    """Fast rounds (no real fsync) and many threads: rounds start and end while others arrive and leave."""
    sync = FolderSync(lambda folder: time.sleep(0))  # yields: rounds interleave
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for n in range(300):
                sync.sync([tmp_path / f"s{(i + n) % 2}", tmp_path])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_a_failed_round_fails_its_writers_only(tmp_path: Path) -> None:
    fail = threading.Event()

    def flaky(folder: Path) -> None:
        if fail.is_set():
            raise OSError(28, "No space left on device")
        fsync_path(folder)

    sync = FolderSync(flaky)
    fail.set()
    with pytest.raises(OSError, match="No space"):
        sync.sync([tmp_path])
    fail.clear()
    sync.sync([tmp_path])  # the next round is a new one


def _instance() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    return ds


@pytest.mark.network
def test_kill_9_right_after_the_acknowledgement_loses_nothing(tmp_path: Path) -> None:
    """Two associations store at once; the moment the 12th success arrives the process is killed -9: every
    instance answered with success is in the store, whole, under its final name."""
    listener = Listener(tmp_path, "--no-db", "--idle", "3600")
    base = _instance()
    study, series = generate_uid(), generate_uid()
    acked: list[pydicom.Dataset] = []
    lock = threading.Lock()
    killed = threading.Event()

    def sender() -> None:
        ae = AE("KILLTEST")
        ae.add_requested_context(base.SOPClassUID, base.file_meta.TransferSyntaxUID)
        assoc = ae.associate(HOST, listener.port, ae_title="PROTOCOLCHECK")
        assert assoc.is_established
        try:
            for _ in range(40):
                ds = _instance()
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
                status = assoc.send_c_store(ds)
                if killed.is_set():
                    return
                if getattr(status, "Status", None) == 0x0000:
                    with lock:
                        acked.append(ds)
                        if len(acked) == 12:
                            os.kill(listener.pid, signal.SIGKILL)
                            killed.set()
                            return
        finally:
            assoc.abort()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert killed.is_set(), listener.text()
    listener.process.popen.wait(10)
    for ds in acked:
        path = listener.store / study / series / f"{ds.SOPInstanceUID}.dcm"
        assert path.is_file(), f"acknowledged {ds.SOPInstanceUID} is not in the store"
        stored = pydicom.dcmread(path)
        assert stored.SOPInstanceUID == ds.SOPInstanceUID
        assert stored.PixelData == ds.PixelData
