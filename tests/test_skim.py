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

import pytest

from benchmarks.run import enrich
from protocolcheck import fastheaders, synth
from protocolcheck.headers import read_file_pydicom

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
                synth._write(ds, path, syntax, True)
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


def _mutations(data: bytes, rng: random.Random, start: int) -> bytes:
    """One seeded corruption of the dataset part of a file: the kinds of damage the fuzzers found useful."""
    out = bytearray(data)
    kind = rng.randrange(6)
    at = rng.randrange(start, len(out) - 8)
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
    from protocolcheck import _skim  # type: ignore[attr-defined]

    tables = list(fastheaders._skim_tables())
    for index, bad in ((0, b"\x00" * 10), (2, b"\x00" * 5), (3, b"\x00" * 33), (4, b"\x00" * 6)):
        broken = list(tables)
        broken[index] = bad
        with pytest.raises(ValueError, match="wrong size"):
            _skim.configure(*broken)
    with pytest.raises(ValueError, match="differ in length"):
        _skim.configure(*tables[:7], tables[7][:-1], tables[8])
    with pytest.raises(TypeError):
        _skim.explicit("not bytes", 0, 0, 0, None)
    with pytest.raises(TypeError, match="out must be a dict"):
        _skim.explicit(b"", 0, 0, 0, [])
    with pytest.raises(ValueError, match="negative"):
        _skim.implicit(b"", -1, 0, None)
    assert fastheaders._read(str(vendor_files[0])) == read_file_pydicom(vendor_files[0])  # tables unchanged
