"""The bound on received DIMSE messages (net/receiving.py), with raw-socket peers streaming P-DATA PDUs to a real
``listen`` process on 127.0.0.1 (small bounds set with ``--max-dataset`` / ``--max-receiving``):

- a peer streaming a data set past the per-message bound is aborted (A-ABORT) once it passes it; ``listen``'s
  peak memory (VmHWM) stays far below what the peer meant to send; the log names the peer, the bytes and the
  bound; ``.rejected.jsonl`` has a line; the next association stores normally;
- an instance whose data set is exactly the bound is stored, one byte more is aborted;
- with two associations, the one that would pass the bound of all associations at once is aborted, the
  other (half-sent when it happened) completes and is stored;
- a peer that sends complete messages without waiting for the replies is bounded too (they wait in the queue);
- a peer that ignores the A-ABORT and goes on sending is cut off at once; a command set that never ends is bounded;
- ``query``'s C-GET (the association it opened) is bounded the same way, and ends at the abort.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import HOST, MR_IMAGE, Listener, RawPeer, explicit_le, mr_header, peak_rss_mb, repo_env, run_measured
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet

pytestmark = [pytest.mark.network]

MIB = 1 << 20


def dataset_bytes(size: int, study: str | None = None) -> tuple[str, bytes]:
    """An MR instance whose encoded data set (Explicit VR Little Endian) is exactly ``size`` bytes (even): 1 x 1
    pixels, 16 bits, as many frames as fill it."""
    sop = generate_uid()
    ds = mr_header(study or generate_uid(), generate_uid(), sop, rows=1, columns=1, accession="BOUND1")

    def encode(frames: int) -> bytes:
        ds.NumberOfFrames = frames
        ds.PixelData = bytes(frames * 2)
        ds["PixelData"].VR = "OW"
        return explicit_le(ds)

    frames = size // 2
    for _ in range(4):  # the length of NumberOfFrames (IS) depends on its digits
        frames = (size - (len(encode(frames)) - 2 * frames)) // 2
    data = encode(frames)
    assert len(data) == size, (len(data), size)
    return sop, data


def read_by_listen(listen_port: int, peer: RawPeer, seconds: float = 20) -> None:
    """Wait until ``listen`` has read everything ``peer`` sent (``/proc/net/tcp``: nothing queued on either end
    of the connection), so what it counted no longer depends on which reactor reads first."""
    ours = peer.sock.getsockname()[1]
    ends = {(f"{listen_port:04X}", f"{ours:04X}"), (f"{ours:04X}", f"{listen_port:04X}")}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        queued = [int(queues.split(":")[0], 16) + int(queues.split(":")[1], 16)
                  for _, local, remote, _, queues, *_ in (line.split() for line in
                                                          Path("/proc/net/tcp").read_text().splitlines()[1:])
                  if (local.split(":")[1], remote.split(":")[1]) in ends]
        if queued and not any(queued):
            time.sleep(0.2)  # the last PDU read is counted by the same reactor pass
            return
        time.sleep(0.02)
    raise AssertionError("listen did not read what was sent")


def rejections(listener: Listener) -> list[dict]:
    path = listener.store / ".rejected.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def stored(listener: Listener) -> list[str]:
    return sorted(p.stem for p in listener.store.glob("*/*/*.dcm"))


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    process = Listener(tmp_path, "--no-db", "--idle", "30", "--max-dataset", "8MiB", "--max-receiving", "24MiB")
    try:
        yield process
    finally:
        if process.process.alive():
            process.terminate(timeout=30)


def wait_for(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_data_set_streamed_past_the_bound_aborts_its_association(listener: Listener) -> None:
    before = peak_rss_mb(listener.pid)
    peer = RawPeer(listener.port, calling="HOSTILE")
    sop = generate_uid()
    meant = 1 << 30
    sent = peer.stream(sop, meant)
    assert peer.aborted()
    peak = peak_rss_mb(listener.pid)
    print(f"\nstreamed {sent / MIB:.1f} MiB of a 1 GiB data set before the abort (bound 8 MiB); listen peak RSS "
          f"{before:.0f} MB idle -> {peak:.0f} MB")
    assert sent < 64 * MIB  # what the socket buffers take before the abort arrives
    assert peak < before + 100
    wait_for(lambda: "8388608 bytes, the limit per message" in listener.text())
    log = listener.text()
    assert f"aborted the association with HOSTILE@{HOST}:" in log and sop in log, log
    [line] = rejections(listener)
    assert line["sop_instance_uid"] == sop and line["status"] == "A-ABORT" and line["peer"].startswith("HOSTILE@")
    assert "limit per message" in line["reason"] and "association aborted" in line["reason"]
    # the next association is served as usual
    good, data = dataset_bytes(2 * MIB)
    peer = RawPeer(listener.port)
    peer.command(good)
    peer.data(data)
    assert peer.status() == 0x0000
    peer.release()
    assert stored(listener) == [good]


def test_a_peer_that_ignores_the_abort_is_cut_off_at_once(listener: Listener) -> None:
    """After the abort listen reads no more: a peer that goes on sending gets its connection reset within
    seconds (not after the 30 s ARTIM timer, listen discarding what it sends all along)."""
    peer = RawPeer(listener.port, calling="DEAF")
    started = time.monotonic()
    sent = peer.stream(generate_uid(), 1 << 30, heed_abort=False)
    took = time.monotonic() - started
    print(f"\na peer ignoring the abort: cut off after {sent / MIB:.1f} MiB, {took:.1f} s")
    assert sent < 64 * MIB and took < 10
    wait_for(lambda: "aborted the association with DEAF@" in listener.text())


def test_a_command_set_that_never_ends_is_bounded(listener: Listener) -> None:
    peer = RawPeer(listener.port, calling="ENDLESS")
    with contextlib.suppress(OSError):
        for _ in range(200):  # 200 x 16 KiB command set fragments, none the last
            peer.pdv(bytes(16 * 1024), 0x01)
    assert peer.aborted()
    wait_for(lambda: "command set larger than 65536 bytes" in listener.text())
    assert rejections(listener)[0]["peer"].startswith("ENDLESS@")


def test_exactly_the_bound_is_stored_one_byte_more_is_not(listener: Listener) -> None:
    exact, data = dataset_bytes(8 * MIB)
    peer = RawPeer(listener.port)
    peer.command(exact)
    peer.data(data)
    assert peer.status() == 0x0000
    over, more = dataset_bytes(8 * MIB + 2)
    peer.command(over, message_id=2)
    with contextlib.suppress(OSError):  # the abort may come before the last PDU is sent
        peer.data(more)
    assert peer.aborted()
    wait_for(lambda: "(8388610 bytes received)" in listener.text())
    assert stored(listener) == [exact]
    assert [r["sop_instance_uid"] for r in rejections(listener)] == [over]


def test_the_bound_of_all_associations_aborts_the_one_that_would_pass_it(listener: Listener) -> None:
    """Three senders each hold 7 MiB of a 7.5 MiB instance (21 of the 24 MiB allowed in all); a fourth, under
    its own 8 MiB, is aborted when it would pass 24 MiB; the three then complete and are stored."""
    study = generate_uid()
    senders = [(RawPeer(listener.port, f"SENDER_{n}"), *dataset_bytes(7 * MIB + MIB // 2, study)) for n in range(3)]
    for peer, sop, data in senders:
        peer.command(sop)
        peer.data(data[:7 * MIB], last=False)
    for peer, _sop, _data in senders:
        read_by_listen(listener.port, peer)
    hostile = RawPeer(listener.port, "GREEDY")
    sent = hostile.stream(generate_uid(), 64 * MIB)
    assert hostile.aborted()
    assert sent < 64 * MIB  # aborted (by the bound of all associations: the log says which)
    wait_for(lambda: "their limit" in listener.text())
    for peer, _sop, data in senders:
        peer.data(data[7 * MIB:])
        assert peer.status() == 0x0000
    for peer, _sop, _data in senders:
        peer.release()
    assert stored(listener) == sorted(sop for _peer, sop, _data in senders)
    log = listener.text()
    assert f"aborted the association with GREEDY@{HOST}" in log and "limit per message" not in log, log
    [line] = rejections(listener)
    assert line["peer"].startswith("GREEDY@") and "25165824 bytes, their limit" in line["reason"]


@pytest.mark.parametrize("fast_store", ["1", "0"])
def test_messages_sent_without_waiting_for_replies_are_bounded_too(tmp_path: Path, fast_store: str) -> None:
    """Complete instances sent back to back (no reply awaited). pynetdicom ($PROTOCOLCHECK_FAST_STORE=0) queues
    them for the association's thread: they count, and the flood is aborted. listen's own C-STORE path serves each
    before it reads the next: nothing waits in memory, the peer is held back by TCP, every instance is stored."""
    listener = Listener(tmp_path, "--no-db", "--idle", "30", "--max-dataset", "8MiB", "--max-receiving", "20MiB",
                        env={"PROTOCOLCHECK_FAST_STORE": fast_store})
    try:
        peer = RawPeer(listener.port, "FLOOD")
        sops = []
        aborted = False
        for n in range(40):  # 40 x 6 MiB = 240 MiB if nothing bounded them
            sop, data = dataset_bytes(6 * MIB)
            sops.append(sop)
            try:
                peer.command(sop, message_id=n + 1)
                peer.data(data)
            except OSError:
                aborted = True
                break
        if fast_store == "1":
            assert not aborted
            statuses = [peer.status() for _ in sops]
            assert statuses == [0x0000] * len(sops)
            peer.release()
        else:
            assert aborted or peer.aborted()
            wait_for(lambda: "their limit" in listener.text())
        peak = peak_rss_mb(listener.pid)
        kept = stored(listener)
        print(f"\nflood ({'fast path' if fast_store == '1' else 'pynetdicom'}): {len(sops)} x 6 MiB sent back to "
              f"back; {len(kept)} stored; listen peak RSS {peak:.0f} MB")
        assert peak < 250
        if fast_store == "1":
            assert kept == sorted(sops)
        else:
            assert kept == sorted(kept) and set(kept) <= set(sops) and len(kept) < 10
        assert listener.terminate(timeout=30) == 0
    finally:
        if listener.process.alive():
            listener.kill()


def test_query_c_get_of_an_instance_past_the_bound_is_aborted(tmp_path: Path) -> None:
    """``query``'s C-GET receives on the association it opened: the same bound (here from the environment)."""
    study = generate_uid()
    sop, data = dataset_bytes(64 * MIB, study)
    big = tmp_path / "big.dcm"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MR_IMAGE, sop
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, "1.2.826.0.1.3680043.9.3811.2"
    with open(big, "wb") as fh:
        fh.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fh, meta, enforce_standard=True)
        fh.write(data)
    statuses: list[int | None] = []

    def on_find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID, match.AccessionNumber, match.StudyDate = study, "BIG1", "20250314"
        match.ModalitiesInStudy = "MR"
        yield 0xFF00, match
        yield 0x0000, None

    def on_get(event: Any) -> Iterator[Any]:
        yield 1
        status = event.assoc.send_c_store(str(big))  # the file's bytes as written (STORE_SEND_CHUNKED_DATASET)
        statuses.append(getattr(status, "Status", None))
        yield 0xA702, None

    ae = AE("BIGPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(MR_IMAGE, ExplicitVRLittleEndian, scu_role=False, scp_role=True)
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    server = ae.start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)])
    try:
        started = time.monotonic()
        run, peak = run_measured(["query", HOST, str(server.server_address[1]), "--called-aet", "BIGPACS", "--no-db",
                                  "--timeout", "60", "--workdir", str(tmp_path)],
                                 env={"PROTOCOLCHECK_MAX_DATASET": "1MiB"})
        took = time.monotonic() - started
    finally:
        server.shutdown()
        _config.STORE_SEND_CHUNKED_DATASET = previous
    print(f"\nC-GET of a 64 MiB instance with a 1 MiB bound: query exit {run.returncode} after {took:.1f} s, "
          f"peak RSS {peak:.0f} MB\n" + "".join(line + "\n" for line in run.stderr.splitlines() if "abort" in line))
    assert run.returncode == 3, run.stderr
    assert "1048576 bytes, the limit per message" in run.stderr, run.stderr
    assert "aborted the association with BIGPACS@" in run.stderr
    assert "could not be stored" in run.stderr and "1 not retrieved" in run.stderr, run.stderr
    assert statuses == [None]  # the PACS saw the association aborted, no status
    assert took < 30  # woken at the abort, not at the 60 s reply timeout
    assert peak < 200


def test_query_c_find_reply_past_the_bound_is_aborted(tmp_path: Path) -> None:
    """A PACS answering a C-FIND with one 8 MiB match: aborted at the (here 1 MiB) bound, exit 3 saying why."""
    def on_find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID, match.AccessionNumber, match.StudyDate = generate_uid(), "HUGE1", "20250314"
        match.add_new(0x00091010, "OB", bytes(8 * MIB))
        yield 0xFF00, match
        yield 0x0000, None

    ae = AE("HUGEPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "protocolcheck", "query", HOST, str(server.server_address[1]),
                              "--called-aet", "HUGEPACS", "--no-db", "--timeout", "60", "--workdir", str(tmp_path)],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, **repo_env(), "PROTOCOLCHECK_MAX_DATASET": "1MiB"})
        took = time.monotonic() - started
    finally:
        server.shutdown()
    assert run.returncode == 3, run.stderr
    assert "C-FIND on HUGEPACS@" in run.stderr and "reply refused, data set larger than 1048576 bytes" in run.stderr
    assert took < 30, run.stderr
