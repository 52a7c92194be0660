"""Slice geometry from Image Orientation (Patient): normal, plane, obliquity, angles between series.

Patient coordinates (LPS): x = right->left, y = anterior->posterior, z = feet->head. A slice normal
mostly along x is sagittal, along y coronal, along z axial. Missing or degenerate orientation is
*unknown* (``None``), never "axial".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

Vector = tuple[float, float, float]


class Plane(str, Enum):
    """Anatomical plane of a slice, named by the axis its normal is closest to.

    From Image Orientation (Patient) (0020,0037), PS3.3 C.7.6.2 (Image Plane module); DICOM has no value set
    for the plane itself.
    """

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    # str() and format() give 'axial', as in text and JSON (enum.StrEnum's behaviour; that needs 3.11)
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


_AXIS_PLANE = (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)


def _unit(v: Sequence[float]) -> Vector | None:
    length = math.sqrt(sum(c * c for c in v))
    if not math.isfinite(length) or length < 1e-6:
        return None
    return (v[0] / length, v[1] / length, v[2] / length)


def slice_normal(orientation: Sequence[float] | None) -> Vector | None:
    """Unit normal = row direction x column direction, or None if orientation is unusable."""
    if orientation is None or len(orientation) != 6:
        return None
    row = _unit(orientation[:3])
    col = _unit(orientation[3:])
    if row is None or col is None:
        return None
    n = (
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    )
    return _unit(n)


def plane_of(normal: Vector | None) -> Plane | None:
    """The plane whose axis has the largest |component| of the normal."""
    if normal is None:
        return None
    index = max(range(3), key=lambda i: abs(normal[i]))
    return _AXIS_PLANE[index]


def obliquity_deg(normal: Vector | None) -> float | None:
    """Angle in degrees between the normal and the nearest scanner axis (0 = true plane)."""
    if normal is None:
        return None
    largest = max(abs(c) for c in normal)
    return math.degrees(math.acos(min(1.0, largest)))


def angle_between(n1: Vector | None, n2: Vector | None) -> float | None:
    """Angle in degrees (0..90) between two slice planes, from their normals."""
    if n1 is None or n2 is None:
        return None
    dot = abs(sum(a * b for a, b in zip(n1, n2, strict=True)))
    return math.degrees(math.acos(min(1.0, dot)))


def orthogonal(n1: Vector | None, n2: Vector | None, tolerance_deg: float = 10.0) -> bool:
    """True when two slice planes are perpendicular within ``tolerance_deg``."""
    angle = angle_between(n1, n2)
    return angle is not None and angle >= 90.0 - tolerance_deg


def orientation_from_angles(plane: Plane, tilt_deg: float = 0.0, axis: int | None = None) -> tuple[float, ...]:
    """Image Orientation (Patient) for a plane tilted by ``tilt_deg`` about one in-plane axis.

    Used by the sample generator and tests to write realistic oblique acquisitions: an oblique
    coronal through the plexus is a coronal plane tilted about the patient's left-right axis.
    """
    t = math.radians(tilt_deg)
    c, s = math.cos(t), math.sin(t)
    if plane is Plane.AXIAL:
        # rows along x, columns along y; tilt about x moves the column towards z
        return (1.0, 0.0, 0.0, 0.0, c, -s) if axis in (None, 0) else (c, 0.0, -s, 0.0, 1.0, 0.0)
    if plane is Plane.CORONAL:
        # rows along x, columns along -z; tilt about x moves the column towards y
        return (1.0, 0.0, 0.0, 0.0, s, -c) if axis in (None, 0) else (c, s, 0.0, 0.0, 0.0, -1.0)
    # sagittal: rows along y, columns along -z; tilt about y moves the column towards x
    return (0.0, 1.0, 0.0, s, 0.0, -c) if axis in (None, 1) else (s, c, 0.0, 0.0, 0.0, -1.0)
