"""protocolcheck.synth writes deterministic, vendor-realistic DICOM; read back with pydicom."""

from __future__ import annotations

import csv
import filecmp
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)

from protocolcheck.dicom import geometry
from protocolcheck.testing import synth
from protocolcheck.testing.synth import Kind, SeriesSpec, StudySpec, Syntax, Vendor

REPO = Path(__file__).resolve().parent.parent


def _read_all(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def _by_description(datasets: list[pydicom.Dataset]) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {}
    for ds in datasets:
        out.setdefault(str(ds.SeriesDescription), []).append(ds)
    return out


def _tokens(value: object) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [str(v) for v in value]
    return str(value).split("\\")


def _private(ds: pydicom.Dataset, group: int, creator: str, offset: int) -> str:
    return str(ds.private_block(group, creator)[offset].value).strip()


# ----------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("vendor", list(Vendor))
def test_same_spec_gives_byte_identical_files(vendor: Vendor, tmp_path: Path) -> None:
    spec = synth.plexus_study(vendor, "DET1", slices=2)
    first = synth.write_study(spec, tmp_path / "a")
    second = synth.write_study(spec, tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(first, second, strict=True))


def test_uids_are_stable_unique_and_grouped(tmp_path: Path) -> None:
    spec = synth.plexus_study(Vendor.SIEMENS, "UID1")
    datasets = _read_all(tmp_path) if synth.write_study(spec, tmp_path) else []
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == len(spec.series)
    assert all(str(ds.SOPInstanceUID).startswith("2.25.") for ds in datasets)
    other = _read_all(tmp_path / "x") if synth.write_study(replace(spec, accession="UID2"), tmp_path / "x") else []
    assert other[0].StudyInstanceUID != datasets[0].StudyInstanceUID
    assert synth.uid("a", 1) == synth.uid("a", 1) != synth.uid("a", 2)


def test_files_are_small_and_fake_patient(tmp_path: Path) -> None:
    for vendor in Vendor:
        for path in synth.write_study(synth.plexus_study(vendor, f"SZ{vendor.name[:3]}"), tmp_path / vendor.value):
            assert path.stat().st_size < 6 * 1024, path
    ds = pydicom.dcmread(next((tmp_path / "ge").glob("*.dcm")))
    assert str(ds.PatientName) == "SAMPLE^GE"


# ------------------------------------------------------------------------------- file formats


@pytest.mark.parametrize(
    ("syntax", "uid"),
    [
        (Syntax.EXPLICIT_LE, ExplicitVRLittleEndian),
        (Syntax.IMPLICIT_LE, ImplicitVRLittleEndian),
        (Syntax.EXPLICIT_BE, ExplicitVRBigEndian),
        (Syntax.DEFLATED, DeflatedExplicitVRLittleEndian),
    ],
)
def test_transfer_syntaxes_round_trip(syntax: Syntax, uid: str, tmp_path: Path) -> None:
    spec = StudySpec(Vendor.SIEMENS, "TS1", (SeriesSpec(Kind.T2_TSE, "axial", slices=1),), syntax=syntax)
    path = synth.write_study(spec, tmp_path)[0]
    raw = path.read_bytes()
    assert raw[:128] == b"\x00" * 128 and raw[128:132] == b"DICM"
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == uid
    assert float(ds.RepetitionTime) == 4500.0
    assert ds.pixel_array.shape == (32, 32)
    assert int(ds.pixel_array[16, 16]) > int(ds.pixel_array[0, 0])  # the phantom disc survives byte order


@pytest.mark.parametrize("syntax", [Syntax.EXPLICIT_LE, Syntax.IMPLICIT_LE, Syntax.EXPLICIT_BE])
def test_without_file_meta_has_no_preamble(syntax: Syntax, tmp_path: Path) -> None:
    spec = StudySpec(Vendor.GE, "NM1", (SeriesSpec(Kind.T1_TSE, "coronal", slices=1),), syntax=syntax, file_meta=False)
    path = synth.write_study(spec, tmp_path)[0]
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(path)
    ds = pydicom.dcmread(path, force=True)
    assert ds.SOPClassUID == MRImageStorage and float(ds.EchoTime) == 10.0  # 3 T T1 TSE


def test_deflated_without_meta_is_refused(tmp_path: Path) -> None:
    spec = StudySpec(Vendor.GE, "NM2", (SeriesSpec(Kind.T1_TSE),), syntax=Syntax.DEFLATED, file_meta=False)
    with pytest.raises(ValueError, match="deflated"):
        synth.write_study(spec, tmp_path)


def test_overrides_write_malformed_values_and_omit_deletes(tmp_path: Path) -> None:
    series = SeriesSpec(Kind.T2_TSE, slices=1, omit=("ScanOptions", "SequenceName"),
                        overrides=(("RepetitionTime", "abc"), ("ImageOrientationPatient", ["1", "0", "0", "0", "1"])))
    path = synth.write_study(StudySpec(Vendor.SIEMENS, "OV1", (series,)), tmp_path)[0]
    raw = path.read_bytes()
    assert b"abc " in raw and b"1\\0\\0\\0\\1" in raw
    ds = pydicom.dcmread(path)
    assert "ScanOptions" not in ds and "SequenceName" not in ds


# --------------------------------------------------------------------------------- geometry


def test_plexus_planes_are_oblique_and_mutually_orthogonal(tmp_path: Path) -> None:
    synth.write_study(synth.plexus_study(Vendor.SIEMENS, "GEO1", tilt_deg=27.0), tmp_path)
    series = _by_description(_read_all(tmp_path))
    cor = series["t1_tse_cor_obl"]
    ax = series["t2_tse_tra_obl"]
    n_cor = geometry.slice_normal([float(v) for v in cor[0].ImageOrientationPatient])
    n_ax = geometry.slice_normal([float(v) for v in ax[0].ImageOrientationPatient])
    assert geometry.plane_of(n_cor) is geometry.Plane.CORONAL
    assert geometry.plane_of(n_ax) is geometry.Plane.AXIAL
    assert geometry.obliquity_deg(n_cor) == pytest.approx(27.0, abs=0.01)
    assert geometry.obliquity_deg(n_ax) == pytest.approx(27.0, abs=0.01)
    assert geometry.angle_between(n_cor, n_ax) == pytest.approx(90.0, abs=0.01)
    # positions step along the normal by Spacing Between Slices
    p0, p1 = (pydicom.multival.MultiValue(float, s.ImagePositionPatient) for s in cor[:2])
    step = sum((b - a) * n for a, b, n in zip(p0, p1, n_cor, strict=True))
    assert step == pytest.approx(float(cor[0].SpacingBetweenSlices), abs=1e-3)
    assert float(cor[0].SpacingBetweenSlices) >= float(cor[0].SliceThickness)


def test_non_oblique_option_gives_true_planes(tmp_path: Path) -> None:
    synth.write_study(synth.plexus_study(Vendor.GE, "GEO2", oblique=False), tmp_path)
    for ds in _read_all(tmp_path):
        normal = geometry.slice_normal([float(v) for v in ds.ImageOrientationPatient])
        assert geometry.obliquity_deg(normal) == pytest.approx(0.0, abs=1e-6)


def test_times_follow_acquisition_order_and_contrast_injection(tmp_path: Path) -> None:
    synth.write_study(synth.plexus_study(Vendor.CANON, "TIME1"), tmp_path)
    firsts = {}
    for ds in _read_all(tmp_path):
        firsts.setdefault(int(ds.SeriesNumber), ds)
    ordered = [firsts[n] for n in sorted(firsts)]
    times = [str(ds.SeriesTime) for ds in ordered]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(str(ds.AcquisitionTime) >= str(ds.SeriesTime) for ds in ordered)
    post = [ds for ds in ordered if ds.ContrastBolusAgent]
    assert post and all(str(ds.ContrastBolusStartTime) < str(ds.SeriesTime) for ds in post)
    assert all(ds.StudyDate == ds.SeriesDate == ds.AcquisitionDate for ds in ordered)


# -------------------------------------------------------------------------- vendor conventions


def test_siemens_classic_conventions(tmp_path: Path) -> None:
    series = synth.plexus_series() + (
        SeriesSpec(Kind.MPRAGE_3D, "sagittal", slices=2),
        SeriesSpec(Kind.SPACE_STIR_3D, "coronal", slices=2),
        SeriesSpec(Kind.DIXON, "axial", slices=1),
    )
    synth.write_study(StudySpec(Vendor.SIEMENS, "SIE1", series, field_strength=3.0), tmp_path)
    s = _by_description(_read_all(tmp_path))
    t1 = s["t1_tse_cor_obl"][0]
    assert t1.Manufacturer == "SIEMENS" and t1.SOPClassUID == MRImageStorage
    assert t1.SequenceName == "*tse2d1_3" and _tokens(t1.ScanningSequence) == ["SE"]
    assert list(t1.ImageType) == ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]
    assert "FS" not in _tokens(t1.ScanOptions)
    assert 650 <= float(t1.RepetitionTime) <= 800 and float(t1.EchoTime) <= 30
    stir = s["t2_tirm_cor_obl_stir"][0]
    assert stir.SequenceName.startswith("*tir2d1_") and 180 <= float(stir.InversionTime) <= 230
    assert "IR" in _tokens(stir.ScanOptions) and "IR" in _tokens(stir.ScanningSequence)
    assert "FS" in _tokens(s["t2_tse_fs_tra_obl"][0].ScanOptions)
    post = s["t1_tse_fs_cor_obl_post"][0]
    assert "FS" in _tokens(post.ScanOptions) and post.ContrastBolusAgent == ""  # Siemens often leaves it empty
    mprage = s["t1_mprage_sag_p2_iso"][0]
    assert mprage.SequenceName == "*tfl3d1_16ns" and mprage.MRAcquisitionType == "3D"
    assert _tokens(mprage.SequenceVariant) == ["SK", "SP", "MP"] and "IR" in _tokens(mprage.ScanOptions)
    assert float(mprage.RepetitionTime) >= 1500
    assert s["t2_spc_stir_cor_p2_iso"][0].SequenceName.startswith("*spcir_")
    water = s["t2_tse_dixon_tra_W"][0]
    assert list(water.ImageType) == ["DERIVED", "PRIMARY", "DIXON", "WATER"]
    assert {"t2_tse_dixon_tra_F", "t2_tse_dixon_tra_in", "t2_tse_dixon_tra_opp"} <= set(s)
    assert len({ds.SeriesInstanceUID for name in s if "dixon" in name for ds in s[name]}) == 4


def test_stir_inversion_time_depends_on_field_strength(tmp_path: Path) -> None:
    for fs, low, high in ((1.5, 140, 170), (3.0, 180, 230)):
        spec = StudySpec(Vendor.GE, f"TI{fs}", (SeriesSpec(Kind.STIR, "coronal", slices=1),), field_strength=fs)
        ds = pydicom.dcmread(synth.write_study(spec, tmp_path / str(fs))[0])
        assert low <= float(ds.InversionTime) <= high
        assert float(ds.MagneticFieldStrength) == fs


def test_ge_conventions(tmp_path: Path) -> None:
    spec = synth.plexus_study(Vendor.GE, "GE1", field_strength=1.5, fluid_fat_suppressed=False)
    spec = replace(spec, series=spec.series + (SeriesSpec(Kind.STIR, "coronal", 25, slices=1),))
    synth.write_study(spec, tmp_path)
    s = _by_description(_read_all(tmp_path))
    t2 = s["AX OBL T2 FSE"][0]
    options = _tokens(t2.ScanOptions)
    assert "FS" not in options and "FSA_GEMS" in options and "SAT_GEMS" in options and "FAST_GEMS" in options
    assert list(t2.ImageType) == ["ORIGINAL", "PRIMARY", "OTHER"]
    assert _private(t2, 0x0019, "GEMS_ACQU_01", 0x9C) == "fse-xl"
    assert t2.ProtocolName == synth.PLEXUS_DESCRIPTION  # GE: exam-level protocol name on every series
    post = s["COR OBL T1 FS +C"][0]
    assert "FS" in _tokens(post.ScanOptions)
    stir = s["COR OBL STIR"][0]
    assert "IR_GEMS" in _tokens(stir.ScanOptions) and _private(stir, 0x0019, "GEMS_ACQU_01", 0x9C) == "fsirm"
    assert 140 <= float(stir.InversionTime) <= 170
    assert float(s["COR OBL T1 FSE"][0].RepetitionTime) < 650  # 1.5 T T1


def test_philips_conventions_and_dixon_in_one_series(tmp_path: Path) -> None:
    synth.write_study(synth.plexus_study(Vendor.PHILIPS, "PH1", dixon=True), tmp_path)
    datasets = _read_all(tmp_path)
    s = _by_description(datasets)
    t1 = s["T1W_TSE_COR"][0]
    assert list(t1.ImageType) == ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"]
    assert _private(t1, 0x2001, "Philips Imaging DD 001", 0x20) == "TSE"
    assert _private(t1, 0x2001, "Philips Imaging DD 001", 0x21) == "N"
    assert int(t1.SeriesNumber) % 100 == 1  # Philips numbers series 101, 201, ...
    dixon = s["T2W_mDIXON_TSE_COR"]
    assert len({ds.SeriesInstanceUID for ds in dixon}) == 1
    kinds = {tuple(ds.ImageType) for ds in dixon}
    assert kinds == {("ORIGINAL", "PRIMARY", o, o, "DIXON") for o in ("W", "F", "IP", "OP")}
    post = s["T1W_mDIXON_TSE_COR_GD"][0]
    assert post.ContrastBolusAgent


def test_philips_spir_and_stir_private_flags(tmp_path: Path) -> None:
    synth.write_study(synth.plexus_study(Vendor.PHILIPS, "PH2", post_contrast=False), tmp_path)
    s = _by_description(_read_all(tmp_path))
    spir = s["T2W_TSE_SPIR_TRA"][0]
    assert _private(spir, 0x2001, "Philips Imaging DD 001", 0x21) == "Y" and "FS" in _tokens(spir.ScanOptions)
    stir = s["STIR_COR"][0]
    assert list(stir.ImageType)[2:] == ["M_IR", "M", "IR"] and _tokens(stir.ScanningSequence) == ["IR"]
    assert _private(stir, 0x2001, "Philips Imaging DD 001", 0x1C) == "INVERSION"


def test_siemens_xa_writes_one_enhanced_object_per_series(tmp_path: Path) -> None:
    paths = synth.write_study(synth.plexus_study(Vendor.SIEMENS_XA, "XA1", slices=4), tmp_path)
    datasets = [pydicom.dcmread(p) for p in paths]
    assert len(datasets) == len(synth.plexus_series())
    assert all(ds.SOPClassUID == EnhancedMRImageStorage for ds in datasets)
    s = _by_description(datasets)
    stir = s["t2_tirm_cor_obl_stir"][0]
    assert int(stir.NumberOfFrames) == 4 and len(stir.PerFrameFunctionalGroupsSequence) == 4
    assert stir.PulseSequenceName == "*tir2d1_15" and "SequenceName" not in stir
    shared = stir.SharedFunctionalGroupsSequence[0]
    assert shared.MRModifierSequence[0].InversionRecovery == "YES"
    assert 180 <= float(_tokens(shared.MRModifierSequence[0].InversionTimes)[0]) <= 230
    assert s["t2_tse_fs_tra_obl"][0].SpectrallySelectedSuppression == "FAT"
    assert s["t2_tse_tra_obl"][0].SpectrallySelectedSuppression == "NONE"
    frame = stir.PerFrameFunctionalGroupsSequence[0]
    assert frame.MRImageFrameTypeSequence[0].AcquisitionContrast == "T2"
    assert list(frame.MRImageFrameTypeSequence[0].FrameType) == ["ORIGINAL", "PRIMARY", "M", "NONE"]
    localizer = s["localizer"][0]
    orientations = {tuple(f.PlaneOrientationSequence[0].ImageOrientationPatient)
                    for f in localizer.PerFrameFunctionalGroupsSequence}
    assert len(orientations) == 3
    assert len(stir.pixel_array) == 4


def test_canon_hitachi_uih_headers(tmp_path: Path) -> None:
    for vendor, manufacturer in ((Vendor.CANON, "CANON_MEC"), (Vendor.HITACHI, "Hitachi Medical Corporation"),
                                 (Vendor.UIH, "UIH")):
        synth.write_study(synth.plexus_study(vendor, f"V{vendor.name[:3]}"), tmp_path / vendor.value)
        datasets = _read_all(tmp_path / vendor.value)
        assert {ds.Manufacturer for ds in datasets} == {manufacturer}
        if vendor is Vendor.CANON:
            assert all("SequenceName" not in ds for ds in datasets)
        stir = next(ds for ds in datasets if "STIR" in str(ds.SeriesDescription).upper())
        assert "IR" in _tokens(stir.ScanOptions) and 180 <= float(stir.InversionTime) <= 230
        post = [ds for ds in datasets if ds.ContrastBolusAgent]
        assert post and all("FS" in _tokens(ds.ScanOptions) for ds in post)


def test_ct_contrast_and_reformats(tmp_path: Path) -> None:
    synth.write_study(synth.ct_study(Vendor.GE, "CT1", with_contrast=True), tmp_path / "c")
    datasets = _read_all(tmp_path / "c")
    assert {ds.SOPClassUID for ds in datasets} == {CTImageStorage} and {ds.Modality for ds in datasets} == {"CT"}
    axial = [ds for ds in datasets if list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]]
    assert axial and all(0.625 <= float(ds.SliceThickness) <= 1.25 for ds in axial)
    assert all(ds.ContrastBolusAgent == "Omnipaque 350" and ds.ContrastBolusRoute == "IV" for ds in axial)
    assert all(float(ds.KVP) > 0 and ds.ConvolutionKernel for ds in axial)
    reformats = [ds for ds in datasets if list(ds.ImageType) == ["DERIVED", "SECONDARY", "REFORMATTED"]]
    planes = {geometry.plane_of(geometry.slice_normal([float(v) for v in ds.ImageOrientationPatient]))
              for ds in reformats}
    assert planes == {geometry.Plane.CORONAL, geometry.Plane.SAGITTAL}
    synth.write_study(synth.ct_study(Vendor.SIEMENS, "CT2", with_contrast=False), tmp_path / "n")
    plain = _read_all(tmp_path / "n")
    assert all(not ds.ContrastBolusAgent for ds in plain)
    assert plain[0].StudyDescription == "CT ABDOMEN PELVIS WO CONTRAST"


def test_study_level_order_fields(tmp_path: Path) -> None:
    spec = synth.pelvis_study(Vendor.HITACHI, "PEL1")
    ds = _read_all(tmp_path) if synth.write_study(spec, tmp_path) else []
    first = ds[0]
    assert first.StudyDescription == "MR PELVIS WO" and first.AccessionNumber == "PEL1"
    assert first.RequestedProcedureDescription and first.ProcedureCodeSequence[0].CodeValue == "72195"
    assert first.BodyPartExamined == "PELVIS" and first.InstitutionName and first.StationName
    assert first.ManufacturerModelName == "ECHELON OVAL" and float(first.MagneticFieldStrength) == 1.5
    normals = {geometry.plane_of(geometry.slice_normal([float(v) for v in d.ImageOrientationPatient])) for d in ds}
    assert normals == {geometry.Plane.AXIAL, geometry.Plane.CORONAL, geometry.Plane.SAGITTAL}


# ------------------------------------------------------------------------------ committed samples


def test_committed_samples_match_the_generator(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "regen"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_sample_dicom.py"), str(out)], check=True,
                   capture_output=True)
    committed = sorted(p.relative_to(sample_dir) for p in sample_dir.rglob("*") if p.is_file())
    regenerated = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert committed == regenerated
    assert all(filecmp.cmp(sample_dir / rel, out / rel, shallow=False) for rel in committed)
    assert sum((sample_dir / rel).stat().st_size for rel in committed) < 3 * 1024 * 1024


def test_sample_context_rows_name_every_study(sample_dir: Path) -> None:
    with open(sample_dir / "context.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["accession_number", "trauma_date", "indication", "mri_contraindicated",
                             "gadolinium_contraindicated", "egfr", "dermatomal"]
    accessions = set()
    for folder in sorted(p for p in sample_dir.iterdir() if p.is_dir() and not p.name.startswith("99")):
        accessions.add(str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).AccessionNumber))
    assert {r["accession_number"] for r in rows} == accessions
    trauma = [r for r in rows if r["trauma_date"]]
    assert len(trauma) == 1 and "S34.4XXA" in trauma[0]["indication"]


def test_varied_studies_are_deterministic_and_cover_vendors_and_scenarios(tmp_path: Path) -> None:
    specs = synth.varied_studies(35, seed=2)
    assert specs == synth.varied_studies(35, seed=2)
    assert len({s.accession for s in specs}) == 35
    assert {s.vendor_ for s in specs} == set(Vendor)
    assert {s.field_strength for s in specs} == {1.5, 3.0}
    kinds = {tuple(sorted(x.kind_.value for x in s.series)) for s in specs}
    assert len(kinds) >= 4  # complete, no fluid FS, no post, Dixon (no-oblique has the complete kinds)
    times = [(s.study_date, s.study_time) for s in specs]
    assert times == sorted(times)
    paths = synth.write_study(specs[0], tmp_path)
    assert paths and all(p.exists() for p in paths)
