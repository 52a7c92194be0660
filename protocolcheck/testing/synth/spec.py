"""What a synthetic study is made of: vendors, series kinds, transfer syntaxes, the series and study
specifications, and stable UIDs."""


from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from protocolcheck.dicom.geometry import Plane


class Vendor(str, Enum):
    """Scanner families whose header conventions the generator knows."""

    SIEMENS = "siemens"  # classic MR Image Storage (VB/VE: syngo MR E11)
    SIEMENS_XA = "siemens_xa"  # Enhanced MR Image Storage, one multi-frame object per series
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"
    HITACHI = "hitachi"
    UIH = "uih"


class Kind(str, Enum):
    """Vendor-neutral acquisition kinds."""

    LOCALIZER = "localizer_3plane"
    T1_TSE = "t1_tse"
    T2_TSE = "t2_tse"
    PD = "pd"
    STIR = "stir"
    T2_FS = "t2_fs"
    T1_FS_POST = "t1_fs_post"
    DIXON = "dixon"
    MPRAGE_3D = "mprage_3d"
    SPACE_3D = "space_3d"
    SPACE_STIR_3D = "space_stir_3d"
    DWI = "dwi"
    FLAIR = "flair"
    GRE_T2STAR = "gre_t2star"
    CT_LOCALIZER = "ct_localizer"
    CT_AXIAL = "ct_axial"
    CT_REFORMAT = "ct_reformat"


class Syntax(str, Enum):
    """Transfer syntaxes the generator can write (for reader tests)."""

    EXPLICIT_LE = "explicit_le"
    IMPLICIT_LE = "implicit_le"
    EXPLICIT_BE = "explicit_be"
    DEFLATED = "deflated"


_SYNTAX_UID: dict[Syntax, UID] = {
    Syntax.EXPLICIT_LE: ExplicitVRLittleEndian,
    Syntax.IMPLICIT_LE: ImplicitVRLittleEndian,
    Syntax.EXPLICIT_BE: ExplicitVRBigEndian,
    Syntax.DEFLATED: DeflatedExplicitVRLittleEndian,
}

CT_KINDS = frozenset({Kind.CT_LOCALIZER, Kind.CT_AXIAL, Kind.CT_REFORMAT})
THREE_D_KINDS = frozenset({Kind.MPRAGE_3D, Kind.SPACE_3D, Kind.SPACE_STIR_3D})
DIXON_OUTPUTS = ("W", "F", "IP", "OP")
_UID_NAMESPACE = uuid.UUID("6f7c1d2e-9a43-5b8e-a1c0-70726f746f63")  # fixed: UIDs stable across runs


@dataclass(frozen=True)
class SeriesSpec:
    """One acquisition, described without vendor vocabulary.

    ``plane`` is the base plane; ``tilt_deg`` tilts it about the patient's left-right axis (axial and
    coronal) or anterior-posterior axis (sagittal). An oblique coronal tilted by +t and an oblique
    axial tilted by -t are mutually orthogonal (see :func:`plexus_planes`).
    ``fat_sat`` / ``post_contrast`` default from the kind (``t2_fs`` is fat-suppressed, ``t1_fs_post``
    is fat-suppressed and post-contrast); ``weighting`` chooses T1/T2/PD for ``dixon`` and 3D kinds.
    ``description``/``protocol_name`` override the vendor's usual text (e.g. ``"Series 5"``).
    ``omit`` lists DICOM keywords to delete from every image of the series (any top-level keyword,
    study-level ones included, e.g. ``"AccessionNumber"``); ``overrides`` sets keywords to raw values
    (strings and lists of strings are written verbatim, so ``("RepetitionTime", "abc")`` produces a
    malformed DS and ``("ImageOrientationPatient", ["1", "0", "0", "0", "1"])`` a 5-value vector).
    """

    kind: Kind | str
    plane: Plane | str = Plane.AXIAL
    tilt_deg: float = 0.0
    slices: int = 3
    fat_sat: bool | None = None
    post_contrast: bool | None = None
    weighting: str | None = None
    three_d: bool | None = None
    description: str | None = None
    protocol_name: str | None = None
    field_strength: float | None = None
    contrast_agent: str | None = None
    slice_thickness: float | None = None
    matrix: int | None = None
    dixon_outputs: tuple[str, ...] = DIXON_OUTPUTS
    series_number: int | None = None
    omit: tuple[str, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def kind_(self) -> Kind:
        return Kind(self.kind)

    @property
    def plane_(self) -> Plane:
        return Plane(self.plane)

    @property
    def is_fat_sat(self) -> bool:
        if self.fat_sat is not None:
            return self.fat_sat
        return self.kind_ in (Kind.T2_FS, Kind.T1_FS_POST)

    @property
    def is_post(self) -> bool:
        if self.post_contrast is not None:
            return self.post_contrast
        return self.kind_ is Kind.T1_FS_POST

    @property
    def is_3d(self) -> bool:
        if self.three_d is not None:
            return self.three_d
        return self.kind_ in THREE_D_KINDS


@dataclass(frozen=True)
class StudySpec:
    """A study: who scanned it, what was ordered, and its series in acquisition order."""

    vendor: Vendor | str
    accession: str
    series: tuple[SeriesSpec, ...]
    study_date: str = "20250314"
    study_time: str = "081500"
    study_description: str = ""
    requested_procedure: str = ""
    procedure_code: tuple[str, str, str] | None = None  # (CodeValue, CodingSchemeDesignator, CodeMeaning)
    body_part: str = "PELVIS"
    field_strength: float = 3.0
    modality: str = ""  # "" -> MR, or CT when every series is a CT kind
    model: str | None = None
    software: str | None = None
    station: str | None = None
    institution: str = "SAMPLE HOSPITAL"
    patient_name: str | None = None  # default SAMPLE^<VENDOR>
    patient_id: str | None = None  # default SAMPLE-<accession>
    patient_birth_date: str = "19700101"
    patient_sex: str = "F"
    referring: str = "SAMPLE^REFERRER"
    syntax: Syntax | str = Syntax.EXPLICIT_LE
    file_meta: bool = True  # False: no preamble, no group 2 (raw dataset, as some archives hold)
    uid_seed: str | None = None  # default: accession
    injection_time: str | None = None  # contrast start; default 2 min before the first post series

    @property
    def vendor_(self) -> Vendor:
        return Vendor(self.vendor)

    @property
    def modality_(self) -> str:
        if self.modality:
            return self.modality
        kinds = {s.kind_ for s in self.series}
        return "CT" if kinds and kinds <= CT_KINDS else "MR"


# --------------------------------------------------------------------------------------------- UIDs


def uid(*parts: object) -> str:
    """A deterministic ``2.25.<UUID>`` UID from the given parts (same parts -> same UID).

    (pydicom's ``generate_uid(prefix=None)`` ignores ``entropy_srcs``, so a name-based UUID is used.)
    """
    name = "\x1f".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"

