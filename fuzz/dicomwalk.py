"""A tolerant index of the data elements of a DICOM file, for mutators to aim at.

Not a reader: it never decodes values and stops quietly at the first thing that does not parse. It
knows enough (preamble, file meta, explicit/implicit VR, little/big endian, nested items) to find
where each element's tag, VR, length field and value sit, so a mutator can change exactly one of them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR

LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
UNDEFINED = 0xFFFFFFFF
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
MAX_ELEMENTS = 5000


@dataclass(frozen=True)
class Element:
    """Where one element sits in the file (offsets in bytes from the start of the file)."""

    offset: int  # first byte of the tag
    tag: int
    vr: bytes | None  # None for implicit VR and item/delimiter tags
    length: int  # declared length
    length_offset: int  # where the length field starts
    length_size: int  # 2 or 4
    value_offset: int
    depth: int  # 0 = top level (or file meta)
    meta: bool
    little: bool

    @property
    def end(self) -> int:
        """End of the value for a defined length (the declared end; may lie beyond the file)."""
        return self.value_offset + (0 if self.length == UNDEFINED else self.length)


@dataclass(frozen=True)
class Layout:
    """The elements found, the dataset's encoding and where the dataset starts."""

    elements: tuple[Element, ...]
    dataset_start: int
    implicit: bool
    little: bool
    syntax: str
    preamble: bool


def _is_sequence(tag: int, vr: bytes | None, length: int) -> bool:
    if vr is not None:
        return vr == b"SQ"
    if length == UNDEFINED:
        return True
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def index(data: bytes) -> Layout:
    """Index ``data`` as well as it parses (empty layout for something that is not DICOM at all)."""
    elements: list[Element] = []
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    pos = 132 if preamble else 0
    syntax = ""
    # file meta: group 0002, always explicit VR little endian
    while pos + 8 <= len(data):
        group = struct.unpack_from("<H", data, pos)[0]
        if group != 0x0002:
            break
        element = _header(data, pos, implicit=False, little=True, depth=0, meta=True)
        if element is None:
            break
        elements.append(element)
        if element.tag == 0x00020010:
            syntax = data[element.value_offset:element.end].rstrip(b"\x00 ").decode("latin-1", "replace")
        if element.length == UNDEFINED:
            break
        pos = element.end
    start = pos
    implicit = syntax == IMPLICIT_LE
    little = syntax != EXPLICIT_BE
    if not syntax and pos + 6 <= len(data):
        vr = data[pos + 4:pos + 6]
        implicit = not (vr.isalpha() and vr.isupper())
    if syntax != DEFLATED:
        _walk(data, start, len(data), implicit, little, 0, elements)
    return Layout(tuple(elements), start, implicit, little, syntax, preamble)


def _header(data: bytes, pos: int, implicit: bool, little: bool, depth: int, meta: bool) -> Element | None:
    if pos + 8 > len(data):
        return None
    order = "<" if little else ">"
    group, elem = struct.unpack_from(order + "HH", data, pos)
    tag = group << 16 | elem
    if group == 0xFFFE:
        length = struct.unpack_from(order + "L", data, pos + 4)[0]
        return Element(pos, tag, None, length, pos + 4, 4, pos + 8, depth, meta, little)
    if implicit:
        length = struct.unpack_from(order + "L", data, pos + 4)[0]
        return Element(pos, tag, None, length, pos + 4, 4, pos + 8, depth, meta, little)
    vr = data[pos + 4:pos + 6]
    if vr in LONG_VRS:
        if pos + 12 > len(data):
            return None
        length = struct.unpack_from(order + "L", data, pos + 8)[0]
        return Element(pos, tag, vr, length, pos + 8, 4, pos + 12, depth, meta, little)
    length = struct.unpack_from(order + "H", data, pos + 6)[0]
    return Element(pos, tag, vr, length, pos + 6, 2, pos + 8, depth, meta, little)


def _walk(data: bytes, pos: int, end: int, implicit: bool, little: bool, depth: int, out: list[Element]) -> int:
    """Index elements from ``pos`` until ``end`` or a delimiter; returns where it stopped."""
    while pos + 8 <= min(end, len(data)) and len(out) < MAX_ELEMENTS and depth < 64:
        element = _header(data, pos, implicit, little, depth, meta=False)
        if element is None:
            break
        out.append(element)
        if element.tag in (0xFFFEE00D, 0xFFFEE0DD):
            return element.value_offset
        if element.tag == 0xFFFEE000 or _is_sequence(element.tag, element.vr, element.length):  # item or sequence
            if element.length == UNDEFINED:
                pos = _walk(data, element.value_offset, len(data), implicit, little, depth + 1, out)
            else:
                _walk(data, element.value_offset, element.end, implicit, little, depth + 1, out)
                pos = element.end
            continue
        if element.length == UNDEFINED:  # encapsulated pixel data or garbage: stop here
            break
        pos = element.end
    return pos
