"""What ``listen`` acknowledges is stored whole and nothing is overwritten (net/scp.py), with a pynetdicom
SCU sending crafted bytes (``STORE_SEND_CHUNKED_DATASET``: the file's dataset exactly as written) to a
real ``listen`` process on 127.0.0.1.

- A deflate bomb (0.5 MB inflating to 500 MB) is refused 0xA700 before pynetdicom or pydicom inflate
  it; the process's peak RSS stays under 300 MB.
- A deflated dataset whose inflated stream is cut short, and native Pixel Data shorter than
  Rows x Columns x bits x samples x frames, are refused (0xC210, 0xA900), not acknowledged.
- A second instance under an acknowledged SOP Instance UID with other bytes is kept beside the first
  and the audit reports ``duplicate-instance``; the same bytes again change nothing.
"""

from __future__ import annotations

import json
import resource
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from peers import HOST, MR_IMAGE, Listener, explicit_le, mr_header, peak_rss_mb, run_measured
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet

from protocolcheck.testing import synth

pytestmark = [pytest.mark.network, pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    process = Listener(tmp_path, "--no-db", "--idle", "1")
    try:
        yield process
    finally:
        if process.process.alive():
            process.terminate(timeout=30)


@pytest.fixture(autouse=True)
def _send_bytes_as_written() -> Iterator[None]:
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = previous


def pixel_element_head(length: int) -> bytes:
    return b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")


def write_file(path: Path, ds: Dataset, syntax: str, body: bytes) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.3811.2"
    with open(path, "wb") as fh:
        fh.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fh, meta, enforce_standard=True)
        fh.write(body)
    return path


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def send(port: int, path: Path, syntax: str) -> int | None:
    ae = AE(ae_title="INTEGSCU")
    ae.add_requested_context(MR_IMAGE, syntax)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 60
    assoc = ae.associate(HOST, port, ae_title="PROTOCOLCHECK")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def stored(listener: Listener) -> list[Path]:
    return sorted(listener.store.glob("*/*/*.dcm"))


def test_deflate_bomb_is_refused_with_bounded_memory(tmp_path: Path, listener: Listener) -> None:
    ds = mr_header(generate_uid(), generate_uid(), generate_uid(), rows=16384, columns=16384)
    inflated = 16384 * 16384 * 2  # 512 MB of zeros
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [packer.compress(explicit_le(ds) + pixel_element_head(inflated))]
    zeros = bytes(1 << 22)
    parts += [packer.compress(zeros) for _ in range(inflated // len(zeros))]
    parts.append(packer.flush())
    body = b"".join(parts)
    assert len(body) < 1 << 20
    path = write_file(tmp_path / "bomb.dcm", ds, DeflatedExplicitVRLittleEndian, body)
    assert send(listener.port, path, DeflatedExplicitVRLittleEndian) == 0xA700
    peak = peak_rss_mb(listener.pid)
    print(f"\ndeflate bomb: {len(body)} bytes sent, {inflated >> 20} MB inflated; listen peak RSS {peak:.0f} MB")
    assert peak < 300
    assert stored(listener) == []
    assert "deflate bomb" in listener.text()


def test_deflated_dataset_cut_short_is_refused(tmp_path: Path, listener: Listener) -> None:
    ds = mr_header(generate_uid(), generate_uid(), generate_uid(), rows=8, columns=8)
    ds.PixelData = bytes(8 * 8 * 2)
    whole = explicit_le(ds)
    path = write_file(tmp_path / "cut.dcm", ds, DeflatedExplicitVRLittleEndian, deflate(whole[:-50]))
    assert send(listener.port, path, DeflatedExplicitVRLittleEndian) == 0xC210
    cut_stream = write_file(tmp_path / "cut_stream.dcm", ds, DeflatedExplicitVRLittleEndian, deflate(whole)[:-40])
    assert send(listener.port, cut_stream, DeflatedExplicitVRLittleEndian) == 0xC210
    good = write_file(tmp_path / "good.dcm", ds, DeflatedExplicitVRLittleEndian, deflate(whole))
    assert send(listener.port, good, DeflatedExplicitVRLittleEndian) == 0x0000
    assert len(stored(listener)) == 1


def test_short_native_pixel_data_is_refused(tmp_path: Path, listener: Listener) -> None:
    ds = mr_header(generate_uid(), generate_uid(), generate_uid(), rows=64, columns=64)
    ds.PixelData = bytes(10)  # self-consistent element length, 10 of 8192 bytes
    path = write_file(tmp_path / "short.dcm", ds, ExplicitVRLittleEndian, explicit_le(ds))
    assert send(listener.port, path, ExplicitVRLittleEndian) == 0xA900
    assert stored(listener) == []
    assert "PixelData: shorter than the image (10 of 8192 bytes" in listener.text()


def test_duplicate_sop_instance_keeps_both_and_is_reported(tmp_path: Path, listener: Listener) -> None:
    folder = tmp_path / "study"
    paths = synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, "DUP1", slices=2), folder)
    first = paths[0]
    for path in paths:
        assert send(listener.port, path, str(_syntax(path))) == 0x0000
    changed = tmp_path / "changed.dcm"
    ds = pydicom.dcmread(first)
    ds.SeriesDescription = str(ds.get("SeriesDescription", "")) + " corrected"
    ds.save_as(changed)
    syntax = str(_syntax(first))
    assert send(listener.port, changed, syntax) == 0x0000
    assert send(listener.port, first, syntax) == 0x0000  # the same bytes again: a resend
    assert send(listener.port, changed, syntax) == 0x0000
    sop = str(ds.SOPInstanceUID)
    copies = sorted(p.name for p in listener.store.glob(f"*/*/{sop}*.dcm"))
    assert len(copies) == 2 and f"{sop}.dcm" in copies, copies
    assert any(name.startswith(f"{sop}+") for name in copies), copies
    assert len(stored(listener)) == len(paths) + 1
    record = listener.wait_records(1)[-1]
    duplicates = [f for f in record["findings"] if f["code"] == "duplicate-instance"]
    assert len(duplicates) == 1 and duplicates[0]["evidence"]["sop_instance_uid"] == sop
    assert len(duplicates[0]["evidence"]["paths"]) == 2


def _syntax(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def test_control_characters_from_peers_cannot_forge_log_lines(tmp_path: Path, listener: Listener) -> None:
    study, series = generate_uid(), generate_uid()
    refused = mr_header(study, series, "1.2.3\n2026-01-01 00:00:00 WARNING FORGED refusal\x1b[2J", rows=8, columns=8)
    refused.PixelData = bytes(8 * 8 * 2)
    path = write_file(tmp_path / "bad_uid.dcm", refused, ExplicitVRLittleEndian, explicit_le(refused))
    assert send(listener.port, path, ExplicitVRLittleEndian) == 0xA900
    accepted = mr_header(study, series, generate_uid(), rows=8, columns=8)
    accepted.AccessionNumber = "A1\nFORGED"  # not a valid SH: pydicom writes it as given
    accepted.PixelData = bytes(8 * 8 * 2)
    path = write_file(tmp_path / "bad_accession.dcm", accepted, ExplicitVRLittleEndian, explicit_le(accepted))
    assert send(listener.port, path, ExplicitVRLittleEndian) == 0x0000
    listener.wait_records(1)
    deadline = time.monotonic() + 20
    while "audited" not in listener.text():  # logged just after the record is written
        assert time.monotonic() < deadline, listener.text()
        time.sleep(0.1)
    lines = listener.text().splitlines()
    assert not [line for line in lines if line.startswith(("FORGED", "2026-01-01"))], listener.text()
    assert "\x1b" not in listener.text()
    assert any("\\x0a2026-01-01 00:00:00 WARNING FORGED refusal\\x1b[2J" in line for line in lines), listener.text()
    assert any("A1\\x0aFORGED" in line for line in lines if "audited" in line), listener.text()


def test_jsonl_output_keeps_whole_lines_when_the_disk_is_full(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "--no-db", "--idle", "2")
    try:
        def study(accession: str) -> Path:
            folder = tmp_path / accession
            synth.write_study(synth.plexus_study(synth.Vendor.GE, accession, slices=1), folder)
            return folder

        def send_study(folder: Path) -> None:
            for path in sorted(folder.glob("*.dcm")):
                assert send(listener.port, path, _syntax(path)) == 0x0000

        send_study(study("JSONL1"))
        listener.wait_records(1)
        size = listener.out.stat().st_size
        send_study(study("JSONL2"))
        # the disk "fills up" before JSONL2 is audited: its record can only be written in part
        resource.prlimit(listener.pid, resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
        deadline = time.monotonic() + 30
        while "handling completed study" not in listener.text():
            assert time.monotonic() < deadline, listener.text()
            time.sleep(0.1)
        assert listener.out.stat().st_size == size  # nothing of JSONL2's record is left
        resource.prlimit(listener.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        send_study(study("JSONL3"))
        records = listener.wait_records(2)  # every line parses
        assert [r["accession_number"] for r in records] == ["JSONL1", "JSONL3"]
        assert listener.terminate(timeout=30) == 0
        assert [json.loads(line)["accession_number"] for line in listener.out.read_text().splitlines()] == \
            ["JSONL1", "JSONL3", "JSONL2"]  # the failed hand-over stayed pending: audited at the stop
    finally:
        if listener.process.alive():
            listener.kill()


def bomb_file(folder: Path, study: str) -> Path:
    """A deflated MR instance of ``study``: 0.5 MB that inflates to 512 MB."""
    ds = mr_header(study, generate_uid(), generate_uid(), rows=16384, columns=16384)
    inflated = 16384 * 16384 * 2
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [packer.compress(explicit_le(ds) + pixel_element_head(inflated))]
    zeros = bytes(1 << 22)
    parts += [packer.compress(zeros) for _ in range(inflated // len(zeros))]
    parts.append(packer.flush())
    return write_file(folder / "bomb.dcm", ds, DeflatedExplicitVRLittleEndian, b"".join(parts))


def test_deflate_bomb_over_c_get_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    study = generate_uid()
    bomb = bomb_file(tmp_path, study)
    statuses: list[int] = []

    def on_find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = study
        match.AccessionNumber = "BOMB1"
        match.StudyDate = "20250314"
        match.ModalitiesInStudy = "MR"
        yield 0xFF00, match
        yield 0x0000, None

    def on_get(event: Any) -> Iterator[Any]:
        yield 1
        # pynetdicom's C-GET SCP only yields datasets it encodes itself: send the file's bytes as written
        # (STORE_SEND_CHUNKED_DATASET) on the same association, then end with "sub-operations failed"
        status = event.assoc.send_c_store(str(bomb))
        statuses.append(int(getattr(status, "Status", -1)))
        yield 0xA702, None

    ae = AE("BOMBPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(MR_IMAGE, DeflatedExplicitVRLittleEndian, scu_role=False, scp_role=True)
    server = ae.start_server((HOST, 0), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)])
    try:
        port = int(server.server_address[1])
        run, peak = run_measured(["query", HOST, str(port), "--called-aet", "BOMBPACS", "--no-db", "--timeout", "60",
                                  "--workdir", str(tmp_path)])
    finally:
        server.shutdown()
    print(f"\nC-GET deflate bomb: query peak RSS {peak:.0f} MB")
    assert statuses == [0xA700], run.stderr  # our C-STORE SCP refused it: out of resources
    assert run.returncode == 3, run.stderr
    assert "deflate bomb" in run.stderr and "1 not retrieved" in run.stderr, run.stderr
    assert peak < 300
