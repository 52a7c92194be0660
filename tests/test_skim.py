"""The compiled skimmer (``protocolcheck/_skim.c``) changes nothing but speed.

It steps over the elements the lean reader's Python walk would only step over, and stores the plain
top-level elements the walk would store. So for any bytes at all, the reader must give the same answer
with and without it: the same records, or the same reason to leave the file to pydicom. These tests
check that on realistic vendor headers (private blocks, CSA-sized binary values, nested sequences) in
both little-endian syntaxes, and on thousands of seeded mutations of them.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from rawdicom import UNDEFINED, base_elements, element, item, sequence, text, write

from benchmarks.run import enrich
from protocolcheck.dicom import lean as fastheaders
from protocolcheck.dicom import lean_tables
from protocolcheck.dicom.reader import read_file_pydicom
from protocolcheck.testing import synth

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(fastheaders._SKIM_EXPLICIT is None and not os.environ.get("PROTOCOLCHECK_PURE_PYTHON")
                                and not (shutil.which("cc") and (REPO_ROOT / "setup.py").exists()),
                                reason="no C compiler: the reader walks in Python only")


def outcome(path: str) -> object:
    """What the lean reader makes of ``path``: its records or Skipped, else why it falls back."""
    return fastheaders.fallback_reason(path) or fastheaders._read(path)


def both_walks(path: str, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    compiled = outcome(path)
    with monkeypatch.context() as patch:
        patch.setattr(fastheaders, "_SKIM_EXPLICIT", None)
        patch.setattr(fastheaders, "_SKIM_IMPLICIT", None)
        patch.setattr(fastheaders, "_SKIM_SEQUENCE", None)
        patch.setattr(fastheaders, "_SKIM_CACHED", None)
        patch.setattr(fastheaders, "_SKIM_ITEMS", None)
        python = outcome(path)
    return compiled, python


@pytest.fixture(scope="module")
def vendor_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two images of each of seven vendors, enriched as real scanners write them, in both LE syntaxes."""
    out = tmp_path_factory.mktemp("vendors")
    paths = []
    for i, spec in enumerate(synth.varied_studies(7, slices=2)):
        vendor = spec.vendor.value
        for name, ds in synth.build_datasets(spec)[:2]:
            enrich(ds, vendor, i)
            for syntax in (synth.Syntax.EXPLICIT_LE, synth.Syntax.IMPLICIT_LE):
                path = out / f"{i}_{syntax.value}_{name}"
                synth.write_dataset(ds, path, syntax, True)
                paths.append(path)
    return paths


def test_the_skimmer_is_built_in_a_checkout() -> None:
    """With a C compiler, ``pip install -e .`` builds it: a silent pure-Python CI run would test less."""
    if os.environ.get("PROTOCOLCHECK_PURE_PYTHON"):
        assert fastheaders._SKIM_EXPLICIT is None and fastheaders._SKIM_IMPLICIT is None
        return
    assert fastheaders._SKIM_EXPLICIT is not None, "protocolcheck._skim is not built: run pip install -e ."


def test_the_lean_reader_reads_enriched_vendor_headers_itself(vendor_files: list[Path]) -> None:
    """Control: the files below are read by the fast path (so the comparisons compare real walks)."""
    reasons = {path.name: fastheaders.fallback_reason(str(path)) for path in vendor_files}
    # (the implicit VR copies of some vendors fall back: their enriched private values do not match the
    # VR pydicom's private dictionary gives them, which only an explicit VR file can override)
    assert [name for name, reason in reasons.items() if reason is not None and "explicit" in name] == []
    assert sum(reason is None for name, reason in reasons.items() if "implicit" in name) >= 6
    for path in vendor_files:
        if reasons[path.name] is None:
            assert fastheaders._read(str(path)) == read_file_pydicom(path)


def test_same_answer_with_and_without_the_skimmer(vendor_files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    for path in vendor_files:
        compiled, python = both_walks(str(path), monkeypatch)
        assert compiled == python, path.name


_SEQUENCE_MARKS = (b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0", b"\xfe\xff\xdd\xe0", b"SQ\x00\x00")


def _find_all(data: bytes, mark: bytes) -> list[int]:
    found, at = [], data.find(mark)
    while at >= 0:
        found.append(at)
        at = data.find(mark, at + 1)
    return found


def _mutations(data: bytes, rng: random.Random, start: int) -> bytes:
    """One seeded corruption of the dataset part of a file: the kinds of damage the fuzzers found useful."""
    out = bytearray(data)
    kind = rng.randrange(6)
    at = rng.randrange(start, len(out) - 8)
    if rng.random() < 0.5:  # half of them where sequences are: items, delimiters, SQ elements
        marks = [i for mark in _SEQUENCE_MARKS for i in _find_all(data, mark) if start <= i < len(out) - 8]
        if marks:
            at = rng.choice(marks) + rng.choice([0, 2, 4, 6, 8])
    if kind == 0:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(start, len(out))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # a hostile or odd 16-bit length
        out[at:at + 2] = struct.pack("<H", rng.choice([0, 1, 3, 0xFFFF, rng.randrange(65536)]))
    elif kind == 2:  # a hostile or odd 32-bit length
        out[at:at + 4] = struct.pack("<L", rng.choice([0, 7, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32)]))
    elif kind == 3:  # a VR that is not one, or another real one
        out[at:at + 2] = rng.choice([b"ZZ", b"UN", b"SQ", b"OB", b"IS", b"US", b"\x00\x00"])
    elif kind == 4:  # truncation
        del out[rng.randrange(start, len(out)):]
    else:  # an IS value that pydicom cannot convert, wherever an IS happens to be
        out[at:at + 3] = rng.choice([b"1e9", b"inf", b"1.5", b"+-+"])
    return bytes(out)


def test_same_answer_on_mutated_headers(vendor_files: list[Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261125)
    disagreements, handled = [], 0
    for round_ in range(40):
        for path in vendor_files:
            data = path.read_bytes()
            header_end = data.find(b"\xe0\x7f\x10\x00")  # mutate the header, not the pixels
            mutated = _mutations(data[:header_end], rng, 132) + data[header_end:]
            target = tmp_path / f"m{round_}_{path.name}"
            target.write_bytes(mutated)
            compiled, python = both_walks(str(target), monkeypatch)
            if compiled != python:
                disagreements.append(f"{target.name}: {compiled!r} != {python!r}")
            handled += not isinstance(compiled, str)
            target.unlink()
    assert disagreements == []
    assert handled > 20  # some mutations leave a readable file: the walks were compared on records too


def test_configure_rejects_malformed_tables_and_keeps_working(vendor_files: list[Path]) -> None:
    if fastheaders._SKIM_EXPLICIT is None:
        pytest.skip("protocolcheck._skim is not built")
    from protocolcheck.dicom import _skim  # type: ignore[attr-defined]

    tables = list(lean_tables._skim_tables())
    for index, bad in ((0, b"\x00" * 10), (2, b"\x00" * 5), (3, b"\x00" * 33), (4, b"\x00" * 6)):
        broken = list(tables)
        broken[index] = bad
        with pytest.raises(ValueError, match="wrong size"):
            _skim.configure(*broken)
    with pytest.raises(ValueError, match="differ in length"):
        _skim.configure(*tables[:7], tables[7][:-1], *tables[8:])
    with pytest.raises(ValueError, match="top_sequences"):
        _skim.configure(*tables[:9], {0x10320008: ("ProcedureCodeSequence", "not a dict")})
    with pytest.raises(TypeError):
        _skim.explicit("not bytes", 0, 0, 0, None)
    with pytest.raises(TypeError, match="out must be a dict"):
        _skim.explicit(b"", 0, 0, 0, [])
    with pytest.raises(ValueError, match="negative"):
        _skim.implicit(b"", -1, 0, None)
    assert fastheaders._read(str(vendor_files[0])) == read_file_pydicom(vendor_files[0])  # tables unchanged


# ------------------------------------------------------------- sequences nothing is kept from

REFERENCED_IMAGES = 0x00081140  # Referenced Image Sequence: walked for validity, nothing kept
REFERENCED_SOP = 0x00081155


def _ref_item(extra: bytes = b"", undefined: bool = False) -> bytes:
    return item(element(REFERENCED_SOP, "UI", text("1.2.3.4", pad=b"\x00")) + extra, undefined)


def _nested(depth: int) -> bytes:
    """``depth`` Referenced Image Sequences, each inside the one item of the one above."""
    inner = element(REFERENCED_SOP, "UI", text("1.2.3", pad=b"\x00"))
    for _ in range(depth - 1):
        inner = sequence(REFERENCED_IMAGES, [item(inner)])
    return sequence(REFERENCED_IMAGES, [item(inner)])


SEQUENCE_CASES: dict[str, tuple[bytes, bool]] = {
    # name: (the sequence element as written, whether the compiled skimmer must accept it itself)
    "plain": (sequence(REFERENCED_IMAGES, [_ref_item(), _ref_item()]), True),
    "undefined lengths": (sequence(REFERENCED_IMAGES, [_ref_item(undefined=True)], undefined=True), True),
    "empty item and empty sequence": (sequence(REFERENCED_IMAGES, [item(b"")]) + sequence(0x00081120, []), True),
    "nested 15 deep": (_nested(15), True),
    "nested 17 deep": (_nested(17), False),
    "long values, SV, private, high group": (sequence(REFERENCED_IMAGES, [_ref_item(
        element(0x00091010, "LO", text("ACME 1")) + element(0x00091011, "UT", text("x" * 40))
        + element(0x00111001, "SV", b"\x01" * 16) + element(0x00281201, "OW", b"\x00\x01" * 8)
        + element(0x7FE10010, "LO", text("ok")) + element(0x7FE11001, "OB", b"\x00" * 6))]), True),
    "sequence delimiter with a length": (element(REFERENCED_IMAGES, "SQ", _ref_item()
                                                 + struct.pack("<HHL", 0xFFFE, 0xE0DD, 4), length=UNDEFINED), False),
    "item delimiter with a length": (sequence(REFERENCED_IMAGES, [
        struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED) + element(REFERENCED_SOP, "UI", text("1.2", pad=b"\x00"))
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 2) + b"\x00\x00"]), False),
    "item delimiter in a defined-length item": (sequence(REFERENCED_IMAGES, [
        item(element(REFERENCED_SOP, "UI", text("1.2", pad=b"\x00")) + struct.pack("<HHL", 0xFFFE, 0xE00D, 0))]),
        False),
    "items overrun the sequence": (element(REFERENCED_IMAGES, "SQ", _ref_item(), length=len(_ref_item()) - 2), False),
    "element overruns its item": (sequence(REFERENCED_IMAGES, [
        struct.pack("<HHL", 0xFFFE, 0xE000, 10) + element(REFERENCED_SOP, "UI", text("1.2.3.4", pad=b"\x00"))]),
        False),
    "not an item": (element(REFERENCED_IMAGES, "SQ", element(REFERENCED_SOP, "UI", text("1.2", pad=b"\x00"))), False),
    "implicit VR item": (sequence(REFERENCED_IMAGES, [item(element(REFERENCED_SOP, "UI", text("1.2", pad=b"\x00"),
                                                                   explicit=False))]), False),
    "character set in an item": (sequence(REFERENCED_IMAGES,
                                          [_ref_item(element(0x00080005, "CS", text("ISO_IR 100")))]),
                                 False),
    "character set of a long VR in an item": (sequence(REFERENCED_IMAGES, [_ref_item(
        element(0x00080005, "UT", text("ISO_IR 100")))]), False),
    "private creator of an odd VR": (sequence(REFERENCED_IMAGES, [_ref_item(element(0x00090010, "SH", text("ACME")))]),
                                     False),
    "private creator of a long VR": (sequence(REFERENCED_IMAGES, [_ref_item(element(0x00090010, "UT", text("ACME")))]),
                                     False),
    "UN in an item": (sequence(REFERENCED_IMAGES, [_ref_item(element(0x00181030, "UN", text("PLEXUS")))]), False),
    "IS that pydicom cannot convert": (sequence(REFERENCED_IMAGES, [_ref_item(element(0x00200013, "IS", b"1e99"))]),
                                       False),
    "US of odd length": (sequence(REFERENCED_IMAGES, [_ref_item(element(0x00280010, "US", b"\x01\x00\x02"))]), False),
    "SV of a wrong length": (sequence(REFERENCED_IMAGES, [_ref_item(element(0x00111001, "SV", b"\x01" * 12))]), False),
    "unknown VR": (sequence(REFERENCED_IMAGES, [_ref_item(struct.pack("<HH2sH", 0x0018, 0x1030, b"ZZ", 2) + b"AB")]),
                   False),
    "a DICOMDIR's records in an image": (sequence(0x00041220, [_ref_item()]), False),
    "OB undefined length in an item": (sequence(REFERENCED_IMAGES, [_ref_item(
        element(0x00091012, "OB", b"", length=UNDEFINED))]), False),
}


def check_sequence_case(tag: int, encoded: bytes, accepted: bool, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> object:
    """Write a header with ``encoded`` as element ``tag``; require that the compiled skimmer took the
    sequence itself (``accepted``) or left it to the Python walk, and that both walks agree on the whole
    file and on it cut short at every fourth byte of the sequence. Returns the whole file's outcome."""
    walked: list[int] = []  # sequences the Python walk walked itself
    real = fastheaders._Walker.sequence

    def counting(self: fastheaders._Walker, *args: Any) -> int:
        walked.append(args[0])
        return real(self, *args)

    elements = base_elements()
    elements[tag] = encoded
    path = write(tmp_path / "a.dcm", elements)
    with monkeypatch.context() as patch:
        patch.setattr(fastheaders._Walker, "sequence", counting)
        compiled = outcome(str(path))
    if accepted:
        assert not walked, walked  # the skimmer took it itself
        assert compiled == read_file_pydicom(path)
    else:
        assert walked or isinstance(compiled, str), compiled  # left to the Python walk, which judged it
    assert compiled == both_walks(str(path), monkeypatch)[1]
    whole = path.read_bytes()
    start = whole.find(encoded)
    for cut in range(start + 1, start + len(encoded), 4):  # truncated inside the sequence
        path.write_bytes(whole[:cut])
        compiled_cut, python_cut = both_walks(str(path), monkeypatch)
        assert compiled_cut == python_cut, cut
    return compiled


@pytest.mark.parametrize("case", list(SEQUENCE_CASES))
def test_sequences_nothing_is_kept_from(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case as the whole sequence and cut short at every fourth byte: both walks agree."""
    if fastheaders._SKIM_SEQUENCE is None:
        pytest.skip("protocolcheck._skim is not built")
    encoded, accepted = SEQUENCE_CASES[case]
    check_sequence_case(REFERENCED_IMAGES, encoded, accepted, tmp_path, monkeypatch)


# ------------------------------------------------------------ sequences whose items are kept

PROCEDURE_CODES = 0x00081032  # Procedure Code Sequence: each item's Code Value / Meaning are kept
CODE_VALUE, CODE_MEANING = 0x00080100, 0x00080104


def _code(value: str = "MRPLEX", extra: bytes = b"", undefined: bool = False) -> bytes:
    return item(element(CODE_VALUE, "SH", text(value)) + element(0x00080102, "SH", text("L"))
                + element(CODE_MEANING, "LO", text("MR lumbosacral plexus")) + extra, undefined)


KEPT_CASES: dict[str, tuple[bytes, bool]] = {
    # name: (the sequence as written, whether the compiled skimmer must take it itself)
    "two items": (sequence(PROCEDURE_CODES, [_code(), _code("MRPLEXC")]), True),
    "undefined lengths": (sequence(PROCEDURE_CODES, [_code(undefined=True)], undefined=True), True),
    "empty item": (sequence(PROCEDURE_CODES, [item(b""), _code()]), True),
    "long VR value kept": (sequence(PROCEDURE_CODES, [item(element(CODE_VALUE, "UC", text("MRPLEX"))
                                                           + element(CODE_MEANING, "UT", text("plexus " * 20)))]),
                           True),
    "nested sequence skipped": (sequence(PROCEDURE_CODES, [_code(extra=_nested(3))]), True),
    "private element skipped": (sequence(PROCEDURE_CODES, [_code(extra=element(0x00091001, "LO", text("x")))]), True),
    "private creator in the item": (sequence(PROCEDURE_CODES, [_code(extra=element(0x00090010, "LO", text("ACME")))]),
                                    False),
    "character set in the item": (sequence(PROCEDURE_CODES, [item(element(0x00080005, "CS", text("ISO_IR 100"))
                                                                  + element(CODE_VALUE, "SH", text("X")))]), False),
    "kept value as UN": (sequence(PROCEDURE_CODES, [item(element(CODE_VALUE, "UN", text("MRPLEX")))]), False),
    "kept value as a sequence": (sequence(PROCEDURE_CODES, [item(sequence(CODE_VALUE, [_code()]))]), False),
    "kept IS that pydicom cannot convert": (sequence(PROCEDURE_CODES,
                                                     [_code(extra=element(0x00200013, "IS", b"1e99"))]),
                                            False),
    "item overruns the sequence": (element(PROCEDURE_CODES, "SQ", _code(), length=len(_code()) - 4), False),
}


@pytest.mark.parametrize("case", list(KEPT_CASES))
def test_sequences_whose_items_are_kept(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case whole and cut short at every fourth byte: both walks agree, and agree with pydicom."""
    if fastheaders._SKIM_ITEMS is None:
        pytest.skip("protocolcheck._skim is not built")
    encoded, accepted = KEPT_CASES[case]
    compiled = check_sequence_case(PROCEDURE_CODES, encoded, accepted, tmp_path, monkeypatch)
    if accepted:
        assert compiled[0].procedure_codes  # and the codes were kept
