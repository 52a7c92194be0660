"""Property tests (hypothesis) for the readers: whatever the input, a result or a clear problem.

Bounded and deterministic (``derandomize=True``, small ``max_examples``) so that CI cannot flake and
the file runs in seconds; the open-ended search is ``python -m fuzz.run`` (see fuzz/run.py).

* header records with any value the reader can produce (finite numbers of any sign and size,
  degenerate orientations, odd text) go through grouping, classification and the audit without
  raising, and the output is strict JSON (no NaN);
* geometry on any six finite numbers gives a unit normal or "unknown", never an exception;
* DICOM bytes edited at random (truncated, overwritten, inserted) always give records or an
  Unreadable naming the file, and the lean reader never raises;
* a protocol file with any value at any key is problems or a protocol, never an exception;
* a context CSV of arbitrary text is a table or a ContextError.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from protocolcheck.audit.engine import AuditOptions, audit_records
from protocolcheck.classify import classify_study
from protocolcheck.clinical.context import ContextError, load_context_csv
from protocolcheck.clinical.findings import Status
from protocolcheck.clinical.library import load_library, load_protocol_file
from protocolcheck.dicom.geometry import angle_between, obliquity_deg, plane_of, slice_normal
from protocolcheck.dicom.lean import read_fast
from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import scan_file
from protocolcheck.dicom.study import group_studies

REPO = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=40, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

numbers = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0.0, -1.0, -0.0, 1e308, -1e308, 5e-324, 150.0, 2000.0, 3.0]))
texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=24)
tokens = st.lists(st.sampled_from(["ORIGINAL", "PRIMARY", "DERIVED", "SECONDARY", "M", "W", "F", "IP", "OP",
                                   "FS", "SFS", "WE", "SE", "IR", "GR", "EP", "SK", "SP", "MP", "DIXON", "MPR",
                                   "LOCALIZER", "", "FSA_GEMS", "SAT_GEMS"]) | texts, max_size=5).map(tuple)
orientations = st.one_of(
    st.none(),
    st.tuples(*[st.floats(-2, 2, allow_nan=False)] * 6),
    st.sampled_from([(0.0,) * 6, (1.0, 0.0, 0.0, 1.0, 0.0, 0.0), (1e-300, 0.0, 0.0, 0.0, 1e-300, 0.0),
                     (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)]),
    st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * 6),
)


@st.composite
def headers(draw: Any, study: str = "1.2.3") -> InstanceHeader:
    series = draw(st.sampled_from(["1.2.3.1", "1.2.3.2", "1.2.3.3"]))
    return InstanceHeader(
        path=f"/x/{draw(st.integers(0, 10_000))}.dcm", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        sop_instance_uid=draw(texts), study_instance_uid=study, series_instance_uid=series,
        modality=draw(st.sampled_from(["MR", "CT", "", "OT"])),
        manufacturer=draw(st.sampled_from(["SIEMENS", "GE MEDICAL SYSTEMS", "Philips", "CANON_MEC", "", "Hitachi"])
                          | texts),
        field_strength=draw(numbers), accession_number=draw(texts),
        study_date=draw(st.sampled_from(["20250101", "", "2025", "99999999"]) | texts),
        study_time=draw(texts), series_time=draw(texts), acquisition_time=draw(texts),
        series_number=draw(st.none() | st.integers(-2**63, 2**63)),
        instance_number=draw(st.none() | st.integers(-10, 10)),
        series_description=draw(st.sampled_from(["t1_tse_cor", "STIR", "T2 FS post gad", "Series 5", ""]) | texts),
        protocol_name=draw(texts), image_type=draw(tokens), scanning_sequence=draw(tokens),
        sequence_variant=draw(tokens), scan_options=draw(tokens),
        sequence_name=draw(st.sampled_from(["*tse2d1_15", "*tir2d1_13", "fl3d1", ""]) | texts),
        vendor_sequence=draw(texts), mr_acquisition_type=draw(st.sampled_from(["2D", "3D", ""]) | texts),
        repetition_time=draw(numbers), echo_time=draw(numbers), inversion_time=draw(numbers), flip_angle=draw(numbers),
        echo_train_length=draw(numbers), slice_thickness=draw(numbers), spacing_between_slices=draw(numbers),
        image_orientation=draw(orientations), diffusion_b_value=draw(numbers),
        contrast_agent=draw(st.sampled_from(["", "Gadovist", "ADMINISTERED"]) | texts),
        contrast_start_time=draw(texts), frames=draw(st.integers(-5, 500)),
        spectrally_selected_suppression=draw(st.sampled_from(["", "FAT", "WATER", "NONE"])),
        inversion_recovery=draw(st.sampled_from(["", "YES", "NO"])),
        vendor_scan_options=draw(tokens), enhanced=draw(st.booleans()),
    )


def _no_nan(value: Any) -> None:
    json.dumps(value, allow_nan=False, default=str)


@pytest.fixture(scope="module")
def library() -> Any:
    return load_library(None)


@FAST
@given(st.lists(headers(), min_size=1, max_size=8))
def test_classifier_and_audit_take_any_reader_value(library: Any, records: list[InstanceHeader]) -> None:
    studies = list(group_studies(records))
    classes = [c for s in studies for c in classify_study(s)]
    assert {(c.study_instance_uid, c.series_instance_uid) for c in classes} == \
        {(h.study_instance_uid, h.series_instance_uid) for h in records}
    _no_nan([c.to_dict() for c in classes])
    results = list(audit_records(records, AuditOptions(library=library)))
    assert len(results) == 1 and results[0].status in set(Status)
    _no_nan([r.to_dict() for r in results])


@FAST
@given(st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * 6), orientations)
def test_geometry_is_a_unit_normal_or_unknown(a: tuple[float, ...], b: tuple[float, ...] | None) -> None:
    n1, n2 = slice_normal(a), slice_normal(b)
    for n in (n1, n2):
        if n is not None:
            assert all(math.isfinite(c) for c in n) and abs(math.hypot(*n) - 1) < 1e-6
            obliquity = obliquity_deg(n)
            assert plane_of(n) is not None and obliquity is not None and 0 <= obliquity <= 55
        else:
            assert plane_of(n) is None and obliquity_deg(n) is None
    angle = angle_between(n1, n2)
    assert angle is None or 0 <= angle <= 90


SEED_FILES = [get_testdata_file(n, download=False) for n in ("MR_small.dcm", "MR_small_implicit.dcm",
                                                                   "MR_small_bigendian.dcm")]
SEED_FILES += [str(p) for p in sorted((REPO / "sample_dicom" / "03_philips_plexus_no_post").glob("*.dcm"))[:1]]
edits = st.lists(st.tuples(st.sampled_from(["cut", "overwrite", "insert", "length"]), st.integers(0, 20_000),
                           st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


def _apply(data: bytes, plan: list[tuple[str, int, bytes]]) -> bytes:
    for action, where, blob in plan:
        pos = where % (len(data) + 1)
        if action == "cut":
            data = data[:pos]
        elif action == "overwrite":
            data = data[:pos] + blob + data[pos + len(blob):]
        elif action == "insert":
            data = data[:pos] + blob + data[pos:]
        else:  # a 32-bit length-looking field set to a huge value
            data = data[:pos] + struct.pack("<L", 0xFFFFFFF0 - len(blob)) + data[pos + 4:]
    return data


@FAST
@given(st.sampled_from(SEED_FILES), edits)
def test_edited_dicom_bytes_give_records_or_an_unreadable_naming_the_file(tmp_path: Path, seed: str,
                                                                          plan: list[tuple[str, int, bytes]]) -> None:
    path = tmp_path / "edited.dcm"
    path.write_bytes(_apply(Path(seed).read_bytes(), plan))
    records = scan_file(str(path))
    assert records and all(isinstance(r, (InstanceHeader, Unreadable, Skipped)) and r.path == str(path)
                           for r in records)
    for r in records:
        if isinstance(r, InstanceHeader):
            for name in ("repetition_time", "echo_time", "inversion_time", "field_strength"):
                value = getattr(r, name)
                assert value is None or math.isfinite(value)
            assert r.image_orientation is None or len(r.image_orientation) == 6
        elif isinstance(r, Unreadable):
            assert r.reason and "MemoryError" not in r.reason
    read_fast(str(path))  # never raises


SHIPPED = yaml.safe_load((REPO / "protocols" / "mr-lumbosacral-plexus-wwo.yaml").read_text(encoding="utf-8"))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | texts,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                           max_leaves=6)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


PROTOCOL_PATHS = _paths(SHIPPED)[1:]


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = json.loads(json.dumps(data, default=str))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@settings(FAST, max_examples=15)
@given(st.lists(st.tuples(st.sampled_from(PROTOCOL_PATHS), json_values), min_size=1, max_size=3))
def test_protocol_file_with_any_value_anywhere_is_problems_or_a_protocol(tmp_path: Path, changes: list[Any]) -> None:
    data = SHIPPED
    for path, value in changes:
        try:
            data = _set(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    file = tmp_path / "mr-lumbosacral-plexus-wwo.yaml"
    file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = load_protocol_file(file)
    outcomes = [result.protocol is not None, bool(result.problems), bool(result.skipped)]
    assert outcomes.count(True) == 1, result  # a protocol, or problems, or skipped as not a protocol
    assert all(isinstance(p, str) and str(file) in p for p in result.problems)


csv_cells = st.sampled_from(["", "yes", "no", "maybe", "nan", "inf", "-1", "1e999", "2026-02-30", "2026-01-01",
                             "\"", "a,b", "G54.1", "ä€", "\x00", "201"]) | texts
csv_rows = st.lists(st.lists(csv_cells, max_size=8), max_size=6)
csv_headers = st.lists(st.sampled_from(["accession_number", "study_instance_uid", "trauma_date", "indication",
                                        "egfr", "dermatomal", "mri_contraindicated", "x", ""]), max_size=8)


@FAST
@given(csv_headers, csv_rows, st.sampled_from([",", ";", "\t"]), st.binary(max_size=4))
def test_context_csv_of_any_text_is_a_table_or_a_context_error(tmp_path: Path, header: list[str],
                                                                rows: list[list[str]], sep: str, junk: bytes) -> None:
    text = "\n".join(sep.join(cells) for cells in [header, *rows])
    file = tmp_path / "context.csv"
    file.write_bytes(text.encode("utf-8", "surrogatepass") + junk)
    try:
        table = load_context_csv(file)
    except ContextError as exc:
        assert exc.problems and all(str(file) in p for p in exc.problems)
        return
    for context in [*table.by_accession.values(), *table.by_study_uid.values()]:
        assert context.egfr is None or 0 <= context.egfr <= 200


def test_headers_strategy_builds_records() -> None:
    # guard: the strategy must keep up with InstanceHeader (a renamed field would silently skip tests)
    names = {f.name for f in dataclasses.fields(InstanceHeader)}
    assert {"repetition_time", "image_orientation", "vendor_scan_options", "frames"} <= names
