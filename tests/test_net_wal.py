"""The store's write-ahead log (`protocolcheck.net.wal`) and `listen` placing it again after a crash.

What a crash can leave is produced for real: a child process appends and is ended with ``os._exit`` (no
checkpoint, no close), or a real ``listen`` is killed -9; the files an operating-system crash could lose
(written but never flushed) are then truncated or deleted by the test, as such a crash would leave them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from peers import Listener, acknowledged, storescu

from protocolcheck.net.instances import InstanceKey, InstanceStore
from protocolcheck.net.wal import SEGMENTS, WAL_FOLDER, WriteAheadLog
from protocolcheck.testing import synth

SMALL = 1 << 16  # the smallest segment: rotation after a few dozen records

_CHILD = textwrap.dedent("""
    import json, os, sys, threading
    from pathlib import Path
    from protocolcheck.net.wal import WriteAheadLog
    root, count, threads, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    wal = WriteAheadLog(root, size)
    assert wal.open() == []
    out = open(root / "acked.jsonl", "a")
    lock = threading.Lock()
    def writer(t):
        for i in range(count):
            name = f"s/{t}/{i}.dcm"
            payload = (f"{t}-{i}-".encode() * (50 + (i * 37) % 400))
            segment = wal.append(name, payload)
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
            wal.placed(segment)
            with lock:
                out.write(json.dumps([name, len(payload)]) + "\\n")
                out.flush()
    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
    os._exit(0)  # a crash: no checkpoint, no close
""")


def _crashing_writer(root: Path, count: int, threads: int = 1, size: int = SMALL) -> list[tuple[str, int]]:
    """Run writers in a child that ends without checkpoint or close; (name, size) of every acknowledged record."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", _CHILD, str(root), str(count), str(threads), str(size)], check=True,
                   timeout=120)
    return [tuple(json.loads(line)) for line in (root / "acked.jsonl").read_text().splitlines()]


def _generation(segment: Path) -> int:
    """A segment's generation, from its header (magic, generation, CRC): it grows with each checkpoint."""
    with open(segment, "rb") as fh:
        return int.from_bytes(fh.read(16)[8:16], "little")


def _payload(name: str, size: int) -> bytes:
    t, i = name.split("/")[1], name.split("/")[2][:-4]
    return (f"{t}-{i}-".encode() * (size // len(f"{t}-{i}-".encode())))


def test_records_come_back_after_a_crash_oldest_first_and_not_after_a_checkpoint(tmp_path: Path) -> None:
    acked = _crashing_writer(tmp_path, 12, size=1 << 20)
    wal = WriteAheadLog(tmp_path, 1 << 20)
    records = wal.open()
    assert [(r.name, len(r.payload)) for r in records] == acked
    assert all(r.payload == _payload(r.name, len(r.payload)) for r in records)
    assert [r.sequence for r in records] == sorted(r.sequence for r in records)
    wal.checkpoint()
    wal.close()
    again = WriteAheadLog(tmp_path, 1 << 20)
    assert again.open() == []
    again.close()


def test_a_torn_last_record_is_not_replayed(tmp_path: Path) -> None:
    acked = _crashing_writer(tmp_path, 3, size=1 << 20)
    segment = tmp_path / WAL_FOLDER / "segment-0.log"
    data = bytearray(segment.read_bytes())
    last = data.rfind(acked[-1][0].encode())  # the last record's name, then its payload
    data[last + 40] ^= 0xFF  # a byte of its payload never reached the disk
    segment.write_bytes(bytes(data))
    wal = WriteAheadLog(tmp_path, 1 << 20)
    assert [(r.name, len(r.payload)) for r in wal.open()] == acked[:2]
    wal.close()


def test_every_acknowledged_record_survives_rotation_under_concurrent_writers(tmp_path: Path) -> None:
    """Four writers, 64 KiB segments (dozens of rotations and background checkpoints), then a crash: each
    acknowledged record is either still in the log or its file was made durable by a checkpoint."""
    acked = _crashing_writer(tmp_path, 150, threads=4)
    assert len(acked) == 600
    wal = WriteAheadLog(tmp_path, SMALL)
    logged = {r.name: r.payload for r in wal.open()}
    wal.close()
    assert logged, "the last segment's records should still be in the log"
    assert len(logged) < len(acked), "rotation should have checkpointed earlier segments"
    for name, size in acked:
        payload = _payload(name, size)
        assert logged.get(name, payload) == payload
        if name not in logged:
            assert (tmp_path / name).read_bytes() == payload, f"{name}: neither logged nor in place"


def test_one_process_per_store(tmp_path: Path) -> None:
    first = WriteAheadLog(tmp_path, SMALL)
    first.open()
    with pytest.raises(OSError, match="in use by another process"):
        WriteAheadLog(tmp_path, SMALL).open()
    first.close()
    second = WriteAheadLog(tmp_path, SMALL)
    assert second.open() == []
    second.close()


def test_store_logs_small_instances_and_writes_large_ones_directly(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path, wal_segment_bytes=SMALL)
    store.prepare()
    assert store.wal is not None
    small, large = b"s" * 1000, b"L" * (2 * SMALL)
    a = store.put(InstanceKey("1.2", "1.2.3", "1.2.3.1"), small)
    b = store.put(InstanceKey("1.2", "1.2.3", "1.2.3.2"), large)
    assert a.read_bytes() == small and b.read_bytes() == large
    assert store.put(InstanceKey("1.2", "1.2.3", "1.2.3.1"), small) == a  # a resend: nothing new
    store.close()
    wal = WriteAheadLog(tmp_path, SMALL)
    assert wal.open() == []  # closed cleanly: checkpointed
    wal.close()
    assert sorted(p.name for p in (tmp_path / WAL_FOLDER).iterdir()) == ["lock"] + [
        f"segment-{k}.log" for k in range(SEGMENTS)]


def test_a_resend_found_in_the_store_is_flushed_before_it_is_taken(tmp_path: Path) -> None:
    """A file found under its name may have been left unflushed by a run killed before it answered: the resend
    that finds it flushes it (file and folder) before counting it as stored; a logged put needs no folder flush."""
    store = InstanceStore(tmp_path, wal_segment_bytes=SMALL)
    store.prepare()
    key = InstanceKey("1.2", "1.2.3", "1.2.3.7")
    store.put(key, b"x" * 500)
    assert store.folders.rounds == 0  # durable through the log
    (tmp_path / "1.2" / "1.2.3" / "1.2.3.8.dcm").write_bytes(b"y" * 500)  # what a killed run may leave
    store.put(InstanceKey("1.2", "1.2.3", "1.2.3.8"), b"y" * 500)
    assert store.folders.rounds == 1
    store.close()


def test_concurrent_duplicates_under_one_uid_keep_both_and_lose_none(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path, wal_segment_bytes=SMALL)
    store.prepare()
    key = InstanceKey("1.2", "1.2.3", "1.2.3.9")
    payloads = [bytes([65 + k]) * 3000 for k in range(4)] * 3  # 4 contents, each sent 3 times at once
    placed: list[tuple[bytes, Path]] = []
    lock = threading.Lock()

    def put(payload: bytes) -> None:
        path = store.put(key, payload)
        with lock:
            placed.append((payload, path))

    threads = [threading.Thread(target=put, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    files = sorted((tmp_path / "1.2" / "1.2.3").glob("*.dcm"))
    assert len(files) == 4 and {f.read_bytes() for f in files} == set(payloads)
    assert len(placed) == len(payloads) and all(path.read_bytes() == payload for payload, path in placed)


@pytest.mark.network
def test_listen_places_the_log_again_after_kill_9_and_an_os_crash(tmp_path: Path) -> None:
    """Acknowledged instances, then kill -9, then what an OS crash may do to files never flushed (emptied,
    gone): the next listen places them again from its log, whole, and audits the study."""
    src = tmp_path / "src"
    files = synth.write_study(synth.plexus_study(synth.Vendor.GE, "WAL-1", slices=4), src)
    listener = Listener(tmp_path, "--no-db", "--idle", "3600")
    sent = storescu(listener.port, [src], extra=["-v"])
    ok, failed = acknowledged(sent.stdout + sent.stderr)
    assert not failed and len(ok) == len(files), sent.stderr
    listener.kill()
    stored = sorted(listener.store.glob("*/*/*.dcm"))
    assert len(stored) == len(files)
    for k, path in enumerate(stored):
        if k % 2:
            path.unlink()
        else:
            path.write_bytes(b"")
    again = Listener(tmp_path, "--no-db", "--idle", "0.5", store=listener.store, name="listen-2")
    records = again.wait_records(1)
    assert "placed again" in again.text()
    for source in files:
        ds = pydicom.dcmread(source)
        path = listener.store / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert path.read_bytes() == source.read_bytes() or pydicom.dcmread(path) == ds
    assert sum(int(s["instances"]) for s in records[-1]["series"]) == len(files)
    assert again.terminate() == 0


@pytest.mark.network
def test_listen_rotates_its_log_under_four_associations_and_a_crash_loses_nothing(tmp_path: Path) -> None:
    """About 20 MB of 256 x 256 MR images over 4 associations at once fill the first 16 MiB segment: it is
    checkpointed while the senders go on. After kill -9, what the log still holds is what was not yet made
    durable by a checkpoint; those files are deleted (an OS crash may lose them) and the next start restores
    them, while the checkpointed ones were flushed and are untouched."""
    sources: list[Path] = []
    folders = []
    for k in range(4):
        spec = synth.plexus_study(synth.Vendor.SIEMENS, f"WAL-R{k}", slices=6)
        spec = replace(spec, series=tuple(replace(s, matrix=256) for s in spec.series))
        folders.append(tmp_path / f"src{k}")
        sources += synth.write_study(spec, folders[-1])
    assert sum(p.stat().st_size for p in sources) > 18 << 20
    listener = Listener(tmp_path, "--no-db", "--idle", "3600")
    senders = [threading.Thread(target=lambda f=f: results.append(storescu(listener.port, [f], extra=["-v"])))
               for f in folders]
    results: list[subprocess.CompletedProcess[str]] = []
    for t in senders:
        t.start()
    for t in senders:
        t.join(120)
    acked = [p for r in results for p in acknowledged(r.stdout + r.stderr)[0]]
    assert len(acked) == len(sources), [r.stderr[-300:] for r in results]
    deadline = time.monotonic() + 60  # the first segment's checkpoint runs in the background: let it end
    while _generation(listener.store / WAL_FOLDER / "segment-0.log") < 2:
        assert time.monotonic() < deadline, "the first segment was never checkpointed"
        time.sleep(0.05)
    listener.kill()
    log = WriteAheadLog(listener.store, 16 << 20)
    logged = {r.name for r in log.open()}
    log.close_without_checkpoint()
    stored = {p.relative_to(listener.store).as_posix() for p in listener.store.glob("*/*/*.dcm")}
    assert len(stored) == len(sources)
    assert logged and logged < stored, "the first segment should have been checkpointed, the rest logged"
    for name in logged:
        (listener.store / name).unlink()
    again = Listener(tmp_path, "--no-db", "--idle", "0.5", store=listener.store, name="listen-2")
    assert f"{len(logged)} placed again" in again.text()
    for source in sources:
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        path = listener.store / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert pydicom.dcmread(path).PixelData == pydicom.dcmread(source).PixelData
    assert again.terminate() == 0


@pytest.mark.network
def test_a_second_listen_on_the_same_store_exits_3(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "--no-db")
    second = subprocess.run([sys.executable, "-m", "protocolcheck", "listen", "--port", "0", "--store",
                             str(listener.store), "--no-db", "--output", str(tmp_path / "b.jsonl")],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 3, second.stderr
    assert "in use by another process" in second.stderr
    assert listener.terminate() == 0
