"""Slice geometry: normals, planes, obliquity and angles between series, including oblique plexus planes."""

from __future__ import annotations

import math

import pytest

from protocolcheck.dicom.geometry import (
    Plane,
    angle_between,
    obliquity_deg,
    orientation_from_angles,
    orthogonal,
    plane_of,
    slice_normal,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@pytest.mark.parametrize("orientation, plane, axis", [
    (AXIAL, Plane.AXIAL, 2), (CORONAL, Plane.CORONAL, 1), (SAGITTAL, Plane.SAGITTAL, 0),
])
def test_true_planes(orientation: tuple[float, ...], plane: Plane, axis: int) -> None:
    n = slice_normal(orientation)
    assert n is not None
    assert abs(n[axis]) == pytest.approx(1.0)
    assert plane_of(n) is plane
    assert obliquity_deg(n) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("plane", list(Plane))
@pytest.mark.parametrize("tilt", [-40.0, -28.0, -5.0, 0.0, 12.5, 30.0, 44.0])
def test_tilted_planes_keep_their_name_and_report_the_tilt(plane: Plane, tilt: float) -> None:
    n = slice_normal(orientation_from_angles(plane, tilt))
    assert plane_of(n) is plane
    assert obliquity_deg(n) == pytest.approx(abs(tilt), abs=1e-6)
    assert math.isclose(sum(c * c for c in n), 1.0)


def test_tilt_beyond_45_degrees_changes_the_plane() -> None:
    n = slice_normal(orientation_from_angles(Plane.AXIAL, 60.0))
    assert plane_of(n) is Plane.CORONAL
    assert obliquity_deg(n) == pytest.approx(30.0, abs=1e-6)


def test_unnormalised_direction_cosines_are_normalised() -> None:
    n = slice_normal((2.0, 0.0, 0.0, 0.0, 0.0, -3.0))
    assert n == pytest.approx((0.0, 1.0, 0.0))


def test_double_oblique_normal() -> None:
    # rows tilted 20 degrees towards y, columns tilted 10 degrees towards z: a double-oblique axial
    a, b = math.radians(20), math.radians(10)
    row = (math.cos(a), math.sin(a), 0.0)
    col = (-math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), -math.sin(b))
    n = slice_normal(row + col)
    assert plane_of(n) is Plane.AXIAL
    assert 0.0 < obliquity_deg(n) < 20.0
    assert math.isclose(sum(c * c for c in n), 1.0)


@pytest.mark.parametrize("orientation", [
    None, (), (1.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0), (0.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    (1.0, 0.0, 0.0, 1.0, 0.0, 0.0), (1.0, 0.0, 0.0, -1.0, 0.0, 0.0), (float("nan"), 0.0, 0.0, 0.0, 1.0, 0.0),
    (float("inf"), 0.0, 0.0, 0.0, 1.0, 0.0),
])
def test_missing_or_degenerate_orientation_is_unknown(orientation: tuple[float, ...] | None) -> None:
    n = slice_normal(orientation)
    assert n is None
    assert plane_of(n) is None
    assert obliquity_deg(n) is None
    assert angle_between(n, (0.0, 0.0, 1.0)) is None
    assert not orthogonal(n, (0.0, 0.0, 1.0))


def test_angles_between_planes() -> None:
    ax, cor, sag = (slice_normal(o) for o in (AXIAL, CORONAL, SAGITTAL))
    assert angle_between(ax, cor) == pytest.approx(90.0)
    assert angle_between(ax, sag) == pytest.approx(90.0)
    assert angle_between(ax, ax) == pytest.approx(0.0)
    # the sign of a normal (slice order) does not matter
    flipped = tuple(-c for c in ax)
    assert angle_between(ax, flipped) == pytest.approx(0.0)
    tilted = slice_normal(orientation_from_angles(Plane.AXIAL, 25.0))
    assert angle_between(ax, tilted) == pytest.approx(25.0)
    assert angle_between(tilted, ax) == pytest.approx(25.0)


@pytest.mark.parametrize("tilt", [15.0, 30.0, 40.0])
def test_oblique_plexus_planes_are_orthogonal(tilt: float) -> None:
    """An oblique coronal tilted +t and an oblique axial tilted -t (about left-right) are perpendicular."""
    cor = slice_normal(orientation_from_angles(Plane.CORONAL, tilt))
    ax = slice_normal(orientation_from_angles(Plane.AXIAL, -tilt))
    assert angle_between(cor, ax) == pytest.approx(90.0, abs=1e-6)
    assert orthogonal(cor, ax)
    # the same tilt sign leaves them 2t away from perpendicular
    same = slice_normal(orientation_from_angles(Plane.AXIAL, tilt))
    assert angle_between(cor, same) == pytest.approx(90.0 - 2 * tilt, abs=1e-6)
    assert not orthogonal(cor, same)


def test_orthogonal_tolerance() -> None:
    ax = slice_normal(AXIAL)
    near = slice_normal(orientation_from_angles(Plane.CORONAL, 8.0))
    assert orthogonal(ax, near)  # 82 degrees, within the default 10
    assert not orthogonal(ax, near, tolerance_deg=5.0)
