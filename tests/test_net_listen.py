"""Storage SCP (`protocolcheck.net.scp`) and the `listen` command, against dcmtk's storescu.

Real associations on 127.0.0.1: every instance storescu sends must end up on disk (byte-exact
dataset) or in the rejection log with its reason; wrong AE titles are rejected; studies are handed
over once idle, again when more arrive, on stop, and after a restart when a marker survived.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from peers import HOST, Handovers, Listener, free_port, require_binaries, storescu
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config

from protocolcheck.dicom.scan import read_file
from protocolcheck.net.common import NetError, NetErrorKind, Peer, echo, safe_uid
from protocolcheck.net.instances import PENDING_MARKER, InstanceRefused, InstanceStore
from protocolcheck.net.scp import ListenConfig, StorageSCP, StudyTracker, check_complete
from protocolcheck.testing import synth

pytestmark = [pytest.mark.network, pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]


@pytest.fixture(scope="module", autouse=True)
def _dcmtk() -> None:
    require_binaries("storescu")


@pytest.fixture
def scp_factory(tmp_path: Path) -> Iterator[Callable[..., tuple[StorageSCP, Handovers]]]:
    started: list[StorageSCP] = []

    def make(store: Path | None = None, **options: object) -> tuple[StorageSCP, Handovers]:
        handovers = Handovers()
        config = ListenConfig(store=store or tmp_path / "store", port=0, idle=float(options.pop("idle", 60.0)),
                              **options)  # type: ignore[arg-type]
        scp = StorageSCP(config, handovers)
        scp.start()
        started.append(scp)
        return scp, handovers

    yield make
    for scp in started:
        scp.stop(grace=5)


def _write(spec: synth.StudySpec, folder: Path) -> list[Path]:
    return synth.write_study(spec, folder)


def _encoded(ds: pydicom.Dataset) -> bytes:
    from pydicom.filebase import DicomBytesIO

    fp = DicomBytesIO()
    ts = ds.file_meta.TransferSyntaxUID
    fp.is_little_endian = ts.is_little_endian
    fp.is_implicit_VR = ts.is_implicit_VR
    pydicom.filewriter.write_dataset(fp, ds)
    return fp.getvalue()


def _header_key(path: Path) -> list[dict[str, object]]:
    records = read_file(path)
    assert isinstance(records, list)
    return [{k: v for k, v in r.__dict__.items() if k != "path"} for r in records]


def _malformed(folder: Path) -> dict[str, Path]:
    """Files storescu will send but that cannot be placed in the store."""
    folder.mkdir(parents=True, exist_ok=True)
    source = get_testdata_file("MR_small.dcm", download=False)
    out = {}
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del ds.StudyInstanceUID
    out["no-study"] = folder / "no_study.dcm"
    ds.save_as(out["no-study"])
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = "../../../escape"
    out["traversal"] = folder / "traversal.dcm"
    ds.save_as(out["traversal"])
    return out


def test_every_instance_is_stored_or_logged(tmp_path: Path, scp_factory) -> None:
    """N instances in several transfer syntaxes plus malformed ones: nothing is lost."""
    src = tmp_path / "src"
    good: list[Path] = []
    good += _write(synth.plexus_study(synth.Vendor.SIEMENS, "L-SIE"), src / "a")
    good += _write(replace(synth.plexus_study(synth.Vendor.GE, "L-GE"), syntax=synth.Syntax.IMPLICIT_LE), src / "b")
    good += _write(replace(synth.ct_study(synth.Vendor.SIEMENS, "L-CT"), syntax=synth.Syntax.EXPLICIT_BE), src / "c")
    good += _write(synth.plexus_study(synth.Vendor.SIEMENS_XA, "L-XA"), src / "d")  # enhanced MR
    bad = _malformed(src / "bad")
    scp, handovers = scp_factory(allowed_aets=("STORESCU",), idle=0.3)
    # propose each file's own transfer syntax (-R), as a scanner would
    result = storescu(scp.address[1], [src], extra=["-R"])
    assert result.returncode == 0, result.stderr

    store = scp.store.root
    stored = sorted(store.glob("*/*/*.dcm"))
    assert len(stored) == len(good)
    for path in good:
        ds = pydicom.dcmread(path)
        target = store / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert target.exists(), f"{path.name} not stored"
        received = pydicom.dcmread(target)
        if received.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID:
            assert _encoded(received) == _encoded(ds)  # the dataset exactly as sent
        else:  # storescu may re-encode big endian as little endian on the wire
            del received.PixelData, ds.PixelData
            assert received == ds
        assert _header_key(target) == _header_key(path)
    assert not list(store.rglob(".incoming-*"))

    rejected = scp.store.rejections()
    reasons = {r["reason"] for r in rejected}
    assert len(rejected) == len(bad) == scp.counters.refused
    assert "missing Study Instance UID" in reasons
    assert any("'../../../escape' is not a valid UID" in r for r in reasons)
    assert all(r["status"] == "0xA900" and r["peer"].startswith("STORESCU@") for r in rejected)
    assert not (tmp_path / "escape").exists()
    assert scp.counters.stored == len(good)
    per_study: dict[str, int] = {}
    for path in good:
        uid = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
        per_study[uid] = per_study.get(uid, 0) + 1
    for uid, count in per_study.items():  # each study is handed over complete
        handovers.wait_for((uid, count))


def test_truncated_dataset_is_refused_and_association_goes_on(tmp_path: Path, scp_factory) -> None:
    """Raw bytes cut short (sent as-is, as a broken modality would) get a failure status; the next one is stored."""
    scp, _ = scp_factory()
    source = Path(get_testdata_file("MR_small.dcm", download=False))
    whole = source.read_bytes()
    cut_pixels = tmp_path / "cut_pixels.dcm"
    cut_pixels.write_bytes(whole[:-700])
    cut_header = tmp_path / "cut_header.dcm"
    cut_header.write_bytes(whole[:901])  # one byte into an element header
    ae = AE(ae_title="RAWSENDER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2.1")
    old = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes without decoding them
    try:
        assoc = ae.associate(HOST, scp.address[1], ae_title="PROTOCOLCHECK")
        assert assoc.is_established
        statuses = [assoc.send_c_store(p).Status for p in (cut_pixels, cut_header, source)]
        assoc.release()
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = old
    assert statuses == [0xC210, 0xC210, 0x0000]
    rejected = scp.store.rejections()
    assert len(rejected) == 2 and all("truncated or malformed" in r["reason"] for r in rejected)
    assert len(list(scp.store.root.glob("*/*/*.dcm"))) == 1


def test_wrong_calling_or_called_aet_is_rejected(tmp_path: Path, scp_factory) -> None:
    src = tmp_path / "src"
    _write(synth.pelvis_study(synth.Vendor.SIEMENS, "L-AET"), src)
    scp, _ = scp_factory(allowed_aets=("MODALITY1",))
    wrong_calling = storescu(scp.address[1], [src], aet="INTRUDER")
    wrong_called = storescu(scp.address[1], [src], aet="MODALITY1", called="SOMEONE_ELSE")
    assert wrong_calling.returncode != 0 and "Calling AE Title Not Recognized" in wrong_calling.stderr
    assert wrong_called.returncode != 0 and "Called AE Title Not Recognized" in wrong_called.stderr
    assert scp.counters.rejected_associations == 2
    assert not list(scp.store.root.glob("*/*/*.dcm"))
    right = storescu(scp.address[1], [src], aet="MODALITY1")
    assert right.returncode == 0, right.stderr
    assert len(list(scp.store.root.glob("*/*/*.dcm"))) == len(list(src.glob("*.dcm")))


def test_several_associations_at_once(tmp_path: Path, scp_factory) -> None:
    specs = [synth.plexus_study(v, f"L-PAR{i}") for i, v in enumerate(
        (synth.Vendor.SIEMENS, synth.Vendor.GE, synth.Vendor.PHILIPS, synth.Vendor.CANON))]
    folders = []
    for i, spec in enumerate(specs):
        _write(spec, tmp_path / f"src{i}")
        folders.append(tmp_path / f"src{i}")
    scp, handovers = scp_factory(idle=0.5)
    binary = require_binaries("storescu")["storescu"]
    procs = [subprocess.Popen([binary, "-aet", f"SCU{i}", "-aec", "PROTOCOLCHECK", "+sd", "+r", HOST,
                               str(scp.address[1]), str(folder)],
                              env=dict(os.environ, TCP_NODELAY="1"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for i, folder in enumerate(folders)]
    try:
        codes = [p.wait(60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0, 0, 0]
    assert scp.counters.associations == 4
    expected = {pydicom.dcmread(next(f.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID:
                len(list(f.glob("*.dcm"))) for f in folders}
    for call in expected.items():
        handovers.wait_for(call)
    assert dict(handovers.calls) == expected


def test_idle_completion_and_re_handover_when_more_arrive(tmp_path: Path, scp_factory) -> None:
    src = tmp_path / "src"
    files = _write(synth.plexus_study(synth.Vendor.PHILIPS, "L-LATE"), src)
    first, late = tmp_path / "first", tmp_path / "late"
    first.mkdir()
    late.mkdir()
    for i, path in enumerate(files):
        shutil.copy(path, (late if i >= len(files) - 3 else first) / path.name)
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    scp, handovers = scp_factory(idle=0.5)
    assert storescu(scp.address[1], [first]).returncode == 0
    handovers.wait_for((uid, len(files) - 3))
    deadline = time.monotonic() + 10  # the tracker removes the marker right after the hand-over
    while (scp.store.root / uid / PENDING_MARKER).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (scp.store.root / uid / PENDING_MARKER).exists()
    assert storescu(scp.address[1], [late]).returncode == 0
    calls = handovers.wait_for((uid, len(files)))  # the whole study is handed over again
    assert {u for u, _n in calls} == {uid}


def test_stop_hands_over_pending_and_restart_recovers_marked_studies(tmp_path: Path, scp_factory) -> None:
    src = tmp_path / "src"
    _write(synth.ct_study(synth.Vendor.GE, "L-STOP"), src)
    n = len(list(src.glob("*.dcm")))
    store = tmp_path / "store"
    scp, handovers = scp_factory(store=store, idle=3600)
    assert storescu(scp.address[1], [src]).returncode == 0
    assert handovers.calls == []  # not idle long enough
    (uid,) = [p.parent.name for p in store.glob(f"*/{PENDING_MARKER}")]
    scp.stop(grace=5)
    assert handovers.calls == [(uid, n)]
    assert not (store / uid / PENDING_MARKER).exists()

    # A run that died before handing over leaves its marker: the next run hands the study over.
    (store / uid / PENDING_MARKER).write_text("left by a killed run\n")
    (store / uid / "x").mkdir()
    (store / uid / "x" / ".incoming-abc").write_bytes(b"partial")
    _scp2, handovers2 = scp_factory(store=store, idle=0.2)
    assert handovers2.wait(1) == [(uid, n)]
    assert not list(store.rglob(".incoming-*"))


def test_echo_and_peer_down(scp_factory) -> None:
    scp, _ = scp_factory()
    echo(Peer(HOST, scp.address[1], "PROTOCOLCHECK", "ECHOER"))
    with pytest.raises(NetError) as err:
        echo(Peer(HOST, free_port(), "PROTOCOLCHECK"))
    assert err.value.kind is NetErrorKind.UNREACHABLE and "connection refused" in str(err.value)


def test_compressed_transfer_syntaxes_are_accepted(tmp_path: Path, scp_factory) -> None:
    scp, _ = scp_factory()
    sent = 0
    for name, option in (("JPEG2000.dcm", "-xw"), ("MR_small_jp2klossless.dcm", "-xv"), ("MR_small_RLE.dcm", "-xr"),
                         ("JPEG-lossy.dcm", "-xx"), ("image_dfl.dcm", "-xd")):
        path = get_testdata_file(name, download=False)
        if path is None:
            continue
        result = storescu(scp.address[1], [path], extra=[option])
        assert result.returncode == 0 and "Store Failed" not in result.stderr, (name, result.stderr)
        sent += 1
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        # test files share SOP Instance UIDs: a second one with other bytes is kept beside the first
        targets = (scp.store.root / ds.StudyInstanceUID / ds.SeriesInstanceUID).glob(f"{ds.SOPInstanceUID}*.dcm")
        assert ds.file_meta.TransferSyntaxUID in \
            {pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID for target in targets}
    assert sent >= 3


# -------------------------------------------------------------------------------- unit-level pieces


def test_the_instance_hook_gets_the_file_written_even_for_a_duplicate(tmp_path: Path) -> None:
    """Other bytes under a SOP Instance UID already stored are kept beside it; the live loop's hook is told
    that file (the duplicate's own name), not the first copy's."""
    told: list[Path] = []
    scp = StorageSCP(ListenConfig(store=tmp_path / "store", port=0), Handovers(),
                     on_instance=lambda key, path: told.append(path))
    scp.start()
    try:
        first = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
        second = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
        second.SeriesDescription = "another content, the same SOP Instance UID"
        ae = AE("STORESCU")
        ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
        assoc = ae.associate(HOST, scp.address[1], ae_title="PROTOCOLCHECK")
        assert assoc.is_established
        statuses = [assoc.send_c_store(ds).Status for ds in (first, second, second)]
        assoc.release()
    finally:
        scp.stop(grace=5)
    assert statuses == [0, 0, 0]
    assert [p.name for p in told[:2]] == [f"{first.SOPInstanceUID}.dcm",
                                          next(p.name for p in told if "+" in p.name)]
    assert told[2] == told[1]  # the resend of the duplicate: the same file
    assert pydicom.dcmread(told[1]).SeriesDescription == second.SeriesDescription


def test_safe_uid_refuses_paths() -> None:
    assert safe_uid("1.2.840.10008 \x00") == "1.2.840.10008"
    for bad in ("", "..", "1.2/3", "../1.2", "1.2.", "abc", "1..2", "1" * 200):
        with pytest.raises(ValueError):
            safe_uid(bad)


def test_file_meta_is_what_pynetdicom_encodes() -> None:
    """The received instance's File Meta Information, built without pydicom, equals pynetdicom's own
    ``encode_file_meta(create_file_meta(...))`` for every storage SOP class and transfer syntax we accept,
    with instance UIDs of odd and even lengths."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES as TRANSFER_SYNTAXES
    from pynetdicom.dsutils import create_file_meta, encode_file_meta

    from protocolcheck.net.common import STORAGE_SOP_CLASSES
    from protocolcheck.net.scp import file_meta

    checked = 0
    for n, sop_class in enumerate(STORAGE_SOP_CLASSES):
        for syntax in TRANSFER_SYNTAXES:
            instance = generate_uid()[: 40 + n % 2]
            expected = encode_file_meta(create_file_meta(sop_class_uid=sop_class, sop_instance_uid=instance,
                                                         transfer_syntax=syntax))
            assert file_meta(sop_class, instance, syntax) == expected, (sop_class, syntax, instance)
            checked += 1
    assert checked > 100


def test_check_complete_detects_cut_datasets() -> None:
    from io import BytesIO

    from pydicom.filereader import read_dataset

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    raw = _encoded(ds)
    check_complete(read_dataset(BytesIO(raw), False, True), len(raw))
    for cut in (len(raw) - 1, len(raw) - 3000, 283, 50):
        with pytest.raises(InstanceRefused):
            check_complete(read_dataset(BytesIO(raw[:cut]), False, True), cut)


def test_store_put_is_atomic_and_a_failed_write_is_refused(tmp_path: Path) -> None:
    from protocolcheck.net.instances import InstanceKey

    store = InstanceStore(tmp_path / "s")
    store.prepare()
    key = InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.5")
    path = store.put(key, b"first")
    assert store.put(key, b"first") == path  # the same bytes again: nothing new
    beside = store.put(key, b"second")  # other bytes under the same UID: kept beside, never overwritten
    assert path.read_bytes() == b"first" and beside.read_bytes() == b"second"
    assert beside.parent == path.parent and beside.name.startswith("1.2.3.4.5+")
    assert store.put(key, b"second") == beside and len(list(path.parent.iterdir())) == 2
    (store.root / "9.9").write_text("a file where the study folder should be")  # fails even for root
    with pytest.raises(InstanceRefused) as err:
        store.put(InstanceKey("9.9", "9.9.1", "9.9.1.1"), b"x")
    assert err.value.status == 0xA700 and "cannot write" in err.value.reason


def test_a_series_folder_removed_while_listening_is_made_again(tmp_path: Path) -> None:
    """The store remembers the folders it made (no mkdir per instance); one removed meanwhile (a retention run)
    is made again, not a refusal."""
    from protocolcheck.net.instances import InstanceKey

    store = InstanceStore(tmp_path / "s")
    store.prepare()
    first = store.put(InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.1"), b"first")
    shutil.rmtree(first.parent.parent)
    second = store.put(InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.2"), b"second")
    assert second.read_bytes() == b"second" and not first.exists()
    store.close()


def test_tracker_serialises_handovers_and_flushes_on_stop() -> None:
    seen: list[str] = []
    gate = threading.Event()

    def slow(uid: str) -> None:
        seen.append(uid)
        gate.wait(5)

    tracker = StudyTracker(0.0, slow)
    tracker.start()
    tracker.arrived("1.1")
    tracker.arrived("1.2")
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert seen == ["1.1"]  # one at a time (the first is still running), off the caller's thread
    gate.set()
    tracker.stop(flush=True, timeout=5)
    assert seen == ["1.1", "1.2"]

    later: list[str] = []
    idle = StudyTracker(3600, later.append)
    idle.start()
    idle.arrived("2.1")
    idle.stop(flush=True, timeout=5)
    assert later == ["2.1"]



# -------------------------------------------------------------------------------- the listen command

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.process.stop()


def _folder_audits(*folders: Path) -> dict[str, dict]:
    from protocolcheck.audit.engine import AuditOptions, audit_paths
    from protocolcheck.clinical.library import load_library

    options = AuditOptions(library=load_library())
    return {r.study_instance_uid: r.to_dict() for r in audit_paths(list(folders), options)}


def test_listen_audits_each_study_like_the_folder(tmp_path: Path, synth_corpus, listeners) -> None:
    names = ["siemens_complete", "ge_no_fluid_fs", "philips_dixon", "siemens_xa_complete", "pelvis_standard",
             "ct_contrast"]
    folders = [synth_corpus.studies[n] for n in names]
    bad = _malformed(tmp_path / "bad")
    listener = Listener(tmp_path, "--idle", "0.5", "--no-db", "--allow-aet", "STORESCU")
    listeners.append(listener)
    sent = storescu(listener.port, [*folders, tmp_path / "bad"])
    assert sent.returncode == 0, sent.stderr
    expected = _folder_audits(*folders)
    listener.wait_latest(expected)  # each study's audit is the same as from its folder
    assert listener.terminate(sig=signal.SIGINT) == 0  # Ctrl-C
    assert listener.latest() == expected
    n_sent = sum(len(list(f.glob("*.dcm"))) for f in folders)
    assert len(list(listener.store.glob("*/*/*.dcm"))) == n_sent
    rejected = InstanceStore(listener.store).rejections()
    assert len(rejected) == len(bad)
    log = listener.text()
    assert "refused instance" in log and "missing Study Instance UID" in log
    assert f"{n_sent} instances stored, {len(bad)} refused" in log


def test_listen_sigterm_audits_pending_and_restart_audits_leftovers(tmp_path: Path, synth_corpus, listeners) -> None:
    first, second = synth_corpus.studies["canon_complete"], synth_corpus.studies["hitachi_complete"]
    db = tmp_path / "results.db"
    listener = Listener(tmp_path, "--idle", "3600", "--db", str(db))
    listeners.append(listener)
    assert storescu(listener.port, [first]).returncode == 0
    assert listener.records() == []
    assert listener.terminate() == 0  # SIGTERM: the pending study is audited before exiting
    (record,) = listener.records()
    assert record == next(iter(_folder_audits(first).values()))

    # killed before the study was complete: the next run audits it
    killed = Listener(tmp_path, "--idle", "3600", "--no-db", name="killed")
    listeners.append(killed)
    assert storescu(killed.port, [second]).returncode == 0
    killed.kill()
    assert len(killed.records()) == 1
    restarted = Listener(tmp_path, "--idle", "0.2", "--no-db", name="restarted")
    listeners.append(restarted)
    restarted.wait_latest(_folder_audits(first, second))
    assert restarted.terminate() == 0

    from protocolcheck.jobs.store import Store

    with Store.open(db, readonly=True) as store:
        latest = store.latest()
    assert list(latest["accession_number"]) == [record["accession_number"]]
    assert list(latest["source"]) == ["listen"]


def test_listen_port_in_use_exits_3(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        result = subprocess.run([sys.executable, "-m", "protocolcheck", "listen", "--port", str(port), "--store",
                                 str(tmp_path / "s"), "--no-db"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3 and "cannot listen" in result.stderr


def test_verbose_shows_pynetdicoms_own_lines(tmp_path: Path) -> None:
    """`-v` binds pynetdicom's standard handlers and shows their lines; without it they are not bound (their lines
    were built for every association and dropped)."""
    for flags, shown in (((), False), (("-v",), True)):
        listener = Listener(tmp_path, "--idle", "3600", "--no-db", *flags, name=f"listen{len(flags)}")
        try:
            echo(Peer(HOST, listener.port, "PROTOCOLCHECK", "ECHOSCU"))
            deadline = time.monotonic() + 5
            while shown and "Received Echo Request" not in listener.text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ("Received Echo Request" in listener.text()) is shown, listener.text()
        finally:
            listener.terminate()
