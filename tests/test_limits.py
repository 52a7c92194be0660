"""The inflation bound of deflated datasets (:mod:`protocolcheck.dicom.limits`) and the file reader's
use of it: decided from the parsed file meta, whatever its length, never from a window of bytes."""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from rawdicom import base_elements, element, text

from protocolcheck.dicom.limits import InflateLimitExceeded, inflate, inflate_limit, inflated_size
from protocolcheck.dicom.records import InstanceHeader, Unreadable
from protocolcheck.dicom.scan import scan_file

DEFLATED = "1.2.840.10008.1.2.1.99"


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _deflated_file(path: Path, dataset: bytes, meta_padding: int) -> Path:
    """A deflated file whose file meta carries ``meta_padding`` bytes (a long File Meta Information
    Version value) before the Transfer Syntax UID, as a hostile writer would place it."""
    elements = (
        element(0x00020001, "OB", b"\x00\x01" + b"\x00" * meta_padding)
        + element(0x00020002, "UI", text("1.2.840.10008.5.1.4.1.1.4", pad=b"\x00"))
        + element(0x00020003, "UI", text("1.2.3.4.5.6", pad=b"\x00"))
        + element(0x00020010, "UI", text(DEFLATED, pad=b"\x00"))
    )
    meta = b"\x00" * 128 + b"DICM" + element(0x00020000, "UL", struct.pack("<L", len(elements))) + elements
    path.write_bytes(meta + _deflate(dataset))
    return path


def _header() -> bytes:
    elements = base_elements()
    return b"".join(elements[tag] for tag in sorted(elements))


def test_inflate_round_trips_and_refuses_a_bomb() -> None:
    data = bytes(range(256)) * 4096
    assert inflate(_deflate(data)) == data
    bomb = _deflate(b"\x00" * (64 << 20))
    with pytest.raises(InflateLimitExceeded, match="deflate bomb"):
        inflate(bomb)
    chunks = iter([bomb[i:i + 4096] for i in range(0, len(bomb), 4096)])
    with pytest.raises(InflateLimitExceeded):
        inflated_size(lambda n: next(chunks, b""), inflate_limit(len(bomb)))
    assert inflate_limit(10) == 4 << 20 and inflate_limit(1 << 20) == 50 << 20


@pytest.mark.parametrize("padding", [0, 9000, 70000])
def test_a_deflate_bomb_is_refused_wherever_the_meta_puts_the_transfer_syntax(tmp_path: Path, padding: int) -> None:
    """The old guard looked for the syntax UID in the first 8 KB: padding moved it out of sight and
    the file inflated whole (316 KB -> 300 MB) and was audited as an image."""
    pixels = element(0x7FE00010, "OB", b"\x00" * (96 << 20))
    path = _deflated_file(tmp_path / "bomb.dcm", _header() + pixels, padding)
    assert path.stat().st_size < 200_000
    [record] = scan_file(str(path))
    assert isinstance(record, Unreadable) and "deflate bomb" in record.reason


def test_an_honest_deflated_file_behind_a_long_meta_is_read(tmp_path: Path) -> None:
    path = _deflated_file(tmp_path / "ok.dcm", _header() + element(0x7FE00010, "OW", b"\x00\x01" * 16), 9000)
    [record] = scan_file(str(path))
    assert isinstance(record, InstanceHeader) and record.series_description == "t2_tse_stir_cor"


def test_reading_a_bomb_stays_within_memory(tmp_path: Path) -> None:
    """The whole reader (lean first, then pydicom) on a padded bomb, in a process capped at 300 MB."""
    path = _deflated_file(tmp_path / "bomb.dcm", _header() + element(0x7FE00010, "OB", b"\x00" * (300 << 20)), 9000)
    code = ("import resource, sys\n"
            "from protocolcheck.dicom.scan import scan_file\n"
            f"[r] = scan_file({str(path)!r})\n"
            "print(type(r).__name__, r.reason)\n"
            # VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) high-water mark across exec
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1])\n")
    limit = 300 << 20
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit * 3, limit * 3)))
    assert run.returncode == 0, run.stderr
    kind_reason, rss = run.stdout.splitlines()
    assert kind_reason.startswith("Unreadable") and "deflate bomb" in kind_reason
    assert int(rss) * 1024 < limit
