"""Series classification: weighting, inversion, fat suppression, contrast, plane, 2D/3D, localizer, derived.

Unit tests build :class:`InstanceHeader` records directly (exact and fast) for each vendor's usual
sequences at 1.5 T and 3 T and for the known traps; end-to-end tests read real DICOM files (pydicom's
bundled MR/CT files, files written with pydicom, and studies written by :mod:`protocolcheck.synth`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file

from protocolcheck.classify import (
    Acquisition,
    FatSuppression,
    Inversion,
    SeriesClass,
    Vendor,
    Weighting,
    classify_stack,
    classify_study,
    describe,
    vendor_of,
)
from protocolcheck.dicom.geometry import Plane, orientation_from_angles
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import scan
from protocolcheck.dicom.study import Study, group_studies, split_series
from protocolcheck.testing import synth

MR = "1.2.840.10008.5.1.4.1.1.4"
ENH_MR = "1.2.840.10008.5.1.4.1.1.4.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)

SIEMENS = "SIEMENS"
GE = "GE MEDICAL SYSTEMS"
PHILIPS = "Philips Medical Systems"
CANON = "CANON_MEC"
TOSHIBA = "TOSHIBA_MEC"
HITACHI = "Hitachi Medical Corporation"
UIH = "UIH"

_counter = iter(range(1, 10**9))


def images(n: int = 3, *, series: str | None = None, study: str = "1.2.826.0.1.1",
           orientation: Sequence[float] | None = AXIAL,
           time: str = "100000", number: int = 1, **fields: Any) -> list[InstanceHeader]:
    """``n`` images of one series with the given header fields (defaults: 3 T MR, axial)."""
    series = series or f"1.2.826.0.1.1.{next(_counter)}"
    defaults: dict[str, Any] = {
        "modality": "MR", "field_strength": 3.0, "series_number": number, "series_time": time,
        "series_date": "20250314", "acquisition_date": "20250314", "acquisition_time": time, "slice_thickness": 4.0,
    }
    defaults.update(fields)
    sop = defaults.pop("sop_class_uid", MR)
    return [InstanceHeader(
        path=f"/x/{series}/{i}", sop_class_uid=sop, sop_instance_uid=f"{series}.{i + 1}",
        study_instance_uid=study, series_instance_uid=series, instance_number=i + 1,
        image_orientation=tuple(orientation) if orientation is not None else None,
        image_position=(0.0, 0.0, 5.0 * i), **defaults,
    ) for i in range(n)]


def classify(n: int = 3, **fields: Any) -> SeriesClass:
    """Classify one series alone (its own study)."""
    hs = images(n, **fields)
    results = classify_study(Study(hs[0].study_instance_uid, split_series(hs)))
    assert len(results) == 1
    return results[0]


def study_of(*series: list[InstanceHeader]) -> list[SeriesClass]:
    return [c for s in group_studies([h for hs in series for h in hs]) for c in classify_study(s)]


def by_description(results: list[SeriesClass]) -> dict[str, SeriesClass]:
    return {r.series_description: r for r in results}


# ------------------------------------------------------------------------------------------- vendors

@pytest.mark.parametrize("manufacturer, vendor", [
    ("SIEMENS", Vendor.SIEMENS), ("Siemens Healthineers", Vendor.SIEMENS), ("GE MEDICAL SYSTEMS", Vendor.GE),
    ("GE Healthcare", Vendor.GE), ("Philips Medical Systems", Vendor.PHILIPS), ("Philips", Vendor.PHILIPS),
    ("TOSHIBA_MEC", Vendor.CANON), ("Canon Medical Systems", Vendor.CANON),
    ("Hitachi Medical Corporation", Vendor.HITACHI),
    ("FUJIFILM Healthcare Corporation", Vendor.HITACHI), ("UIH", Vendor.UIH), ("United Imaging Healthcare", Vendor.UIH),
    ("ACME Imaging", Vendor.OTHER), ("", Vendor.UNKNOWN), ("GEMINI scanners", Vendor.OTHER),
])
def test_vendor_of(manufacturer: str, vendor: Vendor) -> None:
    assert vendor_of(manufacturer) is vendor


# ------------------------------------------------------------------------------------------ Siemens

@pytest.mark.parametrize("field, tr", [(1.5, 550.0), (3.0, 700.0), (3.0, 1100.0)])
def test_siemens_t1_tse_is_t1_without_fat_sat(field: float, tr: float) -> None:
    c = classify(manufacturer=SIEMENS, field_strength=field, sequence_name="*tse2d1_3", scanning_sequence=("SE",),
                 sequence_variant=("SK", "SP", "OSP"), scan_options=("PFP",), mr_acquisition_type="2D",
                 repetition_time=tr, echo_time=11.0, series_description="t1_tse_tra")
    assert c.weighting is Weighting.T1
    assert c.inversion is None
    assert c.fat_suppressed is False and c.fat_suppression is None
    assert c.acquisition is Acquisition.TWO_D
    assert c.technique == "TSE"
    assert any("TR" in e and "T1" in e for e in c.evidence["weighting"])
    assert any("Siemens Scan Options" in e for e in c.evidence["fat_suppression"])


def test_field_strength_changes_the_t1_cut_off() -> None:
    common = dict(manufacturer=SIEMENS, sequence_name="*tse2d1_3", scanning_sequence=("SE",), sequence_variant=("SK",),
                  scan_options=("PFP",), repetition_time=1150.0, echo_time=12.0)
    assert classify(field_strength=3.0, **common).weighting is Weighting.T1
    # At 1.5 T a 1150 ms TR with no naming is between the T1 and PD ranges: unknown, not a guess.
    low = classify(field_strength=1.5, **common)
    assert low.weighting is Weighting.UNKNOWN
    assert "between the T1, PD and T2 ranges" in " ".join(low.evidence["weighting"])


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_siemens_t2_tse_fat_sat_token_proves_suppression_not_method(field: float) -> None:
    """DICOM has one fat token (FS); Siemens writes it for fat sat and SPAIR alike (real headers: FS on
    EPI, DWI, FLAIR and ASL series), so the token alone leaves the method UNSPECIFIED, not CHESS."""
    c = classify(manufacturer=SIEMENS, field_strength=field, sequence_name="*tse2d1_15", scanning_sequence=("SE",),
                 sequence_variant=("SK", "SP"), scan_options=("PFP", "FS"), repetition_time=4000.0, echo_time=90.0,
                 series_description="t2_tse_cor")
    assert c.weighting is Weighting.T2
    assert c.fat_suppressed is True and c.fat_suppression is FatSuppression.UNSPECIFIED
    assert "Scan Options token 'FS'" in c.evidence["fat_suppression"][-1]
    chess = classify(manufacturer=SIEMENS, sequence_name="*tse2d1_15", scanning_sequence=("SE",), scan_options=("FS",),
                     repetition_time=4000.0, echo_time=90.0, series_description="t2_tse_cor_chess")
    assert chess.fat_suppression is FatSuppression.CHESS


def test_siemens_pd_fs() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*tse2d1_7", scanning_sequence=("SE",), sequence_variant=("SK",),
                 scan_options=("FS",), repetition_time=3000.0, echo_time=33.0, series_description="pd_tse_fs_cor")
    assert c.weighting is Weighting.PD
    assert c.fat_suppressed is True


@pytest.mark.parametrize("field, ti", [(1.5, 150.0), (1.5, 170.0), (3.0, 210.0), (3.0, 240.0)])
def test_siemens_tirm_short_ti_is_stir(field: float, ti: float) -> None:
    c = classify(manufacturer=SIEMENS, field_strength=field, sequence_name="*tir2d1_11", scanning_sequence=("SE", "IR"),
                 sequence_variant=("SK", "SP", "MP"), scan_options=("IR",), repetition_time=4500.0, echo_time=45.0,
                 inversion_time=ti, series_description="t2_tirm_cor")
    assert (c.weighting, c.inversion) == (Weighting.T2, Inversion.STIR)
    assert (c.fat_suppressed, c.fat_suppression) == (True, FatSuppression.STIR)
    assert any(f"TI {ti:g} ms" in e for e in c.evidence["inversion"])


def test_siemens_tirm_dark_fluid_is_flair_not_stir() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*tir2d1_16", scanning_sequence=("SE", "IR"),
                 sequence_variant=("SK",),
                 scan_options=("IR",), repetition_time=9000.0, echo_time=85.0, inversion_time=2500.0,
                 series_description="t2_tirm_tra_dark-fluid")
    assert (c.weighting, c.inversion) == (Weighting.T2, Inversion.FLAIR)
    assert c.fat_suppressed is False  # Siemens options without FS; 'tirm' here is dark fluid, not STIR


def test_t1_dark_fluid_is_t1_with_inversion_flair() -> None:
    """A T1 dark-fluid TSE (TI 860 ms at TR 2000 ms: the CSF null point, 876 ms) is T1-FLAIR: weighting T1,
    inversion FLAIR (issue 13's taxonomy), decided by the physics, not the name."""
    c = classify(manufacturer=SIEMENS, sequence_name="*tir2d1_7", scanning_sequence=("SE", "IR"),
                 sequence_variant=("SK",),
                 scan_options=("IR",), repetition_time=2000.0, echo_time=9.0, inversion_time=860.0,
                 series_description="t1_tirm_tra")
    assert (c.weighting, c.inversion) == (Weighting.T1, Inversion.FLAIR)
    assert "CSF null point 876 ms" in c.evidence["inversion"][-1]


def test_t1_inversion_far_from_the_fluid_null_point_is_ir() -> None:
    """TI 450 ms at TR 4000 ms nulls nothing fluid (null ~1520 ms): a T1 IR, not a T1-FLAIR."""
    c = classify(manufacturer=SIEMENS, sequence_name="*tir2d1_7", scanning_sequence=("SE", "IR"),
                 sequence_variant=("SK",),
                 scan_options=("IR",), repetition_time=4000.0, echo_time=12.0, inversion_time=450.0,
                 series_description="t1_ir_tra")
    assert (c.weighting, c.inversion) == (Weighting.T1, Inversion.IR)


@pytest.mark.parametrize("field, tr", [(1.5, 2000.0), (3.0, 2300.0)])
def test_siemens_mprage_long_tr_is_t1(field: float, tr: float) -> None:
    c = classify(manufacturer=SIEMENS, field_strength=field, sequence_name="*tfl3d1_16ns",
                 scanning_sequence=("GR", "IR"),
                 sequence_variant=("SK", "SP", "MP"), scan_options=("IR",), mr_acquisition_type="3D",
                 repetition_time=tr, echo_time=2.3, inversion_time=900.0, flip_angle=8.0,
                 series_description="t1_mprage_sag_p2_iso")
    assert (c.weighting, c.inversion, c.acquisition) == (Weighting.T1, Inversion.IR, Acquisition.THREE_D)
    assert c.technique == "IR-GRE"


def test_siemens_vibe_fs_post_contrast() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*fl3d1", scanning_sequence=("GR",),
                 sequence_variant=("SP", "OSP"),
                 scan_options=("PFP", "FS"), mr_acquisition_type="3D", repetition_time=4.1, echo_time=1.5,
                 flip_angle=10.0, series_description="t1_vibe_fs_tra_post")
    assert (c.weighting, c.fat_suppression, c.post_contrast) == (Weighting.T1, FatSuppression.UNSPECIFIED, True)


def test_siemens_water_excitation_token() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*fl3d1", scanning_sequence=("GR",), scan_options=("PFP", "WE"),
                 repetition_time=10.0, echo_time=4.0, flip_angle=12.0)
    assert (c.fat_suppressed, c.fat_suppression) == (True, FatSuppression.WATER_EXCITATION)


def test_siemens_spair_named_in_text() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*tse2d1_15", scanning_sequence=("SE",), scan_options=("FS",),
                 repetition_time=4000.0, echo_time=80.0, series_description="t2_tse_spair_cor")
    assert c.fat_suppression is FatSuppression.SPAIR


def test_siemens_diffusion_and_adc() -> None:
    hs = images(2, manufacturer=SIEMENS, sequence_name="*ep_b0", scanning_sequence=("EP",),
                sequence_variant=("SK", "SP"), scan_options=("PFP", "FS"), repetition_time=5000.0, echo_time=70.0,
                image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND"), series_description="ep2d_diff_tra")
    hs += [h.__class__(**{**h.__dict__, "sop_instance_uid": h.sop_instance_uid + ".9", "sequence_name": "*ep_b1000t"})
           for h in hs]
    adc = images(2, manufacturer=SIEMENS, sequence_name="*ep_b0_1000", scanning_sequence=("EP",),
                 scan_options=("PFP", "FS"),
                 repetition_time=5000.0, echo_time=70.0, image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"),
                 series_description="ep2d_diff_tra_ADC", time="100500")
    dwi, adc_c = study_of(hs, adc)
    assert dwi.weighting is Weighting.DWI and 1000.0 in dwi.b_values and not dwi.derived
    assert dwi.fat_suppressed is True
    assert adc_c.weighting is Weighting.OTHER and adc_c.derived  # a parametric map (issue 13's taxonomy)
    assert "ADC" in adc_c.evidence["derived"][0] and "parametric diffusion map" in adc_c.evidence["weighting"][0]
    assert adc_c.fat_suppressed is True


def test_siemens_dixon_outputs() -> None:
    common = dict(manufacturer=SIEMENS, sequence_name="*tse2d2_13", scanning_sequence=("SE",), sequence_variant=("SK",),
                  repetition_time=4500.0, echo_time=95.0, scan_options=("PFP",))
    water = classify(image_type=("DERIVED", "PRIMARY", "DIXON", "WATER"), series_description="t2_tse_dixon_cor_W",
                     **common)
    fat = classify(image_type=("DERIVED", "PRIMARY", "DIXON", "FAT"), series_description="t2_tse_dixon_cor_F", **common)
    opp = classify(image_type=("ORIGINAL", "PRIMARY", "DIXON", "OPP_PHASE"), series_description="t2_tse_dixon_cor_opp",
                   **common)
    assert (water.fat_suppressed, water.fat_suppression, water.dixon, water.derived) == (True, FatSuppression.DIXON,
                                                                                         "W", True)
    assert (fat.fat_suppressed, fat.dixon) == (False, "F")
    assert (opp.fat_suppressed, opp.dixon) == (False, "OP")
    assert water.weighting is Weighting.T2


def test_siemens_three_plane_localizer() -> None:
    hs = []
    for orientation in (SAGITTAL, CORONAL, AXIAL):
        hs += images(3, series="1.2.826.0.1.1.777", manufacturer=SIEMENS, sequence_name="*fl2d1",
                     scanning_sequence=("GR",),
                     sequence_variant=("SP", "OSP"), repetition_time=8.6, echo_time=4.0, flip_angle=20.0,
                     slice_thickness=7.0, orientation=orientation, series_description="localizer")
    hs = [h.__class__(**{**h.__dict__, "sop_instance_uid": f"{h.sop_instance_uid}.{i}", "instance_number": i})
          for i, h in enumerate(hs)]
    results = study_of(hs)
    assert len(results) == 3
    assert all(r.localizer for r in results)
    assert {r.plane for r in results} == {"sagittal", "coronal", "axial"}


def test_localizer_by_structure_without_name() -> None:
    """Three planes in one series with few images is a localizer even without a name."""
    hs = []
    for k, orientation in enumerate((SAGITTAL, CORONAL, AXIAL)):
        hs += [h.__class__(**{**h.__dict__, "sop_instance_uid": f"9.9.{k}.{i}"})
               for i, h in enumerate(images(2, series="1.2.826.0.1.1.778", manufacturer=GE, scanning_sequence=("SE",),
                                              repetition_time=1200.0, echo_time=80.0, orientation=orientation,
                                              series_description="Series 1"))]
    results = study_of(hs)
    assert all(r.localizer for r in results)
    assert "planes" in results[0].evidence["localizer"][0]


def test_fast_2d_gre_with_few_thick_slices_is_localizer() -> None:
    c = classify(1, manufacturer=SIEMENS, sequence_name="*fl2d1", scanning_sequence=("GR",), repetition_time=8.6,
                 echo_time=4.0, flip_angle=20.0, slice_thickness=8.0, series_description="Series 1")
    assert c.localizer
    assert "fast gradient echo" in c.evidence["localizer"][0]


def test_small_diagnostic_series_is_not_a_localizer_by_count_alone() -> None:
    c = classify(2, manufacturer=SIEMENS, sequence_name="*tse2d1_15", scanning_sequence=("SE",), scan_options=("FS",),
                 repetition_time=4000.0, echo_time=90.0, series_description="t2_tse_cor")
    assert not c.localizer


def test_multi_angle_axial_blocks_are_not_a_localizer() -> None:
    """Lumbar disc blocks: several oblique axial orientations in one series, all axial planes."""
    hs = []
    for k, tilt in enumerate((-15.0, 0.0, 15.0)):
        hs += [h.__class__(**{**h.__dict__, "sop_instance_uid": f"8.8.{k}.{i}"})
               for i, h in enumerate(images(3, series="1.2.826.0.1.1.779", manufacturer=SIEMENS,
                                              sequence_name="*tse2d1_15", scanning_sequence=("SE",),
                                              scan_options=("PFP",), repetition_time=4000.0, echo_time=90.0,
                                              series_description="t2_tse_tra_discs",
                                              orientation=orientation_from_angles(Plane.AXIAL, tilt)))]
    results = study_of(hs)
    assert len(results) == 3
    assert not any(r.localizer for r in results)
    assert all(r.plane == "axial" for r in results)


def test_siemens_xa_enhanced_uses_pulse_sequence_name_and_standard_flags() -> None:
    c = classify(1, manufacturer="Siemens Healthineers", sop_class_uid=ENH_MR, enhanced=True, frames=30,
                 pulse_sequence_name="*tse2d1_15", echo_pulse_sequence="SPIN", mr_acquisition_type="2D",
                 spectrally_selected_suppression="FAT", repetition_time=4000.0, echo_time=100.0,
                 image_type=("ORIGINAL", "PRIMARY", "M", "NONE"), series_description="t2_tse_cor")
    assert (c.weighting, c.fat_suppression, c.technique) == (Weighting.T2, FatSuppression.UNSPECIFIED, "TSE")
    assert not c.localizer  # 30 frames, one plane


def test_siemens_xa_private_scan_options_water_excitation() -> None:
    c = classify(manufacturer="Siemens Healthineers", software_versions="syngo MR XA30", sequence_name="",
                 pulse_sequence_name="*tfl3d1_16ns", scanning_sequence=("GR", "IR"), vendor_scan_options=("IR", "WE"),
                 repetition_time=2300.0, echo_time=2.3, inversion_time=900.0, mr_acquisition_type="3D")
    assert c.fat_suppression is FatSuppression.WATER_EXCITATION
    assert c.weighting is Weighting.T1


def test_siemens_xa_enhanced_without_any_fat_flag_stays_unknown() -> None:
    c = classify(1, manufacturer="Siemens Healthineers", sop_class_uid=ENH_MR, enhanced=True, frames=20,
                 pulse_sequence_name="*tse2d1_3", echo_pulse_sequence="SPIN", repetition_time=600.0, echo_time=10.0,
                 series_description="t1_tse_tra")
    assert c.weighting is Weighting.T1
    assert c.fat_suppressed is None


def test_enhanced_spectrally_selected_suppression_none_means_no_fat_sat() -> None:
    c = classify(1, manufacturer=PHILIPS, sop_class_uid=ENH_MR, enhanced=True, frames=20, echo_pulse_sequence="SPIN",
                 spectrally_selected_suppression="NONE", repetition_time=600.0, echo_time=10.0,
                 acquisition_contrast="T1")
    assert (c.weighting, c.fat_suppressed) == (Weighting.T1, False)


def test_enhanced_acquisition_contrast_decides_when_physics_cannot() -> None:
    c = classify(1, manufacturer=PHILIPS, sop_class_uid=ENH_MR, enhanced=True, frames=20, echo_pulse_sequence="SPIN",
                 repetition_time=1400.0, echo_time=20.0, acquisition_contrast="PROTON_DENSITY",
                 series_description="scan 3")
    assert c.weighting is Weighting.PD
    assert "AcquisitionContrast" in c.evidence["weighting"][-1]


# ----------------------------------------------------------------------------------------------- GE

@pytest.mark.parametrize("field", [1.5, 3.0])
def test_ge_readout_tokens_are_not_fat_saturation(field: float) -> None:
    c = classify(manufacturer=GE, field_strength=field, scanning_sequence=("SE",), sequence_variant=("SK", "OSP"),
                 scan_options=("FAST_GEMS", "EDR_GEMS", "FSA_GEMS", "SAT_GEMS", "FILTERED_GEMS"),
                 vendor_sequence="fse-xl", repetition_time=650.0, echo_time=10.0, series_description="AX T1 FSE")
    assert c.weighting is Weighting.T1
    assert c.fat_suppressed is False
    fat_evidence = " ".join(c.evidence["fat_suppression"])
    assert "'FSA_GEMS'" in fat_evidence and "'SAT_GEMS'" in fat_evidence and "not fat saturation" in fat_evidence


def test_ge_fs_token_with_readout_tokens_is_fat_sat() -> None:
    c = classify(manufacturer=GE, field_strength=1.5, scanning_sequence=("SE",), sequence_variant=("SK",),
                 scan_options=("FAST_GEMS", "EDR_GEMS", "FS", "FSP_GEMS"), repetition_time=4000.0, echo_time=85.0,
                 series_description="COR T2 FSE FS")
    assert (c.weighting, c.fat_suppression) == (Weighting.T2, FatSuppression.UNSPECIFIED)
    assert any("ignored GE token" in e for e in c.evidence["fat_suppression"])


@pytest.mark.parametrize("field, ti", [(1.5, 150.0), (3.0, 200.0)])
def test_ge_stir(field: float, ti: float) -> None:
    c = classify(manufacturer=GE, field_strength=field, scanning_sequence=("SE", "IR"), sequence_variant=("SK",),
                 scan_options=("FAST_GEMS", "IR_GEMS", "FSA_GEMS"), repetition_time=4500.0, echo_time=50.0,
                 inversion_time=ti, series_description="COR STIR")
    assert (c.weighting, c.inversion, c.fat_suppression) == (Weighting.T2, Inversion.STIR, FatSuppression.STIR)


def test_ge_t2_flair_and_t1_flair() -> None:
    t2f = classify(manufacturer=GE, scanning_sequence=("SE", "IR"), scan_options=("FAST_GEMS", "T2FLAIR_GEMS"),
                   repetition_time=9000.0, echo_time=120.0, inversion_time=2250.0, series_description="AX T2 FLAIR")
    t1f = classify(manufacturer=GE, scanning_sequence=("SE", "IR"), scan_options=("FAST_GEMS", "T1FLAIR_GEMS"),
                   repetition_time=2500.0, echo_time=20.0, inversion_time=920.0, series_description="AX T1 FLAIR")
    assert (t2f.weighting, t2f.inversion) == (Weighting.T2, Inversion.FLAIR)
    assert (t1f.weighting, t1f.inversion) == (Weighting.T1, Inversion.FLAIR)  # T1-FLAIR: inversion FLAIR


def test_ge_flair_token_without_ti() -> None:
    c = classify(manufacturer=GE, scanning_sequence=("SE", "IR"), scan_options=("FAST_GEMS", "T2FLAIR_GEMS"),
                 repetition_time=9000.0, echo_time=120.0, series_description="Series 4")
    assert c.inversion is Inversion.FLAIR
    assert "T2FLAIR_GEMS" in c.evidence["inversion"][-1]


def test_ge_bravo_short_tr_is_t1() -> None:
    c = classify(manufacturer=GE, scanning_sequence=("GR",), sequence_variant=("SS", "SK"),
                 scan_options=("FAST_GEMS", "EDR_GEMS", "ACC_GEMS", "IR_GEMS"), mr_acquisition_type="3D",
                 repetition_time=8.2, echo_time=3.2, inversion_time=450.0, flip_angle=12.0,
                 series_description="SAG 3D BRAVO")
    assert (c.weighting, c.inversion, c.acquisition) == (Weighting.T1, Inversion.IR, Acquisition.THREE_D)


def test_ge_flex_water_image_by_description_prefix() -> None:
    c = classify(manufacturer=GE, scanning_sequence=("GR",), scan_options=("FAST_GEMS", "FLEX_GEMS"),
                 mr_acquisition_type="3D", repetition_time=4.0, echo_time=1.7, flip_angle=12.0,
                 series_description="WATER: AX LAVA-FLEX")
    assert (c.dixon, c.fat_suppressed, c.fat_suppression) == ("W", True, FatSuppression.DIXON)
    inphase = classify(manufacturer=GE, scanning_sequence=("GR",), scan_options=("FAST_GEMS", "FLEX_GEMS"),
                       repetition_time=4.0, echo_time=2.2, flip_angle=12.0, series_description="InPhase: AX LAVA-FLEX")
    assert (inphase.dixon, inphase.fat_suppressed) == ("IP", False)


def test_ge_exam_level_protocol_name_does_not_make_every_series_post_contrast() -> None:
    c = classify(manufacturer=GE, scanning_sequence=("SE",), scan_options=("FAST_GEMS",), repetition_time=4000.0,
                 echo_time=90.0, series_description="COR T2 FSE", protocol_name="PLEXUS W/WO +C")
    assert c.post_contrast is None


def test_ge_diffusion() -> None:
    hs = images(2, manufacturer=GE, scanning_sequence=("EP", "SE"), scan_options=("SAT_GEMS", "EPI_GEMS", "PFF", "FS"),
                repetition_time=6000.0, echo_time=75.0, diffusion_b_value=0.0, series_description="AX DWI")
    hs += images(2, series=hs[0].series_instance_uid, manufacturer=GE, scanning_sequence=("EP", "SE"),
                 scan_options=("SAT_GEMS", "EPI_GEMS", "PFF", "FS"), repetition_time=6000.0, echo_time=75.0,
                 diffusion_b_value=800.0, series_description="AX DWI")
    hs = [h.__class__(**{**h.__dict__, "sop_instance_uid": f"7.7.{i}"}) for i, h in enumerate(hs)]
    (c,) = study_of(hs)
    assert c.weighting is Weighting.DWI and c.b_values == (0.0, 800.0)
    assert c.fat_suppression is FatSuppression.UNSPECIFIED


def test_ge_lava_without_fs_token_is_not_declared_unsuppressed() -> None:
    c = classify(manufacturer=GE, scanning_sequence=("GR",), scan_options=("FAST_GEMS", "EDR_GEMS"),
                 repetition_time=4.0,
                 echo_time=1.8, flip_angle=12.0, mr_acquisition_type="3D", series_description="AX LAVA")
    assert c.fat_suppressed is None


# ------------------------------------------------------------------------------------------ Philips

def test_philips_t2_tse_no_spir() -> None:
    c = classify(manufacturer=PHILIPS, field_strength=1.5, vendor_sequence="TSE", scanning_sequence=("SE",),
                 sequence_variant=("SK",), repetition_time=3000.0, echo_time=100.0, philips_spir="N",
                 image_type=("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"), series_description="T2W_TSE_COR")
    assert (c.weighting, c.fat_suppressed) == (Weighting.T2, False)
    assert "SPIR = N" in c.evidence["fat_suppression"][-1]


def test_philips_spir_flag() -> None:
    c = classify(manufacturer=PHILIPS, vendor_sequence="TSE", scanning_sequence=("SE",), repetition_time=600.0,
                 echo_time=10.0, philips_spir="Y", series_description="T1W_TSE_TRA")
    assert (c.weighting, c.fat_suppression) == (Weighting.T1, FatSuppression.SPIR)


def test_philips_spair_from_text() -> None:
    c = classify(manufacturer=PHILIPS, vendor_sequence="TSE", scanning_sequence=("SE",), repetition_time=3500.0,
                 echo_time=80.0, philips_spir="N", series_description="T2W_TSE_SPAIR_COR")
    assert (c.fat_suppressed, c.fat_suppression) == (True, FatSuppression.SPAIR)


def test_philips_3d_t1_tfe_is_t1() -> None:
    c = classify(manufacturer=PHILIPS, vendor_sequence="T1TFE", scanning_sequence=("GR",), sequence_variant=("MP",),
                 mr_acquisition_type="3D", repetition_time=8.1, echo_time=3.7, flip_angle=8.0,
                 series_description="T1W_3D_TFE")
    assert (c.weighting, c.technique) == (Weighting.T1, "IR-GRE")


def test_philips_mdixon_split_into_outputs_in_one_series() -> None:
    hs = []
    for label in ("W", "F", "IP", "OP"):  # one echo time: the outputs are told apart by their image type
        hs += images(2, series="1.2.826.0.1.1.900", manufacturer=PHILIPS, vendor_sequence="TSE",
                     scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0,
                     image_type=("ORIGINAL", "PRIMARY", label, label, "DERIVED"),
                     series_description="T1W_mDIXON_TSE_COR")
    hs = [h.__class__(**{**h.__dict__, "sop_instance_uid": f"6.6.{i}", "instance_number": i}) for i, h in enumerate(hs)]
    results = {r.stack: r for r in study_of(hs)}
    assert set(results) == {"W", "F", "IP", "OP"}
    assert results["W"].fat_suppression is FatSuppression.DIXON and results["W"].fat_suppressed
    assert all(results[k].fat_suppressed is False for k in ("F", "IP", "OP"))
    assert all(r.weighting is Weighting.T1 for r in results.values())


def test_philips_ir_tse_t1_is_not_flair() -> None:
    c = classify(manufacturer=PHILIPS, vendor_sequence="IR", scanning_sequence=("IR",), repetition_time=2500.0,
                 echo_time=15.0, inversion_time=450.0, series_description="T1W_IR_TRA")
    assert (c.weighting, c.inversion) == (Weighting.T1, Inversion.IR)


# ---------------------------------------------------------------------------- Canon, Hitachi, UIH

@pytest.mark.parametrize("manufacturer", [CANON, TOSHIBA])
def test_canon_fse_t2_and_fat_unknown_without_evidence(manufacturer: str) -> None:
    c = classify(manufacturer=manufacturer, field_strength=1.5, sequence_name="FSE2D", scanning_sequence=("SE",),
                 repetition_time=4000.0, echo_time=100.0, series_description="FSE T2 COR")
    assert c.weighting is Weighting.T2
    assert c.fat_suppressed is None  # Canon headers do not prove absence


def test_toshiba_combined_scanning_sequence_token_diffusion() -> None:
    c = classify(manufacturer=TOSHIBA, sequence_name="SEEPI2D+0.7", scanning_sequence=("SE_EP",), scan_options=("PFP",),
                 repetition_time=10000.0, echo_time=79.0, diffusion_b_value=1000.0, series_description="DTI_AX_30d")
    assert (c.weighting, c.technique) == (Weighting.DWI, "EPI")


def test_canon_stir() -> None:
    c = classify(manufacturer=CANON, field_strength=1.5, sequence_name="FSE2D", scanning_sequence=("IR",),
                 repetition_time=5000.0, echo_time=60.0, inversion_time=160.0, series_description="STIR COR")
    assert (c.weighting, c.inversion, c.fat_suppression) == (Weighting.T2, Inversion.STIR, FatSuppression.STIR)


def test_hitachi_gre_t2_star_and_t1_se() -> None:
    star = classify(manufacturer=HITACHI, field_strength=1.5, scanning_sequence=("GR",), repetition_time=600.0,
                    echo_time=20.0, flip_angle=20.0, series_description="T2*W GE AX")
    t1 = classify(manufacturer=HITACHI, field_strength=1.5, scanning_sequence=("SE",), repetition_time=500.0,
                  echo_time=12.0, series_description="T1W FSE AX")
    assert star.weighting is Weighting.T2STAR
    assert t1.weighting is Weighting.T1


def test_uih_gre_fsp_ir_is_t1_3d_and_epi_dti_is_dwi() -> None:
    t1 = classify(manufacturer=UIH, sequence_name="gre_fsp", scanning_sequence=("GR", "IR"), mr_acquisition_type="3D",
                  repetition_time=7.25, echo_time=3.1, inversion_time=750.0, flip_angle=10.0,
                  series_description="t1_gre_fsp_3d_sag")
    dti = classify(manufacturer=UIH, sequence_name="epi_dti", scanning_sequence=("EP",), scan_options=("FS",),
                   repetition_time=5865.0, echo_time=71.5, series_description="dti_tra_dir16_AP")
    assert (t1.weighting, t1.inversion, t1.acquisition) == (Weighting.T1, Inversion.IR, Acquisition.THREE_D)
    assert (dti.weighting, dti.fat_suppression) == (Weighting.DWI, FatSuppression.UNSPECIFIED)


# ---------------------------------------------------------------------------------------- text traps

@pytest.mark.parametrize("description, expected", [
    ("t1_tse_tra_post", True), ("T1 +C AX", True), ("AX T1 C+", True), ("T1 FS GD", True), ("t1_post_gd", True),
    ("T1 FS Gadovist", True), ("COR T1 FS POSTCONTRAST", True), ("T1 KM tra", True), ("t1_vibe_dyn", True),
    ("T1 pre", False), ("T1 precontrast", False), ("T1 pre gad", False), ("T1 native", False), ("AX T1 W/O", False),
    ("T1 without contrast", False), ("T1 non-contrast", False),
    ("T2 POSITION", None), ("T2 C-SPINE SAG", None), ("T1_SAG_AGDX", None), ("t2_tse_tra_postop", None),
    ("t1_tse_posterior_fossa", None), ("T2 prep FLASH", None), ("t1_post-processing", None),
])
def test_contrast_words(description: str, expected: bool | None) -> None:
    """Words decide where they mean contrast; elsewhere (None here) the text is silent and the study-level
    rule says pre-contrast, because nothing in the (one-series) study shows contrast."""
    c = classify(manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0,
                 series_description=description)
    if expected is None:
        assert c.post_contrast is False and "nothing in the study" in c.evidence["post_contrast"][-1], c.evidence
    else:
        assert c.post_contrast is expected, c.evidence["post_contrast"]


def test_subtraction_of_pre_from_post_is_post() -> None:
    c = classify(manufacturer=SIEMENS, scanning_sequence=("GR",), repetition_time=4.0, echo_time=1.5, flip_angle=10.0,
                 image_type=("DERIVED", "PRIMARY", "SUB"), series_description="t1_vibe_post-pre_SUB")
    assert c.post_contrast is True and c.derived


@pytest.mark.parametrize("agent, expected", [("Dotarem", True), ("GADOVIST 1.0", True), ("NONE", False), ("No", False),
                                            ("", False)])
def test_contrast_agent_element(agent: str, expected: bool | None) -> None:
    c = classify(manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0,
                 contrast_agent=agent, series_description="t1_tse_tra")
    assert c.post_contrast is expected
    if not expected:  # an agent 'NONE' is no sign of contrast: the study-level rule decides
        assert "nothing in the study" in c.evidence["post_contrast"][-1]


def test_contrast_order_within_study() -> None:
    common = dict(manufacturer=GE, scanning_sequence=("SE",), scan_options=("FAST_GEMS",), repetition_time=600.0,
                  echo_time=10.0)
    before = images(series="2.1", time="100000", number=3, series_description="AX T1", **common)
    post = images(series="2.2", time="101000", number=4, series_description="AX T1 FS +C",
                  **{**common, "scan_options": ("FAST_GEMS", "FS")})
    after = images(series="2.3", time="102000", number=5, series_description="COR T1", **common)
    results = by_description(study_of(before, post, after))
    assert results["AX T1 FS +C"].post_contrast is True
    assert results["AX T1"].post_contrast is False
    assert results["COR T1"].post_contrast is True
    assert "acquired after series 4" in results["COR T1"].evidence["post_contrast"][-1]
    assert "acquired before series 4" in results["AX T1"].evidence["post_contrast"][-1]


def test_no_contrast_anywhere_is_pre_contrast() -> None:
    """Nothing in the study shows contrast was given: every series is pre-contrast, and says why."""
    a = images(series="3.1", time="100000", manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=600.0,
               echo_time=10.0, series_description="t1_tse_tra")
    b = images(series="3.2", time="101000", manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=4000.0,
               echo_time=90.0, series_description="t2_tse_tra")
    results = study_of(a, b)
    assert all(r.post_contrast is False for r in results)
    assert all("nothing in the study's 2 MR series shows contrast" in r.evidence["post_contrast"][-1] for r in results)


@pytest.mark.parametrize("study_description", ["MRI KNEE W/WO", "MR PELVIS WO+W CONTRAST", "HEAD WITH AND WITHOUT"])
def test_contrast_planned_in_the_study_text_leaves_it_open(study_description: str) -> None:
    a = images(series="3.1", time="100000", manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=600.0,
               echo_time=10.0, series_description="t1_tse_tra", study_description=study_description)
    (r,) = study_of(a)
    assert r.post_contrast is None
    last = r.evidence["post_contrast"][-1]
    assert "(contrast planned)" in last and last.endswith("unknown")


def test_ge_series_contrast_flag() -> None:
    """GE (0019,1011) Series contrast: non-zero -> post-contrast; a study of zeros has no contrast."""
    common = dict(manufacturer=GE, scanning_sequence=("SE",), scan_options=("FAST_GEMS",), repetition_time=600.0,
                  echo_time=10.0)
    pre = images(series="4.1", time="100000", series_description="AX T1", ge_series_contrast="0", **common)
    post = images(series="4.2", time="101000", number=4, series_description="AX T1 FS", ge_series_contrast="1",
                  **common)
    results = by_description(study_of(pre, post))
    assert results["AX T1 FS"].post_contrast is True
    assert "(0019,1011)" in results["AX T1 FS"].evidence["post_contrast"][0]
    assert results["AX T1"].post_contrast is False
    (alone,) = study_of(images(series="4.3", series_description="AX T1", ge_series_contrast="0", **common))
    assert alone.post_contrast is False and "Series contrast 0" in alone.evidence["post_contrast"][-1]


def test_bare_gd_on_epi_is_a_slice_timing_label_not_gadolinium() -> None:
    bold = classify(manufacturer=GE, scanning_sequence=("EP", "GR"), repetition_time=2000.0, echo_time=30.0,
                    series_description="rsfMRI GD")
    t1 = classify(manufacturer=GE, scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0,
                  series_description="AX T1 GD")
    assert bold.post_contrast is False and t1.post_contrast is True


def test_spiral_is_not_spir_and_fs_must_be_a_word() -> None:
    spiral = classify(manufacturer="ACME", scanning_sequence=("GR",), repetition_time=30.0, echo_time=4.0,
                      flip_angle=30.0, series_description="t1 spiral tra")
    fse = classify(manufacturer="ACME", scanning_sequence=("SE",), repetition_time=4000.0, echo_time=90.0,
                   series_description="T2 FSE AX")
    inspir = classify(manufacturer="ACME", scanning_sequence=("GR",), repetition_time=4.0, echo_time=1.5,
                      flip_angle=10.0, series_description="t1 vibe inspiration")
    assert spiral.fat_suppressed is None
    assert fse.fat_suppressed is None
    assert inspir.fat_suppressed is None


@pytest.mark.parametrize("description, method", [
    ("T2 FS COR", FatSuppression.UNSPECIFIED), ("t2_fatsat_cor", FatSuppression.UNSPECIFIED),
    ("T1 FAT SAT AX", FatSuppression.UNSPECIFIED), ("T2 SPAIR", FatSuppression.SPAIR), ("T1 SPIR", FatSuppression.SPIR),
    ("PDFS SAG", FatSuppression.UNSPECIFIED), ("T1W proset", FatSuppression.WATER_EXCITATION),
])
def test_fat_text_fallback_for_vendors_without_tokens(description: str, method: FatSuppression) -> None:
    c = classify(manufacturer=HITACHI, scanning_sequence=("SE",), repetition_time=4000.0, echo_time=30.0,
                 series_description=description)
    assert (c.fat_suppressed, c.fat_suppression) == (True, method)


def test_fat_negative_text() -> None:
    c = classify(manufacturer=HITACHI, scanning_sequence=("SE",), repetition_time=4000.0, echo_time=90.0,
                 series_description="T2 FSE NFS AX")
    assert c.fat_suppressed is False


def test_fat_naming_convention_within_study() -> None:
    """Canon headers cannot prove absence, but a study naming 'FS' elsewhere makes an unnamed T2 non-FS."""
    fs = images(series="4.1", time="100000", manufacturer=CANON, scanning_sequence=("SE",), repetition_time=4000.0,
                echo_time=90.0, series_description="FSE T2 FS COR")
    plain = images(series="4.2", time="101000", manufacturer=CANON, scanning_sequence=("SE",), repetition_time=4000.0,
                   echo_time=90.0, series_description="FSE T2 AX")
    results = by_description(study_of(fs, plain))
    assert results["FSE T2 FS COR"].fat_suppressed is True
    assert results["FSE T2 AX"].fat_suppressed is False
    assert "naming convention" in results["FSE T2 AX"].evidence["fat_suppression"][-1]


def test_text_only_stir_and_flair_for_sparse_headers() -> None:
    stir = classify(manufacturer=HITACHI, scanning_sequence=("SE",), repetition_time=5000.0, echo_time=60.0,
                    series_description="STIR COR")
    flair = classify(manufacturer=HITACHI, scanning_sequence=("SE",), repetition_time=9000.0, echo_time=100.0,
                     series_description="FLAIR AX")
    assert (stir.inversion, stir.fat_suppression, stir.weighting) == (Inversion.STIR, FatSuppression.STIR, Weighting.T2)
    assert (flair.inversion, flair.weighting) == (Inversion.FLAIR, Weighting.T2)


def test_physics_beats_contradicting_text() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*tse2d1_15", scanning_sequence=("SE",), scan_options=("PFP",),
                 repetition_time=4000.0, echo_time=100.0, series_description="t1_tse_tra")
    assert c.weighting is Weighting.T2
    assert any("ignored" in e for e in c.evidence["weighting"])


def test_text_decides_when_no_acquisition_parameters() -> None:
    c = classify(manufacturer="ACME", series_description="AX T1 POST")
    assert (c.weighting, c.post_contrast) == (Weighting.T1, True)
    assert c.evidence["weighting"][-1].startswith("SeriesDescription")


def test_unknown_vendor_and_missing_tags_do_not_crash() -> None:
    c = classify(1, manufacturer="", modality="MR", orientation=None)
    assert c.weighting is Weighting.UNKNOWN
    assert (c.inversion, c.fat_suppressed, c.post_contrast, c.plane, c.acquisition) == (None, None, False, None, None)
    assert c.evidence["plane"] == ["no Image Orientation (Patient) -> plane unknown"]
    assert not c.localizer and not c.derived


def test_degenerate_orientation_is_unknown_plane() -> None:
    c = classify(1, manufacturer=SIEMENS, orientation=(1.0, 0.0, 0.0, 1.0, 0.0, 0.0))
    assert c.plane is None and c.normal is None
    assert "degenerate" in c.evidence["plane"][0]


# --------------------------------------------------------------------------------- geometry fields

def test_oblique_coronal_plane_obliquity_and_describe() -> None:
    c = classify(manufacturer=SIEMENS, field_strength=1.5, sequence_name="*tir2d1_11", scanning_sequence=("SE", "IR"),
                 scan_options=("IR",), repetition_time=4500.0, echo_time=50.0, inversion_time=160.0,
                 mr_acquisition_type="2D",
                 orientation=orientation_from_angles(Plane.CORONAL, 28.0), series_description="t2_tirm_cor_obl")
    assert c.plane == "coronal"
    assert c.obliquity_deg == pytest.approx(28.0, abs=0.01)
    assert c.normal is not None and math.isclose(sum(x * x for x in c.normal), 1.0)
    assert describe(c) == "oblique coronal T2 STIR pre-contrast 2D (28° oblique)"


def test_describe_other_shapes() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*fl3d1", scanning_sequence=("GR",), scan_options=("FS",),
                 mr_acquisition_type="3D", repetition_time=4.0, echo_time=1.5, flip_angle=10.0,
                 series_description="t1_vibe_fs_tra_post")
    assert describe(c) == "axial T1 FS +C 3D"
    loc = classify(1, manufacturer="", orientation=None, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    assert describe(loc) == "unknown plane unknown weighting pre-contrast localizer"


# ------------------------------------------------------------------------------------------- derived

@pytest.mark.parametrize("image_type, derived", [
    (("ORIGINAL", "PRIMARY", "M", "ND"), False), (("DERIVED", "PRIMARY", "MPR"), True),
    (("ORIGINAL", "SECONDARY", "OTHER"), True), (("DERIVED", "PRIMARY", "MIP", "ND"), True),
    (("ORIGINAL", "PRIMARY", "M", "MOCO"), True), (("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"), True),
])
def test_derived_by_image_type(image_type: tuple[str, ...], derived: bool) -> None:
    c = classify(manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0,
                 image_type=image_type)
    assert c.derived is derived


def test_derived_by_text_when_image_type_missing_and_mprage_is_not_mpr() -> None:
    assert classify(manufacturer=GE, series_description="ADC (10^-6 mm2/s): AX DWI").derived
    assert not classify(manufacturer=SIEMENS, series_description="t1_mprage_sag").derived


# ------------------------------------------------------------------------------------------------ CT

def test_ct_series() -> None:
    c = classify(modality="CT", sop_class_uid=CT, manufacturer="SIEMENS", kvp=120.0, contrast_agent="",
                 series_description="Abdomen 3.0 Venous", image_type=("ORIGINAL", "PRIMARY", "AXIAL"))
    assert (c.weighting, c.inversion, c.fat_suppressed, c.acquisition) == (Weighting.OTHER, None, None, None)
    assert c.post_contrast is True
    topo = classify(1, modality="CT", sop_class_uid=CT, manufacturer="SIEMENS",
                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), series_description="Topogram 0.6 T20s")
    assert topo.localizer
    reformat = classify(modality="CT", sop_class_uid=CT, manufacturer="GE MEDICAL SYSTEMS", orientation=CORONAL,
                        image_type=("DERIVED", "SECONDARY", "REFORMATTED"), series_description="COR 3mm",
                        contrast_route="IV")
    assert reformat.derived and reformat.plane == "coronal" and reformat.post_contrast is True
    plain = classify(modality="CT", sop_class_uid=CT, manufacturer="GE MEDICAL SYSTEMS", series_description="Abd W/O")
    assert plain.post_contrast is False


# ------------------------------------------------------------------------------------------ contract

def test_to_dict_is_json_and_has_the_contract_fields() -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*tse2d1_15", scanning_sequence=("SE",), scan_options=("FS",),
                 repetition_time=4000.0, echo_time=90.0, series_description="t2_tse_fs_cor", orientation=CORONAL)
    d = json.loads(json.dumps(c.to_dict()))
    for key in ("study_instance_uid", "series_instance_uid", "stack", "series_number", "series_description", "modality",
                "manufacturer", "instances", "weighting", "inversion", "fat_suppressed", "fat_suppression",
                "post_contrast",
                "plane", "obliquity_deg", "normal", "acquisition", "localizer", "derived", "evidence", "dixon"):
        assert key in d
    assert d["weighting"] == "T2" and d["fat_suppression"] == "UNSPECIFIED" and d["plane"] == "coronal"
    for field in ("weighting", "inversion", "fat_suppression", "post_contrast", "plane", "acquisition", "localizer",
                  "derived"):
        assert d["evidence"][field] and all(isinstance(e, str) and e for e in d["evidence"][field])


def test_classify_stack_standalone_without_study() -> None:
    hs = images(manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0)
    (stack,) = split_series(hs)
    assert classify_stack(stack).weighting is Weighting.T1


# ------------------------------------------------------------------------------- real DICOM files

def test_pydicom_mr_small_end_to_end() -> None:
    path = get_testdata_file("MR_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom test file MR_small.dcm not installed")
    headers = [r for r in scan([path]) if isinstance(r, InstanceHeader)]
    (study,) = list(group_studies(headers))
    (c,) = classify_study(study)
    # Toshiba SE, TR 4000 / TE 240, DERIVED\SECONDARY, 3D, axial
    assert (c.weighting, c.acquisition, c.plane, c.derived, c.vendor) == (Weighting.T2, Acquisition.THREE_D, "axial",
                                                                          True, "canon")
    assert c.post_contrast is False and c.fat_suppressed is None  # nothing in the one-file study shows contrast


def test_pydicom_ct_small_end_to_end() -> None:
    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom test file CT_small.dcm not installed")
    (study,) = list(group_studies(r for r in scan([path]) if isinstance(r, InstanceHeader)))
    (c,) = classify_study(study)
    assert (c.weighting, c.post_contrast, c.plane) == (Weighting.OTHER, True, "axial")
    assert "ISOVUE" in c.evidence["post_contrast"][0]


def _write_mr(path: Path, **values: Any) -> None:
    source = get_testdata_file("MR_small.dcm", download=False)
    if source is None:
        pytest.skip("pydicom test file MR_small.dcm not installed")
    ds = pydicom.dcmread(source)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def test_written_files_stir_and_enhanced_flags(tmp_path: Path) -> None:
    _write_mr(tmp_path / "stir.dcm", Manufacturer="SIEMENS", SequenceName="*tir2d1_11", ScanningSequence=["SE", "IR"],
              ScanOptions=["IR"], InversionTime="160", RepetitionTime="4500", EchoTime="50",
              MagneticFieldStrength="1.5",
              ImageType=["ORIGINAL", "PRIMARY", "M", "ND"], SeriesDescription="t2_tirm_cor_stir",
              MRAcquisitionType="2D", ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    (study,) = list(group_studies(r for r in scan([tmp_path]) if isinstance(r, InstanceHeader)))
    (c,) = classify_study(study)
    assert (c.weighting, c.inversion, c.fat_suppression, c.plane, c.derived) == (
        Weighting.T2, Inversion.STIR, FatSuppression.STIR, "coronal", False)


def test_written_files_ge_readout_token_trap(tmp_path: Path) -> None:
    _write_mr(tmp_path / "ge.dcm", Manufacturer="GE MEDICAL SYSTEMS", ScanningSequence="SE", SequenceVariant="SK",
              ScanOptions=["FAST_GEMS", "FSA_GEMS", "SAT_GEMS"], RepetitionTime="600", EchoTime="9",
              ImageType=["ORIGINAL", "PRIMARY", "OTHER"], SeriesDescription="AX T1 FSE", MRAcquisitionType="2D")
    (study,) = list(group_studies(r for r in scan([tmp_path]) if isinstance(r, InstanceHeader)))
    (c,) = classify_study(study)
    assert (c.weighting, c.fat_suppressed) == (Weighting.T1, False)


def test_cli_classify_json(tmp_path: Path) -> None:
    from protocolcheck.cli import main

    _write_mr(tmp_path / "a.dcm", Manufacturer="SIEMENS", ScanningSequence="SE", ScanOptions=["PFP", "FS"],
              RepetitionTime="4000", EchoTime="90", SeriesDescription="t2_tse_fs_tra",
              ImageType=["ORIGINAL", "PRIMARY", "M"])
    result = CliRunner().invoke(main, ["classify", "--format", "json", "-q", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.output)
    assert (record["weighting"], record["fat_suppression"], record["plane"]) == ("T2", "UNSPECIFIED", "axial")
    assert record["evidence"]["fat_suppression"] == [
        "Scan Options token 'FS' -> fat suppressed (the token does not say CHESS, SPAIR or SPIR)"]


# -------------------------------------------------------------------------------- synthetic studies

_EXPECTED_WEIGHTING = {
    synth.Kind.T1_TSE: "T1", synth.Kind.T1_FS_POST: "T1", synth.Kind.T2_TSE: "T2", synth.Kind.T2_FS: "T2",
    synth.Kind.PD: "PD", synth.Kind.STIR: "T2", synth.Kind.FLAIR: "T2", synth.Kind.GRE_T2STAR: "T2*",
    synth.Kind.MPRAGE_3D: "T1", synth.Kind.SPACE_3D: "T2", synth.Kind.SPACE_STIR_3D: "T2", synth.Kind.DWI: "DWI",
    synth.Kind.DIXON: "T2",
}
_EXPECTED_INVERSION = {synth.Kind.STIR: "STIR", synth.Kind.SPACE_STIR_3D: "STIR", synth.Kind.FLAIR: "FLAIR",
                       synth.Kind.MPRAGE_3D: "IR"}
_ALL_KINDS = (synth.Kind.LOCALIZER, synth.Kind.T1_TSE, synth.Kind.T2_TSE, synth.Kind.T2_FS, synth.Kind.PD,
              synth.Kind.STIR,
              synth.Kind.DIXON, synth.Kind.MPRAGE_3D, synth.Kind.SPACE_3D, synth.Kind.SPACE_STIR_3D, synth.Kind.DWI,
              synth.Kind.FLAIR, synth.Kind.GRE_T2STAR, synth.Kind.T1_FS_POST)


@pytest.mark.parametrize("vendor", list(synth.Vendor))
@pytest.mark.parametrize("field", [1.5, 3.0])
def test_synthetic_vendor_studies(vendor: synth.Vendor, field: float, tmp_path: Path) -> None:
    series = tuple(synth.SeriesSpec(k, "coronal" if i % 2 else "axial", 20.0 if i % 3 == 0 else 0.0, slices=3)
                   for i, k in enumerate(_ALL_KINDS))
    spec = synth.StudySpec(vendor=vendor, accession=f"T-{vendor.value}-{field}", series=series, field_strength=field)
    synth.write_study(spec, tmp_path)
    plan = {p.uid: p.spec for p in synth.series_plans(spec)}
    headers = [r for r in scan([tmp_path]) if isinstance(r, InstanceHeader)]
    problems = []
    for study in group_studies(headers):
        for c in classify_study(study):
            s = plan[c.series_instance_uid]
            k = s.kind_
            got = {"localizer": c.localizer, "plane": c.plane}
            want: dict[str, Any] = {"localizer": k is synth.Kind.LOCALIZER, "plane": c.plane}
            if k is not synth.Kind.LOCALIZER:
                want["plane"] = s.plane_.value
                got.update(weighting=c.weighting.value, inversion=c.inversion.value if c.inversion else None,
                           acquisition=c.acquisition.value if c.acquisition else None, post=c.post_contrast)
                want.update(weighting=_EXPECTED_WEIGHTING[k], inversion=_EXPECTED_INVERSION.get(k),
                            acquisition="3D" if s.is_3d else "2D", post=s.is_post)
                if k is synth.Kind.DIXON:
                    got["fat"], want["fat"] = c.fat_suppressed, c.dixon == "W"
                elif k is not synth.Kind.DWI:
                    got["fat"], want["fat"] = c.fat_suppressed, s.is_fat_sat or k in (synth.Kind.STIR,
                                                                                      synth.Kind.SPACE_STIR_3D)
            if got != want:
                problems.append(f"{c.series_description}: got {got}, want {want}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------ refinements / traps

def test_contrast_order_marks_everything_after_the_injection_post() -> None:
    common = dict(manufacturer=SIEMENS, scanning_sequence=("SE",), scan_options=("PFP",))
    t2_before = images(series="5.1", time="100000", number=2, repetition_time=4000.0, echo_time=90.0,
                       series_description="t2_tse_cor", **common)
    post = images(series="5.2", time="101000", number=3, repetition_time=600.0, echo_time=10.0,
                  series_description="t1_tse_tra_post", **common)
    t2_after = images(series="5.3", time="102000", number=4, repetition_time=4000.0, echo_time=90.0,
                      series_description="t2_tse_sag", **common)
    results = by_description(study_of(t2_before, post, t2_after))
    assert results["t2_tse_cor"].post_contrast is False
    assert results["t2_tse_sag"].post_contrast is True
    assert "the agent was already given" in results["t2_tse_sag"].evidence["post_contrast"][-1]


def test_contrast_start_time_dates_the_injection_when_names_say_nothing() -> None:
    """Uninformative names and an empty agent: Contrast/Bolus Start Time still tells pre from post."""
    common = dict(manufacturer="GE MEDICAL SYSTEMS", scanning_sequence=("SE",), repetition_time=600.0,
                  echo_time=10.0, contrast_start_time="101500")
    pre = images(series="6.1", time="100000", number=2, series_description="Series 2", **common)
    post = images(series="6.2", time="102000", number=3, series_description="Series 3", **common)
    results = by_description(study_of(pre, post))
    assert results["Series 2"].post_contrast is False
    assert results["Series 3"].post_contrast is True
    assert "Contrast/Bolus Start Time 20250314 101500" in results["Series 3"].evidence["post_contrast"][-1]


@pytest.mark.parametrize("tr, te, expected", [(700.0, 14.0, Weighting.T1), (1200.0, 32.0, Weighting.PD),
                                               (1500.0, 28.0, Weighting.PD), (3200.0, 400.0, Weighting.T2)])
def test_3d_tse_weighting(tr: float, te: float, expected: Weighting) -> None:
    c = classify(manufacturer=SIEMENS, sequence_name="*spc3d1_80", scanning_sequence=("SE",),
                 sequence_variant=("SK", "SP"),
                 scan_options=("PFP",), mr_acquisition_type="3D", repetition_time=tr, echo_time=te)
    assert c.weighting is expected


def test_balanced_ssfp_named_only_in_text() -> None:
    c = classify(manufacturer=GE, scanning_sequence=("GR",), sequence_variant=("SS",), scan_options=("FAST_GEMS",),
                 repetition_time=4.5, echo_time=2.0, flip_angle=55.0, series_description="COR FIESTA")
    assert (c.technique, c.weighting) == ("bSSFP", Weighting.T2)


def test_fat_sat_words_do_not_read_as_contrast_negatives() -> None:
    for description in ("T1 AX w/o FS", "T1 pre-sat AX"):
        c = classify(manufacturer=HITACHI, scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0,
                     series_description=description)
        assert c.post_contrast is False and "nothing in the study" in c.evidence["post_contrast"][-1]
        assert not any(e.startswith("SeriesDescription") for e in c.evidence["post_contrast"])


def test_tof_and_phase_contrast_names_are_other() -> None:
    tof = classify(manufacturer=SIEMENS, sequence_name="*fl3d1r_t70", scanning_sequence=("GR",),
                   mr_acquisition_type="3D",
                   repetition_time=22.0, echo_time=3.6, flip_angle=18.0, series_description="tof_3d_multi-slab")
    pc = classify(manufacturer=SIEMENS, sequence_name="*fl2d1_v200in", scanning_sequence=("GR",), repetition_time=40.0,
                  echo_time=5.0, flip_angle=20.0, series_description="flow")
    vibe = classify(manufacturer=SIEMENS, sequence_name="*fl3d1", scanning_sequence=("GR",), mr_acquisition_type="3D",
                    scan_options=("FS",), repetition_time=4.0, echo_time=1.5, flip_angle=10.0,
                    series_description="t1_vibe")
    assert tof.weighting is Weighting.OTHER and pc.weighting is Weighting.OTHER
    assert vibe.weighting is Weighting.T1


def test_calcaneus_is_not_a_calculated_map() -> None:
    c = classify(manufacturer=SIEMENS, scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0,
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"), series_description="t1_tse_sag_calcaneus")
    assert not c.derived


def test_siemens_classic_with_empty_scan_options_is_not_fat_suppressed_but_xa_is_unknown() -> None:
    classic = classify(manufacturer=SIEMENS, software_versions="syngo MR E11", sequence_name="*tse2d1_3",
                       scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0)
    xa = classify(manufacturer="Siemens Healthineers", software_versions="syngo MR XA30", sequence_name="*tse2d1_3",
                  scanning_sequence=("SE",), repetition_time=600.0, echo_time=10.0)
    assert classic.fat_suppressed is False
    assert xa.fat_suppressed is None


def test_arbitrary_header_combinations_never_crash() -> None:
    """Deterministic sweep over odd values: every record classifies and serialises."""
    import random

    rng = random.Random(1234)
    choices: dict[str, list[Any]] = {
        "manufacturer": ["", "SIEMENS", GE, PHILIPS, CANON, HITACHI, UIH, "ACME"],
        "modality": ["MR", "CT", "", "PT", "OT"],
        "scanning_sequence": [(), ("SE",), ("GR", "IR"), ("EP", "SE"), ("RM",), ("SE_EP",), ("IR",)],
        "sequence_variant": [(), ("SK",), ("MP",), ("NONE",)],
        "scan_options": [(), ("FS",), ("FSA_GEMS",), ("WE",), ("IR", "PFP", "FS"), ("T2FLAIR_GEMS",), ("", "X")],
        "sequence_name": ["", "*", "*tse2d1_3", "*ep_b", "*ep_b1000t", "fl", "FSE2D", "SEEPI2D+0.7", "gre_fsp"],
        "repetition_time": [None, 0.0, 3.0, 600.0, 1200.0, 4000.0, 1e6],
        "echo_time": [None, 0.0, 2.0, 12.0, 50.0, 100.0],
        "inversion_time": [None, 0.0, 150.0, 900.0, 2500.0],
        "flip_angle": [None, 0.0, 10.0, 90.0, 180.0],
        "series_description": ["", "T1 +C", "t2 pre post", "W/O", "fs", "spiral", "Dixon W", "WATER:", "b1000", "é ü"],
        "image_type": [(), ("DERIVED",), ("ORIGINAL", "PRIMARY", "W"), ("ORIGINAL", "PRIMARY", "LOCALIZER"),
                       ("X", "Y", "P")],
        "contrast_agent": ["", "NONE", "Gd"],
        "field_strength": [None, 0.0, 1.5, 3.0, 15000.0],
        "mr_acquisition_type": ["", "2D", "3D", "XD"],
        "diffusion_b_value": [None, 0.0, 1000.0],
        "orientation": [None, AXIAL, (0.0,) * 6, (1.0, 0.0, 0.0, 1.0, 0.0, 0.0),
                        orientation_from_angles(Plane.SAGITTAL, 44.0)],
    }
    for _ in range(300):
        fields = {k: rng.choice(v) for k, v in choices.items()}
        c = classify(rng.choice([1, 2, 8]), **fields)
        d = json.loads(json.dumps(c.to_dict()))
        assert d["weighting"] in {w.value for w in Weighting}
        assert set(d["evidence"]) >= {"weighting", "inversion", "fat_suppression", "post_contrast", "plane",
                                      "acquisition", "localizer", "derived"}
        assert isinstance(describe(c), str) and describe(c)


def test_intermediate_te_border_lets_the_name_decide() -> None:
    common = dict(manufacturer=SIEMENS, sequence_name="*tse2d1_9", scanning_sequence=("SE",), scan_options=("FS",),
                  repetition_time=3000.0, echo_time=45.0)
    assert classify(series_description="pd_tse_fs_cor", **common).weighting is Weighting.PD
    named_t2 = classify(series_description="t2_tse_fs_cor", **common)
    assert named_t2.weighting is Weighting.T2
    assert "border" in named_t2.evidence["weighting"][-1]
    # outside the border zone the parameters win over the name
    far = classify(series_description="pd_tse_cor", **{**common, "echo_time": 100.0})
    assert far.weighting is Weighting.T2


def test_exam_level_contrast_agent_is_not_trusted() -> None:
    common = dict(manufacturer=GE, scanning_sequence=("SE",), scan_options=("FAST_GEMS",), contrast_agent="GADAVIST")
    loc = images(series="6.1", time="090000", number=1, repetition_time=5.0, echo_time=1.5,
                 series_description="3-PLANE LOC", **common)
    pre = images(series="6.2", time="091000", number=2, repetition_time=600.0, echo_time=10.0,
                 series_description="AX T1", **common)
    post = images(series="6.3", time="093000", number=3, repetition_time=600.0, echo_time=10.0,
                  series_description="AX T1 +C", **common)
    results = by_description(study_of(loc, pre, post))
    assert results["AX T1 +C"].post_contrast is True
    assert results["AX T1"].post_contrast is False
    assert any("exam-level" in e for e in results["AX T1"].evidence["post_contrast"])


def test_series_agent_after_a_clean_start_is_trusted() -> None:
    common = dict(manufacturer=GE, scanning_sequence=("SE",), scan_options=("FAST_GEMS",))
    pre = images(series="6.5", time="091000", number=2, repetition_time=600.0, echo_time=10.0,
                 series_description="AX T1", **common)
    post = images(series="6.6", time="093000", number=3, repetition_time=600.0, echo_time=10.0,
                  contrast_agent="GADAVIST", series_description="AX T1 FS", **common)
    results = by_description(study_of(pre, post))
    assert results["AX T1 FS"].post_contrast is True
    assert results["AX T1"].post_contrast is False


def test_free_text_pulse_sequence_name_is_not_read_as_a_siemens_name() -> None:
    """Canon enhanced objects put the protocol name in Pulse Sequence Name: 'FLAIR_AX' is not '*fl...' GRE."""
    c = classify(1, manufacturer="Canon Medical Systems", sop_class_uid=ENH_MR, enhanced=True, frames=20,
                 pulse_sequence_name="FLAIR_AX", echo_pulse_sequence="SPIN", repetition_time=9000.0, echo_time=100.0,
                 series_description="FLAIR_AX")
    assert c.technique == "TSE"
    assert (c.weighting, c.inversion) == (Weighting.T2, Inversion.FLAIR)
    uih = classify(manufacturer=UIH, sequence_name="epi_dwi", scanning_sequence=("EP",), repetition_time=5000.0,
                   echo_time=70.0, diffusion_b_value=800.0)
    assert uih.technique == "EPI"


# ------------------------------------------------------------- vendor conventions of real clinical output (issue 13)

def test_philips_water_excitation_default_is_not_evidence() -> None:
    """Philips writes Spectrally Selected Excitation WATER on every series: only FAT suppression (or FS) counts."""
    common = dict(manufacturer=PHILIPS, scanning_sequence=("SE",), sequence_variant=("SK",), repetition_time=3000.0,
                  echo_time=100.0, spectrally_selected_excitation="WATER")
    plain = classify(scan_options=("OTHER",), spectrally_selected_suppression="NONE", series_description="T2W_TSE",
                     **common)
    spair = classify(scan_options=("FS",), spectrally_selected_suppression="FAT", series_description="T2W_SPAIR",
                     **common)
    assert plain.fat_suppressed is False and "Philips writes it on every series" in plain.evidence["fat_suppression"][0]
    assert spair.fat_suppressed is True and spair.fat_suppression is FatSuppression.SPAIR


def test_ge_diffusion_without_fat_flag_is_fat_suppressed() -> None:
    dwi = classify(manufacturer=GE, scanning_sequence=("EP", "SE"), scan_options=("EDR_GEMS", "EPI_GEMS"),
                   repetition_time=8000.0, echo_time=97.0, diffusion_b_value=1000.0, series_description="AX DWI")
    assert (dwi.weighting, dwi.fat_suppressed) == (Weighting.DWI, True)
    assert "echo-planar diffusion" in dwi.evidence["fat_suppression"][-1]


def test_ge_sat_fat_flag_and_siemens_sfs() -> None:
    ge = classify(manufacturer=GE, scanning_sequence=("SE",), repetition_time=3000.0, echo_time=90.0,
                  ge_sat_fat="1", series_description="AX T2")
    sfs = classify(manufacturer=SIEMENS, sequence_name="*tse2d1_15", scanning_sequence=("SE",), scan_options=("SFS",),
                   repetition_time=4000.0, echo_time=80.0, series_description="t2_tse_cor")
    assert ge.fat_suppressed is True and "(0019,10A4)" in ge.evidence["fat_suppression"][-1]
    assert sfs.fat_suppression is FatSuppression.SPAIR


def test_canon_scan_options_without_fs_prove_absence() -> None:
    c = classify(manufacturer=CANON, sequence_name="FSE2D", scanning_sequence=("SE",), scan_options=("PFP",),
                 repetition_time=4000.0, echo_time=100.0, series_description="T2 COR")
    assert c.fat_suppressed is False and "Canon" in c.evidence["fat_suppression"][-1]


def test_philips_inversion_prepulse_makes_tfe_ir() -> None:
    c = classify(manufacturer=PHILIPS, vendor_sequence="T1TFE", scanning_sequence=("GR",), sequence_variant=("MP",),
                 mr_acquisition_type="3D", repetition_time=6.8, echo_time=3.4, flip_angle=8.0, philips_prepulse="INV",
                 series_description="sT1W")
    assert (c.weighting, c.inversion) == (Weighting.T1, Inversion.IR)
    assert "(2001,101C) INV" in c.evidence["inversion"][0]


@pytest.mark.parametrize("description, image_type", [("QISS_tra", ("ORIGINAL", "PRIMARY", "M")),
                                                     ("ASL", ("DERIVED", "PRIMARY", "ASL", "PERFUSION_ASL"))])
def test_a_ti_that_is_not_an_inversion(description: str, image_type: tuple[str, ...]) -> None:
    """QISS writes its quiescent interval and ASL its post-labelling delay as Inversion Time: not an IR."""
    c = classify(manufacturer=SIEMENS, scanning_sequence=("GR",), repetition_time=4500.0, echo_time=2.0,
                 flip_angle=90.0, inversion_time=1525.0, image_type=image_type, series_description=description)
    assert c.inversion is None and c.weighting is Weighting.OTHER
    assert "not an inversion" in c.evidence["inversion"][-1]


def test_maps_and_projections_are_other() -> None:
    eadc = classify(manufacturer=GE, scanning_sequence=("EP", "SE"), repetition_time=8000.0, echo_time=97.0,
                    image_type=("DERIVED", "PRIMARY", "EADC", "EADC"),
                    series_description="EXPONENTIAL APPARENT DIFFUSION COEFFICIENT")
    mip = classify(3, manufacturer=PHILIPS, scanning_sequence=("GR",), repetition_time=23.0, echo_time=6.9,
                   flip_angle=20.0, image_type=("ORIGINAL", "PRIMARY", "PROJECTION IMAGE", "M", "FFE"),
                   series_description="MIP - s3DI_MC")
    tof = classify(manufacturer=PHILIPS, scanning_sequence=("GR",), mr_acquisition_type="3D", repetition_time=23.0,
                   echo_time=6.9, flip_angle=20.0, series_description="s3DI_MC")
    assert (eadc.weighting, eadc.fat_suppressed) == (Weighting.OTHER, True)
    assert mip.weighting is Weighting.OTHER and tof.weighting is Weighting.OTHER


def test_projections_in_three_planes_are_not_localizers_but_planning_scans_are() -> None:
    common = dict(manufacturer=PHILIPS, scanning_sequence=("GR",), repetition_time=23.0, echo_time=6.9,
                  flip_angle=20.0, image_type=("ORIGINAL", "PRIMARY", "PROJECTION IMAGE", "M", "FFE"))
    mips = [images(1, series="5.1", orientation=orientation_from_angles(plane, 0.0), series_description="MIP - s3DI_MC",
                   **common) for plane in (Plane.AXIAL, Plane.CORONAL, Plane.SAGITTAL)]
    results = study_of(*mips)
    assert len(results) == 3 and not any(r.localizer for r in results)
    smart = classify(manufacturer=PHILIPS, vendor_sequence="T1TFE", scanning_sequence=("GR",), repetition_time=3.8,
                     echo_time=1.7, flip_angle=8.0, series_description="SmartBrain")
    assert smart.localizer


def test_stitched_series_are_derived() -> None:
    c = classify(manufacturer=PHILIPS, scanning_sequence=("GR",), repetition_time=34.0, echo_time=3.3, flip_angle=45.0,
                 image_type=("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"), series_description="MobiView SURVEY_SAG")
    assert c.derived and "mobiview" in c.evidence["derived"][0].lower()


def test_dual_echo_series_is_classified_per_echo() -> None:
    """A dual-echo TSE (PD at TE 15 ms, T2 at TE 90 ms in one series) is two stacks, each weighted by its echo."""
    common = dict(manufacturer=SIEMENS, sequence_name="*tse2d2_5", scanning_sequence=("SE",), sequence_variant=("SK",),
                  repetition_time=3500.0, series="6.1", series_description="pd_t2_tse_tra")
    first = images(3, echo_time=15.0, **common)
    second = [InstanceHeader(**{**h.__dict__, "sop_instance_uid": h.sop_instance_uid + ".2", "echo_time": 90.0})
              for h in images(3, echo_time=15.0, **common)]
    results = study_of(first + second)
    assert sorted((r.echo_time, r.weighting) for r in results) == [(15.0, Weighting.PD), (90.0, Weighting.T2)]
