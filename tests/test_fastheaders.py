"""The lean header reader against pydicom: same records for every file, fallback for the rest.

Every test runs twice: with the compiled skimmer that steps over unneeded elements (``_skim.c``)
and with the Python walk alone. The differential tests read each file twice, with :func:`read_fast` and
with the pydicom reference (:func:`read_file_pydicom`), and require equal records field by field whenever
the lean reader answers. Other tests make sure it really answers for the common shapes (so agreement is
not reached by always falling back), that it falls back for what it must not handle, and that scanning
in several processes gives the same records in the same order.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import struct
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pydicom.data
import pytest
from rawdicom import EXPLICIT, UNDEFINED, base_elements, element, item, meta, sequence, text, write

from protocolcheck import config
from protocolcheck.dicom import lean as fastheaders
from protocolcheck.dicom import lean_fields
from protocolcheck.dicom import scan as scanning
from protocolcheck.dicom.lean import fallback_reason, read_fast
from protocolcheck.dicom.reader import read_file_pydicom
from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import iter_files, read_file, scan, scan_parallel
from protocolcheck.testing import synth

REPO_ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True, params=["compiled", "python"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the compiled skimmer (``_skim.c``) and with the Python walk alone."""
    if request.param == "python":
        monkeypatch.setattr(fastheaders, "_SKIM_EXPLICIT", None)
        monkeypatch.setattr(fastheaders, "_SKIM_IMPLICIT", None)
        monkeypatch.setattr(fastheaders, "_SKIM_SEQUENCE", None)
        monkeypatch.setattr(fastheaders, "_SKIM_CACHED", None)
        monkeypatch.setattr(fastheaders, "_SKIM_ITEMS", None)
    elif fastheaders._SKIM_EXPLICIT is None:
        pytest.skip("protocolcheck._skim is not built (pip install -e . builds it in a checkout)")
    return request.param



def reference(path: str | Path) -> object:
    """pydicom's answer: records, Skipped, or ("unreadable", reason)."""
    try:
        return read_file_pydicom(path)
    except ValueError as exc:
        return ("unreadable", str(exc))


def field_differences(fast: object, ref: object) -> dict[str, tuple[object, object]] | str | None:
    """None when equal; otherwise what differs (per field for records)."""
    if fast == ref:
        return None
    if not (isinstance(fast, list) and isinstance(ref, list) and len(fast) == len(ref)):
        return f"{fast!r} != {ref!r}"
    out = {}
    for a, b in zip(fast, ref, strict=True):
        da, db = dataclasses.asdict(a), dataclasses.asdict(b)
        out.update({k: (da[k], db[k]) for k in da if da[k] != db[k]})
    return out


def compare_all(paths: Iterable[str | Path]) -> tuple[int, int, list[str]]:
    """(handled by the fast path, left to pydicom, mismatches) over ``paths``."""
    handled = fallback = 0
    problems = []
    for path in paths:
        fast = read_fast(str(path))
        if fast is None:
            fallback += 1
            continue
        handled += 1
        diff = field_differences(fast, reference(path))
        if diff is not None:
            problems.append(f"{path}: {diff}")
    return handled, fallback, problems


def assert_fast_agrees(path: Path, handled: bool = True) -> None:
    """read_fast equals pydicom; with ``handled`` it must also have answered itself."""
    fast = read_fast(str(path))
    if handled:
        assert fast is not None, f"fell back: {fallback_reason(str(path))}"
    if fast is not None:
        assert field_differences(fast, reference(path)) is None, field_differences(fast, reference(path))
    # and the public entry point always gives pydicom's answer
    try:
        public: object = read_file(path)
    except ValueError as exc:
        public = ("unreadable", str(exc))
    assert public == reference(path)


# ------------------------------------------------------------------------- contract coverage


def test_every_record_field_is_filled_by_the_fast_path() -> None:
    """A field added to InstanceHeader must be taught to fastheaders (else it silently disables itself)."""
    assert not lean_fields._UNKNOWN_FIELDS, f"fastheaders does not fill {sorted(lean_fields._UNKNOWN_FIELDS)}"


def test_records_built_by_the_fast_path_equal_normally_constructed_ones(tmp_path: Path) -> None:
    [record] = read_fast(str(write(tmp_path / "a.dcm", base_elements())))  # type: ignore[misc]
    rebuilt = InstanceHeader(**{f.name: getattr(record, f.name) for f in dataclasses.fields(InstanceHeader)})
    assert rebuilt == record and vars(rebuilt) == vars(record) and hash(rebuilt.key) == hash(record.key)


# ------------------------------------------------------------------------------- corpora


def test_agrees_with_pydicom_on_pydicom_test_files() -> None:
    paths = [p for p in pydicom.data.get_testdata_files() if os.path.isfile(p)]
    handled, fallback, problems = compare_all(paths)
    assert not problems, "\n".join(problems)
    assert handled >= 60, (handled, fallback)  # most of pydicom's files are plain LE images


def test_agrees_with_pydicom_on_synth_corpus_in_every_syntax(tmp_path: Path) -> None:
    paths: list[Path] = []
    for i, spec in enumerate(synth.varied_studies(7, slices=2)):
        for syntax in synth.Syntax:
            for file_meta in (True, False):
                if syntax is synth.Syntax.DEFLATED and not file_meta:
                    continue
                variant = dataclasses.replace(spec, syntax=syntax, file_meta=file_meta)
                paths += synth.write_study(variant, tmp_path / f"{i}_{syntax.value}_{file_meta}")
    paths += synth.write_study(synth.ct_study(synth.Vendor.GE, "CT1"), tmp_path / "ct")
    handled, _fallback, problems = compare_all(paths)
    assert not problems, "\n".join(problems)
    # every classic (non-enhanced) LE file with file meta is read by the fast path itself
    for path in paths:
        parent = path.parent.name
        if parent.endswith("_True") and ("explicit_le" in parent or "implicit_le" in parent):
            assert fallback_reason(str(path)) is None, path
    assert handled > len(paths) // 4


def test_agrees_with_pydicom_on_sample_studies() -> None:
    sample = REPO_ROOT / "sample_dicom"
    paths = [p for p in iter_files([sample]) if not p.endswith((".md", ".csv", ".json", ".txt", ".py"))]
    if not paths:
        pytest.skip("no sample_dicom/ studies")
    handled, _fallback, problems = compare_all(paths)
    assert not problems, "\n".join(problems)
    assert handled > 0


# ------------------------------------------------------------------------ handled shapes


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "implicit"])
def test_plain_header(tmp_path: Path, explicit: bool) -> None:
    path = write(tmp_path / "a.dcm", base_elements(explicit), explicit)
    assert_fast_agrees(path)
    [record] = read_fast(str(path))  # type: ignore[misc]
    assert record.modality == "MR" and record.image_type == ("ORIGINAL", "PRIMARY", "M", "ND")
    assert record.image_orientation == (1.0, 0.0, 0.0, 0.0, 0.5, -0.8660254) and record.rows == 4


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "implicit"])
@pytest.mark.parametrize(
    "tag, vr, raw",
    [
        (0x0008103E, "LO", b" lead and trail \\ parts \x00"),  # per-value trailing strip, backslash
        (0x0008103E, "LO", b"ends with nul\x00\x00"),
        (0x0008103E, "LO", b"odd"),  # odd length, no padding
        (0x00080008, "CS", b"ORIGINAL\\PRIMARY\\\\M "),  # empty value inside
        (0x00080008, "CS", b"  "),  # only padding
        (0x00081030, "LO", b""),  # empty
        (0x00180080, "DS", b" 1.5e3 "),
        (0x00180080, "DS", b"+.5\\2"),  # several values: the first counts
        (0x00180080, "DS", b"abc "),  # malformed: value problem (pydicom decides)
        (0x00180080, "DS", b"nan "),
        (0x00180080, "DS", b"1e999 "),
        (0x00200013, "IS", b" 7 "),
        (0x00200013, "IS", b"1.0 "),
        (0x00200013, "IS", b"1.5 "),
        (0x00200037, "DS", b"1\\0\\0\\0\\1"),  # five values for a six-value vector
        (0x00280030, "DS", b"0.8\\\\0.8 "),
        (0x00100010, "PN", b"Doe^John=Dupont "),  # component groups
        (0x00100010, "PN", b"Doe^John\x00\x00"),
        (0x00080018, "UI", b" 1.2.3 \\ 4.5\x00"),
        (0x00180087, "DS", b"1.5\\ab"),
        (0x00089209, "CS", b"t1 "),  # Acquisition Contrast, upper-cased
        (0x0008002A, "DT", b"20250314101112.5 "),  # Acquisition DateTime stands in for date/time
        (0x00080080, "LO", b"\x1b(B"),  # ISO 2022 escape: pydicom removes it (found by fuzzing)
        (0x00100010, "PN", b"Doe\x1b(B^J "),
        (0x00080060, "CS", b"\x1b(B"),  # not decoded with the character set: kept as is
        (0x00181060, "IS", b"Infinity"),  # not read by headers.py, yet pydicom fails on it (fuzzing)
        (0x00200012, "IS", b"1e999 "),
        (0x00200012, "IS", b"nan "),
    ],
)
def test_values_decode_like_pydicom(tmp_path: Path, explicit: bool, tag: int, vr: str, raw: bytes) -> None:
    elements = base_elements(explicit)
    elements[tag] = element(tag, vr, raw, explicit)
    assert_fast_agrees(write(tmp_path / "a.dcm", elements, explicit), handled=False)


def test_common_value_shapes_are_read_by_the_fast_path_itself(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x0008103E] = element(0x0008103E, "LO", b" lead \\ parts \x00")
    elements[0x00180080] = element(0x00180080, "DS", b"+.5\\2")
    elements[0x00200013] = element(0x00200013, "IS", b" 7 ")
    elements[0x00100010] = element(0x00100010, "PN", b"Doe^John\x00\x00")
    elements[0x0008002A] = element(0x0008002A, "DT", b"20250314101112.5 ")
    del elements[0x00080020]
    assert_fast_agrees(write(tmp_path / "a.dcm", elements))


@pytest.mark.parametrize("charset, encoding, value", [
    (b"ISO_IR 100", "latin-1", "Müller^Zoë"),
    (b"ISO_IR 192", "utf-8", "Müller^Zoë Ω"),
    (b"", "latin-1", "Café"),  # no character set: pydicom decodes as Latin-1 too
])
def test_character_sets(tmp_path: Path, charset: bytes, encoding: str, value: str) -> None:
    elements = base_elements()
    if charset:
        elements[0x00080005] = element(0x00080005, "CS", text(charset.decode()))
    elements[0x00100010] = element(0x00100010, "PN", text(value, encoding))
    elements[0x00080080] = element(0x00080080, "LO", text("Hôpital " + value, encoding))
    path = write(tmp_path / "a.dcm", elements)
    assert_fast_agrees(path)
    assert read_fast(str(path))[0].patient_name == value  # type: ignore[index]


def test_a_second_character_set_element_falls_back(tmp_path: Path) -> None:
    """pydicom applies every (0008,0005) it reads, and fails on a garbled one (found by fuzzing)."""
    body = b"".join(base_elements()[tag] for tag in sorted(base_elements()))
    garbled = element(0x00080005, "FD", b"\x00" * 6 + b"\xf8\x7f")
    path = tmp_path / "a.dcm"
    path.write_bytes(meta(EXPLICIT) + garbled + element(0x00080005, "CS", text("ISO_IR 100")) + body)
    assert read_fast(str(path)) is None
    assert_fast_agrees(path, handled=False)
    assert isinstance(reference(path), tuple)
    path.write_bytes(meta(EXPLICIT) + element(0x00080005, "PN", text("ISO_IR 100")) + body)  # odd VR
    assert read_fast(str(path)) is None
    assert_fast_agrees(path, handled=False)


def test_character_set_inside_an_item_falls_back(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00081140] = sequence(0x00081140, [item(element(0x00080005, "CS", text("ISO_IR 100")))])
    path = write(tmp_path / "a.dcm", elements)
    assert read_fast(str(path)) is None
    assert_fast_agrees(path, handled=False)


def test_other_character_sets_fall_back(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00080005] = element(0x00080005, "CS", text("ISO 2022 IR 87"))
    path = write(tmp_path / "a.dcm", elements)
    assert read_fast(str(path)) is None and fallback_reason(str(path)) == "character set"
    assert_fast_agrees(path, handled=False)


def _private_elements(explicit: bool, un: bool = False) -> dict[int, bytes]:
    """GE and Philips private blocks, the Philips one not in the first slot."""
    e = explicit
    elements = base_elements(explicit)
    vr = "UN" if un else "LO"
    elements[0x00190010] = element(0x00190010, "LO", text("GEMS_ACQU_01"), e)
    elements[0x0019109C] = element(0x0019109C, vr, text("fse-xl"), e)
    elements[0x0019109E] = element(0x0019109E, vr, text("FSE"), e)
    elements[0x00191011] = element(0x00191011, "UN" if un else "SS", struct.pack("<h", 2), e)  # series contrast
    elements[0x001910A4] = element(0x001910A4, "UN" if un else "SS", struct.pack("<h", 1), e)  # SAT fat
    elements[0x20010010] = element(0x20010010, "LO", text("Another Creator"), e)
    elements[0x20010011] = element(0x20010011, "LO", text("Philips Imaging DD 001"), e)
    elements[0x20011020] = element(0x20011020, "LO", text("WRONG BLOCK"), e)
    elements[0x20011120] = element(0x20011120, vr, text("TSE"), e)
    elements[0x20011121] = element(0x20011121, "UN" if un else "CS", text("Y"), e)
    elements[0x2001111C] = element(0x2001111C, "UN" if un else "CS", text("IR"), e)
    elements[0x20011122] = element(0x20011122, "UN" if un else "FL", struct.pack("<f", 1.5), e)
    elements[0x00210010] = element(0x00210010, "LO", text("SIEMENS MR SDS 01"), e)
    elements[0x0021105C] = element(0x0021105C, "UN" if un else "CS", text("FS\\PFP "), e)
    return elements


@pytest.mark.parametrize("explicit, un", [(True, False), (False, False), (True, True)],
                         ids=["explicit", "implicit", "explicit-UN"])
def test_private_tags_by_creator(tmp_path: Path, explicit: bool, un: bool) -> None:
    path = write(tmp_path / "a.dcm", _private_elements(explicit, un), explicit)
    assert_fast_agrees(path)
    [record] = read_fast(str(path))  # type: ignore[misc]
    assert record.vendor_sequence == "fse-xl" and record.philips_spir == "Y" and record.philips_prepulse == "IR"
    assert record.vendor_scan_options == ("FS", "PFP")
    assert (record.ge_series_contrast, record.ge_sat_fat) == ("2", "1")


def test_private_value_of_wrong_length_for_its_dictionary_vr(tmp_path: Path) -> None:
    """pydicom rejects (2001,xx22) FL of 3 bytes in implicit VR: the fast path must not accept the file."""
    elements = _private_elements(False)
    elements[0x20011122] = element(0x20011122, "FL", b"\x01\x02\x03", False)
    path = write(tmp_path / "a.dcm", elements, False)
    assert read_fast(str(path)) is None
    assert_fast_agrees(path, handled=False)


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "implicit"])
@pytest.mark.parametrize("undefined_seq, undefined_items", [(False, False), (True, False), (True, True)])
def test_sequences(tmp_path: Path, explicit: bool, undefined_seq: bool, undefined_items: bool) -> None:
    e = explicit

    def code(value: str, meaning: str) -> bytes:
        return item(element(0x00080100, "SH", text(value), e) + element(0x00080102, "SH", text("C4"), e)
                    + element(0x00080104, "LO", text(meaning), e), undefined_items)

    elements = base_elements(explicit)
    elements[0x00081032] = sequence(0x00081032, [code("72197", "MRI plexus"), code("72197", "dup"),
                                                 code("76000", "other")], e, undefined_seq)
    elements[0x00180012] = sequence(0x00180012, [code("C-B0322", "Gadobutrol")], e, undefined_seq)
    elements[0x00400275] = sequence(0x00400275, [item(element(0x00321060, "LO", text("MRI LS PLEXUS"), e)
                                                      + sequence(0x00321064, [code("X1", "nested")], e, True),
                                                      undefined_items)], e, undefined_seq)
    elements[0x00081140] = sequence(0x00081140, [item(b"", undefined_items)], e, undefined_seq)  # empty item
    elements[0x00191020] = element(0x00191020, "UN", b"", e)  # odd group, no creator
    path = write(tmp_path / "a.dcm", elements, explicit)
    assert_fast_agrees(path)
    [record] = read_fast(str(path))  # type: ignore[misc]
    assert record.procedure_codes == ("72197", "76000")
    assert record.contrast_agent == "Gadobutrol" and record.requested_procedure_description == "MRI LS PLEXUS"


def test_implicit_items_inside_an_explicit_sequence_and_un_sequences(tmp_path: Path) -> None:
    """PS3.5 6.2.2: an undefined-length UN (or SQ) value may hold implicit VR items."""
    elements = base_elements()
    implicit_item = item(element(0x00080100, "SH", text("72197"), False), True)
    elements[0x00081032] = sequence(0x00081032, [implicit_item], True, True)
    elements[0x00291010] = element(0x00290010, "LO", text("SIEMENS CSA HEADER"))
    elements[0x00291100] = element(0x00291100, "UN", implicit_item + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0),
                                   True, UNDEFINED)
    path = write(tmp_path / "a.dcm", elements)
    assert_fast_agrees(path)
    assert read_fast(str(path))[0].procedure_codes == ("72197",)  # type: ignore[index]


def test_implicit_private_sequence_of_undefined_length(tmp_path: Path) -> None:
    elements = base_elements(False)
    nested = item(element(0x00080100, "SH", text("1"), False) + element(0x00291001, "OB", b"\x00" * 7, False), True)
    elements[0x00291001] = element(0x00291001, "SQ", nested + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0), False,
                                   UNDEFINED)
    assert_fast_agrees(write(tmp_path / "a.dcm", elements, False))


def test_large_skipped_values_beyond_the_first_read(tmp_path: Path) -> None:
    """A 100 KB private blob and header elements after it: skipped by length, later values still read."""
    elements = base_elements()
    elements[0x00290010] = element(0x00290010, "LO", text("SIEMENS CSA HEADER"))
    elements[0x00291010] = element(0x00291010, "OB", b"\xab" * 100_000)
    elements[0x00321060] = element(0x00321060, "LO", text("AFTER THE BLOB"))
    path = write(tmp_path / "a.dcm", elements)
    assert_fast_agrees(path)
    assert read_fast(str(path))[0].requested_procedure_description == "AFTER THE BLOB"  # type: ignore[index]


def test_group_lengths_and_elements_after_pixel_data(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00080000] = element(0x00080000, "UL", struct.pack("<L", 0))
    elements[0x00180000] = element(0x00180000, "UL", struct.pack("<L", 0))
    path = write(tmp_path / "a.dcm", elements, extra=b"",
                 pixels=element(0x7FE00010, "OW", b"\x00\x01" * 16) + element(0xFFFAFFFA, "SQ", b""))
    assert_fast_agrees(path)


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "implicit"])
@pytest.mark.parametrize("last", [b"", b"AB", b"ABCD"])
def test_file_ending_in_a_short_element_without_pixel_data(tmp_path: Path, explicit: bool, last: bytes) -> None:
    """The last header may be shorter than 12 bytes (regression: the buffer refill never ended)."""
    elements = base_elements(explicit)
    elements[0x00321060] = element(0x00321060, "LO", last, explicit)
    path = write(tmp_path / "a.dcm", elements, explicit, pixels=b"")
    assert_fast_agrees(path)


def test_non_image_objects_are_skipped_alike(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00080016] = element(0x00080016, "UI", text("1.2.840.10008.5.1.4.1.1.88.22", pad=b"\x00"))
    path = write(tmp_path / "sr.dcm", elements, pixels=b"")
    assert isinstance(read_fast(str(path)), Skipped)
    assert_fast_agrees(path)


# ------------------------------------------------------------------------ enhanced objects


def _macro(tag: int, content: bytes, e: bool, undefined: bool) -> bytes:
    return sequence(tag, [item(content, undefined)], e, undefined)


def _functional_group(e: bool, undefined: bool, orientation: str, frame_type: str, te: bytes) -> bytes:
    return item(
        _macro(0x00209111, element(0x00209157, "UL", struct.pack("<LL", 1, 1), e), e, undefined)  # FrameContent
        + _macro(0x00209113, element(0x00200032, "DS", text("-100\\-100\\12.5"), e), e, undefined)
        + _macro(0x00209116, element(0x00200037, "DS", text(orientation), e), e, undefined)
        + _macro(0x00189114, element(0x00189082, "FD", te, e), e, undefined)  # MR Echo: Effective Echo Time
        + _macro(0x00189226, element(0x00089007, "CS", text(frame_type), e)
                 + element(0x00089209, "CS", text("T2"), e), e, undefined),
        undefined)


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "implicit"])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_enhanced_multiframe(tmp_path: Path, explicit: bool, undefined: bool) -> None:
    """Shared and per-frame functional groups, two orientations, Siemens XA private options."""
    e = explicit
    elements = base_elements(explicit)
    elements[0x00080016] = element(0x00080016, "UI", text("1.2.840.10008.5.1.4.1.1.4.1", pad=b"\x00"), e)
    del elements[0x00080008]  # Image Type then comes from Frame Type
    elements[0x00280008] = element(0x00280008, "IS", text("4"), e)
    xa_item = item(element(0x00210010, "LO", text("SIEMENS MR SDS 01"), e)
                   + element(0x0021105C, "CS", text("FS\\PFP"), e), undefined)
    shared = item(
        _macro(0x00289110, element(0x00180050, "DS", text("4"), e) + element(0x00280030, "DS", text("0.7\\0.7"), e),
               e, undefined)
        + _macro(0x00189112, element(0x00180080, "DS", text("3500"), e) + element(0x00181314, "DS", text("150"), e),
                 e, undefined)
        + _macro(0x00189115, element(0x00189009, "CS", text("yes"), e)
                 + element(0x00189079, "FD", struct.pack("<dd", 220.0, 0.0), e), e, undefined)
        + _macro(0x00189341, element(0x00189342, "CS", text("YES"), e), e, undefined)  # contrast usage
        + element(0x00210010, "LO", text("SIEMENS MR SDS 01"), e)
        + sequence(0x002110FE, [xa_item], e, undefined),
        undefined)
    elements[0x52009229] = sequence(0x52009229, [shared], e, undefined)
    frames = [
        _functional_group(e, undefined, "1\\0\\0\\0\\1\\0", "ORIGINAL\\PRIMARY\\M\\NONE", struct.pack("<d", 80.0)),
        _functional_group(e, undefined, "1\\0\\0\\0\\1\\0", "ORIGINAL\\PRIMARY\\M\\NONE", struct.pack("<d", 80.0)),
        _functional_group(e, undefined, "0\\1\\0\\0\\0\\-1", "ORIGINAL\\PRIMARY\\M\\NONE", struct.pack("<d", 80.0)),
        _functional_group(e, undefined, "0\\1\\0\\0\\0\\-1", "DERIVED\\PRIMARY\\M\\NONE", struct.pack("<d", 80.0)),
    ]
    elements[0x52009230] = sequence(0x52009230, frames, e, undefined)
    pixels = element(0x7FE00010, "OW", b"\x00\x01" * 64, explicit)  # 4 frames of 4 x 4 x 16 bits
    path = write(tmp_path / "enhanced.dcm", elements, explicit, pixels=pixels)
    assert_fast_agrees(path)
    records = read_fast(str(path))
    assert isinstance(records, list) and [r.frames for r in records] == [2, 1, 1]
    first = records[0]
    assert first.enhanced and first.image_type == ("ORIGINAL", "PRIMARY", "M", "NONE")
    assert first.repetition_time == 3500.0 and first.echo_time == 80.0 and first.inversion_time == 220.0
    assert first.inversion_recovery == "YES" and first.contrast_agent == "ADMINISTERED"
    assert first.pixel_spacing == (0.7, 0.7)
    # (0021,xxFE) is not in pydicom's private dictionary: in implicit VR only an undefined length makes it a sequence
    assert first.vendor_scan_options == (("FS", "PFP") if explicit or undefined else ())


def test_sequences_stored_as_plain_values_fall_back(tmp_path: Path) -> None:
    """A needed sequence written with another VR makes pydicom fail later (fuzz finding): leave it."""
    elements = base_elements()
    elements[0x00081032] = element(0x00081032, "OB", b"\x01\x02")
    path = write(tmp_path / "top.dcm", elements)
    assert fallback_reason(str(path)) == "a sequence stored as a plain value"
    assert_fast_agrees(path, handled=False)
    elements = base_elements()
    elements[0x00080016] = element(0x00080016, "UI", text("1.2.840.10008.5.1.4.1.1.4.1", pad=b"\x00"))
    shared = item(element(0x00289110, "OB", b"\x01\x02"))  # Pixel Measures macro as bytes
    elements[0x52009229] = sequence(0x52009229, [shared])
    path = write(tmp_path / "group.dcm", elements)
    assert fallback_reason(str(path)) == "a sequence stored as a plain value"
    assert_fast_agrees(path, handled=False)


# -------------------------------------------------------------------- what must fall back


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "image_dfl.dcm", "no_meta.dcm", "rtplan_truncated.dcm"])
def test_pydicom_files_that_fall_back(name: str) -> None:
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not available offline")
    assert read_fast(str(path)) is None and fallback_reason(str(path))
    assert_fast_agrees(Path(path), handled=False)


def test_dicomdir_falls_back() -> None:
    path = pydicom.data.get_testdata_file("DICOMDIR", download=False)
    if path is None:
        pytest.skip("DICOMDIR not available offline")
    assert fallback_reason(str(path)) == "DICOMDIR"
    assert_fast_agrees(Path(path), handled=False)


def test_binary_value_of_wrong_length_is_unreadable_either_way(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00280100] = element(0x00280100, "US", b"\x10")
    path = write(tmp_path / "a.dcm", elements)
    assert read_fast(str(path)) is None
    assert_fast_agrees(path, handled=False)
    assert isinstance(reference(path), tuple)


def test_file_meta_value_of_wrong_length(tmp_path: Path) -> None:
    """pydicom converts the file meta too: a UL group length of 6 bytes fails there (fuzz finding)."""
    data = write(tmp_path / "a.dcm", base_elements()).read_bytes()
    bad = data[:132] + element(0x00020000, "UL", b"\x00" * 6) + data[132 + 12:]
    path = tmp_path / "bad.dcm"
    path.write_bytes(bad)
    assert read_fast(str(path)) is None
    assert_fast_agrees(path, handled=False)


def test_hostile_length_does_not_allocate(tmp_path: Path) -> None:
    elements = base_elements()
    elements[0x00081030] = element(0x00081030, "UT", b"short", length=0x7FFFFFF0)
    path = write(tmp_path / "a.dcm", elements)
    tracemalloc.start()
    try:
        assert read_fast(str(path)) is None
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert fallback_reason(str(path)) == "value beyond end of file"


@pytest.mark.parametrize("cut", [140, 150, 153, 200, 333, -40])
def test_truncated_files_agree(tmp_path: Path, cut: int) -> None:
    full = write(tmp_path / "full.dcm", base_elements()).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(full[:cut])
    assert_fast_agrees(path, handled=False)


def test_non_dicom_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "notes.bin").write_bytes(b"hello world" * 20)
    (tmp_path / "empty.dcm").write_bytes(b"")
    for name in ("notes.bin", "empty.dcm"):
        assert read_fast(str(tmp_path / name)) is None
        assert_fast_agrees(tmp_path / name, handled=False)


# ---------------------------------------------------------------------------- switches & scan


def test_environment_variable_forces_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "a.dcm", base_elements())
    calls: list[str] = []
    original = fastheaders.read_fast

    def counting(name: str) -> object:
        calls.append(name)
        return original(name)

    monkeypatch.setattr(fastheaders, "read_fast", counting)
    first = read_file(path)
    assert calls == [str(path)]
    monkeypatch.setenv(config.Env.READER.value, "pydicom")
    assert read_file(path) == first and calls == [str(path)]
    assert read_file(path, fast=False) == first and len(calls) == 1


def test_parallel_scan_gives_the_same_records_in_the_same_order(tmp_path: Path) -> None:
    for i, spec in enumerate(synth.varied_studies(3, slices=2)):
        synth.write_study(spec, tmp_path / f"study{i}")
    (tmp_path / "study0" / "zz_bad.dcm").write_bytes(b"\x00" * 200)
    (tmp_path / "README.md").write_text("notes")
    serial = list(scan([tmp_path]))
    assert list(scan([tmp_path], workers=2)) == serial
    assert list(scan_parallel(iter_files([tmp_path]), 2, chunk=3)) == serial
    kinds = {type(r) for r in serial}
    assert kinds == {InstanceHeader, Unreadable, Skipped}


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the dying reader is set up by fork")
def test_parallel_scan_survives_a_reader_process_that_dies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synth.write_study(synth.varied_studies(1, slices=2)[0], tmp_path / "study")
    files = list(iter_files([tmp_path]))
    victim = files[5]
    real = scanning.scan_file

    def dying(name: str) -> list:
        if name == victim:
            os._exit(3)  # as if killed (out of memory) while reading this file
        return real(name)

    monkeypatch.setattr(scanning, "scan_file", dying)
    records = list(scan_parallel(files, 2, chunk=4))
    assert [r.path for r in records] == [r.path for f in files for r in real(f)]
    [lost] = [r for r in records if r.path == victim]
    assert isinstance(lost, Unreadable) and "stopped the header reader process" in lost.reason
    assert [r for r in records if r.path != victim] == [r for f in files if f != victim for r in real(f)]
