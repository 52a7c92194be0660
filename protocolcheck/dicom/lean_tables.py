"""The lean reader's tables: what it captures (tags, private elements, sequences and their levels), the
VRs and value kinds it steps over, how each record field is decoded, and its fallback signal."""

from __future__ import annotations

import re
import sys
from array import array
from struct import Struct
from typing import Any

from pydicom._private_dict import private_dictionaries
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_dict

from protocolcheck.dicom.records import (
    _FRAME_MACROS,
    GE_PULSE_SEQUENCE_NAME,
    GE_SAT_FAT,
    GE_SERIES_CONTRAST,
    PHILIPS_PREPULSE,
    PHILIPS_SCANNING_TECHNIQUE,
    PHILIPS_SPIR,
    SIEMENS_XA_SCAN_OPTIONS,
)

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
_XA_LEVEL = _Level(dict(_CHARSET_TAG),
                    private_offsets={SIEMENS_XA_SCAN_OPTIONS[1]: frozenset({SIEMENS_XA_SCAN_OPTIONS[2]})})
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
