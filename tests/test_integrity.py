"""Integrity problems become findings: malformed values (``malformed-value``) and incomplete Pixel Data
(``truncated-pixel-data``: cut short, shorter than rows x columns x bits x samples x frames, encapsulated
fragments missing), warnings naming the element and the file, from either header reader."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from rawdicom import UNDEFINED, base_elements, element, item, text, write

from protocolcheck.cli import main
from protocolcheck.dicom.lean import read_fast
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import scan_file

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "sample_dicom" / "01_siemens_plexus_complete"
JPEG = "1.2.840.10008.1.2.4.50"
DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def _problems(path: Path) -> tuple[str, ...]:
    [record] = scan_file(str(path))
    assert isinstance(record, InstanceHeader)
    assert read_fast(str(path)) is None or not record.value_problems  # the lean reader never hides one
    return record.value_problems


def test_whole_pixels_have_no_problem(tmp_path: Path) -> None:
    assert _problems(write(tmp_path / "ok.dcm", base_elements())) == ()  # 4 x 4 x 16 bits = 32 bytes


def test_self_consistent_but_short_pixel_data(tmp_path: Path) -> None:
    """The element's length matches the file, but the header's image needs 32 bytes: it holds 16."""
    path = write(tmp_path / "short.dcm", base_elements(), pixels=element(0x7FE00010, "OW", b"\x00\x01" * 8))
    assert _problems(path) == ("PixelData: shorter than the image (16 of 32 bytes: 4 rows x 4 columns x 16 bits "
                               "x 1 sample x 1 frame)",)


def test_frames_and_samples_count(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00280008] = element(0x00280008, "IS", text("3"))
    elements[0x00280002] = element(0x00280002, "US", struct.pack("<H", 3))
    whole = element(0x7FE00010, "OW", b"\x00\x01" * (16 * 3 * 3))
    assert _problems(write(tmp_path / "ok.dcm", elements, pixels=whole)) == ()
    one_frame = element(0x7FE00010, "OW", b"\x00\x01" * (16 * 3))
    [problem] = _problems(write(tmp_path / "short.dcm", elements, pixels=one_frame))
    assert "96 of 288 bytes" in problem and "3 samples x 3 frames" in problem


def test_pixels_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.dcm", base_elements(),
                 pixels=element(0x7FE00010, "OW", b"\x00" * 10, length=2048))
    assert _problems(path) == ("PixelData: truncated (10 of 2048 bytes present)",)


def _encapsulated(*fragments: bytes, end: bool = True) -> bytes:
    body = item(b"") + b"".join(item(f) for f in fragments) + (DELIMITER if end else b"")
    return element(0x7FE00010, "OB", b"", length=UNDEFINED) + body


@pytest.mark.parametrize(("pixels", "expected"), [
    (_encapsulated(b"\xff\xd8\xff\xd9"), None),
    (_encapsulated(b"\xff\xd8\xff\xd9", end=False), "cut short (the file ends after 1 fragment,"),
    (_encapsulated(), "no fragment"),
    (_encapsulated(b"\xff\xd8")[:-9], "truncated (fragment 0: 1 of 2 bytes"),
    (element(0x7FE00010, "OB", b"", length=UNDEFINED) + DELIMITER, "without a Basic Offset Table"),
])
def test_encapsulated_fragments(tmp_path: Path, pixels: bytes, expected: str | None) -> None:
    path = write(tmp_path / "jpeg.dcm", base_elements(), pixels=pixels, syntax=JPEG)
    problems = _problems(path)
    if expected is None:
        assert problems == ()
    else:
        assert len(problems) == 1 and expected in problems[0], problems


def test_fewer_fragments_than_frames(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00280008] = element(0x00280008, "IS", text("3"))
    path = write(tmp_path / "jpeg.dcm", elements, pixels=_encapsulated(b"\xff\xd8\xff\xd9", b"\xff\xd8\xff\xd9"),
                 syntax=JPEG)
    assert _problems(path) == ("PixelData: 2 fragments for 3 frames (frames are missing)",)


def test_audit_reports_them_by_element_and_file(tmp_path: Path) -> None:
    """Before: the readers noted these problems and the study passed."""
    study = tmp_path / "study"
    shutil.copytree(STUDY, study)
    damaged = study / "0003_002.dcm"
    data = damaged.read_bytes()
    damaged.write_bytes(data[:-100])  # cut inside the pixels
    malformed = study / "0004_001.dcm"
    import pydicom

    ds = pydicom.dcmread(malformed)
    raw = ds.get_item("RepetitionTime")
    ds["RepetitionTime"] = pydicom.dataelem.RawDataElement(raw.tag, "DS", 4, b"abc ", raw.value_tell,
                                                           raw.is_implicit_VR, raw.is_little_endian)
    ds.save_as(malformed)
    result = CliRunner().invoke(main, ["audit", str(study), "--no-db", "--format", "json"])
    [record] = json.loads(result.stdout)
    codes = {f["code"]: f for f in record["findings"]}
    pixel = codes["truncated-pixel-data"]
    assert pixel["severity"] == "warning" and str(damaged) in pixel["message"]
    assert "truncated" in pixel["message"] and pixel["evidence"]["element"] == "PixelData"
    value = codes["malformed-value"]
    assert value["severity"] == "warning" and str(malformed) in value["message"]
    assert "RepetitionTime" in value["message"] and value["evidence"]["files"] == [str(malformed)]
    assert record["status"] in ("warn", "fail") and record["status"] != "pass"
