"""protocolcheck.headers on real files (pydicom's test data) and synth files, good and bad."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import iter_files, read_file, scan
from protocolcheck.testing import synth
from protocolcheck.testing.synth import Kind, SeriesSpec, StudySpec, Syntax, Vendor


def _testdata(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available offline")
    return Path(path)


def _headers(records: list) -> list[InstanceHeader]:
    return [r for r in records if isinstance(r, InstanceHeader)]


def _one(path: Path) -> InstanceHeader | Unreadable | Skipped:
    records = list(scan([path]))
    assert len(records) == 1, records
    return records[0]


# ------------------------------------------------------------------------------ encodings


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm"]
)
def test_pydicom_mr_small_in_every_encoding_reads_the_same(name: str) -> None:
    record = _one(_testdata(name))
    assert isinstance(record, InstanceHeader)
    assert record.modality == "MR" and record.manufacturer == "TOSHIBA_MEC"
    assert record.repetition_time == 4000.0 and record.echo_time == 240.0
    assert record.image_orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert record.rows == 64 and record.pixel_spacing == (0.3125, 0.3125)
    assert record.value_problems == () and not record.enhanced and record.frames == 1


def test_ct_small_and_deflated_file() -> None:
    ct = _one(_testdata("CT_small.dcm"))
    assert isinstance(ct, InstanceHeader) and ct.modality == "CT" and ct.kvp == 120.0
    deflated = _one(_testdata("image_dfl.dcm"))
    assert isinstance(deflated, InstanceHeader) and deflated.study_instance_uid


@pytest.mark.parametrize("syntax", list(Syntax))
def test_synth_transfer_syntaxes(syntax: Syntax, tmp_path: Path) -> None:
    spec = StudySpec(Vendor.GE, "ENC1", (SeriesSpec(Kind.STIR, "coronal", 25.0, slices=2),), syntax=syntax,
                     field_strength=1.5)
    records = _headers(list(scan([synth.write_study(spec, tmp_path)[0].parent])))
    assert len(records) == 2
    r = records[0]
    assert r.inversion_time == 160.0 and r.scan_options[0] == "IR_GEMS" and "FSS_GEMS" in r.scan_options
    assert r.vendor_sequence == "fsirm" and r.scanning_sequence == ("SE", "IR")
    assert r.image_orientation is not None and r.field_strength == 1.5
    assert r.accession_number == "ENC1" and r.procedure_codes == ()


@pytest.mark.parametrize("syntax", [Syntax.EXPLICIT_LE, Syntax.IMPLICIT_LE, Syntax.EXPLICIT_BE])
def test_files_without_preamble_or_file_meta(syntax: Syntax, tmp_path: Path) -> None:
    spec = StudySpec(Vendor.PHILIPS, "RAW1", (SeriesSpec(Kind.T2_FS, "axial", slices=1),), syntax=syntax,
                     file_meta=False)
    path = synth.write_study(spec, tmp_path)[0]
    assert path.read_bytes()[128:132] != b"DICM"
    record = _one(path)
    assert isinstance(record, InstanceHeader)
    assert record.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4"  # from the dataset, there is no file meta
    assert record.philips_spir == "Y" and record.vendor_sequence == "TSE" and record.echo_time == 95.0


def test_pydicom_files_without_file_meta_are_parsed() -> None:
    # RT objects without meta: parsed (so their SOP class is known) and skipped as non-images
    for name in ("ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm"):
        record = _one(_testdata(name))
        assert isinstance(record, Skipped) and "1.2.840.10008.5.1.4.1.1.481" in record.reason


# ------------------------------------------------------------------------------ enhanced MR


def test_enhanced_mr_is_flattened_into_stacks(tmp_path: Path) -> None:
    synth.write_study(synth.plexus_study(Vendor.SIEMENS_XA, "ENH1", slices=4), tmp_path)
    records = _headers(list(scan([tmp_path])))
    assert all(r.enhanced for r in records)
    by_name: dict[str, list[InstanceHeader]] = {}
    for r in records:
        by_name.setdefault(r.series_description, []).append(r)
    localizer = by_name["localizer"]
    assert len(localizer) == 3 and len({r.image_orientation for r in localizer}) == 3  # per-frame orientations
    stir = by_name["t2_tirm_cor_obl_stir"]
    assert len(stir) == 1 and stir[0].frames == 4
    s = stir[0]
    assert s.pulse_sequence_name == "*tir2d1_15" and s.sequence_name == ""
    assert s.repetition_time == 5000.0 and s.echo_time == 60.0 and s.inversion_time == 220.0
    assert s.inversion_recovery == "YES" and s.acquisition_contrast == "T2"
    assert s.frame_type == ("ORIGINAL", "PRIMARY", "M", "NONE") and s.image_type[:2] == ("ORIGINAL", "PRIMARY")
    assert s.slice_thickness == 4.0 and s.pixel_spacing is not None and s.image_orientation is not None
    assert s.vendor_scan_options == ("IR", "PFP")  # from the shared group's SDS private sequence
    assert s.acquisition_time and s.acquisition_date == "20250314"  # from AcquisitionDateTime
    fs = by_name["t2_tse_fs_tra_obl"][0]
    assert fs.spectrally_selected_suppression == "FAT" and fs.inversion_recovery == "NO"
    post = by_name["t1_tse_fs_cor_obl_post"][0]
    assert post.contrast_agent  # Contrast/Bolus Usage: administered


def test_pydicom_enhanced_mr_if_available() -> None:
    path = get_testdata_file("emri_small.dcm", download=False)
    if path is None:
        pytest.skip("emri_small.dcm not bundled with this pydicom")
    records = _headers(list(scan([path])))
    assert records and all(r.enhanced for r in records)
    assert sum(r.frames for r in records) == int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)


# -------------------------------------------------------------------------- skipped and bad files


def test_dicomdir_and_structured_reports_are_skipped() -> None:
    dicomdir = _one(_testdata("dicomdirtests/DICOMDIR"))
    assert isinstance(dicomdir, Skipped) and "DICOMDIR" in dicomdir.reason
    for name in ("test-SR.dcm", "reportsi.dcm"):
        record = _one(_testdata(name))
        assert isinstance(record, Skipped) and "1.2.840.10008.5.1.4.1.1.88." in record.reason


def test_siemens_csa_non_image_objects_are_skipped(tmp_path: Path) -> None:
    """Siemens writes raw spectroscopy/protocol data as private CSA Non-Image Storage: not a series."""
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.3.12.2.1107.5.9.1"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3", "1.2.3.4", "MR"
    path = tmp_path / "csa.dcm"
    ds.save_as(path, enforce_file_format=True)
    record = _one(path)
    assert isinstance(record, Skipped) and "1.3.12.2.1107.5.9.1" in record.reason


def test_not_dicom_zero_byte_garbage_and_documentation(tmp_path: Path) -> None:
    (tmp_path / "export.dcm").write_text("This is a scanner log, not DICOM.\n", encoding="utf-8")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "noise.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "fake_marker.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 300)
    (tmp_path / "README.md").write_text("# notes\n", encoding="utf-8")
    (tmp_path / ".hidden.dcm").write_text("ignored", encoding="utf-8")
    records = {Path(r.path).name: r for r in scan([tmp_path])}
    assert set(records) == {"export.dcm", "empty.dcm", "noise.bin", "fake_marker.dcm", "README.md"}
    assert isinstance(records["export.dcm"], Unreadable) and "not a DICOM file" in records["export.dcm"].reason
    assert isinstance(records["empty.dcm"], Unreadable) and "0 bytes" in records["empty.dcm"].reason
    assert isinstance(records["noise.bin"], Unreadable)
    assert isinstance(records["fake_marker.dcm"], Unreadable)
    assert isinstance(records["README.md"], Skipped)


def test_file_cut_inside_the_header_is_unreadable_not_a_partial_record(tmp_path: Path) -> None:
    good = synth.write_study(synth.plexus_study(Vendor.SIEMENS, "CUT1", slices=1), tmp_path / "src")[1]
    data = good.read_bytes()
    # cut at many places inside the header: never a record, never an exception
    for cut in (10, 131, 200, 700, 1000, 1400):
        path = tmp_path / f"cut_{cut}.dcm"
        path.write_bytes(data[:cut])
        record = _one(path)
        assert isinstance(record, Unreadable), (cut, record)
    # cut inside a text value: the reason says the file is truncated and where
    inside = data.index(b"SAMPLE HOSPITAL") + 5
    (tmp_path / "cut_value.dcm").write_bytes(data[:inside])
    record = _one(tmp_path / "cut_value.dcm")
    assert isinstance(record, Unreadable) and "truncated" in record.reason and "(0008,0080)" in record.reason


def test_truncated_pixel_data_is_a_value_problem() -> None:
    record = _one(_testdata("MR_truncated.dcm"))
    assert isinstance(record, InstanceHeader)  # the header is complete and usable
    assert any(p.startswith("PixelData: truncated") for p in record.value_problems)


def test_truncated_rt_plan_is_unreadable() -> None:
    record = _one(_testdata("rtplan_truncated.dcm"))
    assert isinstance(record, Unreadable) and "truncated" in record.reason


def test_missing_uids_are_unreadable_with_reason() -> None:
    record = _one(_testdata("empty_charset_LEI.dcm"))
    assert isinstance(record, Unreadable) and "Study and Series Instance UID" in record.reason


def test_garbage_values_become_none_and_value_problems(tmp_path: Path) -> None:
    overrides = (
        ("RepetitionTime", "abc"),
        ("EchoTime", "nan"),
        ("FlipAngle", "1e999"),
        ("InversionTime", "12,5"),
        ("MagneticFieldStrength", "3T"),
        ("SeriesNumber", "x1"),
        ("InstanceNumber", "2.5"),
        ("PixelSpacing", ["a", "b"]),
        ("ImageOrientationPatient", ["1", "0", "0", "0", "1"]),
        ("ImagePositionPatient", ["1", "2"]),
    )
    spec = StudySpec(Vendor.SIEMENS, "BAD1", (SeriesSpec(Kind.T1_TSE, slices=1, overrides=overrides),))
    record = _one(synth.write_study(spec, tmp_path)[0])
    assert isinstance(record, InstanceHeader)
    for field in ("repetition_time", "echo_time", "flip_angle", "inversion_time", "field_strength",
                  "series_number", "instance_number", "pixel_spacing", "image_orientation", "image_position"):
        assert getattr(record, field) is None, field
    problems = " | ".join(record.value_problems)
    for keyword in ("RepetitionTime", "EchoTime", "FlipAngle", "InversionTime", "MagneticFieldStrength",
                    "SeriesNumber", "InstanceNumber", "PixelSpacing", "ImageOrientationPatient",
                    "ImagePositionPatient"):
        assert keyword in problems, keyword
    assert record.echo_train_length == 3.0 and record.scan_options == ("PFP",)  # the rest still read


def test_omitted_elements_are_empty_not_guessed(tmp_path: Path) -> None:
    series = SeriesSpec(Kind.T2_TSE, slices=1, omit=("ImageOrientationPatient", "ScanOptions", "SequenceName",
                                                     "MagneticFieldStrength"))
    record = _one(synth.write_study(StudySpec(Vendor.SIEMENS, "OM1", (series,)), tmp_path)[0])
    assert isinstance(record, InstanceHeader)
    assert record.image_orientation is None and record.scan_options == () and record.sequence_name == ""
    assert record.field_strength is None and record.value_problems == ()


def test_scan_never_raises_on_a_mixed_folder(tmp_path: Path, sample_dir: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(sample_dir, folder)
    for name in ("MR_small.dcm", "test-SR.dcm", "MR_truncated.dcm", "rtplan_truncated.dcm", "UN_sequence.dcm",
                 "meta_missing_tsyntax.dcm", "no_meta.dcm", "badVR.dcm", "JPEG2000.dcm", "waveform_ecg.dcm"):
        path = get_testdata_file(name, download=False)
        if path is not None:
            shutil.copy(path, folder / f"pydicom_{name}")
    (folder / "zero.dcm").write_bytes(b"")
    records = list(scan([folder]))
    files = list(iter_files([folder]))
    assert len({r.path for r in records}) == len(files)
    unreadable = {Path(r.path).name for r in records if isinstance(r, Unreadable)}
    assert {"truncated.dcm", "not_dicom.dcm", "zero.dcm", "pydicom_rtplan_truncated.dcm"} <= unreadable
    assert all(r.reason for r in records if isinstance(r, (Unreadable, Skipped)))


def test_sample_dicom_reads_cleanly(sample_dir: Path) -> None:
    records = list(scan([sample_dir]))
    unreadable = sorted(Path(r.path).name for r in records if isinstance(r, Unreadable))
    assert unreadable == ["not_dicom.dcm", "truncated.dcm"]
    headers = _headers(records)
    assert all(h.value_problems == () for h in headers)
    assert len({h.study_instance_uid for h in headers}) == 10
    assert {h.manufacturer for h in headers} >= {"SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems",
                                                  "Siemens Healthineers", "CANON_MEC", "UIH",
                                                  "Hitachi Medical Corporation"}


def test_read_file_contract(tmp_path: Path) -> None:
    path = synth.write_study(StudySpec(Vendor.UIH, "RF1", (SeriesSpec(Kind.T1_FS_POST, slices=1),)), tmp_path)[0]
    result = read_file(path)
    assert isinstance(result, list) and len(result) == 1 and result[0].contrast_agent == "Gadavist"
    with pytest.raises(ValueError, match="cannot open"):
        read_file(tmp_path / "missing.dcm")
    with pytest.raises(FileNotFoundError):
        list(iter_files([tmp_path / "no-such-folder"]))


def test_unreadable_permissions_do_not_raise(tmp_path: Path) -> None:
    path = synth.write_study(StudySpec(Vendor.UIH, "PERM1", (SeriesSpec(Kind.T1_TSE, slices=1),)), tmp_path)[0]
    os.chmod(path, 0)
    try:
        records = list(scan([tmp_path]))
    finally:
        os.chmod(path, 0o644)
    assert len(records) == 1  # root may still read it; otherwise it is Unreadable, never an exception


def test_records_pickle_to_equal_records(tmp_path: Path) -> None:
    """Records cross process boundaries (parallel scans, spilled study runs) by their own __reduce__."""
    import dataclasses
    import pickle

    from protocolcheck.dicom.reader import read_file_pydicom

    paths = synth.write_study(synth.varied_studies(2, slices=1)[1], tmp_path / "s")
    records = [r for p in paths for r in read_file(p)] + [r for p in paths[:2] for r in read_file_pydicom(p)]
    records.append(dataclasses.replace(records[0], value_problems=("TR: 'abc' is not a number",), frames=3))
    for record in records:
        back = pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == record and back.__dict__ == record.__dict__ and hash(back) == hash(record)
        assert list(back.__dict__) == [f.name for f in dataclasses.fields(InstanceHeader)]
