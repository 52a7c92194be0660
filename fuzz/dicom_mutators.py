"""DICOM-aware byte mutators: each returns a changed copy of a file, aimed at one weakness.

Truncations, wrong and hostile declared lengths, wrong VRs, odd lengths, deeply nested sequences,
bad character sets, NaN/negative/huge numbers in TR/TE/TI, orientation vectors of the wrong length or
zero length, transfer syntaxes that do not match the data, elements spliced in from other files.
All randomness comes from the ``random.Random`` passed in, so an input is reproducible from its seed.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Sequence

from pydicom.datadict import keyword_dict

from .dicomwalk import LONG_VRS, UNDEFINED, Element, Layout, index

Mutator = Callable[[random.Random, bytes, Layout, Sequence[bytes]], bytes]

VRS = (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
       b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
       b"UR", b"US", b"UT", b"UV")
ODD_VRS = (b"XX", b"\x00\x00", b"ds", b"  ", b"\xff\xff", b"U\x00")
INTERESTING_LENGTHS = (0, 1, 2, 3, 4, 7, 8, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF, 0x10000, 0x7FFFFFFF,
                       0x80000000, 0xFFFFFFF0, 0xFFFFFFFE, 0xFFFFFFFF)

TAG = {k: keyword_dict[k] for k in (
    "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "MagneticFieldStrength", "EchoTrainLength",
    "SliceThickness", "SpacingBetweenSlices", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing",
    "SpecificCharacterSet", "ImageType", "ScanningSequence", "SequenceVariant", "ScanOptions", "SeriesNumber",
    "InstanceNumber", "AcquisitionNumber", "NumberOfFrames", "Rows", "Columns", "StudyInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality", "Manufacturer", "SeriesDescription",
    "ProtocolName", "SequenceName", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "AccessionNumber", "ContrastBolusAgent", "MRAcquisitionType", "DiffusionBValue",
    "PatientName", "StudyDescription", "KVP", "ConvolutionKernel", "BodyPartExamined", "TransferSyntaxUID",
    "PixelData", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "ProcedureCodeSequence",
    "RequestAttributesSequence", "AcquisitionDateTime", "ContrastBolusAgentSequence",
)}

NUMBER_VALUES = (b"NaN", b"nan", b"-nan", b"inf", b"-inf", b"Infinity", b"1e999", b"-1e999", b"-1", b"-0", b"0",
                 b"-2500", b"1e308", b"-1e308", b"1e-320", b"abc", b"", b" ", b"1\\2\\3", b"\\", b"\\\\",
                 b"1,5", b"0x10", b"1_000", b"\x00", b"9" * 64, b"\xff\xfe", b"12.5 ", b" -3.", b".", b"+",
                 b"1e", b"1.2.3")
VECTOR_VALUES = (b"", b"1", b"1\\0\\0", b"1\\0\\0\\0\\1", b"1\\0\\0\\0\\1\\0\\0", b"0\\0\\0\\0\\0\\0",
                 b"1\\0\\0\\0\\0\\0", b"1\\0\\0\\1\\0\\0", b"NaN\\0\\0\\0\\1\\0", b"inf\\0\\0\\0\\1\\0",
                 b"1e308\\1e308\\0\\0\\1\\0", b"1\\0\\0\\0\\1\\x", b"\\\\\\\\\\", b"1e-320\\0\\0\\0\\1e-320\\0",
                 b"-1\\-0\\0\\0\\-1\\0", b"1\\0\\0\\0\\1\\0\\" * 100, b"0.7071\\0.7071\\0\\0.7071\\0.7071\\0")
CHARSET_VALUES = (b"ISO 2022 IR 87", b"ISO_IR 999", b"GB18030", b"ISO_IR 192", b"\\ISO 2022 IR 100",
                  b"ISO 2022 IR 6\\ISO 2022 IR 87", b"ISO_IR 13", b"", b"\xff\xfe", b"ISO_IR 100\\ISO_IR 192",
                  b"ISO 2022 IR 149", b"ISO_IR 166", b"latin1", b"UTF-8", b"\\\\\\", b"ISO_IR 6 ")
TEXT_VALUES = (b"", b"\x00" * 8, b"\xff\xfe\xfd", b"\xc3\x28", b"\x1b$B", b"\x1b(B", "Ä\u00e9".encode(), b"\\",
               b"A" * 300, b"T2\\FS\\SAT\\" * 20, b"DERIVED\\SECONDARY\\MPR", b"ORIGINAL\\PRIMARY\\M\\W\\F",
               b"\r\n\t", b"%s%n{0}", b"<script>", b"=\"1\"", "\u202e".encode())
UID_VALUES = (b"", b"1.2", b"1" * 64, b"1.2.3" * 40, b"\x00", b"1.2.840.10008.5.1.4.1.1.4.1",
              b"1.2.840.10008.1.3.10", b"1.2.840.10008.5.1.4.1.1.88.22", b"not a uid", b"1..2", b"\\1.2\\1.3")
SYNTAXES = (b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99",
            b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.5", b"1.2.3.4", b"",
            b"1.2.840.10008.1.2.4.201", b"1.2.840.10008.1.2.1\\1.2.840.10008.1.2")
DATE_VALUES = (b"", b"2025", b"20251399", b"99999999", b"2025-01-01", b"00000000", b"-2025010", b"20250229",
               b"ABCDEFGH", b"2025010112", b"20250101\\20250102")
TIME_VALUES = (b"", b"25", b"246100", b"12:30:00", b"120000.1234567", b"ABC", b"-1", b"999999.999999")
INT_VALUES = (b"", b"-1", b"0", b"1.5", b"99999999999999999999", b"-99999999999", b"abc", b"1\\2", b"NaN",
              b"1e3", b"+7", b" 12 ", b"2147483648")
BINARY_US = (b"", b"\x01", b"\x00\x00", b"\xff\xff", b"\x01\x00\x02\x00", b"\x00")


def _pad(value: bytes) -> bytes:
    return value + (b" " if len(value) % 2 else b"")


def encode_element(tag: int, vr: bytes, value: bytes, implicit: bool, little: bool = True,
                   length: int | None = None) -> bytes:
    """Bytes of one element in the dataset's encoding; ``length`` overrides the declared length."""
    order = "<" if little else ">"
    declared = len(value) if length is None else length
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack(order + "HHL", group, elem, declared & 0xFFFFFFFF) + value
    if vr in LONG_VRS:
        return struct.pack(order + "HH2sHL", group, elem, vr, 0, declared & 0xFFFFFFFF) + value
    return struct.pack(order + "HH2sH", group, elem, vr, declared & 0xFFFF) + value


def _pick(rng: random.Random, layout: Layout, *, tags: Sequence[int] | None = None,
          top: bool = False, dataset: bool = True) -> Element | None:
    candidates = [e for e in layout.elements if (not dataset or not e.meta) and (not top or e.depth == 0)
                  and (tags is None or e.tag in tags)]
    return rng.choice(candidates) if candidates else None


def _replace_value(data: bytes, layout: Layout, element: Element, value: bytes, vr: bytes | None = None) -> bytes:
    """Re-encode ``element`` with a new value (and VR), keeping the rest of the file."""
    if element.length == UNDEFINED:
        return data
    new = encode_element(element.tag, vr or element.vr or b"UN", _pad(value) if element.vr != b"SQ" else value,
                         element.vr is None and vr is None, element.little)
    return data[:element.offset] + new + data[element.end:]


# ----------------------------------------------------------------------------------- mutators


def flip_bytes(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """A few random bytes changed, mostly inside the header."""
    if not data:
        return bytes([rng.randrange(256)])
    out = bytearray(data)
    header_end = next((e.offset for e in layout.elements if e.tag == TAG["PixelData"]), len(out))
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        pos = rng.randrange(max(1, min(header_end, len(out))))
        out[pos] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256), out[pos] ^ (1 << rng.randrange(8))))
    return bytes(out)


def truncate(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """The file cut short: at an element boundary, inside a header, inside a value, or anywhere."""
    if not data:
        return data
    element = _pick(rng, layout, dataset=False)
    if element is None or rng.random() < 0.2:
        return data[:rng.randrange(len(data))]
    where = rng.choice((element.offset, element.offset + 2, element.offset + 5, element.value_offset,
                        element.value_offset + max(0, min(element.length, len(data)) // 2), element.end - 1))
    return data[:max(0, min(where, len(data) - 1))]


def edit_length(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """One element's declared length set to an interesting value (0, odd, undefined, 0xFFFFFFF0, ...)."""
    element = _pick(rng, layout, dataset=rng.random() < 0.85)
    if element is None:
        return data
    choices = list(INTERESTING_LENGTHS) + [element.length + 1, max(0, element.length - 1), element.length * 2,
                                           len(data), len(data) - element.value_offset + 2]
    new = rng.choice(choices)
    order = "<" if element.little else ">"
    if element.length_size == 2:
        field = struct.pack(order + "H", new & 0xFFFF)
    else:
        field = struct.pack(order + "L", new & 0xFFFFFFFF)
    return data[:element.length_offset] + field + data[element.length_offset + element.length_size:]


def swap_vr(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """An explicit VR replaced: by another VR (US where DS is expected), an unknown one, or garbage.

    Half the time the value is re-encoded with the new VR's header size, half the time only the two
    VR bytes change (so short/long header forms disagree)."""
    element = _pick(rng, layout)
    if element is None or element.vr is None:
        return data
    vr = rng.choice(VRS + ODD_VRS)
    if rng.random() < 0.5 and vr in VRS and element.length != UNDEFINED:
        value = data[element.value_offset:element.end]
        encoded = encode_element(element.tag, vr, value, False, element.little)
        return data[:element.offset] + encoded + data[element.end:]
    return data[:element.offset + 4] + vr + data[element.offset + 6:]


def set_value(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """A value replaced by a hostile one chosen for that element (NaN TR, 5-value orientation, ...)."""
    numbers = [TAG[k] for k in ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "MagneticFieldStrength",
                                "EchoTrainLength", "SliceThickness", "SpacingBetweenSlices", "DiffusionBValue", "KVP")]
    vectors = [TAG[k] for k in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing")]
    ints = [TAG[k] for k in ("SeriesNumber", "InstanceNumber", "AcquisitionNumber", "NumberOfFrames")]
    uids = [TAG[k] for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")]
    dates = [TAG[k] for k in ("StudyDate", "SeriesDate", "AcquisitionDate")]
    times = [TAG[k] for k in ("StudyTime", "SeriesTime", "AcquisitionTime", "AcquisitionDateTime")]
    element = _pick(rng, layout)
    if element is None:
        return data
    if rng.random() < 0.8:  # aim at an element the classifier uses, when the file has one
        aimed = _pick(rng, layout, tags=rng.choice((numbers, vectors, ints, uids, dates, times,
                                                     [TAG["SpecificCharacterSet"]], [TAG["ImageType"]],
                                                     [TAG["Rows"], TAG["Columns"]], [TAG["ScanOptions"],
                                                     TAG["ScanningSequence"], TAG["SequenceVariant"]])))
        element = aimed or element
    tag = element.tag
    if tag in numbers:
        value = rng.choice(NUMBER_VALUES)
    elif tag in vectors:
        value = rng.choice(VECTOR_VALUES)
    elif tag in ints:
        value = rng.choice(INT_VALUES)
    elif tag in uids:
        value = rng.choice(UID_VALUES)
    elif tag in dates:
        value = rng.choice(DATE_VALUES)
    elif tag in times:
        value = rng.choice(TIME_VALUES)
    elif tag == TAG["SpecificCharacterSet"]:
        value = rng.choice(CHARSET_VALUES)
    elif element.vr in (b"US", b"SS", b"UL", b"SL", b"FL", b"FD"):
        value = rng.choice(BINARY_US)
    else:
        value = rng.choice(TEXT_VALUES + NUMBER_VALUES[:6])
    return _replace_value(data, layout, element, value)


def insert_element(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """A new element (hostile value, maybe a wrong VR) inserted at the top level in tag order."""
    name = rng.choice(("RepetitionTime", "EchoTime", "InversionTime", "ImageOrientationPatient", "PixelSpacing",
                       "SpecificCharacterSet", "NumberOfFrames", "ImageType", "ScanOptions", "MagneticFieldStrength",
                       "SOPClassUID", "PerFrameFunctionalGroupsSequence", "ContrastBolusAgent", "SeriesNumber"))
    tag = TAG[name]
    vr = {"SpecificCharacterSet": b"CS", "ImageType": b"CS", "ScanOptions": b"CS", "NumberOfFrames": b"IS",
          "SeriesNumber": b"IS", "SOPClassUID": b"UI", "ContrastBolusAgent": b"LO",
          "PerFrameFunctionalGroupsSequence": b"SQ"}.get(name, b"DS")
    if rng.random() < 0.25:
        vr = rng.choice((b"US", b"FD", b"FL", b"UN", b"OB", b"SQ", b"LO", b"UL"))
    if vr == b"SQ":
        value = b""
    elif vr in (b"US", b"FD", b"FL", b"UL"):
        value = rng.choice((b"", b"\x00", b"\x00\x00\xc0\x7f", b"\x00\x00\x00\x00\x00\x00\xf8\x7f",
                            b"\x00\x00\x80\xff", b"\x01\x00\x02\x00\x03\x00"))
    else:
        value = _pad(rng.choice(NUMBER_VALUES + VECTOR_VALUES + CHARSET_VALUES))
    new = encode_element(tag, vr, value, layout.implicit, layout.little)
    top = [e for e in layout.elements if e.depth == 0 and not e.meta]
    pos = next((e.offset for e in top if e.tag > tag), top[-1].end if top and top[-1].length != UNDEFINED
               else len(data))
    if rng.random() < 0.2:  # and sometimes out of order, at any boundary
        pos = rng.choice([e.offset for e in top] or [len(data)])
    return data[:pos] + new + data[pos:]


def delete_element(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """One element removed (its bytes cut out)."""
    element = _pick(rng, layout, dataset=rng.random() < 0.9)
    if element is None or element.length == UNDEFINED:
        return data
    return data[:element.offset] + data[element.end:]


def duplicate_element(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """One element written twice (or moved earlier: tags out of order)."""
    element = _pick(rng, layout)
    if element is None or element.length == UNDEFINED:
        return data
    chunk = data[element.offset:element.end]
    target = rng.choice([element.offset] + [e.offset for e in layout.elements if not e.meta][:50])
    return data[:target] + chunk + data[target:]


def nest_sequences(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """A sequence nested 2..20000 deep inserted at the top level, with defined or undefined lengths."""
    depth = rng.choice((2, 8, 17, 64, 200, 500, 1000, 5000, 20000))
    order = "<" if layout.little else ">"
    tag = rng.choice((0x00400260, 0x00081032, 0x52009229, 0x52009230, 0x00400275, 0x00189117))
    undefined = rng.random() < 0.6
    leaf = encode_element(TAG["RepetitionTime"], b"DS", b"NaN ", layout.implicit, layout.little)
    if undefined:
        head = b""
        for _ in range(depth):
            head += encode_element(tag, b"SQ", b"", layout.implicit, layout.little, UNDEFINED)
            head += struct.pack(order + "HHL", 0xFFFE, 0xE000, UNDEFINED)
        tail = (struct.pack(order + "HHL", 0xFFFE, 0xE00D, 0) + struct.pack(order + "HHL", 0xFFFE, 0xE0DD, 0)) * depth
        blob = head + leaf + (tail if rng.random() < 0.8 else tail[: len(tail) // 2])
    else:
        blob = leaf
        for _ in range(depth):
            item = struct.pack(order + "HHL", 0xFFFE, 0xE000, len(blob)) + blob
            blob = encode_element(tag, b"SQ", item, layout.implicit, layout.little)
    top = [e for e in layout.elements if e.depth == 0 and not e.meta]
    pos = next((e.offset for e in top if e.tag > tag), layout.dataset_start if not top else top[-1].end)
    return data[:pos] + blob + data[pos:]


def huge_tail(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """An element declaring far more bytes than the file holds, at the end or before Pixel Data."""
    vr = rng.choice((b"OB", b"UN", b"UT", b"LO", b"SQ", b"OW"))
    length = rng.choice((0xFFFFFFF0, 0x7FFFFFFF, 0x10000000, len(data) * 4 + 1, 0xFFFE))
    tag = rng.choice((0x00191010, 0x00291010, 0x00081030, TAG["PatientName"], 0x7FE00010, 0x00091001))
    element = encode_element(tag, vr, b"", layout.implicit, layout.little, length) + b"\x00" * rng.randrange(0, 40)
    pixel = next((e for e in layout.elements if e.tag == TAG["PixelData"]), None)
    if pixel is not None and rng.random() < 0.5:
        return data[:pixel.offset] + element
    return data + element


def splice(rng: random.Random, data: bytes, layout: Layout, donors: Sequence[bytes]) -> bytes:
    """An element (or a run of elements) from another file spliced in, whatever its encoding."""
    if not donors:
        return data
    donor = rng.choice(donors)
    donor_layout = index(donor)
    element = _pick(rng, donor_layout)
    if element is None or element.length == UNDEFINED:
        return data
    run = [e for e in donor_layout.elements
           if e.depth == element.depth and e.offset >= element.offset][:rng.choice((1, 1, 3, 10))]
    end = run[-1].end if run[-1].length != UNDEFINED else element.end
    chunk = donor[element.offset:end]
    target = _pick(rng, layout)
    if target is None or target.length == UNDEFINED:
        return data + chunk
    if rng.random() < 0.5:
        return data[:target.offset] + chunk + data[target.end:]
    return data[:target.offset] + chunk + data[target.offset:]


def change_syntax(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """The file meta's Transfer Syntax UID changed without re-encoding the data (or the meta removed)."""
    choice = rng.random()
    if choice < 0.15 and layout.preamble:
        return data[layout.dataset_start:]  # raw dataset: no preamble, no meta
    if choice < 0.25:
        return b"\x00" * 128 + b"DIC" + bytes([rng.randrange(256)]) + data[132:]
    element = next((e for e in layout.elements if e.tag == TAG["TransferSyntaxUID"]), None)
    if element is None:
        return data
    out = _replace_value(data, layout, element, rng.choice(SYNTAXES) + b"\x00", vr=b"UI")
    if rng.random() < 0.5:  # keep the group length right so only the syntax is wrong
        group_length = next((e for e in layout.elements if e.tag == 0x00020000), None)
        if group_length is not None and group_length.length == 4:
            new_layout = index(out)
            meta_end = max((e.end for e in new_layout.elements if e.meta), default=0)
            value = struct.pack("<L", meta_end - group_length.end)
            out = out[:group_length.value_offset] + value + out[group_length.value_offset + 4:]
    return out


def deflate_bomb(rng: random.Random, data: bytes, layout: Layout, _donors: Sequence[bytes]) -> bytes:
    """The dataset replaced by a deflate stream that expands enormously (or is corrupt)."""
    meta = data[:layout.dataset_start]
    element = next((e for e in layout.elements if e.tag == TAG["TransferSyntaxUID"]), None)
    if element is not None:
        meta = _replace_value(meta, layout, element, b"1.2.840.10008.1.2.1.99\x00", vr=b"UI")
    dataset = data[layout.dataset_start:]
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    mode = rng.random()
    if mode < 0.4:
        stream = compressor.compress(dataset) + compressor.flush()
    elif mode < 0.7:  # the header then megabytes of zeros in an undefined-length private element
        filler = encode_element(0x00291020, b"OB", b"", False, True, UNDEFINED)
        stream = compressor.compress(dataset[:2000] + filler)
        zeros = b"\x00" * (1 << 20)
        for _ in range(rng.choice((8, 64, 256))):
            stream += compressor.compress(zeros)
        stream += compressor.flush()
    else:
        stream = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    return meta + stream


MUTATORS: tuple[tuple[Mutator, int], ...] = (
    (flip_bytes, 6), (truncate, 5), (edit_length, 8), (swap_vr, 6), (set_value, 14), (insert_element, 6),
    (delete_element, 3), (duplicate_element, 3), (nest_sequences, 2), (huge_tail, 2), (splice, 5),
    (change_syntax, 3), (deflate_bomb, 1),
)


def mutate(rng: random.Random, data: bytes, donors: Sequence[bytes],
           rounds: int | None = None) -> tuple[bytes, list[str]]:
    """``data`` after 1-4 mutators (re-indexed between rounds); returns the bytes and the mutators used."""
    functions = [m for m, _w in MUTATORS]
    weights = [w for _m, w in MUTATORS]
    used: list[str] = []
    for _ in range(rounds or rng.choice((1, 1, 1, 2, 2, 3, 4))):
        mutator = rng.choices(functions, weights)[0]
        layout = index(data)
        data = mutator(rng, data, layout, donors)
        used.append(mutator.__name__)
        if len(data) > 8 << 20:  # keep inputs small: a bomb is a few KB of deflate, not megabytes of file
            break
    return data, used
