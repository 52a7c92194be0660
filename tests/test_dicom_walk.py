"""The element walk (`protocolcheck.dicom.walk`) and the storage SCP's quick acceptance built on it
(`protocolcheck.net.scp.quick_key`).

The quick path may only ever say what the full one (pydicom's decode and the checks of ``decode_received`` and
``instance_key``) says: over a multi-vendor synthetic corpus, the real headers of ``../shared/realdata`` and
thousands of damaged copies of both (cut short, bytes flipped, bytes added), every data set the quick path
accepts must be accepted by the full path with the same key. It must also accept the intact ones, or it saves
nothing.
"""

from __future__ import annotations

import os
import random
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.uid import UID

from protocolcheck.dicom import walk
from protocolcheck.net.instances import InstanceKey, InstanceRefused
from protocolcheck.net.scp import decode_received, instance_key, quick_key
from protocolcheck.testing import synth

TARBALL = "real-mr-dev.tar.gz"
REALDATA = next((p for p in (Path(os.environ.get("PROTOCOLCHECK_REALDATA", "/nonexistent")) / TARBALL,
                             Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / TARBALL)
                 if p.is_file()), Path("../shared/realdata") / TARBALL)
Sample = tuple[str, bytes, UID]  # (name, data set without File Meta Information, transfer syntax)


def split_part10(raw: bytes) -> tuple[bytes, UID] | None:
    """(data set, transfer syntax) of a Part 10 file whose meta group starts with its group length."""
    if raw[128:132] != b"DICM" or raw[132:136] != b"\x02\x00\x00\x00":
        return None
    meta_end = 144 + struct.unpack_from("<L", raw, 140)[0]
    pos, syntax = 144, None
    while pos < meta_end:
        group, element, vr = struct.unpack_from("<HH2s", raw, pos)
        if vr in (b"OB", b"UN", b"OW", b"SQ", b"UT"):
            length, head = struct.unpack_from("<L", raw, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", raw, pos + 6)[0], 8
        if (group, element) == (0x0002, 0x0010):
            syntax = raw[pos + head:pos + head + length].decode("ascii").rstrip("\x00 ")
        pos += head + length
    return (raw[meta_end:], UID(syntax)) if syntax else None


def full_key(data: bytes, syntax: UID) -> InstanceKey | None:
    """What the full path answers: the key, or None when it refuses."""
    try:
        return instance_key(decode_received(data, syntax), "1.2.3.99")
    except InstanceRefused:
        return None


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    root = tmp_path_factory.mktemp("walk")
    specs = [synth.plexus_study(synth.Vendor.SIEMENS, "W-SIE"), synth.plexus_study(synth.Vendor.SIEMENS_XA, "W-XA"),
             replace(synth.plexus_study(synth.Vendor.GE, "W-GE"), syntax=synth.Syntax.IMPLICIT_LE),
             synth.plexus_study(synth.Vendor.PHILIPS, "W-PH"), synth.plexus_study(synth.Vendor.CANON, "W-CA"),
             synth.plexus_study(synth.Vendor.HITACHI, "W-HI"), synth.ct_study(synth.Vendor.SIEMENS, "W-CT"),
             replace(synth.ct_study(synth.Vendor.GE, "W-BE"), syntax=synth.Syntax.EXPLICIT_BE),
             replace(synth.plexus_study(synth.Vendor.PHILIPS, "W-DF"), syntax=synth.Syntax.DEFLATED)]
    samples: list[Sample] = []
    for n, spec in enumerate(specs):
        for path in synth.write_study(spec, root / str(n))[:6]:
            split = split_part10(path.read_bytes())
            assert split is not None, path
            samples.append((path.name, *split))
    return samples


def real_headers() -> Iterator[Sample]:
    """The first file of each real series (as the scanners wrote them, pixel data removed by the curators)."""
    if not REALDATA.is_file():
        return
    seen: set[str] = set()
    with tarfile.open(REALDATA) as tar:
        for member in tar:
            folder = member.name.rsplit("/", 1)[0]
            if not member.isfile() or folder in seen:
                continue
            handle = tar.extractfile(member)
            split = split_part10(handle.read()) if handle else None
            if split is not None:
                seen.add(folder)
                yield (member.name, *split)


def damaged(data: bytes, rng: random.Random) -> Iterator[bytes]:
    """Copies of ``data`` cut short, with a byte flipped (mostly in the headers' region), or with bytes added."""
    size = len(data)
    for cut in {1, 7, 8, size // 3, size // 2, size - 64, size - 9, size - 2, size - 1}:
        if 0 < cut < size:
            yield data[:cut]
    for _ in range(12):
        at = rng.randrange(size) if rng.random() < 0.3 else rng.randrange(min(size, 2048))
        yield data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
    yield data + b"\x00"
    yield data + b"\xe0\x7f\x10\x00OB\x00\x00\x00\x00\x00\x00"


def check(samples: list[Sample], rng: random.Random) -> tuple[int, int, int]:
    """(intact samples the quick path accepted, damaged copies, of them accepted quickly); fails on any disagreement."""
    accepted = copies = quick = 0
    for name, data, syntax in samples:
        key = quick_key(data, syntax, "1.2.3.99")
        assert key is None or key == full_key(data, syntax), name
        accepted += key is not None
        for copy in damaged(data, rng):
            copies += 1
            key = quick_key(copy, syntax, "1.2.3.99")
            if key is not None:
                quick += 1
                assert key == full_key(copy, syntax), f"{name}: quick path accepted what pydicom's does not"
    return accepted, copies, quick


def test_the_quick_path_agrees_with_pydicom_on_synthetic_data(synthetic: list[Sample]) -> None:
    accepted, copies, quick = check(synthetic, random.Random(15))
    little = [s for s in synthetic if s[2].is_little_endian and not s[2].is_deflated]
    print(f"\nsynthetic: {accepted} of {len(synthetic)} intact accepted quickly; {quick} of {copies} damaged copies "
          f"accepted quickly (each as pydicom does)")
    assert accepted == len(little)  # every little-endian, not deflated, intact instance
    assert quick < copies


def test_the_quick_path_agrees_with_pydicom_on_real_headers() -> None:
    samples = list(real_headers())
    if not samples:
        pytest.skip(f"no real data at {REALDATA}")
    accepted, copies, quick = check(samples, random.Random(16))
    print(f"\nreal headers: {accepted} of {len(samples)} intact accepted quickly; {quick} of {copies} damaged "
          f"copies accepted quickly (each as pydicom does)")
    assert accepted >= 0.9 * len(samples)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr in walk.LONG_VRS:
        return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _undefined(tag: int, vr: bytes, body: bytes) -> bytes:
    return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr, walk.UNDEFINED) + body


ITEM = struct.pack("<HHL", 0xFFFE, 0xE000, walk.UNDEFINED)
ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
SEQ_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def test_nested_undefined_lengths_are_followed_to_their_delimiters() -> None:
    inner = _undefined(0x00081111, b"SQ", ITEM + _element(0x00081150, b"UI", b"1.2\x00") + ITEM_END + SEQ_END)
    outer = _undefined(0x00081110, b"SQ", ITEM + inner + ITEM_END + SEQ_END)
    fragments = struct.pack("<HHL", 0xFFFE, 0xE000, 0) + struct.pack("<HHL", 0xFFFE, 0xE000, 4) + b"\xff\xd8\xff\xd9"
    data = _element(0x00080060, b"CS", b"MR") + outer + _element(0x00200013, b"IS", b"1 ") \
        + _undefined(0x7FE00010, b"OB", fragments + SEQ_END)
    found = walk.top_level(data, False, frozenset({0x00200013, 0x7FE00010}))
    assert found is not None and set(found) == {0x00200013, 0x7FE00010}
    assert data[found[0x00200013].offset:][:2] == b"1 " and found[0x7FE00010].length == walk.UNDEFINED
    assert walk.top_level(data[:-8], False, frozenset()) is None  # the pixel data's delimiter missing
    assert walk.top_level(data.replace(ITEM_END, ITEM_END[:4] + b"\x01\x00\x00\x00", 1), False, frozenset()) is None
    deep = _element(0x00080060, b"CS", b"MR")
    for _ in range(walk.MAX_DEPTH + 2):
        deep = _undefined(0x00081110, b"SQ", ITEM + deep + ITEM_END + SEQ_END)
    assert walk.top_level(deep, False, frozenset()) is None  # bounded recursion, not a crash
    swapped = _element(0x00200013, b"IS", b"1 ") + _element(0x00080060, b"CS", b"MR")
    assert walk.top_level(swapped, False, frozenset()) is None  # out of order: pydicom decides
