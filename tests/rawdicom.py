"""A raw DICOM writer for reader tests: full control over VRs, lengths, padding and encoding.

pydicom tidies what it writes; these helpers write exactly the bytes a test asks for, including
malformed ones, so the lean reader and pydicom can be compared on them.
"""

from __future__ import annotations

import struct
from pathlib import Path

MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
UNDEFINED = 0xFFFFFFFF


def element(tag: int, vr: str, value: bytes, explicit: bool = True, length: int | None = None) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    n = len(value) if length is None else length
    if not explicit:
        return struct.pack("<HHL", group, elem, n) + value
    if vr in LONG_VRS:
        return struct.pack("<HH2sHL", group, elem, vr.encode(), 0, n) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), n) + value


def item(content: bytes, undefined: bool = False) -> bytes:
    if undefined:
        return struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED) + content + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(content)) + content


def sequence(tag: int, items: list[bytes], explicit: bool = True, undefined: bool = False) -> bytes:
    body = b"".join(items)
    if undefined:
        return element(tag, "SQ", body + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0), explicit, UNDEFINED)
    return element(tag, "SQ", body, explicit)


def text(value: str, encoding: str = "latin-1", pad: bytes = b" ") -> bytes:
    raw = value.encode(encoding)
    return raw + pad if len(raw) % 2 else raw


def meta(syntax: str, sop_class: str = MR) -> bytes:
    elements = (
        element(0x00020001, "OB", b"\x00\x01")
        + element(0x00020002, "UI", text(sop_class, pad=b"\x00"))
        + element(0x00020003, "UI", text("1.2.3.4.5.6", pad=b"\x00"))
        + element(0x00020010, "UI", text(syntax, pad=b"\x00"))
    )
    return b"\x00" * 128 + b"DICM" + element(0x00020000, "UL", struct.pack("<L", len(elements))) + elements


def base_elements(explicit: bool = True) -> dict[int, bytes]:
    """A plausible MR image header as {tag: encoded element} (sorted when written)."""
    e = explicit
    return {
        0x00080008: element(0x00080008, "CS", text("ORIGINAL\\PRIMARY\\M\\ND"), e),
        0x00080016: element(0x00080016, "UI", text(MR, pad=b"\x00"), e),
        0x00080018: element(0x00080018, "UI", text("1.2.3.4.5.6", pad=b"\x00"), e),
        0x00080020: element(0x00080020, "DA", b"20250314", e),
        0x00080030: element(0x00080030, "TM", text("081500.123"), e),
        0x00080050: element(0x00080050, "SH", text("ACC001"), e),
        0x00080060: element(0x00080060, "CS", text("mr"), e),
        0x00080070: element(0x00080070, "LO", text("SIEMENS"), e),
        0x00081030: element(0x00081030, "LO", text("MR PLEXUS"), e),
        0x0008103E: element(0x0008103E, "LO", text("t2_tse_stir_cor"), e),
        0x00100010: element(0x00100010, "PN", text("SAMPLE^PATIENT"), e),
        0x00100020: element(0x00100020, "LO", text("PID1"), e),
        0x00180020: element(0x00180020, "CS", text("SE\\IR"), e),
        0x00180022: element(0x00180022, "CS", text("SFS\\PFP"), e),
        0x00180024: element(0x00180024, "SH", text("*tir2d1_13"), e),
        0x00180050: element(0x00180050, "DS", text("4"), e),
        0x00180080: element(0x00180080, "DS", text("4000"), e),
        0x00180081: element(0x00180081, "DS", text("56"), e),
        0x00180082: element(0x00180082, "DS", text("220"), e),
        0x00180087: element(0x00180087, "DS", text("3"), e),
        0x00181314: element(0x00181314, "DS", text("150"), e),
        0x0020000D: element(0x0020000D, "UI", text("1.2.3.4", pad=b"\x00"), e),
        0x0020000E: element(0x0020000E, "UI", text("1.2.3.4.5", pad=b"\x00"), e),
        0x00200011: element(0x00200011, "IS", text("5"), e),
        0x00200013: element(0x00200013, "IS", text("1"), e),
        0x00200032: element(0x00200032, "DS", text("-100\\-120.5\\30"), e),
        0x00200037: element(0x00200037, "DS", text("1\\0\\0\\0\\0.5\\-0.8660254"), e),
        0x00280010: element(0x00280010, "US", struct.pack("<H", 4), e),
        0x00280011: element(0x00280011, "US", struct.pack("<H", 4), e),
        0x00280030: element(0x00280030, "DS", text("0.8\\0.8"), e),
        0x00280100: element(0x00280100, "US", struct.pack("<H", 16), e),
    }


def write(path: Path, elements: dict[int, bytes], explicit: bool = True, *, pixels: bytes | None = None,
          extra: bytes = b"", syntax: str | None = None) -> Path:
    body = b"".join(elements[tag] for tag in sorted(elements))
    if pixels is None:
        pixels = element(0x7FE00010, "OW", b"\x00\x01" * 16, explicit)
    path.write_bytes(meta(syntax or (EXPLICIT if explicit else IMPLICIT)) + body + extra + pixels)
    return path
