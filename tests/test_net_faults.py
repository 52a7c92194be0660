"""Faulty peers and a faulty machine, with real peers: what ``listen``, ``query`` and ``worklist`` do.

- Associations broken mid-study (pynetdicom A-ABORT, a P-DATA PDU cut short, dcmtk's storescu
  killed): every acknowledged instance is stored, nothing half-received is, the study is audited
  with what arrived, and the SCP goes on serving.
- Peers that stop answering (a TCP server that never replies; Orthanc SIGSTOP'd in the middle of a
  C-GET) and a PACS that dies mid-query (Orthanc SIGKILL'd) or is down at start: exit 3 within the
  configured timeout with a message that says what happened, the other studies handled, no
  temporary files left.
- C-MOVE to a destination the PACS does not know: a failed retrieval naming the fix.
- The store's disk full (a 160 KB tmpfs mounted for the test; without the right to mount,
  RLIMIT_FSIZE in the ``listen`` process makes large writes fail with EFBIG instead): the SCP
  answers 0xA700 (out of resources), keeps running, and keeps every instance it acknowledged.
- ``kill -9`` of ``listen`` in the middle of a study: after a restart on the same store, every
  instance storescu saw acknowledged is there and readable, and the study is audited.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from peers import (
    HOST,
    Handovers,
    Listener,
    OrthancPeer,
    acknowledged,
    free_port,
    orthanc,
    repo_env,
    require_binaries,
    silent_server,
    storescu,
    today_dicom,
    tool_env,
    write_worklist_item,
)
from pynetdicom import AE

from protocolcheck.audit.engine import AuditOptions, audit_paths
from protocolcheck.cli import main
from protocolcheck.clinical.library import load_library
from protocolcheck.net.instances import PENDING_MARKER
from protocolcheck.net.scp import ListenConfig, StorageSCP
from protocolcheck.testing import synth

pytestmark = [pytest.mark.network, pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
DATES = "20250101-20251231"


def write(spec: synth.StudySpec, folder: Path) -> list[Path]:
    return synth.write_study(spec, folder)


def big_study(accession: str, folder: Path, slices: int = 8, vendor: synth.Vendor = synth.Vendor.SIEMENS,
              study_date: str = "20250314") -> list[Path]:
    """A plexus study of 1 + 6 x ``slices`` instances (about 4 KB each)."""
    return write(synth.plexus_study(vendor, accession, slices=slices, study_date=study_date), folder)


def study_uid(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def stored_path(store: Path, source: Path) -> Path:
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    return store / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def same_instance(stored: Path, source: Path) -> bool:
    """The stored file holds the sent dataset (same elements and values, pixel data included)."""
    a, b = pydicom.dcmread(stored), pydicom.dcmread(source)
    return a == b and a.PixelData == b.PixelData


def folder_audits(*folders: Path) -> dict[str, dict]:
    options = AuditOptions(library=load_library())
    return {r.study_instance_uid: r.to_dict() for r in audit_paths(list(folders), options)}


def audited_instances(record: dict) -> int:
    return sum(int(s["instances"]) for s in record["series"])


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[StorageSCP, Handovers]]:
    handovers = Handovers()
    server = StorageSCP(ListenConfig(store=tmp_path / "store", port=0, idle=0.4), handovers)
    server.start()
    yield server, handovers
    server.stop(grace=5)


def store_files(store: Path) -> list[Path]:
    return sorted(store.glob("*/*/*.dcm"))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# --------------------------------------------------------------------------------- broken associations


def test_association_aborted_mid_study(tmp_path: Path, scp: tuple[StorageSCP, Handovers]) -> None:
    """A-ABORT after some instances: those are kept and audited; the rest arrive later, all are audited."""
    server, handovers = scp
    files = big_study("F-ABORT", tmp_path / "src", slices=3)
    uid = study_uid(tmp_path / "src")
    ae = AE(ae_title="ABORTER")
    ae.add_requested_context(MR_IMAGE, "1.2.840.10008.1.2.1")
    assoc = ae.associate(HOST, server.address[1], ae_title="PROTOCOLCHECK")
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(path).Status) for path in files[:7]]
    assoc.abort()
    assert statuses == [0] * 7
    handovers.wait_for((uid, 7))  # the study is audited with what was acknowledged
    assert all(same_instance(stored_path(server.store.root, p), p) for p in files[:7])
    assert storescu(server.address[1], [tmp_path / "src"]).returncode == 0  # the SCP goes on serving
    handovers.wait_for((uid, len(files)))
    assert not list(server.store.root.rglob(".incoming-*"))


def test_pdu_cut_short_stores_nothing_and_the_scp_goes_on(tmp_path: Path, scp: tuple[StorageSCP, Handovers]) -> None:
    """A peer that dies in the middle of a P-DATA PDU: the half-received instance leaves no trace."""
    server, _handovers = scp
    files = big_study("F-CUT", tmp_path / "src", slices=2)
    ae = AE(ae_title="CUTTER")
    ae.add_requested_context(MR_IMAGE, "1.2.840.10008.1.2.1")
    assoc = ae.associate(HOST, server.address[1], ae_title="PROTOCOLCHECK")
    assert assoc.is_established
    assert assoc.send_c_store(files[0]).Status == 0
    raw: socket.socket = assoc.dul.socket.socket  # the association's TCP connection
    body = files[1].read_bytes()[132:]  # a P-DATA-TF PDU announcing more bytes than ever come
    pdv = struct.pack(">IBB", len(body) + 2, 1, 0x00) + body[:500]
    raw.sendall(struct.pack(">BBI", 0x04, 0, len(body) + 6) + pdv)
    raw.shutdown(socket.SHUT_RDWR)
    assoc.abort()
    wait_until(lambda: not server._server.active_associations, 10, "the broken association to end")  # type: ignore[union-attr]
    assert [p.name for p in store_files(server.store.root)] == [stored_path(server.store.root, files[0]).name]
    assert not list(server.store.root.rglob(".incoming-*"))
    assert storescu(server.address[1], [tmp_path / "src"]).returncode == 0
    assert len(store_files(server.store.root)) == len(files)


def test_sender_killed_mid_study(tmp_path: Path, scp: tuple[StorageSCP, Handovers]) -> None:
    """dcmtk's storescu killed half-way: what it saw acknowledged is stored, the study audited once idle."""
    server, handovers = scp
    src = tmp_path / "src"
    files = big_study("F-KILLSCU", src, slices=12)
    binary = require_binaries("storescu")["storescu"]
    log = tmp_path / "storescu.log"
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}  # Nagle on: ~40 ms per instance
    with open(log, "w") as out:
        sender = subprocess.Popen([binary, "-v", "-aet", "DYING", "-aec", "PROTOCOLCHECK", "+sd", "+r", HOST,
                                   str(server.address[1]), str(src)], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until(lambda: len(store_files(server.store.root)) >= 8, 30, "8 instances stored")
        finally:
            sender.kill()
            sender.wait(10)
    wait_until(lambda: not server._server.active_associations, 10, "the broken association to end")  # type: ignore[union-attr]
    ok, _failed = acknowledged(log.read_text())
    assert ok and len(ok) < len(files), "storescu was not killed mid-study"
    stored = store_files(server.store.root)
    assert {stored_path(server.store.root, p) for p in ok} <= set(stored)
    assert len(stored) <= len(ok) + 1  # at most the one in flight got stored without its answer arriving
    handovers.wait_for((study_uid(src), len(stored)))


# --------------------------------------------------------------------------------- peers that stop answering


def run_cli(*args: str) -> tuple[int, str, str, float]:
    """Run a command in this process (a watcher thread can act on the peer meanwhile): code, out, err, seconds."""
    started = time.monotonic()
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr, time.monotonic() - started


def test_silent_peer_times_out_with_exit_3(tmp_path: Path) -> None:
    with silent_server() as port:
        code, out, err, took = run_cli("query", HOST, str(port), "--called-aet", "PACS", "--timeout", "1",
                                       "--no-db", "--date", DATES)
        assert code == 3 and out.strip() in ("", "[]", "(no studies)")
        assert "did not answer the association request within 1 s" in err and "Traceback" not in err
        assert took < 1 * 2 + 10  # the timeout, then the TCP probe; never a hang
        code, _, err, _ = run_cli("worklist", HOST, str(port), "--called-aet", "WL", "--timeout", "1")
        assert code == 3 and "did not answer the association request within 1 s" in err
        code, _, err, _ = run_cli("worklist", HOST, str(port), "--called-aet", "WL", "--timeout", "1", "--tls")
        assert code == 3 and "no TLS handshake within 1 s" in err
    down = free_port()
    code, _, err, _ = run_cli("worklist", HOST, str(down), "--called-aet", "WL", "--timeout", "1")
    assert code == 3 and "unreachable: connection refused" in err


@dataclass
class Pacs:
    server: OrthancPeer
    expected: dict[str, dict]


STUDIES = 4


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    """Orthanc with four studies; any AE may query and retrieve (so a C-MOVE destination can be unknown)."""
    base = tmp_path_factory.mktemp("fault_pacs")
    for i in range(STUDIES):
        big_study(f"F-PACS-{i}", base / "src" / str(i), slices=8, study_date=f"202503{10 + i}")
    extra = {"DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True}
    with orthanc(base / "orthanc", worklist=True, extra=extra) as server:
        sent = storescu(server.port, [base / "src"], called=server.aet)
        assert sent.returncode == 0, sent.stderr
        write_worklist_item(server.worklists / "w1.wl", accession="F-WL-1", station_aet="MRI1",
                            scheduled_date=today_dicom(1), procedure="MRI lumbosacral plexus w/o and w contrast")
        yield Pacs(server, folder_audits(base / "src"))


def query_args(port: int, workdir: Path, *extra: str, timeout: str = "3") -> list[str]:
    return ["query", HOST, str(port), "--called-aet", "ORTHANC", "--date", DATES, "--no-db", "--format", "json",
            "--timeout", timeout, "--workdir", str(workdir), *extra]


@contextlib.contextmanager
def on_first_instance(workdir: Path, action: Callable[[], None]) -> Iterator[threading.Event]:
    """Run ``action`` as soon as the first retrieved instance lands in ``workdir`` (mid C-GET)."""
    done = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if any(workdir.glob("*/*/*/*.dcm")):
                action()
                done.set()
                return
            time.sleep(0.001)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(5)


def test_pacs_stops_answering_mid_query(tmp_path: Path, pacs: Pacs) -> None:
    """Orthanc frozen (SIGSTOP) during the first C-GET: timeouts, the rest skipped, exit 3, nothing left."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    pid = pacs.server.process.popen.pid
    try:
        with on_first_instance(workdir, lambda: os.kill(pid, signal.SIGSTOP)) as frozen:
            code, out, err, took = run_cli(*query_args(pacs.server.port, workdir))
        assert frozen.is_set()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert code == 3, err
    assert "Traceback" not in err
    assert "no reply within 3 s (the peer stopped answering" in err or "within 3 s" in err
    assert "did not answer for the previous 2 studies" in err  # the rest are not waited for one by one
    audited = {r["study_instance_uid"] for r in json.loads(out or "[]")}
    assert audited <= set(pacs.expected) and len(audited) <= 1
    assert f"{STUDIES - len(audited)} not retrieved" in err
    assert took < 3 * 3 + 20
    assert list(workdir.iterdir()) == []  # the half-retrieved study's files are gone
    # Orthanc, thawed, serves again
    code, out, err, _ = run_cli(*query_args(pacs.server.port, workdir, timeout="20"))
    assert code in (0, 1), err
    assert {r["study_instance_uid"] for r in json.loads(out)} == set(pacs.expected)


def test_pacs_dies_mid_query_and_is_down_at_start(tmp_path: Path) -> None:
    """Orthanc killed (SIGKILL) during the first C-GET: that study fails, the next ones are refused, exit 3."""
    src = tmp_path / "src"
    for i in range(3):
        big_study(f"F-DIE-{i}", src / str(i), slices=8, study_date=f"202504{10 + i}")
    workdir = tmp_path / "work"
    workdir.mkdir()
    with orthanc(tmp_path / "orthanc", worklist=False, extra={"DicomAlwaysAllowFind": True,
                                                               "DicomAlwaysAllowGet": True}) as server:
        assert storescu(server.port, [src], called=server.aet).returncode == 0
        with on_first_instance(workdir, server.process.popen.kill) as died:
            code, out, err, took = run_cli(*query_args(server.port, workdir))
        assert died.is_set()
        assert code == 3 and "Traceback" not in err
        assert "unreachable: connection refused" in err or "did not answer for the previous 2 studies" in err
        assert len(json.loads(out or "[]")) <= 1
        assert list(workdir.iterdir()) == []
        # down at start
        code, out, err, took = run_cli(*query_args(server.port, workdir))
        assert code == 3 and "unreachable: connection refused" in err and took < 30


def test_move_to_unknown_destination(tmp_path: Path, pacs: Pacs) -> None:
    code, out, err, _ = run_cli(*query_args(pacs.server.port, tmp_path, "--calling-aet", "NOBODYKNOWS",
                                            "--retrieve", "move", "--move-port", str(free_port()), timeout="10"))
    assert code == 3 and json.loads(out or "[]") == []
    assert err.count("may not know the move destination 'NOBODYKNOWS'") == STUDIES, err
    assert "configure it there (AE title, this host, --move-port), or use --retrieve get" in err
    log = (pacs.server.process.log.parent / "orthanc.log").read_text(errors="replace")
    assert "NOBODYKNOWS" in log  # Orthanc's side of the story: it refused the unknown destination


# --------------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str = "160k") -> Iterator[Callable[[], None] | None]:
    """Mount a tmpfs of ``size`` on ``folder``; yield a function that enlarges it (frees space), or
    None when mounting is not allowed here."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.environ.get("PROTOCOLCHECK_TEST_NO_MOUNT"):  # to exercise the fallback where mounting works
        yield None
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        yield None
        return

    def enlarge() -> None:
        subprocess.run(["mount", "-o", "remount,size=16m", str(folder)], check=True, capture_output=True)

    try:
        yield enlarge
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


FSIZE_LIMIT = 256 * 1024  # above an audit record, below the padded instances


def _limit_file_size() -> None:  # pragma: no cover - runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_disk_full_answers_out_of_resources_and_loses_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = big_study("F-FULL", src, slices=8)
    store = tmp_path / "store"
    with small_filesystem(store) as enlarge:
        if enlarge is None:  # no right to mount: large writes fail in the listen process instead (EFBIG)
            for path in files[::5]:
                ds = pydicom.dcmread(path)
                ds.add_new(0x00291010, "OB", b"\0" * (2 * FSIZE_LIMIT))
                ds.save_as(path)
            listener = Listener(tmp_path, "--no-db", "--idle", "0.5", store=store, wait=False)
            listener.process.stop()
            argv = listener.process.popen.args
            with open(listener.log, "ab") as log:
                listener.process.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                          env={**tool_env(), **repo_env()}, start_new_session=True,
                                                          preexec_fn=_limit_file_size)
            listener.wait_started()
        else:
            listener = Listener(tmp_path, "--no-db", "--idle", "0.5", store=store)
        try:
            sent = storescu(listener.port, [src], extra=["-v"])
            ok, failed = acknowledged(sent.stdout + sent.stderr)
            print(f"\ndisk full: {len(ok)} acknowledged, {len(failed)} answered {set(s for _, s in failed)}")
            assert ok and failed, sent.stderr  # some stored, then the disk was full
            assert {status for _, status in failed} == {"Refused: OutOfResources"}
            assert len(ok) + len(failed) == len(files)
            assert listener.process.alive()
            log = listener.text()
            assert "(status 0xA700)" in log and ("No space left on device" in log or "File too large" in log)
            for path in ok:  # everything acknowledged is there, intact
                assert same_instance(stored_path(store, path), path)
            assert len(store_files(store)) == len(ok)
            assert not list(store.rglob(".incoming-*"))
            # pending, or already audited with what arrived (the idle time is short): never lost
            assert (store / study_uid(src) / PENDING_MARKER).exists() or listener.records()

            if enlarge is not None:  # space again: the same SCP takes the rest
                enlarge()
            else:  # restart without the limit on the same store
                listener.process.stop()
                listener = Listener(tmp_path, "--no-db", "--idle", "0.5", store=store, name="listen-2")
            again = storescu(listener.port, [src])
            assert again.returncode == 0 and "Refused" not in again.stderr, again.stderr
            listener.wait_latest(folder_audits(src))  # the whole study, audited
            assert all(same_instance(stored_path(store, p), p) for p in files)
            assert listener.terminate() == 0
        finally:
            listener.process.stop()


# --------------------------------------------------------------------------------- kill -9 of listen


def test_kill_9_mid_study_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = big_study("F-KILL9", src, slices=16)  # about 100 instances
    uid = study_uid(src)
    listener = Listener(tmp_path, "--no-db", "--idle", "3600", name="listen-1")
    binary = require_binaries("storescu")["storescu"]
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}  # Nagle on: ~40 ms per instance
    out = tmp_path / "storescu.log"
    try:
        with open(out, "w") as fh:
            sender = subprocess.Popen([binary, "-v", "-aet", "MODALITY", "-aec", "PROTOCOLCHECK", "+sd", "+r", HOST,
                                       str(listener.port), str(src)], stdout=fh, stderr=subprocess.STDOUT, env=env)
            try:
                wait_until(lambda: len(list(listener.store.glob("*/*/*.dcm"))) >= 12, 60, "12 instances stored")
                os.kill(listener.pid, signal.SIGKILL)  # kill -9 in the middle of the study
                listener.process.popen.wait(10)
                sender.wait(30)
            finally:
                if sender.poll() is None:
                    sender.kill()
                    sender.wait()
    finally:
        listener.process.stop()
    ok, _failed = acknowledged(out.read_text())
    assert 10 <= len(ok) < len(files), "listen was not killed mid-study"
    assert listener.records() == []  # not audited before the kill (idle 3600 s)

    restarted = Listener(tmp_path, "--no-db", "--idle", "0.3", name="listen-2", store=listener.store)
    try:
        (record,) = restarted.wait_records(1)  # audited after the restart, exactly once
        assert record["study_instance_uid"] == uid
        on_disk = list(listener.store.glob("*/*/*.dcm"))
        print(f"\nkill -9: {len(ok)} of {len(files)} acknowledged, {len(on_disk)} on disk after restart, "
              f"audited with {audited_instances(record)}")
        assert audited_instances(record) == len(on_disk) >= len(ok)
        for path in ok:  # every acknowledged instance is there and readable, byte for byte the sent dataset
            assert same_instance(stored_path(listener.store, path), path), path.name
        assert not list(listener.store.rglob(".incoming-*"))
        wait_until(lambda: not (listener.store / uid / PENDING_MARKER).exists(), 10, "the marker cleared")
        time.sleep(0.5)
        assert len(restarted.records()) == 1
        # the modality sends the study again: the restarted SCP completes it
        again = storescu(restarted.port, [src])
        assert again.returncode == 0, again.stderr
        restarted.wait_latest(folder_audits(src))
        assert restarted.terminate() == 0
    finally:
        restarted.process.stop()
