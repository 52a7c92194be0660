"""The lean reader's decoding: captured raw elements turned into values exactly as pydicom decodes them
(text, numbers, vectors, private values), and enhanced objects' functional-group macros onto records."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterator
from struct import Struct
from typing import Any

from protocolcheck.dicom.lean_tables import (
    _CHARSETS,
    _CREATORS,
    _F32,
    _F64,
    _INTEGER_FIELDS,
    _NUMBER_FIELDS,
    _PRIVATE_SPECS,
    _TEXT_FIELDS,
    _TEXTS_FIELDS,
    _U16,
    _UPPER_FIELDS,
    _VECTOR_FIELDS,
    _XA_SERIES_OFFSET,
    _Fallback,
    _private_vr,
)
from protocolcheck.dicom.pixels import ImageSize, pixel_data_problem
from protocolcheck.dicom.records import (
    _FRAME_MACROS,
    SIEMENS_XA_SCAN_OPTIONS,
    InstanceHeader,
    group_frames,
)

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
    values = _number_values(vr, raw)
    if not all(math.isfinite(v) for v in values):
        raise _Fallback("not finite")
    return values


def _number_values(vr: str, raw: bytes) -> list[float]:
    """The values of a non-empty numeric element as floats; _Fallback if malformed or not a number VR."""
    if vr == "DS":
        parts = raw.decode("latin-1").strip().rstrip(" \x00").split("\\")
        if not all(_DS_RE.fullmatch(p) for p in parts):
            raise _Fallback("malformed DS")
        return [float(p) for p in parts]
    if vr == "IS":
        parts = raw.decode("latin-1").rstrip(" \x00").split("\\")
        if not all(_IS_RE.fullmatch(p) for p in parts):
            raise _Fallback("malformed IS")
        return [float(int(p)) for p in parts]
    if vr == "US" and len(raw) % 2 == 0:
        return [float(_U16(raw, i)[0]) for i in range(0, len(raw), 2)]
    if vr == "FD" and len(raw) % 8 == 0:
        return [_F64(raw, i)[0] for i in range(0, len(raw), 8)]
    if vr == "FL" and len(raw) % 4 == 0:
        return [_F32(raw, i)[0] for i in range(0, len(raw), 4)]
    raise _Fallback(f"number in VR {vr}")


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
    if how in (_TEXT, _UPPER):
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
        _copy_macro_fields(item, entries, fields, enc)
        if macro == "ContrastBolusUsageSequence" and not fields.get("contrast_agent") \
                and _text(item.get("ContrastBolusAgentAdministered"), enc).upper() == "YES":
            fields["contrast_agent"] = "ADMINISTERED"


def _copy_macro_fields(item: dict[Any, Any], entries: tuple[tuple[str, str, int], ...], fields: dict[str, Any],
                       enc: str) -> None:
    """The macro item's non-empty fields onto ``fields`` (``entries``: keyword, field name, decoding)."""
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


# ------------------------------------------------------------------------------------- records


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


def _pixel_problem(fd: int, size: int, pixels: tuple[int, int], top: dict[Any, Any]) -> str | None:
    """:func:`.pixels.pixel_data_problem` on the Pixel Data the walk stopped at (as the pydicom reader)."""
    key = tuple(top.get(keyword) for keyword in _IMAGE_KEYS)
    try:
        image = _IMAGE_SIZES[key]  # the few image sizes of an archive, each decoded once
    except (KeyError, TypeError):  # new, or a value captured as a sequence (unhashable): decode it
        image = ImageSize(*map(_integer, key))
        if len(_IMAGE_SIZES) < _DECODED_LIMIT and all(e is None or isinstance(e, tuple) for e in key):
            _IMAGE_SIZES[key] = image
    return pixel_data_problem(lambda position, n: os.pread(fd, n, position), size, pixels[0], pixels[1], image)


_IMAGE_KEYS = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames")
_IMAGE_SIZES: dict[tuple[Any, ...], ImageSize] = {}  # decoded image sizes by their raw elements
