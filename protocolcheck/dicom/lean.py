"""Lean DICOM header reader: the fast path behind :func:`protocolcheck.headers.read_file`.

It reads a file's first block in one system call, walks the elements of an explicit or implicit VR
little-endian dataset, keeps the raw bytes of the few elements :class:`InstanceHeader` needs, skips every
other value by its length and stops at Pixel Data. Values are decoded exactly as pydicom decodes them:
pydicom is the reference, and ``tests/test_fastheaders.py`` checks that both readers agree field by
field on every file of several corpora.

Stepping over the elements it does not need is done in C when the optional extension
``protocolcheck._skim`` is built (``_skim.c``; ``pip install`` builds it where a C compiler exists): it
skips, or stores at the top level, exactly what the Python walk would, from tables this module builds,
and the Python walk handles everything else. Without it the results are the same (tested both ways).

Whatever it does not handle makes :func:`read_fast` return ``None`` and the caller falls back to
pydicom: files without preamble or file meta, big-endian or deflated syntaxes, enhanced multi-frame
objects, DICOMDIRs, character sets other than ASCII / Latin-1 / UTF-8, a malformed or unusual value
in an element we need, truncation, and any structure that is not plainly well formed. The walk also
checks what pydicom's full read would reject (binary values of the wrong length, items that do not add
up), so a file the fallback would call unreadable is never read here. Declared lengths are bounded by
the file size before anything is read, so a hostile length never allocates.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import sys
from array import array
from collections.abc import Iterator
from struct import Struct
from struct import error as struct_error
from typing import Any

from pydicom._private_dict import private_dictionaries
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_dict

from protocolcheck import config
from protocolcheck.dicom.pixels import ImageSize, pixel_data_problem
from protocolcheck.dicom.records import (
    _FRAME_MACROS,
    ENHANCED_SOP_CLASSES,
    GE_PULSE_SEQUENCE_NAME,
    GE_SAT_FAT,
    GE_SERIES_CONTRAST,
    MEDIA_STORAGE_DIRECTORY,
    NON_IMAGE_SOP_PREFIXES,
    PHILIPS_PREPULSE,
    PHILIPS_SCANNING_TECHNIQUE,
    PHILIPS_SPIR,
    SIEMENS_XA_SCAN_OPTIONS,
    InstanceHeader,
    Skipped,
    group_frames,
    uid_for_message,
)

__all__ = ["FIRST_READ", "fallback_reason", "read_fast"]

FIRST_READ = 16384  # bytes read up front; most headers end well before this
_REFILL = 16384  # minimum size of a later read when a header is longer than the first read
_MAX_DEPTH = 16  # nested sequence depth beyond which we let pydicom decide
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # as pydicom's stop_before_pixels
_PIXEL_KEY = ("PixelData",)  # where the walk leaves Pixel Data's (value offset, declared length)

_TAG_LEN = Struct("<HHL")  # tag + 32-bit length (implicit VR elements, items, delimiters)
_EXPLICIT = Struct("<HH2sH")  # tag + VR + 16-bit length
_U32 = Struct("<L").unpack_from
_U16 = Struct("<H").unpack_from
_F64 = Struct("<d").unpack_from
_F32 = Struct("<f").unpack_from

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Compressed syntaxes keep an explicit VR little-endian dataset (pixel data are encapsulated).
_COMPRESSED_PREFIXES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.8.")

# Character sets whose decoding is a plain Python codec (pydicom's mapping); others fall back.
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}

# pydicom raises on these binary VRs when the length is not a multiple of the value size.
_BINARY_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
_KNOWN_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL",
     "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US",
     "UT", "UV"}
)
_SQ = -1  # "kind" of a sequence; a positive kind is the size of a binary value; 0 is anything else

# Explicit VR bytes -> (long length?, kind). Anything not here is odd: let pydicom decide.
_UN = -2  # "kind" of UN in explicit VR: pydicom may re-read it with a dictionary VR


_IS = -3  # "kind" of IS: pydicom fails on some IS strings ("Infinity", "1e999"): check them anywhere


def _kind_of(vr: str) -> int:
    return _SQ if vr == "SQ" else _IS if vr == "IS" else _BINARY_SIZE.get(vr, 0)


_IS_SAFE = re.compile(rb"[0-9+\- \\\x00]*")  # an IS value made of these converts without error


def _check_is(raw: bytes) -> None:
    """Leave IS strings pydicom cannot convert (it raises on "inf", "nan", "1e999") to pydicom."""
    if not _IS_SAFE.fullmatch(raw):
        raise _Fallback("IS value that is not a plain integer")


_VR_INFO: dict[bytes, tuple[bool, int, str]] = {
    vr.encode(): (vr in _LONG_VRS, _UN if vr == "UN" else _kind_of(vr), vr) for vr in _KNOWN_VRS
}


# Standard dictionary: tag -> kind (for implicit VR, where the dictionary gives the VR).
_STD_KIND: dict[int, int] = {tag: _kind_of(entry[0]) for tag, entry in DicomDictionary.items()}
_STD_VR: dict[int, str] = {tag: entry[0] for tag, entry in DicomDictionary.items()}
_slow_kinds: dict[int, int] = {}


def _std_kind_slow(tag: int) -> int:
    """Kind of a standard tag that is not a plain dictionary entry (repeating groups, group lengths)."""
    kind = _slow_kinds.get(tag)
    if kind is None:
        try:
            kind = _kind_of(dictionary_VR(tag))
        except KeyError:
            kind = 4 if tag & 0xFFFF == 0 else 0  # pydicom reads an unknown (gggg,0000) as UL
        if len(_slow_kinds) < 10000:
            _slow_kinds[tag] = kind
    return kind


_private_kinds: dict[str, dict[int, int]] = {}


def _private_table(creator: str) -> dict[int, int] | None:
    """Private dictionary of one creator as int keys, in pydicom's three key forms."""
    table = _private_kinds.get(creator)
    if table is None:
        entries = private_dictionaries.get(creator)
        if entries is None:
            return None
        table = {}
        for key, entry in entries.items():
            kind = _kind_of(entry[0])
            key = key.upper()
            try:
                if "X" not in key:
                    table[int(key, 16)] = kind
                elif key[4:6] == "XX" and "X" not in key[:4] + key[6:]:
                    table[1 << 32 | int(key[:4], 16) << 8 | int(key[6:], 16)] = kind
                elif key[2:6] == "XXXX" and "X" not in key[:2] + key[6:]:
                    table[2 << 32 | int(key[:2], 16) << 8 | int(key[6:], 16)] = kind
            except ValueError:
                continue
        _private_kinds[creator] = table
    return table


def _private_kind(creators: dict[int, str], tag: int) -> int:
    """Kind of a private data element as pydicom resolves it (via its creator), 0 when unknown."""
    group, elem = tag >> 16, tag & 0xFFFF
    if elem < 0x100:
        return 0  # creator elements are LO; (gggg,00xx) below 0x10 are invalid private tags -> UN
    creator = creators.get(group << 8 | elem >> 8)
    if not creator:
        return 0
    table = _private_table(creator)
    if not table:
        return 0
    kind = table.get(tag)
    if kind is None:
        kind = table.get(1 << 32 | group << 8 | (elem & 0xFF))
        if kind is None:
            kind = table.get(2 << 32 | (group >> 8) << 8 | (elem & 0xFF), 0)
    return kind


def _dictionary_vr(tag: int) -> str | None:
    """The standard dictionary VR (repeating groups included), ``None`` for an unknown tag."""
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _private_vr(creator: str, tag: int) -> str:
    """The VR pydicom's private dictionary gives ``tag`` under ``creator`` ("UN" when unknown)."""
    entries = private_dictionaries.get(creator, {})
    group, elem = f"{tag >> 16:04X}", f"{tag & 0xFFFF:04X}"
    for key in (group + elem, f"{group}xx{elem[-2:]}", f"{group[:2]}xxxx{elem[-2:]}"):
        if key in entries:
            return entries[key][0]
    return "UN"


def _tag(keyword: str) -> int:
    return keyword_dict[keyword]


# ------------------------------------------------------------------------------ what we capture

_TOP_KEYWORDS = (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "AccessionNumber",
    "Modality", "Manufacturer", "InstitutionName", "StationName", "StudyDescription", "SeriesDescription",
    "ManufacturerModelName", "ProcedureCodeSequence", "AcquisitionContrast", "PatientName", "PatientID",
    "ContrastBolusAgent", "ContrastBolusAgentSequence", "BodyPartExamined", "ScanningSequence",
    "SequenceVariant", "ScanOptions", "MRAcquisitionType", "SequenceName", "SliceThickness", "KVP",
    "RepetitionTime", "EchoTime", "InversionTime", "MagneticFieldStrength", "SpacingBetweenSlices",
    "EchoTrainLength", "SoftwareVersions", "ProtocolName", "ContrastBolusRoute", "ContrastBolusStartTime",
    "ConvolutionKernel", "FlipAngle", "PulseSequenceName", "InversionRecovery",
    "SpectrallySelectedSuppression", "DiffusionBValue", "StudyInstanceUID", "SeriesInstanceUID",
    "SeriesNumber", "AcquisitionNumber", "InstanceNumber", "ImagePositionPatient",
    "ImageOrientationPatient", "NumberOfFrames", "Rows", "Columns", "PixelSpacing",
    "RequestedProcedureDescription", "RequestedProcedureCodeSequence", "RequestAttributesSequence",
    "AcquisitionDateTime", "EchoPulseSequence", "EchoPlanarPulseSequence", "SteadyStatePulseSequence",
    "SpectrallySelectedExcitation", "AngioFlag", "BitsAllocated", "SamplesPerPixel",
)
_TOP: dict[int, str] = {_tag(k): k for k in _TOP_KEYWORDS}
_ITEM_KEYWORDS = ("SpecificCharacterSet", "CodeValue", "CodeMeaning", "RequestedProcedureDescription")
_ITEM_TAGS: dict[int, str] = {_tag(k): k for k in _ITEM_KEYWORDS}
_DIRECTORY_RECORDS = _tag("DirectoryRecordSequence")  # DICOMDIRs go to pydicom
_PRIVATE_SPECS = (GE_PULSE_SEQUENCE_NAME, PHILIPS_SCANNING_TECHNIQUE, PHILIPS_SPIR, PHILIPS_PREPULSE,
                  SIEMENS_XA_SCAN_OPTIONS, GE_SERIES_CONTRAST, GE_SAT_FAT)
# Private element offsets (low byte) by group that headers.py reads (GE, Philips, Siemens XA).
_PRIVATE_OFFSETS: dict[int, frozenset[int]] = {
    group: frozenset(spec[2] for spec in _PRIVATE_SPECS if spec[1] == group) for _c, group, _o in _PRIVATE_SPECS
}
_CREATORS = "\x00creators"  # key of an item's private creators in its captured dict


_NOT_A_SEQUENCE = "\x00"  # marks a sequence keyword in a level's plain tags (a plain value: fall back)


class _Level:
    """What to keep from the datasets at one place of the tree (top level, a kind of item).

    ``tags``: standard elements to keep, by tag -> keyword; ``sequences``: standard sequences whose
    items to keep, by tag -> (keyword, level of their items); ``private_offsets`` and
    ``private_sequences``: private elements / sequences to keep, by group -> element low byte (the
    block is resolved through the creators afterwards, as pydicom's private_block does).
    """

    __slots__ = ("plain", "private_offsets", "private_sequences", "sequences", "swapped_tags", "tags")

    def __init__(self, tags: dict[int, str], sequences: dict[int, tuple[str, _Level]] | None = None,
                 private_offsets: dict[int, frozenset[int]] | None = None,
                 private_sequences: dict[int, dict[int, _Level]] | None = None) -> None:
        self.sequences = sequences or {}
        for tag, (keyword, _level) in self.sequences.items():
            tags[tag] = _NOT_A_SEQUENCE + keyword  # stored as a plain value: pydicom fails later
        self.tags = tags
        self.swapped_tags = {(tag & 0xFFFF) << 16 | tag >> 16: keyword for tag, keyword in tags.items()}
        self.private_offsets = private_offsets or {}
        self.private_sequences = private_sequences or {}
        # items of this level keep plain elements only: the compiled skimmer can walk them itself
        self.plain = not (self.sequences or self.private_offsets or self.private_sequences
                          or any(keyword[0] < " " for keyword in tags.values()))


_CHARSET_TAG = {_tag("SpecificCharacterSet"): "SpecificCharacterSet"}
_CHARSET_SWAPPED = 0x0005_0008  # (0008,0005) as the hot loops read tags
_ITEM_LEVEL = _Level(_ITEM_TAGS)
# Enhanced objects: functional-group items -> macro sequences -> the macro elements headers.py reads,
# and Siemens XA's private series sequence (0021,xxFE) in the shared group -> its Scan Options.
_MACRO_EXTRA = {"ContrastBolusUsageSequence": ("ContrastBolusAgentAdministered",)}
_MACRO_LEVELS: dict[int, tuple[str, _Level]] = {
    _tag(macro): (macro, _Level({**_CHARSET_TAG, **{_tag(k): k for k, _n, _kind in entries},
                                **{_tag(k): k for k in _MACRO_EXTRA.get(macro, ())}}))
    for macro, entries in _FRAME_MACROS.items()
}
_XA_LEVEL = _Level(dict(_CHARSET_TAG), private_offsets={SIEMENS_XA_SCAN_OPTIONS[1]: frozenset({SIEMENS_XA_SCAN_OPTIONS[2]})})
_XA_SERIES_OFFSET = 0xFE  # (0021,xxFE): Siemens XA series private sequence in the shared group
_GROUP_LEVEL = _Level(dict(_CHARSET_TAG), _MACRO_LEVELS,
                      private_sequences={SIEMENS_XA_SCAN_OPTIONS[1]: {_XA_SERIES_OFFSET: _XA_LEVEL}})
# pydicom applies every Specific Character Set it meets while reading (and fails on a bad one), not only
# the last one kept: a second one is left to pydicom.
_ONCE = "\x01"
_TOP[_tag("SpecificCharacterSet")] = _ONCE + "SpecificCharacterSet"


def _special(keyword: str, out: dict[Any, Any]) -> str:
    """The keyword to store a marked top-level element under (or fall back)."""
    if keyword[0] == _NOT_A_SEQUENCE:
        raise _Fallback("a sequence stored as a plain value")
    keyword = keyword[1:]
    if keyword in out:
        raise _Fallback(f"{keyword} more than once")
    return keyword


# The hot loop's tables, keyed by "swapped" tags (element << 16 | group, one little-endian 32-bit read).
_SWAPPED_EXPLICIT = Struct("<L2sH")
_SWAPPED_IMPLICIT = Struct("<LL")
# explicit VR: the short VRs (16-bit length) -> size of one binary value (0 for strings)
_SHORT_VR_SIZES: dict[bytes, int] = {vrb: kind for vrb, (is_long, kind, _vr) in _VR_INFO.items() if not is_long}
_VR_NAMES: dict[bytes, str] = {vrb: vr for vrb, (_l, _k, vr) in _VR_INFO.items()}
# the same keyed by the VR's two bytes read as a little-endian 16-bit number
_SWAPPED_EXPLICIT_INT = Struct("<LHH")
_SHORT_VR_SIZES_INT: dict[int, int] = {int.from_bytes(vrb, "little"): n for vrb, n in _SHORT_VR_SIZES.items()}
_VR_BY_CODE: dict[int, str] = {int.from_bytes(vrb, "little"): vr for vrb, vr in _VR_NAMES.items()}
_SWAPPED_TOP: dict[int, str] = {}  # filled below, once _TOP is complete
# implicit VR: standard tags whose dictionary VR is a short one -> binary value size (0 for strings);
# sequences, long VRs, Pixel Data and unknown tags take the slow path
_SWAPPED_PLAIN: dict[int, int] = {
    (tag & 0xFFFF) << 16 | tag >> 16: _kind_of(vr) for tag, vr in _STD_VR.items()
    if vr.encode() in _VR_INFO and not _VR_INFO[vr.encode()][0] and tag >> 16 < 0x7FE0
}
_TOP_LEVEL = _Level(
    _TOP,
    {**{_tag(k): (k, _ITEM_LEVEL) for k in ("ProcedureCodeSequence", "RequestedProcedureCodeSequence",
                                            "RequestAttributesSequence", "ContrastBolusAgentSequence")},
     **{_tag(k): (k, _GROUP_LEVEL) for k in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")}},
    _PRIVATE_OFFSETS,
)
_SWAPPED_TOP.update({(tag & 0xFFFF) << 16 | tag >> 16: keyword for tag, keyword in _TOP.items()})


def read_tags() -> tuple[frozenset[int], frozenset[int]]:
    """The top-level standard tags the header records are made from (sequences included, whole), and
    the private groups read. Nothing else of a dataset is looked at: a dataset that arrives as an
    object (DICOMweb metadata) can be cut to these before it is parsed."""
    return frozenset(_TOP_LEVEL.tags) | {_DIRECTORY_RECORDS}, frozenset(_TOP_LEVEL.private_offsets)


def _skim_tables() -> tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, tuple[str | tuple[str] | None, ...],
                            tuple[str, ...], dict[int, tuple[str, dict[int, str]]]]:
    """The hot loops' tables packed for the compiled skimmer (``_skim.c``: which elements it may step over)."""
    shorts = bytearray(b"\xff" * 65536)  # explicit VR code -> value size, 254 for IS, 255: not a short VR
    for code, size in _SHORT_VR_SIZES_INT.items():
        shorts[code] = 254 if size == _IS else size
    longs = bytearray(65536)  # long VRs whose defined-length values the walk steps over (not SQ, UN, SV, UV)
    for vrb, (is_long, kind, _vr) in _VR_INFO.items():
        if is_long and kind == 0:
            longs[int.from_bytes(vrb, "little")] = 1
    # one table for every depth: what any level keeps (stopping at more elements than needed is safe)
    wanted: set[int] = set()
    offsets: dict[int, set[int]] = {}
    levels, seen = [_TOP_LEVEL], set()
    while levels:
        level = levels.pop()
        if id(level) in seen:
            continue
        seen.add(id(level))
        wanted.update(level.swapped_tags)
        for group, kept in level.private_offsets.items():
            offsets.setdefault(group, set()).update(kept)
        levels.extend(sub for _keyword, sub in level.sequences.values())
        levels.extend(sub for by_offset in level.private_sequences.values() for sub in by_offset.values())
    wanted.add(_CHARSET_SWAPPED)  # a character set inside an item is left to pydicom
    private = b"".join(
        group.to_bytes(2, sys.byteorder) + sum(1 << offset for offset in kept).to_bytes(32, "little")
        for group, kept in sorted(offsets.items())
    )
    plain = sorted(_SWAPPED_PLAIN.items())
    return (bytes(shorts), bytes(longs), array("I", sorted(wanted)).tobytes(), private,
            array("I", [tag for tag, _k in plain]).tobytes(), bytes(254 if k == _IS else k for _t, k in plain),
            # top-level elements the skimmer stores itself (marked keywords: the walk decides)
            array("I", sorted(_SWAPPED_TOP)).tobytes(),
            tuple(_skim_keyword(_SWAPPED_TOP[t]) for t in sorted(_SWAPPED_TOP)),
            tuple(_STD_VR[t >> 16 | (t & 0xFFFF) << 16] for t in sorted(_SWAPPED_TOP)),
            # top-level sequences whose items keep plain elements only: walked and kept by the skimmer
            {(tag & 0xFFFF) << 16 | tag >> 16: (keyword, sub.swapped_tags)
             for tag, (keyword, sub) in _TOP_LEVEL.sequences.items() if sub.plain})


def _skim_keyword(keyword: str) -> str | tuple[str] | None:
    """How the skimmer stores a top-level element: under its keyword, once ((keyword,)), or not (None)."""
    if keyword[0] == _ONCE:
        return (keyword[1:],)
    return None if keyword[0] < " " else keyword


def _load_skimmer() -> tuple[Any, Any, Any, Any, Any]:
    """The compiled skimmer's (explicit, implicit, sequence, items, cached) functions, or Nones: Python only.

    ``PROTOCOLCHECK_PURE_PYTHON=1`` turns it off (tests compare both walks); it reads tags as native
    32-bit numbers, so it is used on little-endian machines only.
    """
    if config.skimmer_disabled() or sys.byteorder != "little" or array("I").itemsize != 4:
        return None, None, None, None, None
    try:
        from protocolcheck.dicom import _skim  # type: ignore[attr-defined]
    except ImportError:  # built without a C compiler: the Python walk alone gives the same results
        return None, None, None, None, None
    _skim.configure(*_skim_tables())
    return _skim.explicit, _skim.implicit, _skim.sequence, _skim.items, _skim.cached


_SKIM_EXPLICIT, _SKIM_IMPLICIT, _SKIM_SEQUENCE, _SKIM_ITEMS, _SKIM_CACHED = _load_skimmer()

# Record fields by how they are decoded: (field name, keyword).
_TEXT_FIELDS = (
    ("sop_instance_uid", "SOPInstanceUID"), ("study_instance_uid", "StudyInstanceUID"),
    ("series_instance_uid", "SeriesInstanceUID"), ("manufacturer", "Manufacturer"),
    ("model", "ManufacturerModelName"), ("software_versions", "SoftwareVersions"),
    ("institution", "InstitutionName"), ("station_name", "StationName"), ("patient_id", "PatientID"),
    ("patient_name", "PatientName"), ("accession_number", "AccessionNumber"), ("study_date", "StudyDate"),
    ("study_time", "StudyTime"), ("study_description", "StudyDescription"), ("body_part", "BodyPartExamined"),
    ("series_date", "SeriesDate"), ("series_time", "SeriesTime"), ("acquisition_date", "AcquisitionDate"),
    ("acquisition_date", "AcquisitionDate"), ("acquisition_time", "AcquisitionTime"),
    ("content_time", "ContentTime"), ("requested_procedure_description", "RequestedProcedureDescription"),
    ("contrast_agent", "ContrastBolusAgent"),
    ("series_description", "SeriesDescription"), ("protocol_name", "ProtocolName"),
    ("sequence_name", "SequenceName"), ("pulse_sequence_name", "PulseSequenceName"),
    ("contrast_route", "ContrastBolusRoute"), ("contrast_start_time", "ContrastBolusStartTime"),
    ("convolution_kernel", "ConvolutionKernel"),
)
_UPPER_FIELDS = (
    ("modality", "Modality"), ("mr_acquisition_type", "MRAcquisitionType"),
    ("spectrally_selected_suppression", "SpectrallySelectedSuppression"),
    ("inversion_recovery", "InversionRecovery"), ("acquisition_contrast", "AcquisitionContrast"),
    ("echo_pulse_sequence", "EchoPulseSequence"), ("echo_planar", "EchoPlanarPulseSequence"),
    ("steady_state", "SteadyStatePulseSequence"), ("spectrally_selected_excitation", "SpectrallySelectedExcitation"),
    ("angio_flag", "AngioFlag"),
)
_TEXTS_FIELDS = (
    ("image_type", "ImageType"), ("scanning_sequence", "ScanningSequence"),
    ("sequence_variant", "SequenceVariant"), ("scan_options", "ScanOptions"),
)
_NUMBER_FIELDS = (
    ("field_strength", "MagneticFieldStrength"), ("repetition_time", "RepetitionTime"),
    ("echo_time", "EchoTime"), ("inversion_time", "InversionTime"), ("flip_angle", "FlipAngle"),
    ("echo_train_length", "EchoTrainLength"), ("slice_thickness", "SliceThickness"),
    ("spacing_between_slices", "SpacingBetweenSlices"), ("diffusion_b_value", "DiffusionBValue"),
    ("kvp", "KVP"),
)
_INTEGER_FIELDS = (
    ("series_number", "SeriesNumber"), ("acquisition_number", "AcquisitionNumber"),
    ("instance_number", "InstanceNumber"), ("rows", "Rows"), ("columns", "Columns"),
)
_VECTOR_FIELDS = (
    ("pixel_spacing", "PixelSpacing", 2), ("image_orientation", "ImageOrientationPatient", 6),
    ("image_position", "ImagePositionPatient", 3),
)


class _Fallback(Exception):
    """Raised inside the reader for anything it leaves to pydicom."""


# ------------------------------------------------------------------------------------- parsing


class _Walker:
    """Walks the elements of one file, reading more of it only when a header is longer than the buffer.

    :meth:`top` is the hot loop (top-level elements of plain VRs); anything else, at any depth, goes
    through :meth:`element`, which follows pydicom's reading rules one element at a time.
    """

    __slots__ = ("base", "buf", "fd", "size")

    def __init__(self, fd: int, size: int, buf: bytes) -> None:
        self.fd = fd
        self.size = size
        self.buf = buf
        self.base = 0

    def refill(self, pos: int, n: int) -> None:
        """Make bytes [pos, pos+n) available in ``buf`` (never beyond the end of the file)."""
        if pos + n > self.size:
            raise _Fallback("truncated")
        if pos == self.base and n <= len(self.buf):
            raise _Fallback("no progress")  # a walking bug must never loop: let pydicom decide
        self.buf = os.pread(self.fd, max(n, _REFILL), pos)
        self.base = pos
        if len(self.buf) < n:
            raise _Fallback("short read")

    def value(self, pos: int, length: int) -> bytes:
        rel = pos - self.base
        if rel < 0 or rel + length > len(self.buf):
            self.refill(pos, length)
            rel = 0
        return self.buf[rel:rel + length]

    def check_value(self, pos: int, kind: int, length: int) -> None:
        """What pydicom's full read would reject in the value at ``pos`` of this kind (a binary value
        size, or _IS): a length that is not a whole number of values, an IS string it cannot convert."""
        if kind == _IS:
            _check_is(self.value(pos, length))
        elif length % kind:
            raise _Fallback("binary value of the wrong length")

    def header(self, pos: int, implicit: bool) -> tuple[int, int, str | None, int, int]:
        """(group, element, VR or None, length, header size) of the element at ``pos``."""
        rel = pos - self.base
        if rel < 0 or rel + 12 > len(self.buf):
            self.refill(pos, 12 if self.size - pos >= 12 else 8)
            rel = 0
        buf = self.buf
        if implicit:
            group, elem, length = _TAG_LEN.unpack_from(buf, rel)
            return group, elem, None, length, 8
        group, elem, vrb, length = _EXPLICIT.unpack_from(buf, rel)
        if group == 0xFFFE:
            return group, elem, None, _U32(buf, rel + 4)[0], 8
        info = _VR_INFO.get(vrb)
        if info is None:
            raise _Fallback("unknown VR")
        if info[0]:
            if len(buf) - rel < 12:
                raise _Fallback("truncated")
            return group, elem, info[2], _U32(buf, rel + 8)[0], 12
        return group, elem, info[2], length, 8

    def meta(self) -> tuple[dict[int, tuple[str, bytes]], int]:
        """File meta group (always explicit VR little endian) -> ({tag: (VR, raw)}, position after it)."""
        out: dict[int, tuple[str, bytes]] = {}
        pos = 132
        buf = self.buf
        while True:
            if pos + 8 > len(buf):
                raise _Fallback("meta beyond first block")
            group, elem, vrb, length = _EXPLICIT.unpack_from(buf, pos)
            if group != 2:
                return out, pos
            info = _VR_INFO.get(vrb)
            if info is None:
                raise _Fallback("odd meta VR")
            if info[0]:
                if pos + 12 > len(buf):
                    raise _Fallback("meta beyond first block")
                length = _U32(buf, pos + 8)[0]
                pos += 12
            else:
                pos += 8
            if length == _UNDEFINED or pos + length > len(buf):
                raise _Fallback("odd meta length")
            if info[1] > 0 and length % info[1]:
                raise _Fallback("binary meta value of the wrong length")  # pydicom fails on it
            out[group << 16 | elem] = (info[2], buf[pos:pos + length])
            pos += length

    def top(self, pos: int, implicit: bool, out: dict[Any, Any], creators: dict[int, str]) -> None:
        """Walk the top-level dataset from ``pos`` to Pixel Data or the end of the file.

        The hot loop of the reader. Tags are read as one little-endian 32-bit number, which puts the
        element number in the high half and the group in the low half ("swapped" tags). Elements of
        short VRs (strings and numbers) are skipped or kept right here; sequences, long VRs, Pixel Data
        and the like go through :meth:`slow`.
        """
        size = self.size
        buf, base = self.buf, self.base
        limit = base + len(buf) - 12  # a 12-byte header at pos <= limit is in the buffer
        implicit_head = _SWAPPED_IMPLICIT.unpack_from
        plain_sizes = _SWAPPED_PLAIN
        wanted = _SWAPPED_TOP
        private_offsets = _PRIVATE_OFFSETS
        if not implicit:
            pos = self.top_explicit(pos, out, creators)
            if pos < 0:
                return  # Pixel Data
            if pos != size:
                raise _Fallback("value beyond end of file")
            return
        skim = _SKIM_IMPLICIT
        while pos < size:
            if pos > limit:
                if size - pos < 8:
                    raise _Fallback("trailing bytes")
                self.refill(pos, 12 if size - pos >= 12 else 8)
                buf, base = self.buf, self.base
                limit = base + len(buf) - 12
            if skim is not None:
                skipped = base + skim(buf, pos - base, size - base, out)  # step over (or keep) plain elements
                if skipped != pos:
                    pos = skipped
                    if pos > limit:
                        continue
            rel = pos - base
            swapped, length = implicit_head(buf, rel)
            value_size: int | None
            if swapped & 1:
                value_size = _private_kind(creators, (swapped & 0xFFFF) << 16 | swapped >> 16)
                if value_size == _SQ or length == _UNDEFINED:
                    value_size = None  # a sequence: the slow path
            else:
                value_size = plain_sizes.get(swapped)
            if value_size is not None:
                if value_size:
                    self.check_value(pos + 8, value_size, length)
                    buf, base = self.buf, self.base
                end = pos + 8 + length
                if swapped & 1:
                    elem = swapped >> 16
                    if elem <= 0xFF or (elem & 0xFF) in private_offsets.get(swapped & 0xFFFF, ()):
                        self.private(pos + 8, swapped & 0xFFFF, elem, None, length, _TOP_LEVEL, out, creators)
                        buf, base = self.buf, self.base
                        limit = base + len(buf) - 12
                else:
                    keyword = wanted.get(swapped)
                    if keyword is not None:
                        if keyword[0] < " ":
                            keyword = _special(keyword, out)
                        out[keyword] = (_STD_VR[swapped >> 16 | (swapped & 0xFFFF) << 16], self.value(pos + 8, length))
                        buf, base = self.buf, self.base
                        limit = base + len(buf) - 12
                pos = end
                continue
            pos = self.slow(pos, swapped, True, out, creators)
            if pos < 0:
                return  # Pixel Data
            buf, base = self.buf, self.base
            limit = base + len(buf) - 12
        if pos != size:
            raise _Fallback("value beyond end of file")

    def top_explicit(self, pos: int, out: dict[Any, Any], creators: dict[int, str]) -> int:
        """:meth:`top` for explicit VR: the position where the dataset ends, or -1 at Pixel Data.

        The VR is read as a 16-bit number (no bytes object per element); the inner loop runs while a
        whole element header is in the buffer.
        """
        size = self.size
        buf, base = self.buf, self.base
        head = _SWAPPED_EXPLICIT_INT.unpack_from
        short_sizes = _SHORT_VR_SIZES_INT
        wanted = _SWAPPED_TOP
        private_offsets = _PRIVATE_OFFSETS
        skim = _SKIM_EXPLICIT
        while pos < size:
            limit = base + len(buf) - 8  # a short element's 8-byte header at pos <= limit is in the buffer
            if pos > limit:
                if size - pos < 8:
                    raise _Fallback("trailing bytes")
                self.refill(pos, 8)
                buf, base = self.buf, self.base
                continue
            while pos <= limit:
                if skim is not None:
                    pos = base + skim(buf, pos - base, size - base, size - base, out)  # step over or keep
                    if pos > limit:
                        break
                swapped, vr_code, length = head(buf, pos - base)
                value_size = short_sizes.get(vr_code)
                if value_size is None or swapped & 0xFFFF >= 0x7FE0:
                    pos = self.slow(pos, swapped, False, out, creators)  # long VR, Pixel Data, odd bytes
                    if pos < 0:
                        return pos
                    buf, base = self.buf, self.base
                    break
                if value_size:
                    self.check_value(pos + 8, value_size, length)
                    buf, base = self.buf, self.base
                if swapped & 1:
                    elem = swapped >> 16
                    if elem <= 0xFF or (elem & 0xFF) in private_offsets.get(swapped & 0xFFFF, ()):
                        self.private(pos + 8, swapped & 0xFFFF, elem, _VR_BY_CODE[vr_code], length, _TOP_LEVEL,
                                     out, creators)
                        buf, base = self.buf, self.base
                        pos += 8 + length
                        break
                else:
                    keyword = wanted.get(swapped)
                    if keyword is not None:
                        if keyword[0] < " ":
                            keyword = _special(keyword, out)
                        start = pos + 8 - base
                        if start + length <= len(buf):
                            out[keyword] = (_VR_BY_CODE[vr_code], buf[start:start + length])
                        else:
                            out[keyword] = (_VR_BY_CODE[vr_code], self.value(pos + 8, length))
                            buf, base = self.buf, self.base
                            pos += 8 + length
                            break
                pos += 8 + length
        return pos

    def slow(self, pos: int, swapped: int, implicit: bool, out: dict[Any, Any], creators: dict[int, str]) -> int:
        """One top-level element that is not a plain short string: return the position after it, or -1
        at Pixel Data."""
        size = self.size
        group, elem = swapped & 0xFFFF, swapped >> 16
        tag = group << 16 | elem
        vr: str | None
        if implicit:
            length = _U32(self.value(pos + 4, 4))[0]
            head = 8
            vr = None
            if group & 1:
                kind = _private_kind(creators, tag) if elem > 0xFF else 0
            else:
                kind = _STD_KIND.get(tag, -1)  # -1: not in pydicom's dictionary
                if kind < 0:
                    kind = _std_kind_slow(tag)
        else:
            group, elem, vr, length, head = self.header(pos, False)
            kind = _VR_INFO[vr.encode()][1] if vr is not None else 0
        if group == 0xFFFE:
            raise _Fallback("item or delimiter at the top level")
        if tag in _PIXEL_TAGS:
            if elem == 0x10 and length != _UNDEFINED and pos + head + length > size:
                raise _Fallback("pixel data cut short")  # headers.py notes it as a value problem
            if elem == 0x10:
                out[_PIXEL_KEY] = (pos + head, length)  # checked once the header is read (pixels.py)
            return -1
        pos += head
        if kind or length == _UNDEFINED:
            return self.element(pos, group, elem, vr, kind, length, implicit, 0, _TOP_LEVEL, out, creators)
        end = pos + length
        if end > size:
            raise _Fallback("value beyond end of file")
        if group & 1:
            if elem <= 0xFF or (elem & 0xFF) in _PRIVATE_OFFSETS.get(group, ()):
                self.private(pos, group, elem, vr, length, _TOP_LEVEL, out, creators)
        else:
            keyword = _TOP.get(tag)
            if keyword is not None:
                if keyword[0] < " ":
                    keyword = _special(keyword, out)
                out[keyword] = (_STD_VR[tag] if implicit else vr, self.value(pos, length))
        return end

    def private(self, pos: int, group: int, elem: int, vr: str | None, length: int, level: _Level | None,
                out: dict[Any, Any] | None, creators: dict[int, str]) -> None:
        """Note a private creator, or keep a private element that headers.py reads."""
        if 0x10 <= elem <= 0xFF:
            if vr is not None and vr != "LO" and vr != "UN":
                raise _Fallback("private creator with an odd VR")
            creator = self.value(pos, length).decode("latin-1").split("\\")
            creators[group << 8 | elem] = creator[0].rstrip("\x00 ") if len(creator) == 1 else ""
        elif (level is not None and out is not None and elem > 0xFF
              and (elem & 0xFF) in level.private_offsets.get(group, ())):
            out[group << 16 | elem] = (vr or "", self.value(pos, length))

    def element(self, pos: int, group: int, elem: int, vr: str | None, kind: int, length: int,
                implicit: bool, depth: int, level: _Level | None, out: dict[Any, Any] | None,
                creators: dict[int, str]) -> int:
        """Handle one element whose value starts at ``pos``; return the position after it."""
        tag = group << 16 | elem
        size = self.size
        if tag == 0x00080005 and depth > 0:
            raise _Fallback("character set inside a sequence item")
        if vr == "UN" and length != _UNDEFINED:
            # pydicom re-reads a defined-length UN with the VR its dictionaries know
            if group & 1:
                kind = _private_kind(creators, tag)
            else:
                kind = _STD_KIND.get(tag, -1)  # -1: not in pydicom's dictionary
                if kind < 0:
                    kind = _std_kind_slow(tag)
            if kind == _SQ:
                raise _Fallback("sequence stored as UN")
        if length == _UNDEFINED:
            if implicit:
                if group & 1 or _dictionary_vr(tag) is None:
                    # as pydicom: an unknown tag of undefined length is a sequence if items follow
                    if self.value(pos, 4) != b"\xfe\xff\x00\xe0":
                        raise _Fallback("undefined length, not a sequence")
                elif _dictionary_vr(tag) != "SQ":
                    raise _Fallback("undefined length, not a sequence")
            elif vr != "SQ" and vr != "UN":
                raise _Fallback("undefined length, not a sequence")
            kind = _SQ
        elif pos + length > size:
            raise _Fallback("value beyond end of file")
        if kind == _SQ:
            if depth >= _MAX_DEPTH:
                raise _Fallback("deep nesting")
            if depth == 0 and tag == _DIRECTORY_RECORDS:
                raise _Fallback("DICOMDIR")
            key: str | int | None = None
            sublevel: _Level | None = None
            if level is not None and out is not None:
                if group & 1:
                    if elem > 0xFF:
                        if (elem & 0xFF) in level.private_offsets.get(group, ()):
                            raise _Fallback("a private value that headers.py reads is a sequence")
                        sublevel = level.private_sequences.get(group, {}).get(elem & 0xFF)
                        key = tag
                else:
                    entry = level.sequences.get(tag)
                    if entry is not None:
                        key, sublevel = entry
                    elif tag in level.tags:
                        raise _Fallback("a value that headers.py reads is a sequence")
            items: list[dict[Any, Any]] | None = [] if sublevel is not None else None
            if (sublevel is not None and sublevel.plain and out is not None and vr == "SQ"
                    and _SKIM_ITEMS is not None and pos >= self.base):
                # items that keep plain elements only: the skimmer walks them in C when they are plain
                rel = pos - self.base
                got = _SKIM_ITEMS(self.buf, rel, -1 if length == _UNDEFINED else rel + length,
                                  self.size - self.base, depth + 1, sublevel.swapped_tags)
                if got is not None:
                    out[key] = got[1]
                    return self.base + got[0]
            if items is None and vr == "SQ" and _SKIM_SEQUENCE is not None and pos >= self.base:
                # nothing kept from it: the skimmer walks it in C when it is plain (else -1: walk it here)
                rel = pos - self.base
                after = _SKIM_SEQUENCE(self.buf, rel, -1 if length == _UNDEFINED else rel + length,
                                       self.size - self.base, depth + 1)
                if after >= 0:
                    return self.base + after
            pos = self.sequence(pos, None if length == _UNDEFINED else pos + length, implicit, depth + 1, items,
                                sublevel)
            if items is not None and out is not None:
                out[key] = items
            return pos
        if kind > 0 or kind == _IS:
            self.check_value(pos, kind, length)
        if group & 1:
            self.private(pos, group, elem, vr, length, level, out, creators)
        elif level is not None and out is not None:
            keyword = level.tags.get(tag)
            if keyword is not None:
                if keyword[0] < " ":
                    keyword = _special(keyword, out)
                out[keyword] = (_STD_VR[tag] if implicit else vr, self.value(pos, length))
        return pos + length

    def dataset(self, pos: int, end: int | None, implicit: bool, depth: int,
                level: _Level | None, out: dict[Any, Any] | None) -> int:
        """Walk the dataset of one item from ``pos``; return the position after it.

        ``end`` is the end of a defined-length item, ``None`` means up to the item delimiter. Short
        elements are handled inline as in :meth:`top`; the rest through :meth:`element`.
        """
        creators: dict[int, str] = {}
        size = self.size
        buf, base = self.buf, self.base
        limit = base + len(buf) - 12
        wanted = level.swapped_tags if level is not None and out is not None else None
        skim = _SKIM_IMPLICIT if implicit else _SKIM_EXPLICIT
        stop = size if end is None else end
        while True:
            if end is not None and pos >= end:
                if pos != end:
                    raise _Fallback("element overruns its item")
                if out is not None and creators:
                    out[_CREATORS] = creators
                return pos
            if pos > limit:
                self.refill(pos, 12 if size - pos >= 12 else 8)
                buf, base = self.buf, self.base
                limit = base + len(buf) - 12
            if skim is not None:
                skipped = base + (skim(buf, pos - base, stop - base, None) if implicit else
                                  skim(buf, pos - base, size - base, stop - base, None))
                if skipped != pos:
                    pos = skipped  # stepped over what this loop only steps over
                    continue
            rel = pos - base
            vr: str | None = None
            if implicit:
                swapped, length = _SWAPPED_IMPLICIT.unpack_from(buf, rel)
                value_size = None if swapped & 1 else _SWAPPED_PLAIN.get(swapped)
            else:
                swapped, vrb, length = _SWAPPED_EXPLICIT.unpack_from(buf, rel)
                value_size = _SHORT_VR_SIZES.get(vrb)
                if value_size is not None:
                    if swapped & 0xFFFF >= 0x7FE0:
                        value_size = None
                    else:
                        vr = _VR_NAMES[vrb]
            if value_size is not None:
                if value_size:
                    self.check_value(pos + 8, value_size, length)
                    buf, base = self.buf, self.base
                if swapped & 1:
                    self.private(pos + 8, swapped & 0xFFFF, swapped >> 16, vr, length, level, out, creators)
                    buf, base = self.buf, self.base
                    limit = base + len(buf) - 12
                elif swapped == _CHARSET_SWAPPED:
                    raise _Fallback("character set inside a sequence item")  # pydicom switches (or fails)
                elif wanted is not None:
                    keyword = wanted.get(swapped)
                    if keyword is not None:
                        if keyword[0] < " ":
                            keyword = _special(keyword, out)  # type: ignore[arg-type]
                        out[keyword] = (vr or _STD_VR[swapped >> 16 | (swapped & 0xFFFF) << 16],  # type: ignore[index]
                                        self.value(pos + 8, length))
                        buf, base = self.buf, self.base
                        limit = base + len(buf) - 12
                pos += 8 + length
                continue
            group, elem, vr, length, head = self.header(pos, implicit)
            if group == 0xFFFE:
                if elem == 0xE00D and end is None and length == 0:
                    if out is not None and creators:
                        out[_CREATORS] = creators
                    return pos + 8
                raise _Fallback("unexpected item or delimiter")
            if implicit:
                tag = group << 16 | elem
                if group & 1:
                    kind = _private_kind(creators, tag)
                else:
                    kind = _STD_KIND.get(tag, -1)  # -1: not in pydicom's dictionary
                    if kind < 0:
                        kind = _std_kind_slow(tag)
            else:
                kind = _kind_of(vr or "")
            pos = self.element(pos + head, group, elem, vr, kind, length, implicit, depth, level, out, creators)
            buf, base = self.buf, self.base
            limit = base + len(buf) - 12
    def sequence(self, pos: int, end: int | None, implicit: bool, depth: int,
                 items: list[dict[Any, Any]] | None, level: _Level | None) -> int:
        """Walk the items of a sequence; collect the captured elements of each item into ``items``."""
        while True:
            if end is not None and pos >= end:
                if pos != end:
                    raise _Fallback("item overruns its sequence")
                return pos
            group, elem, length = _TAG_LEN.unpack(self.value(pos, 8))
            tag = group << 16 | elem
            pos += 8
            if tag == _SEQ_END:
                if end is not None or length != 0:
                    raise _Fallback("odd sequence delimiter")
                return pos
            if tag != _ITEM:
                raise _Fallback("expected an item")
            item_end = None if length == _UNDEFINED else pos + length
            if item_end is not None and item_end > self.size:
                raise _Fallback("item beyond end of file")
            item_implicit = implicit
            if not implicit and item_end != pos:
                # pydicom: an item of an explicit VR sequence may itself be implicit VR (PS3.5 6.2.2)
                head = self.value(pos, 6)
                if not (0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B) and head[:4] != b"\xfe\xff\x0d\xe0":
                    item_implicit = True
            if items is not None:
                out: dict[Any, Any] = {}
                pos = self.dataset(pos, item_end, item_implicit, depth, level, out)
                items.append(out)
            else:
                pos = self.dataset(pos, item_end, item_implicit, depth, None, None)


# ------------------------------------------------------------------------------------- decoding

_DS_RE = re.compile(r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *")
_IS_RE = re.compile(r" *[+-]?[0-9]{1,15} *")
_PLAIN_VRS = frozenset({"CS", "DA", "TM", "DT", "AS"})
_MULTI_TEXT_VRS = frozenset({"LO", "SH", "UC"})
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT"})
_ESCAPABLE_VRS = frozenset({"LO", "SH", "UC", "LT", "ST", "UT", "PN"})  # decoded with the character set


def _items(vr: str, raw: bytes, enc: str) -> list[str]:
    """The element's string value(s) exactly as pydicom gives them (split on backslash)."""
    if vr in _PLAIN_VRS:
        return raw.decode("latin-1").rstrip(" \x00").split("\\")
    if b"\x1b" in raw and vr in _ESCAPABLE_VRS:
        raise _Fallback("ISO 2022 escape sequence in text")  # pydicom interprets and removes them
    if vr in _MULTI_TEXT_VRS:
        return [v.rstrip("\x00 ") for v in raw.decode(enc).split("\\")]
    if vr == "UI":
        return [v.strip() for v in raw.decode("latin-1").rstrip("\x00 ").split("\\")]
    if vr in _SINGLE_TEXT_VRS:
        return [raw.decode(enc).rstrip("\x00 ")]
    if vr == "PN":
        text = raw.rstrip(b"\x00 ").decode(enc)
        if "=" in text:
            raise _Fallback("person name with component groups")
        return text.split("\\")
    raise _Fallback(f"text in VR {vr}")


_TEXTS_SEEN: dict[tuple[Any, str], str] = {}  # _text of elements that repeat (SOP Class, codes, charset)


def _text_cached(element: Any, enc: str) -> str:
    """:func:`_text`, remembered for equal elements (a value that recurs in every image of a series)."""
    if element is None:
        return ""
    key = (element, enc)
    text = _TEXTS_SEEN.get(key)
    if text is None:
        text = _text(element, enc)
        if len(_TEXTS_SEEN) >= _DECODED_LIMIT:
            _TEXTS_SEEN.clear()
        _TEXTS_SEEN[key] = text
    return text


def _text(element: Any, enc: str) -> str:
    """headers._Reader.text: the value as one stripped string ('' when absent or empty)."""
    if element is None:
        return ""
    vr, raw = element
    if not raw:
        return ""
    if vr in _PLAIN_VRS:
        return raw.decode("latin-1").rstrip(" \x00").strip()
    return "\\".join(_items(vr, raw, enc)).strip()


def _texts(element: Any, enc: str) -> tuple[str, ...]:
    """headers._Reader.texts: the stripped, upper-cased non-empty values."""
    if element is None or not element[1]:
        return ()
    joined = "\\".join(_items(element[0], element[1], enc))
    return tuple(t.strip().upper() for t in joined.split("\\") if t.strip())


def _numbers(element: Any) -> list[float] | None:
    """Every value of a numeric element as floats; ``None`` when absent or empty; fallback if malformed."""
    if element is None:
        return None
    vr, raw = element
    if not raw:
        return None
    if vr == "DS":
        parts = raw.decode("latin-1").strip().rstrip(" \x00").split("\\")
        if not all(_DS_RE.fullmatch(p) for p in parts):
            raise _Fallback("malformed DS")
        values = [float(p) for p in parts]
    elif vr == "IS":
        parts = raw.decode("latin-1").rstrip(" \x00").split("\\")
        if not all(_IS_RE.fullmatch(p) for p in parts):
            raise _Fallback("malformed IS")
        values = [float(int(p)) for p in parts]
    elif vr == "US" and len(raw) % 2 == 0:
        values = [float(_U16(raw, i)[0]) for i in range(0, len(raw), 2)]
    elif vr == "FD" and len(raw) % 8 == 0:
        values = [_F64(raw, i)[0] for i in range(0, len(raw), 8)]
    elif vr == "FL" and len(raw) % 4 == 0:
        values = [_F32(raw, i)[0] for i in range(0, len(raw), 4)]
    else:
        raise _Fallback(f"number in VR {vr}")
    if not all(math.isfinite(v) for v in values):
        raise _Fallback("not finite")
    return values


def _number(element: Any) -> float | None:
    values = _numbers(element)
    return None if values is None else values[0]


def _integer(element: Any) -> int | None:
    number = _number(element)
    if number is None:
        return None
    if not number.is_integer():
        raise _Fallback("not an integer")
    return int(number)


def _vector(element: Any, length: int) -> tuple[float, ...] | None:
    values = _numbers(element)
    if values is None:
        return None
    if len(values) != length or element[0] not in ("DS", "FD", "FL"):
        raise _Fallback("vector of the wrong length")
    return tuple(values)


def _private_tag(creators: dict[int, str], creator: str, group: int, offset: int) -> int | None:
    """The tag of (group, creator, offset) in a dataset with these creators (pydicom's private_block)."""
    if creator not in creators.values():  # most lookups: another vendor's creator
        return None
    block = next((key & 0xFF for key in sorted(creators) if key >> 8 == group and creators[key] == creator), None)
    return None if block is None else group << 16 | block << 8 | offset


def _private(top: dict[Any, Any], creators: dict[int, str], creator: str, group: int, offset: int,
             enc: str) -> str:
    """headers._Reader.private: the value of (group, creator, offset) as a stripped string."""
    tag = _private_tag(creators, creator, group, offset)
    element = top.get(tag) if tag is not None else None
    if tag is None or element is None:
        return ""
    if isinstance(element, list):
        raise _Fallback("private element read as text is a sequence")
    vr, raw = element
    block = tag >> 8 & 0xFF
    if not vr or vr == "UN":  # implicit VR or UN: pydicom takes the VR from its private dictionary
        vr = _private_vr(creator, group << 16 | block << 8 | offset)
    if vr in ("OB", "OW", "UN"):
        return raw.decode("latin-1").strip("\x00 ").strip()
    if not raw:
        return ""
    number = _BINARY_NUMBERS.get(vr)
    if number is not None:  # GE writes its flags as SS: pydicom's str() of each value, joined like text
        if len(raw) % number.size:
            raise _Fallback(f"private {vr} value of {len(raw)} bytes")
        return "\\".join(str(v) for (v,) in number.iter_unpack(raw))
    return "\\".join(_items(vr, raw, enc)).strip()


_BINARY_NUMBERS = {vr: Struct(fmt) for vr, fmt in (("SS", "<h"), ("US", "<H"), ("SL", "<l"), ("UL", "<L"),
                                                   ("FL", "<f"), ("FD", "<d"))}


# How each captured top-level keyword becomes a record field.
_TEXT, _UPPER, _TEXTS, _NUMBER, _INTEGER, _VEC2, _VEC3, _VEC6, _UNIQUE = range(9)
_MISSING = object()
_FIELD_OF: dict[str, tuple[str, int]] = {
    **{keyword: (name, _TEXT) for name, keyword in _TEXT_FIELDS},
    **{keyword: (name, _UPPER) for name, keyword in _UPPER_FIELDS},
    **{keyword: (name, _TEXTS) for name, keyword in _TEXTS_FIELDS},
    **{keyword: (name, _NUMBER) for name, keyword in _NUMBER_FIELDS},
    **{keyword: (name, _INTEGER) for name, keyword in _INTEGER_FIELDS},
    **{keyword: (name, {2: _VEC2, 3: _VEC3, 6: _VEC6}[n]) for name, keyword, n in _VECTOR_FIELDS},
    "SOPInstanceUID": ("sop_instance_uid", _UNIQUE),
}
# Most values repeat from image to image of a series (vendor, timing, orientation...): decoded values are
# cached per character set and keyword by the captured (VR, raw bytes) element, which also makes equal
# values one shared object. Each keyword's cache starts afresh beyond _DECODED_LIMIT entries.
_DECODED_LIMIT = 2_000
_FIELD_SPECS: dict[str, dict[str, tuple[str, int, dict[tuple[str, bytes], Any]]]] = {
    enc: {keyword: (name, how, {}) for keyword, (name, how) in _FIELD_OF.items()} for enc in set(_CHARSETS.values())
}


def _decode(how: int, vr: str, raw: bytes, enc: str) -> Any:
    """One field's value from its non-empty raw element, as headers.py computes it through pydicom."""
    if how == _TEXT or how == _UPPER:
        if vr in _PLAIN_VRS:
            text = raw.decode("latin-1").rstrip(" \x00").strip()
        elif vr in _MULTI_TEXT_VRS and b"\\" not in raw and b"\x1b" not in raw:
            text = raw.decode(enc).rstrip("\x00 ").strip()
        else:
            text = "\\".join(_items(vr, raw, enc)).strip()
        return text.upper() if how == _UPPER else text
    if how == _NUMBER:
        if vr == "DS" and b"\\" not in raw:
            text = raw.decode("latin-1").strip().rstrip(" \x00")
            if _DS_RE.fullmatch(text):
                number = float(text)
                if math.isfinite(number):
                    return number
        return _number((vr, raw))
    if how == _INTEGER:
        return _integer((vr, raw))
    if how == _TEXTS:
        return _texts((vr, raw), enc)
    return _vector((vr, raw), 2 if how == _VEC2 else 3 if how == _VEC3 else 6)


def _cached(top: dict[Any, Any], specs: dict[str, tuple[str, int, dict[Any, Any]]],
            fields: dict[str, Any]) -> list[tuple[str, Any, tuple[str, int, dict[Any, Any]]]]:
    """Fill ``fields`` with the values already decoded for equal elements; return the rest to decode
    as (keyword, element, spec). The compiled skimmer's ``cached`` does the same in one C pass."""
    misses = []
    for keyword, element in top.items():
        spec = specs.get(keyword)
        if spec is None:
            continue
        value = spec[2].get(element, _MISSING)
        if value is _MISSING:
            misses.append((keyword, element, spec))
        else:
            fields[spec[0]] = value
    return misses


def _fields(top: dict[Any, Any], creators: dict[int, str], meta: dict[int, tuple[str, bytes]],
            path: str) -> list[dict[str, Any]] | Skipped:
    """Every record field from the captured elements (or Skipped for a non-image object)."""
    get = top.get
    charset_element = get("SpecificCharacterSet")
    if charset_element is not None and charset_element[0] != "CS":
        raise _Fallback("character set of an odd VR")  # pydicom may fail on its value
    charset = _text_cached(charset_element, "latin-1")
    enc = _CHARSETS.get(charset)
    if enc is None:
        raise _Fallback("character set")
    sop_class = _text_cached(get("SOPClassUID"), enc)
    if not sop_class:
        media = meta.get(0x00020002)
        if media is not None:
            parts = _items("UI", media[1], enc) if media[1] else [""]
            if len(parts) != 1:
                raise _Fallback("multi-valued media storage SOP class")
            sop_class = parts[0]
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        raise _Fallback("DICOMDIR")
    if sop_class.startswith(NON_IMAGE_SOP_PREFIXES):
        return Skipped(path, f"not an image object (SOP Class {uid_for_message(sop_class)})")
    fields = _DEFAULTS.copy()
    fields["path"] = path
    fields["sop_class_uid"] = sop_class
    for _keyword, element, (name, how, known) in (_SKIM_CACHED or _cached)(top, _FIELD_SPECS[enc], fields):
        vr, raw = element
        if not raw:
            continue  # empty value: the field keeps its default ("", None or ())
        if how == _UNIQUE:  # differs in every image: not worth caching
            fields[name] = raw.decode("latin-1").rstrip(" \x00").strip() if vr in _PLAIN_VRS else _decode(
                _TEXT, vr, raw, enc)
            continue
        if len(known) >= _DECODED_LIMIT:
            known.clear()
        fields[name] = known[element] = _decode(how, vr, raw, enc)
    if not fields["study_instance_uid"] or not fields["series_instance_uid"]:
        raise _Fallback("missing UIDs")
    # Acquisition DateTime stands in for Acquisition Date / Time when those are absent
    if not fields["acquisition_date"] or not fields["acquisition_time"]:
        date_time = _text(get("AcquisitionDateTime"), enc)
        fields["acquisition_date"] = fields["acquisition_date"] or date_time[:8]
        fields["acquisition_time"] = fields["acquisition_time"] or date_time[8:]
    # requested procedure: own element, else the first Request Attributes item
    if not fields["requested_procedure_description"]:
        items = get("RequestAttributesSequence")
        if items:
            fields["requested_procedure_description"] = _text(
                _item_element(items[0], "RequestedProcedureDescription"), enc)
    codes: list[str] = []
    for keyword in ("ProcedureCodeSequence", "RequestedProcedureCodeSequence"):
        for item in get(keyword) or ():
            code = _text_cached(_item_element(item, "CodeValue"), enc)
            if code and code not in codes:
                codes.append(code)
    fields["procedure_codes"] = tuple(codes)
    if not fields["contrast_agent"]:
        items = get("ContrastBolusAgentSequence")
        if items:
            fields["contrast_agent"] = _text(_item_element(items[0], "CodeMeaning"), enc) or _text(
                _item_element(items[0], "CodeValue"), enc)
    if creators and not _READ_CREATORS.isdisjoint(creators.values()):  # else none of them is there
        fields["vendor_sequence"] = _private(top, creators, *GE_PULSE_SEQUENCE_NAME, enc) or _private(
            top, creators, *PHILIPS_SCANNING_TECHNIQUE, enc)
        fields["philips_spir"] = _private(top, creators, *PHILIPS_SPIR, enc)
        fields["philips_prepulse"] = _private(top, creators, *PHILIPS_PREPULSE, enc)
        fields["ge_series_contrast"] = _private(top, creators, *GE_SERIES_CONTRAST, enc)
        fields["ge_sat_fat"] = _private(top, creators, *GE_SAT_FAT, enc)
    options = _xa_scan_options(top, creators, enc)
    if options:
        fields["vendor_scan_options"] = tuple(t.strip().upper() for t in options.split("\\") if t.strip())
    frames = get("NumberOfFrames")
    fields["frames"] = (_integer(frames) if frames is not None else None) or 1
    if sop_class in ENHANCED_SOP_CLASSES or "PerFrameFunctionalGroupsSequence" in top:
        return _enhanced(fields, top, enc)
    return [fields]


_READ_CREATORS = frozenset(spec[0] for spec in _PRIVATE_SPECS)  # private creators of what headers.py reads


def _xa_scan_options(top: dict[Any, Any], creators: dict[int, str], enc: str) -> str:
    """headers._xa_scan_options: top level, else the shared group's private series sequence."""
    value = _private(top, creators, *SIEMENS_XA_SCAN_OPTIONS, enc) if creators else ""
    if value:
        return value
    shared = _first(top, "SharedFunctionalGroupsSequence")
    if shared is None:
        return ""
    creator, group, _offset = SIEMENS_XA_SCAN_OPTIONS
    tag = _private_tag(shared.get(_CREATORS, {}), creator, group, _XA_SERIES_OFFSET)
    items = shared.get(tag) if tag is not None else None
    if not isinstance(items, list) or not items:
        return ""  # absent, empty or not a sequence: pydicom finds no Dataset there either
    item = items[0]
    return _private(item, item.get(_CREATORS, {}), *SIEMENS_XA_SCAN_OPTIONS, enc)


def _first(container: dict[Any, Any], keyword: str) -> dict[Any, Any] | None:
    """headers._Reader.first_item: the first item of a captured sequence, or None."""
    items = container.get(keyword)
    if not items:
        return None
    item = items[0]
    if "SpecificCharacterSet" in item:
        raise _Fallback("character set inside a sequence item")
    return item


_KIND = {"num": _NUMBER, "vec6": _VEC6, "vec3": _VEC3, "vec2": _VEC2, "texts": _TEXTS, "upper": _UPPER}
_MACRO_FIELDS: tuple[tuple[str, tuple[tuple[str, str, int], ...]], ...] = tuple(
    (macro, tuple((keyword, name, _KIND.get(kind, _TEXT)) for keyword, name, kind in entries))
    for macro, entries in _FRAME_MACROS.items()
)


def _apply_macros(group: dict[Any, Any] | None, fields: dict[str, Any], enc: str) -> None:
    """headers._apply_macros: copy the first item of each functional-group macro onto ``fields``."""
    if group is None:
        return
    if "SpecificCharacterSet" in group:
        raise _Fallback("character set inside a functional group")
    for macro, entries in _MACRO_FIELDS:
        item = _first(group, macro)
        if item is None:
            continue
        for keyword, name, how in entries:
            element = item.get(keyword)
            if element is None:
                continue
            vr, raw = element
            if not raw:
                continue  # empty: None, "" or () in headers.py, which leaves the field alone
            value = _decode(how, vr, raw, enc)
            if value not in (None, "", ()):
                fields[name] = value
        if macro == "ContrastBolusUsageSequence" and not fields.get("contrast_agent"):
            if _text(item.get("ContrastBolusAgentAdministered"), enc).upper() == "YES":
                fields["contrast_agent"] = "ADMINISTERED"


def _enhanced(base: dict[str, Any], top: dict[Any, Any], enc: str) -> list[dict[str, Any]]:
    """headers._enhanced_records: one record per group of like frames (type, orientation, echo)."""
    common = dict(base)
    _apply_macros(_first(top, "SharedFunctionalGroupsSequence"), common, enc)

    def frames() -> Iterator[dict[str, Any]]:
        for item in top.get("PerFrameFunctionalGroupsSequence") or ():
            fields = dict(common)
            _apply_macros(item, fields, enc)
            yield fields

    records = group_frames(frames(), base) or [common]
    for fields in records:
        fields["enhanced"] = True
    return records


def _item_element(item: dict[str, Any], keyword: str) -> Any:
    if "SpecificCharacterSet" in item:
        raise _Fallback("character set inside a sequence item")
    return item.get(keyword)


def read_fast(path: str) -> list[InstanceHeader] | Skipped | None:
    """Read one file's header the lean way; ``None`` means "not handled here, ask pydicom".

    Never raises for file content: anything unusual returns ``None`` so the caller's pydicom path
    produces the reference answer (including the reason a file is unreadable).
    """
    try:
        return _read(path)
    except (_Fallback, UnicodeDecodeError, ValueError, IndexError, KeyError, OverflowError, OSError, struct_error):
        return None


def fallback_reason(path: str) -> str | None:
    """Why :func:`read_fast` leaves ``path`` to pydicom (``None`` when it reads it itself)."""
    try:
        _read(path)
    except _Fallback as exc:
        return str(exc)
    except (UnicodeDecodeError, ValueError, IndexError, KeyError, OverflowError, OSError, struct_error) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _read(path: str) -> list[InstanceHeader] | Skipped:
    if _UNKNOWN_FIELDS:
        raise _Fallback("the lean reader does not fill " + ", ".join(sorted(_UNKNOWN_FIELDS)))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe must not block the scan
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise _Fallback("not a regular file")
        size = status.st_size
        buf = os.read(fd, FIRST_READ)
        if len(buf) < 144 or buf[128:132] != b"DICM":
            raise _Fallback("no preamble and DICM marker")
        walker = _Walker(fd, size, buf)
        meta, start = walker.meta()
        syntax_element = meta.get(0x00020010)
        if syntax_element is None:
            raise _Fallback("no transfer syntax")
        syntax = syntax_element[1].decode("latin-1").rstrip("\x00 ").strip()
        if syntax == _IMPLICIT_LE:
            implicit = True
        elif syntax == _EXPLICIT_LE or syntax.startswith(_COMPRESSED_PREFIXES):
            implicit = False
        else:
            raise _Fallback(f"transfer syntax {syntax}")
        if start + 8 <= len(buf):
            vr_ok = 0x40 < buf[start + 4] < 0x5B and 0x40 < buf[start + 5] < 0x5B
            if vr_ok == implicit and buf[start:start + 4] not in (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00",
                                                                  b"\xe0\x7f\x09\x00"):
                raise _Fallback("dataset encoding differs from the transfer syntax")
        top: dict[Any, Any] = {}
        creators: dict[int, str] = {}
        walker.top(start, implicit, top, creators)
        pixels = top.get(_PIXEL_KEY)
        if pixels is not None and _pixel_problem(fd, size, pixels, top):
            raise _Fallback("pixel data incomplete")  # the pydicom reader notes it as a value problem
        fields = _fields(top, creators, meta, path)
    finally:
        os.close(fd)
    if isinstance(fields, Skipped):
        return fields
    if _EXTRA_FIELDS:
        for record_fields in fields:
            for name in _EXTRA_FIELDS:
                record_fields.pop(name, None)
    return [_record(record_fields) for record_fields in fields]


def _pixel_problem(fd: int, size: int, pixels: tuple[int, int], top: dict[Any, Any]) -> str | None:
    """:func:`.pixels.pixel_data_problem` on the Pixel Data the walk stopped at (as the pydicom reader)."""
    image = ImageSize(_integer(top.get("Rows")), _integer(top.get("Columns")), _integer(top.get("BitsAllocated")),
                      _integer(top.get("SamplesPerPixel")), _integer(top.get("NumberOfFrames")))
    return pixel_data_problem(lambda position, n: os.pread(fd, n, position), size, pixels[0], pixels[1], image)


def _record(fields: dict[str, Any]) -> InstanceHeader:
    """The frozen record from a complete field dict.

    Fills ``__dict__`` directly, as unpickling does: a 70-field frozen dataclass ``__init__`` costs as
    much as reading a small header. The fields are complete (``_UNKNOWN_FIELDS`` is empty, every key
    comes from ``_DEFAULTS``) and InstanceHeader has no ``__post_init__``; otherwise use ``__init__``.
    """
    if _BYPASS_INIT:
        record = object.__new__(InstanceHeader)
        record.__dict__.update(fields)
        return record
    return InstanceHeader(**fields)


# Fields this reader fills; the rest keep their defaults for classic (non-enhanced) images.
_FILLED = frozenset(
    [name for name, _k in _TEXT_FIELDS + _UPPER_FIELDS + _TEXTS_FIELDS + _NUMBER_FIELDS + _INTEGER_FIELDS]
    + [name for name, _k, _n in _VECTOR_FIELDS]
    + ["path", "sop_class_uid", "requested_procedure_description", "procedure_codes", "contrast_agent",
       "acquisition_date", "acquisition_time", "vendor_sequence", "philips_spir", "philips_prepulse",
       "ge_series_contrast", "ge_sat_fat", "vendor_scan_options", "frames"]
)
_DEFAULTED = frozenset({"frame_type", "enhanced", "value_problems"})
_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(InstanceHeader))
# A field added to InstanceHeader that this reader does not know disables it (pydicom reads everything)
# rather than leaving the field at its default; tests/test_fastheaders.py fails loudly in that case.
_UNKNOWN_FIELDS = _RECORD_FIELDS - _FILLED - _DEFAULTED
_EXTRA_FIELDS = _FILLED - _RECORD_FIELDS


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ""  # path and the UIDs: always set by _fields


_DEFAULTS: dict[str, Any] = {f.name: _default(f) for f in dataclasses.fields(InstanceHeader)}
_BYPASS_INIT = (
    not hasattr(InstanceHeader, "__post_init__")
    and not hasattr(InstanceHeader, "__slots__")
    and all(f.default_factory is dataclasses.MISSING and f.init for f in dataclasses.fields(InstanceHeader))
)
