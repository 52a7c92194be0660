"""Grouping instances into studies, series and stacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from protocolcheck.dicom.geometry import Plane, orientation_from_angles
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import scan
from protocolcheck.dicom.study import group_studies, split_series
from protocolcheck.testing import synth

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def header(study: str, series: str, number: int, **fields: Any) -> InstanceHeader:
    values: dict[str, Any] = {"modality": "MR", "image_orientation": AXIAL, "echo_time": 90.0,
                              "image_type": ("ORIGINAL", "PRIMARY", "M")}
    values.update(fields)
    return InstanceHeader(path=f"/x/{series}/{number}", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
                          sop_instance_uid=f"{series}.{number}.{values.get('echo_time')}."
                                           f"{hash(values['image_type']) & 0xffff}",
                          study_instance_uid=study, series_instance_uid=series, instance_number=number, **values)


def test_groups_by_study_and_series_uid() -> None:
    headers = [header("1.1", "1.1.1", i, series_number=1) for i in range(3)]
    headers += [header("1.1", "1.1.2", i, series_number=2) for i in range(2)]
    headers += [header("2.2", "2.2.1", i, series_number=1) for i in range(4)]
    studies = list(group_studies(headers))
    assert [s.study_instance_uid for s in studies] == ["1.1", "2.2"]
    first, second = studies
    assert [(st.series_instance_uid, len(st.instances)) for st in first.stacks] == [("1.1.1", 3), ("1.1.2", 2)]
    assert first.instance_count == 5 and second.instance_count == 4
    assert all(st.label is None for st in first.stacks + second.stacks)


def test_derived_series_with_the_same_number_is_not_merged_into_the_original() -> None:
    """Series Number + description collide for an MPR/derived copy; UIDs keep them apart."""
    original = [header("1.1", "1.1.1", i, series_number=5, series_description="t2_tse_cor") for i in range(3)]
    derived = [header("1.1", "1.1.9", i, series_number=5, series_description="t2_tse_cor",
                      image_type=("DERIVED", "SECONDARY", "MPR")) for i in range(3)]
    (study,) = list(group_studies(original + derived))
    assert len(study.stacks) == 2
    assert {st.series_instance_uid for st in study.stacks} == {"1.1.1", "1.1.9"}
    assert all(len(st.instances) == 3 for st in study.stacks)


def test_derived_images_inside_one_series_become_their_own_stack() -> None:
    raw = [header("1.1", "1.1.1", i, image_type=("ORIGINAL", "PRIMARY", "M_SE", "M")) for i in range(3)]
    iso = [header("1.1", "1.1.1", i, image_type=("DERIVED", "PRIMARY", "ISOTROPIC", "M")) for i in range(3)]
    stacks = split_series(raw + iso)
    assert len(stacks) == 2
    assert {st.instances[0].image_type[0] for st in stacks} == {"ORIGINAL", "DERIVED"}
    assert all(st.series_stack_count == 2 for st in stacks)


def test_dixon_outputs_in_one_series_split_into_w_f_ip_op() -> None:
    headers = []
    for label, te in (("W", 2.3), ("F", 2.3), ("IP", 2.3), ("OP", 1.15)):
        headers += [header("1.1", "1.1.1", i, image_type=("ORIGINAL", "PRIMARY", label, label, "DERIVED"), echo_time=te)
                    for i in range(3)]
    stacks = split_series(headers)
    assert sorted(st.label for st in stacks) == ["F", "IP", "OP", "W"]
    assert all(len(st.instances) == 3 for st in stacks)


def test_siemens_dixon_image_type_names() -> None:
    water = [header("1.1", "1.1.1", i, image_type=("DERIVED", "PRIMARY", "DIXON", "WATER")) for i in range(2)]
    fat = [header("1.1", "1.1.1", i, image_type=("DERIVED", "PRIMARY", "DIXON", "FAT")) for i in range(2)]
    assert sorted(st.label for st in split_series(water + fat)) == ["F", "W"]


def test_three_plane_localizer_splits_by_orientation() -> None:
    headers = []
    for k, orientation in enumerate((SAGITTAL, CORONAL, AXIAL)):
        headers += [header("1.1", "1.1.1", 3 * k + i, image_orientation=orientation, echo_time=4.0) for i in range(3)]
    stacks = split_series(headers)
    assert sorted(st.label for st in stacks) == ["axial", "coronal", "sagittal"]
    assert all(st.series_orientation_count == 3 and len(st.instances) == 3 for st in stacks)


def test_small_orientation_jitter_stays_one_stack() -> None:
    headers = [header("1.1", "1.1.1", i,
                      image_orientation=orientation_from_angles(Plane.CORONAL, 0.5 * i)) for i in range(5)]
    (stack,) = split_series(headers)
    assert stack.label is None and len(stack.instances) == 5


def test_missing_orientation_is_its_own_cluster_not_axial() -> None:
    headers = [header("1.1", "1.1.1", i) for i in range(2)]
    headers += [header("1.1", "1.1.1", 10 + i, image_orientation=None) for i in range(2)]
    stacks = split_series(headers)
    assert len(stacks) == 2
    assert "unknown-plane" in {st.label for st in stacks}


def test_dual_echo_splits_by_echo_time() -> None:
    headers = [header("1.1", "1.1.1", i, echo_time=te) for i in range(3) for te in (15.0, 90.0)]
    stacks = split_series(headers)
    assert sorted(st.label for st in stacks) == ["TE15", "TE90"]


def test_stacks_are_in_acquisition_order() -> None:
    late = [header("1.1", "1.1.1", i, series_number=1, series_date="20250314", series_time="110000") for i in range(2)]
    early = [header("1.1", "1.1.2", i, series_number=9, series_date="20250314", series_time="090000") for i in range(2)]
    untimed = [header("1.1", "1.1.3", i, series_number=2) for i in range(2)]
    (study,) = list(group_studies(late + untimed + early))
    assert [st.series_instance_uid for st in study.stacks] == ["1.1.2", "1.1.1", "1.1.3"]


def test_instances_sorted_within_a_stack() -> None:
    headers = [header("1.1", "1.1.1", n) for n in (3, 1, 2)]
    (stack,) = split_series(headers)
    assert [h.instance_number for h in stack.instances] == [1, 2, 3]
    assert stack.first.instance_number == 1 and stack.frame_count == 3


def test_synthetic_study_stacks(tmp_path: Path) -> None:
    spec = synth.StudySpec(vendor=synth.Vendor.PHILIPS, accession="STUDY-1", series=(
        synth.SeriesSpec(synth.Kind.LOCALIZER, slices=3),
        synth.SeriesSpec(synth.Kind.DIXON, "coronal", 30.0, slices=3, weighting="T1"),
        synth.SeriesSpec(synth.Kind.T2_TSE, "axial", -30.0, slices=3),
    ))
    synth.write_study(spec, tmp_path)
    headers = [r for r in scan([tmp_path]) if isinstance(r, InstanceHeader)]
    (study,) = list(group_studies(headers))
    labels = sorted(st.label or "-" for st in study.stacks)
    assert labels == sorted(["axial", "coronal", "sagittal", "W", "F", "IP", "OP", "-"])


@pytest.mark.parametrize("vendor", [synth.Vendor.SIEMENS_XA, synth.Vendor.SIEMENS])
def test_synthetic_localizer_is_three_stacks(vendor: synth.Vendor, tmp_path: Path) -> None:
    spec = synth.StudySpec(vendor=vendor, accession="LOC-1", series=(synth.SeriesSpec(synth.Kind.LOCALIZER, slices=3),))
    synth.write_study(spec, tmp_path)
    (study,) = list(group_studies(r for r in scan([tmp_path]) if isinstance(r, InstanceHeader)))
    assert sorted(st.label for st in study.stacks) == ["axial", "coronal", "sagittal"]


def test_multi_angle_blocks_in_one_plane_get_distinct_labels() -> None:
    headers = []
    for k, tilt in enumerate((-15.0, 0.0, 15.0)):
        headers += [header("1.1", "1.1.1", 10 * k + i, image_orientation=orientation_from_angles(Plane.AXIAL, tilt))
                    for i in range(3)]
    stacks = split_series(headers)
    assert sorted(st.label for st in stacks) == ["axial", "axial-2", "axial-3"]
