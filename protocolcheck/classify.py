"""Classify each stack of a study: weighting, inversion, fat suppression, contrast, plane, 2D/3D,
localizer and derived, each with the header facts that decided it.

Decide from acquisition parameters and vendor conventions first, series text last; when the
headers do not decide, say unknown rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .study import Stack, Study


class Weighting(str, Enum):
    T1 = "T1"
    T2 = "T2"
    PD = "PD"
    T2STAR = "T2*"
    DWI = "DWI"
    OTHER = "other"
    UNKNOWN = "unknown"


class Inversion(str, Enum):
    STIR = "STIR"
    FLAIR = "FLAIR"
    IR = "IR"


class FatSuppression(str, Enum):
    STIR = "STIR"
    CHESS = "CHESS"
    SPAIR = "SPAIR"
    SPIR = "SPIR"
    DIXON = "DIXON"
    WATER_EXCITATION = "WATER_EXCITATION"
    UNSPECIFIED = "UNSPECIFIED"


class Acquisition(str, Enum):
    TWO_D = "2D"
    THREE_D = "3D"


@dataclass(frozen=True)
class SeriesClass:
    """How one series (or stack) was classified, and why: the `classify --format json` object."""

    study_instance_uid: str
    series_instance_uid: str
    stack: str | None
    series_number: int | None
    series_description: str
    modality: str
    manufacturer: str
    instances: int
    weighting: Weighting
    inversion: Inversion | None
    fat_suppressed: bool | None
    fat_suppression: FatSuppression | None
    post_contrast: bool | None
    plane: str | None
    obliquity_deg: float | None
    normal: tuple[float, float, float] | None
    acquisition: Acquisition | None
    localizer: bool
    derived: bool
    evidence: dict[str, list[str]] = field(default_factory=dict)
    # facts used by protocol parameter limits and reports (not part of the decided fields)
    slice_thickness: float | None = None
    field_strength: float | None = None
    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    image_type: tuple[str, ...] = ()
    acquisition_time: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "stack": self.stack,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "modality": self.modality,
            "manufacturer": self.manufacturer,
            "instances": self.instances,
            "weighting": self.weighting.value,
            "inversion": self.inversion.value if self.inversion else None,
            "fat_suppressed": self.fat_suppressed,
            "fat_suppression": self.fat_suppression.value if self.fat_suppression else None,
            "post_contrast": self.post_contrast,
            "plane": self.plane,
            "obliquity_deg": None if self.obliquity_deg is None else round(self.obliquity_deg, 1),
            "normal": None if self.normal is None else [round(c + 0.0, 4) for c in self.normal],
            "acquisition": self.acquisition.value if self.acquisition else None,
            "localizer": self.localizer,
            "derived": self.derived,
            "slice_thickness": self.slice_thickness,
            "field_strength": self.field_strength,
            "repetition_time": self.repetition_time,
            "echo_time": self.echo_time,
            "inversion_time": self.inversion_time,
            "image_type": list(self.image_type),
            "evidence": self.evidence,
        }


def classify_stack(stack: Stack, study: Study | None = None) -> SeriesClass:
    """Classify one stack (study-level facts, e.g. contrast order, come from ``classify_study``)."""
    raise NotImplementedError


def classify_study(study: Study) -> list[SeriesClass]:
    """Classify every stack of a study, in acquisition order."""
    raise NotImplementedError
