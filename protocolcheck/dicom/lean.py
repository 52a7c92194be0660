"""Lean DICOM header reader: the fast path behind :func:`protocolcheck.dicom.scan.read_file`.

It reads a file's first block in one system call, walks the elements of an explicit or implicit VR
little-endian dataset, keeps the raw bytes of the few elements :class:`InstanceHeader` needs, skips every
other value by its length and stops at Pixel Data. Values are decoded exactly as pydicom decodes them:
pydicom is the reference, and ``tests/test_fastheaders.py`` checks that both readers agree field by
field on every file of several corpora.

Stepping over the elements it does not need is done in C when the optional extension
``protocolcheck._skim`` is built (``_skim.c``; ``pip install`` builds it where a C compiler exists): it
skips, or stores at the top level, exactly what the Python walk would, from tables this module builds,
and the Python walk handles everything else. Without it the results are the same (tested both ways).

This module is the walk (:class:`_Walker`: the hot loop of an archive scan, long methods so each element's
decisions stay inline) and the entry points; :mod:`.lean_tables` and :mod:`.lean_fields` hold the rest.

Whatever it does not handle makes :func:`read_fast` return ``None`` and the caller falls back to
pydicom: files without preamble or file meta, big-endian or deflated syntaxes, enhanced multi-frame
objects, DICOMDIRs, character sets other than ASCII / Latin-1 / UTF-8, a malformed or unusual value
in an element we need, truncation, and any structure that is not plainly well formed. The walk also
checks what pydicom's full read would reject (binary values of the wrong length, items that do not add
up), so a file the fallback would call unreadable is never read here. Declared lengths are bounded by
the file size before anything is read, so a hostile length never allocates.
"""

from __future__ import annotations

import os
import stat
import sys
from array import array
from struct import error as struct_error
from typing import Any

from protocolcheck import config
from protocolcheck.dicom.lean_fields import (
    _DECODED_LIMIT,
    _DEFAULTS,
    _EXTRA_FIELDS,
    _FIELD_SPECS,
    _MISSING,
    _PLAIN_VRS,
    _READ_CREATORS,
    _TEXT,
    _UNIQUE,
    _UNKNOWN_FIELDS,
    _decode,
    _enhanced,
    _integer,
    _item_element,
    _items,
    _pixel_problem,
    _private,
    _record,
    _text,
    _text_cached,
    _xa_scan_options,
)
from protocolcheck.dicom.lean_tables import (
    _CHARSET_SWAPPED,
    _CHARSETS,
    _COMPRESSED_PREFIXES,
    _CREATORS,
    _DIRECTORY_RECORDS,
    _EXPLICIT,
    _EXPLICIT_LE,
    _IMPLICIT_LE,
    _IS,
    _ITEM,
    _MAX_DEPTH,
    _PIXEL_KEY,
    _PIXEL_TAGS,
    _PRIVATE_OFFSETS,
    _REFILL,
    _SEQ_END,
    _SHORT_VR_SIZES,
    _SHORT_VR_SIZES_INT,
    _SQ,
    _STD_KIND,
    _STD_VR,
    _SWAPPED_EXPLICIT,
    _SWAPPED_EXPLICIT_INT,
    _SWAPPED_IMPLICIT,
    _SWAPPED_PLAIN,
    _SWAPPED_TOP,
    _TAG_LEN,
    _TOP,
    _TOP_LEVEL,
    _U32,
    _UNDEFINED,
    _VR_BY_CODE,
    _VR_INFO,
    _VR_NAMES,
    FIRST_READ,
    _check_is,
    _dictionary_vr,
    _Fallback,
    _kind_of,
    _Level,
    _private_kind,
    _skim_tables,
    _special,
    _std_kind_slow,
)
from protocolcheck.dicom.records import (
    ENHANCED_SOP_CLASSES,
    GE_PULSE_SEQUENCE_NAME,
    GE_SAT_FAT,
    GE_SERIES_CONTRAST,
    MEDIA_STORAGE_DIRECTORY,
    NON_IMAGE_SOP_PREFIXES,
    PHILIPS_PREPULSE,
    PHILIPS_SCANNING_TECHNIQUE,
    PHILIPS_SPIR,
    InstanceHeader,
    Skipped,
    uid_for_message,
)

__all__ = ["FIRST_READ", "fallback_reason", "read_fast"]

def _load_skimmer() -> tuple[Any, Any, Any, Any, Any]:
    """The compiled skimmer's (explicit, implicit, sequence, items, cached) functions, or Nones: Python only.

    ``PROTOCOLCHECK_PURE_PYTHON=1`` turns it off (tests compare both walks); it reads tags as native
    32-bit numbers, so it is used on little-endian machines only.
    """
    if config.skimmer_disabled() or sys.byteorder != "little" or array("I").itemsize != 4:
        return None, None, None, None, None
    try:
        from protocolcheck.dicom import _skim  # type: ignore[attr-defined]  # noqa: PLC0415 - optional C extension
    except ImportError:  # built without a C compiler: the Python walk alone gives the same results
        return None, None, None, None, None
    _skim.configure(*_skim_tables())
    return _skim.explicit, _skim.implicit, _skim.sequence, _skim.items, _skim.cached


_SKIM_EXPLICIT, _SKIM_IMPLICIT, _SKIM_SEQUENCE, _SKIM_ITEMS, _SKIM_CACHED = _load_skimmer()


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
