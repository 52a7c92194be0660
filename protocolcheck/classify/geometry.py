"""Plane and obliquity from Image Orientation (Patient); 2D/3D from MR Acquisition Type, names, text."""

from __future__ import annotations

import re

from protocolcheck.classify.facts import StackFacts
from protocolcheck.classify.model import Acquisition, Evidence, Field, Plane, Rule
from protocolcheck.classify.thresholds import THRESHOLDS as T
from protocolcheck.dicom.geometry import obliquity_deg, plane_of, slice_normal
from protocolcheck.dicom.study import Stack, Study

_3D_NAMES = re.compile(r"3d|spc|cube|vista|bravo|lava|vibe|efgre3d|3dfgre|tfl3d|ci3d|fi3d|swi3d|spgr3d|mprage|space")
_2D_NAMES = re.compile(r"2d|h2d|ssfse|haste")
_3D_TEXT = re.compile(r"(?<![a-z0-9])(?:3d|3-d|space|cube|vista|mprage|mp-rage|vibe|lava|thrive|bravo|starvibe|"
                      r"isotropic)(?![a-z0-9])")
_2D_TEXT = re.compile(r"(?<![a-z0-9])(?:2d|2-d)(?![a-z0-9])")

# The decision table's lines for these fields (protocolcheck.classify.table).
PLANE_RULES: tuple[str, ...] = (
    ("normal = row x column of Image Orientation (Patient); largest |component| names the plane; "
    "obliquity = angle to that axis; missing orientation -> null"),
)
ACQUISITION_RULES: tuple[str, ...] = (
    ("MR Acquisition Type 2D/3D; else sequence names (*fl3d, *tfl3d, *spc, *ci3d, 3D GE names, "
    "Philips 3D); else '3D' in text; CT -> null"),
)


PLANE_MISSING = Rule(Field.PLANE, "missing", "{problem} Image Orientation (Patient) -> plane unknown")
PLANE_NORMAL = Rule(Field.PLANE, "normal", "slice normal ({x:g}, {y:g}, {z:g}) -> {plane}, {obliquity:.1f}° from the "
                    "true plane")
NOT_APPLICABLE = Rule(Field.ACQUISITION, "not-applicable", "Modality {modality}: MR acquisition type not applicable")
DECLARED = Rule(Field.ACQUISITION, "declared", "MR Acquisition Type {acquisition}")
NAME = Rule(Field.ACQUISITION, "name", "sequence name '{names}' -> {acquisition}")
TEXT = Rule(Field.ACQUISITION, "text", "{source} '{match}' -> {acquisition}")
UNDECIDED = Rule(Field.ACQUISITION, "undecided", "no MR Acquisition Type, 2D/3D sequence name or text")


def plane(f: StackFacts) -> tuple[Plane | None, float | None, tuple[float, float, float] | None, list[Evidence]]:
    """Plane (largest component of the slice normal), obliquity in degrees, the normal, and evidence."""
    normal = slice_normal(f.first.image_orientation)
    if normal is None:
        problem = "no" if f.first.image_orientation is None else "degenerate"
        return None, None, None, [PLANE_MISSING.cite(problem=problem)]
    named = plane_of(normal)
    obl = obliquity_deg(normal)
    x, y, z = (round(c + 0.0, 3) for c in normal)
    why = PLANE_NORMAL.cite(x=x, y=y, z=z, plane=named.value if named else "?", obliquity=obl)
    return named, obl, normal, [why]


def acquisition(f: StackFacts) -> tuple[Acquisition | None, list[Evidence]]:
    """2D or 3D: MR Acquisition Type, else sequence names, else series text; not applicable to CT."""
    if not f.is_mr:
        return None, [NOT_APPLICABLE.cite(modality=f.modality or "?")]
    mat = f.first.mr_acquisition_type.strip().upper()
    if mat in ("2D", "3D"):
        return Acquisition(mat), [DECLARED.cite(acquisition=mat)]
    names = f.names
    if _3D_NAMES.search(names):
        return Acquisition.THREE_D, [NAME.cite(names=names, acquisition="3D")]
    if _2D_NAMES.search(names):
        return Acquisition.TWO_D, [NAME.cite(names=names, acquisition="2D")]
    m = _3D_TEXT.search(f.text)
    if m:
        return Acquisition.THREE_D, [TEXT.cite(source=f.text_source(), match=m.group(0), acquisition="3D")]
    m = _2D_TEXT.search(f.text)
    if m:
        return Acquisition.TWO_D, [TEXT.cite(source=f.text_source(), match=m.group(0), acquisition="2D")]
    return None, [UNDECIDED.cite()]


def series_planes(stack: Stack, study: Study | None) -> set[Plane]:
    """The planes of every image of this stack's series, when the series holds several orientations."""
    if study is None or stack.series_orientation_count < T.localizer_min_planes:
        return set()
    planes = set()
    for other in study.stacks:
        if other.series_instance_uid == stack.series_instance_uid:
            for h in other.instances:
                p = plane_of(slice_normal(h.image_orientation))
                if p:
                    planes.add(p)
    return planes
