"""What the classifier answers: the value sets of each field (enums), the per-stack record, and the
evidence records (:class:`Rule`, :class:`Evidence`) from which the evidence text is rendered.

Every enum keeps the strings the JSON output has always carried (``to_dict`` writes ``.value``), so
reports and stored results do not change. DICOM references are to PS3.3 (Information Object
Definitions) where the standard defines the value set the enum mirrors.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from protocolcheck.dicom.geometry import Plane

__all__ = [
    "Acquisition", "DixonLabel", "Evidence", "Fact", "FatSuppression", "Field", "Inversion", "Plane", "Rule",
    "SeriesClass", "Technique", "Vendor", "Weighting", "fmt",
]


class StrValueEnum(str, Enum):
    """A string enum whose str() and format() give its value (enum.StrEnum's behaviour; that needs 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Weighting(str, Enum):
    """The contrast an image shows; STIR and FLAIR are T2 with an inversion.

    Mirrors Acquisition Contrast (0008,9209) of the Enhanced MR Image module (PS3.3 C.8.13), defined terms
    T1, T2, PROTON_DENSITY, T2_STAR, DIFFUSION, FLOW_ENCODED, PERFUSION, TOF, ...; ``other`` gathers the
    non-anatomical ones (angiography, maps, perfusion), ``unknown`` means the headers do not decide.
    """

    T1 = "T1"
    T2 = "T2"
    PD = "PD"
    T2STAR = "T2*"
    DWI = "DWI"
    OTHER = "other"
    UNKNOWN = "unknown"


class Inversion(str, Enum):
    """Inversion preparation by its inversion time: short TI (STIR), long TI (FLAIR), T1 preparation (IR).

    DICOM flags the pulse (Scanning Sequence (0018,0020) ``IR``, PS3.3 C.8.3.1; Inversion Recovery
    (0018,9009) of the MR Pulse Sequence module, C.8.13) but has no value set for its purpose; Acquisition
    Contrast ``STIR`` and ``FLUID_ATTENUATED`` name two of them. Issue 13's taxonomy: a T1-FLAIR is FLAIR.
    """

    STIR = "STIR"
    FLAIR = "FLAIR"
    IR = "IR"


class FatSuppression(str, Enum):
    """How fat signal was suppressed. DICOM has one Scan Options (0018,0022) token for every spectral
    method (``FS``, PS3.3 C.8.3.1 lists it beside ``WE`` water excitation), and Spectrally Selected
    Suppression (0018,9025, MR Pulse Sequence module, C.8.13) says only *what* was suppressed;
    ``UNSPECIFIED`` is therefore "suppressed, method not named"."""

    STIR = "STIR"
    CHESS = "CHESS"
    SPAIR = "SPAIR"
    SPIR = "SPIR"
    DIXON = "DIXON"
    WATER_EXCITATION = "WATER_EXCITATION"
    UNSPECIFIED = "UNSPECIFIED"


class Acquisition(str, Enum):
    """MR Acquisition Type (0018,0023), PS3.3 C.8.3.1: enumerated values 2D and 3D."""

    TWO_D = "2D"
    THREE_D = "3D"


class Vendor(StrValueEnum):
    """Manufacturer families whose header conventions differ, normalised from Manufacturer
    (0008,0070), PS3.3 C.7.5.1 (General Equipment; free text, no value set)."""

    SIEMENS = "siemens"
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"  # Canon and Toshiba
    HITACHI = "hitachi"  # Hitachi and Fujifilm
    UIH = "uih"
    OTHER = "other"
    UNKNOWN = "unknown"


class Technique(StrValueEnum):
    """Sequence family the weighting rules reason about.

    From Scanning Sequence (0018,0020), PS3.3 C.8.3.1 (defined terms SE, IR, GR, EP, RM), Echo Pulse
    Sequence (0018,9008) and Echo Planar Pulse Sequence (0018,9018) of the MR Pulse Sequence module
    (C.8.13), and vendor sequence names. ``IR-GRE`` is a magnetisation-prepared gradient echo
    (MPRAGE/TFE/BRAVO); ``bSSFP`` a balanced steady-state free precession (TrueFISP/FIESTA/B-FFE).
    """

    SE = "SE"
    TSE = "TSE"
    GRE = "GRE"
    IR_GRE = "IR-GRE"
    BSSFP = "bSSFP"
    EPI = "EPI"


class DixonLabel(StrValueEnum):
    """Which Dixon output an image is: water, fat, in phase, opposed phase.

    Enhanced MR Image Type / Frame Type value 4 (PS3.3 C.8.13, Enhanced MR Image module) has defined terms
    WATER, FAT, IN_PHASE and OUT_PHASE; vendors also write W/F/IP/OP in classic Image Type value 3.
    """

    WATER = "W"
    FAT = "F"
    IN_PHASE = "IP"
    OPPOSED_PHASE = "OP"


# --------------------------------------------------------------------------------------------------
# Evidence: which rule decided a field, on which header facts. A Rule says how its evidence reads (a
# template over named facts); ``rule.cite(te=80.0, limit=60.0)`` makes an Evidence record, whose text is
# rendered from them. Templates format facts as f-strings do, plus a few specs of their own (_Formatter:
# ``{te:num}`` prints a header number, '?' when absent). A fact may be an Evidence (rendered as its text).
# Nothing reads the text back: rules look at records' rules and facts, or at the headers.


def fmt(value: float | None) -> str:
    """A header number as evidence shows it ('?' when absent)."""
    if value is None:
        return "?"
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.3g}"


class Field(StrValueEnum):
    """The classified fields that carry evidence (the keys of ``SeriesClass.evidence``)."""

    TECHNIQUE = "technique"
    WEIGHTING = "weighting"
    INVERSION = "inversion"
    FAT_SUPPRESSION = "fat_suppression"
    POST_CONTRAST = "post_contrast"
    PLANE = "plane"
    ACQUISITION = "acquisition"
    LOCALIZER = "localizer"
    DERIVED = "derived"
    DIXON = "dixon"

    def rule(self, name: str, says: str) -> Rule:
        """A rule deciding this field (see :class:`Rule`)."""
        return Rule(self, name, says)


Fact = Union[str, float, int, None, tuple[Any, ...], "Evidence"]


class _Formatter(string.Formatter):
    """f-string formatting plus the evidence specs: ``num`` (a header number, '?' when absent), ``nums``
    (numbers joined by ', '), ``/`` (tokens joined by '/'), ``quoted`` (tokens quoted, joined by ', ')."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "num":
            return fmt(value)
        if format_spec == "nums":
            return ", ".join(fmt(v) for v in value)
        if format_spec == "/":
            return "/".join(value)
        if format_spec == "quoted":
            return ", ".join(f"'{v}'" for v in value)
        return super().format_field(value, format_spec)


_FORMATTER = _Formatter()


@dataclass(frozen=True)
class Rule:
    """One rule of the classifier: the field it decides, a short name, and how its evidence reads."""

    field: Field
    name: str
    says: str

    def cite(self, **facts: Fact) -> Evidence:
        """Evidence that this rule applied, on these facts."""
        return Evidence(self, tuple(facts.items()))


@dataclass(frozen=True)
class Evidence:
    """A rule and the header facts it used; ``text()`` renders the human line."""

    rule: Rule
    facts: tuple[tuple[str, Fact], ...] = ()

    @property
    def field(self) -> Field:
        return self.rule.field

    def fact(self, name: str) -> Fact:
        """One fact by name (KeyError when the rule did not record it)."""
        return dict(self.facts)[name]

    def text(self) -> str:
        return _FORMATTER.format(self.rule.says, **dict(self.facts))

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True)
class SeriesClass:
    """How one series (or stack) was classified, and why: the `classify --format json` object.

    ``reasons`` holds the evidence records per field (:class:`Evidence`); ``evidence`` renders them as text.
    Beyond the decided fields: ``dixon`` (which Dixon output; Siemens writes Dixon water images as
    DERIVED, so rules wanting "the fat-suppressed acquisition" accept ``dixon == W`` even when
    ``derived``), ``vendor``, ``technique`` (the sequence family the rules used) and ``b_values``; the
    study's ``accession_number``, ``study_date`` and ``study_description`` head the classify table.
    """

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
    plane: Plane | None
    obliquity_deg: float | None
    normal: tuple[float, float, float] | None
    acquisition: Acquisition | None
    localizer: bool
    derived: bool
    reasons: dict[Field, tuple[Evidence, ...]] = field(default_factory=dict)  # the evidence records, per field
    # facts used by protocol parameter limits and reports (not part of the decided fields)
    slice_thickness: float | None = None
    field_strength: float | None = None
    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    image_type: tuple[str, ...] = ()
    acquisition_time: str = ""
    dixon: DixonLabel | None = None
    vendor: Vendor = Vendor.UNKNOWN
    technique: Technique | None = None
    b_values: tuple[float, ...] = ()
    accession_number: str = ""
    study_date: str = ""
    study_description: str = ""

    @property
    def evidence(self) -> dict[str, list[str]]:
        """The evidence text per field, rendered from :attr:`reasons`."""
        return {str(name): [e.text() for e in records] for name, records in self.reasons.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "accession_number": self.accession_number,
            "study_date": self.study_date,
            "study_description": self.study_description,
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
            "plane": self.plane.value if self.plane else None,
            "obliquity_deg": None if self.obliquity_deg is None else round(self.obliquity_deg, 1),
            "normal": None if self.normal is None else [round(c + 0.0, 4) for c in self.normal],
            "acquisition": self.acquisition.value if self.acquisition else None,
            "localizer": self.localizer,
            "derived": self.derived,
            "dixon": self.dixon.value if self.dixon else None,
            "vendor": self.vendor.value,
            "technique": self.technique.value if self.technique else None,
            "b_values": list(self.b_values),
            "slice_thickness": self.slice_thickness,
            "field_strength": self.field_strength,
            "repetition_time": self.repetition_time,
            "echo_time": self.echo_time,
            "inversion_time": self.inversion_time,
            "image_type": list(self.image_type),
            "acquisition_time": self.acquisition_time,
            "evidence": self.evidence,
        }
