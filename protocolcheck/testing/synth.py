"""Deterministic generator of small, vendor-realistic DICOM studies for tests, samples and benchmarks.

Describe an acquisition vendor-neutrally with :class:`SeriesSpec` (kind such as ``"stir"``, plane and
oblique tilt, contrast phase, text overrides), a study with :class:`StudySpec` (vendor, accession,
dates, ordered procedure, series), and :func:`write_study` writes it the way that vendor's scanner
would: Siemens sequence names and Scan Options, GE ``*_GEMS`` tokens and private pulse-sequence name,
Philips private scanning technique and Dixon Image Types, Siemens XA enhanced multi-frame objects,
CT with contrast agent and reformats. Pixel data are tiny (32x32 uint16 by default) so each file
stays a few KB; geometry (orientation, positions, spacing) is consistent with the declared plane.

Everything is deterministic: UIDs derive from the accession, series index and slice index, dates and
times come from the spec, so writing the same spec twice gives byte-identical files. No real patient
data: names are like ``SAMPLE^SIEMENS``.

The helpers :func:`plexus_study`, :func:`pelvis_study` and :func:`ct_study` build typical studies.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)

from protocolcheck.dicom.geometry import Plane, orientation_from_angles, slice_normal

__all__ = [
    "Kind",
    "SeriesSpec",
    "StudySpec",
    "Syntax",
    "Vendor",
    "build_datasets",
    "ct_study",
    "pelvis_study",
    "plexus_planes",
    "plexus_series",
    "plexus_study",
    "scanner_of",
    "uid",
    "varied_studies",
    "write_study",
]


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


# ------------------------------------------------------------------------------------ vendor facts

_VENDOR_INFO: dict[Vendor, dict[str, Any]] = {
    Vendor.SIEMENS: {
        "manufacturer": "SIEMENS",
        "model": {3.0: "Skyra", 1.5: "Aera"},
        "software": "syngo MR E11",
        "station": "AWP45123",
        "ct_model": "SOMATOM Force",
        "ct_software": "syngo CT VB20A",
    },
    Vendor.SIEMENS_XA: {
        "manufacturer": "Siemens Healthineers",
        "model": {3.0: "MAGNETOM Vida", 1.5: "MAGNETOM Sola"},
        "software": "syngo MR XA31",
        "station": "AWP167012",
    },
    Vendor.GE: {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "model": {3.0: "DISCOVERY MR750", 1.5: "Optima MR450w"},
        "software": "27\\LX\\MR Software release:DV26.0_R03_1831.b",
        "station": "GEMR1OC0",
        "ct_model": "Revolution CT",
        "ct_software": "rev_ct_sw.23",
    },
    Vendor.PHILIPS: {
        "manufacturer": "Philips Medical Systems",
        "model": {3.0: "Ingenia", 1.5: "Achieva"},
        "software": "5.4.1\\5.4.1.0",
        "station": "PHILIPS-MR3T",
    },
    Vendor.CANON: {
        "manufacturer": "CANON_MEC",
        "model": {3.0: "Vantage Galan 3T", 1.5: "Vantage Orian"},
        "software": "V6.0*R004",
        "station": "CANONMR01",
    },
    Vendor.HITACHI: {
        "manufacturer": "Hitachi Medical Corporation",
        "model": {3.0: "TRILLIUM OVAL", 1.5: "ECHELON OVAL"},
        "software": "V5.2",
        "station": "ECHELON01",
    },
    Vendor.UIH: {
        "manufacturer": "UIH",
        "model": {3.0: "uMR 780", 1.5: "uMR 570"},
        "software": "R004",
        "station": "UMR780",
    },
}


@dataclass(frozen=True)
class _Physics:
    tr: float
    te: float
    ti: float | None
    flip: float
    etl: int
    thickness: float
    gap: float
    pixel: float
    acq_matrix: tuple[int, int]
    minutes: float  # scan duration, for acquisition times
    b_values: tuple[int, ...] = ()


def _physics(spec: SeriesSpec, vendor: Vendor, fs: float) -> _Physics:
    """TR/TE/TI/flip/ETL and geometry typical for the kind, field strength and vendor."""
    k = spec.kind_
    three = fs >= 2.5
    weighting = (spec.weighting or "").upper()
    if k is Kind.LOCALIZER:
        return _Physics(8.6, 4.0, None, 20, 1, 7.0, 0.0, 1.6, (256, 160), 0.5)
    if k in (Kind.T1_TSE, Kind.T1_FS_POST) or (k is Kind.DIXON and weighting == "T1"):
        tr = 700.0 if three else 550.0
        if k is Kind.DIXON:
            tr = 650.0 if three else 520.0
        return _Physics(tr, 10.0 if three else 12.0, None, 150 if vendor is Vendor.SIEMENS else 90, 3,
                        4.0, 0.4, 0.78, (384, 307), 3.5)
    if k in (Kind.T2_TSE, Kind.T2_FS, Kind.DIXON):
        return _Physics(4500.0 if three else 4000.0, 95.0 if three else 90.0, None,
                        150 if vendor is Vendor.SIEMENS else 90, 17, 4.0, 0.4, 0.78, (384, 307), 3.8)
    if k is Kind.PD:
        return _Physics(3000.0, 30.0, None, 150 if vendor is Vendor.SIEMENS else 90, 7, 4.0, 0.4, 0.7,
                        (384, 307), 3.5)
    if k is Kind.STIR:
        return _Physics(5000.0 if three else 4500.0, 60.0 if three else 55.0, 220.0 if three else 160.0,
                        150 if vendor is Vendor.SIEMENS else 90, 15, 4.0, 0.4, 0.9, (320, 256), 4.5)
    if k is Kind.FLAIR:
        return _Physics(9000.0, 85.0, 2500.0, 150, 16, 5.0, 0.5, 0.9, (320, 256), 3.5)
    if k is Kind.GRE_T2STAR:
        return _Physics(600.0, 20.0, None, 20, 1, 5.0, 0.5, 0.9, (320, 256), 3.0)
    if k is Kind.MPRAGE_3D:
        if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
            return _Physics(2300.0 if three else 2000.0, 2.3, 900.0, 8, 1, 1.0, 0.0, 1.0, (256, 256), 5.5)
        return _Physics(8.2, 3.2, 450.0, 12, 1, 1.0, 0.0, 1.0, (256, 256), 5.0)  # GE BRAVO / Philips TFE
    if k in (Kind.SPACE_3D, Kind.SPACE_STIR_3D):
        ti = (220.0 if three else 160.0) if k is Kind.SPACE_STIR_3D else None
        return _Physics(3000.0 if k is Kind.SPACE_STIR_3D else 1500.0, 120.0 if ti is None else 90.0, ti,
                        120, 70, 1.0, 0.0, 1.0, (320, 320), 6.0)
    if k is Kind.DWI:
        return _Physics(5000.0, 70.0, None, 90, 1, 5.0, 1.0, 1.5, (160, 128), 3.0, (0, 800))
    if k is Kind.CT_LOCALIZER:
        return _Physics(0, 0, None, 0, 0, 1.0, 0.0, 1.0, (512, 512), 0.2)
    if k is Kind.CT_AXIAL:
        return _Physics(0, 0, None, 0, 0, 0.625, 0.0, 0.7, (512, 512), 0.2)
    if k is Kind.CT_REFORMAT:
        return _Physics(0, 0, None, 0, 0, 3.0, 0.0, 0.7, (512, 512), 0.5)
    raise ValueError(f"unknown kind {k}")


# ------------------------------------------------------------------------------ series text per vendor


def _plane_token(vendor: Vendor, plane: Plane) -> str:
    lower = {Plane.AXIAL: "tra", Plane.CORONAL: "cor", Plane.SAGITTAL: "sag"}
    upper = {Plane.AXIAL: "AX", Plane.CORONAL: "COR", Plane.SAGITTAL: "SAG"}
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA, Vendor.UIH):
        return lower[plane]
    if vendor is Vendor.PHILIPS:
        return {Plane.AXIAL: "TRA", Plane.CORONAL: "COR", Plane.SAGITTAL: "SAG"}[plane]
    return upper[plane]


def _description(vendor: Vendor, spec: SeriesSpec) -> str:
    """The series description a technologist on this vendor typically leaves."""
    k, fsat, post = spec.kind_, spec.is_fat_sat, spec.is_post
    p = _plane_token(vendor, spec.plane_)
    obl = abs(spec.tilt_deg) >= 5
    w = (spec.weighting or ("T1" if k is Kind.T1_FS_POST else "T2")).upper()
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
        o = "_obl" if obl else ""
        fs = "_fs" if fsat else ""
        pc = "_post" if post else ""
        return {
            Kind.LOCALIZER: "localizer",
            Kind.T1_TSE: f"t1_tse{fs}_{p}{o}{pc}",
            Kind.T1_FS_POST: f"t1_tse{fs}_{p}{o}{pc}",
            Kind.T2_TSE: f"t2_tse{fs}_{p}{o}{pc}",
            Kind.T2_FS: f"t2_tse{fs}_{p}{o}",
            Kind.PD: f"pd_tse{fs}_{p}{o}",
            Kind.STIR: f"t2_tirm_{p}{o}_stir",
            Kind.DIXON: f"{w.lower()}_tse_dixon_{p}{o}{pc}",
            Kind.MPRAGE_3D: f"t1_mprage_{p}_p2_iso{pc}",
            Kind.SPACE_3D: f"{w.lower()}_spc{fs}_{p}_p2_iso{pc}",
            Kind.SPACE_STIR_3D: f"t2_spc_stir_{p}_p2_iso",
            Kind.DWI: f"ep2d_diff_{p}",
            Kind.FLAIR: f"t2_tirm_{p}_dark-fluid",
            Kind.GRE_T2STAR: f"t2_fl2d_{p}_hemo",
        }[k]
    if vendor in (Vendor.GE, Vendor.CANON, Vendor.HITACHI):
        P = p + (" OBL" if obl else "")
        fs = " FS" if fsat else ""
        pc = " +C" if post else ""
        if vendor is Vendor.HITACHI:
            return {
                Kind.LOCALIZER: "Scanogram",
                Kind.T1_TSE: f"{'FS ' if fsat else ''}T1W FSE {P}{pc}",
                Kind.T1_FS_POST: f"FS T1W FSE {P}{pc}",
                Kind.T2_TSE: f"{'FS ' if fsat else ''}T2W FSE {P}",
                Kind.T2_FS: f"FS T2W FSE {P}",
                Kind.PD: f"PDW FSE {P}",
                Kind.STIR: f"STIR {P}",
                Kind.DIXON: f"{w}W FSE DIXON {P}{pc}",
                Kind.MPRAGE_3D: f"3D T1W GE {P}{pc}",
                Kind.SPACE_3D: f"3D {w}W FSE {P}",
                Kind.SPACE_STIR_3D: f"3D STIR {P}",
                Kind.DWI: f"DWI {P}",
                Kind.FLAIR: f"FLAIR {P}",
                Kind.GRE_T2STAR: f"T2*W GE {P}",
            }[k]
        if vendor is Vendor.CANON:
            return {
                Kind.LOCALIZER: "Locator",
                Kind.T1_TSE: f"FSE T1{fs} {P}{pc}",
                Kind.T1_FS_POST: f"FSE T1 FS {P}{pc}",
                Kind.T2_TSE: f"FSE T2{fs} {P}",
                Kind.T2_FS: f"FSE T2 FS {P}",
                Kind.PD: f"FSE PD {P}",
                Kind.STIR: f"STIR {P}",
                Kind.DIXON: f"FSE {w} WFS {P}{pc}",
                Kind.MPRAGE_3D: f"3D MPRAGE {P}{pc}",
                Kind.SPACE_3D: f"3D FSE {w} {P}",
                Kind.SPACE_STIR_3D: f"3D STIR {P}",
                Kind.DWI: f"DWI {P}",
                Kind.FLAIR: f"FLAIR {P}",
                Kind.GRE_T2STAR: f"FE T2* {P}",
            }[k]
        return {
            Kind.LOCALIZER: "3-PLANE LOC",
            Kind.T1_TSE: f"{P} T1 FSE{fs}{pc}",
            Kind.T1_FS_POST: f"{P} T1 FS{pc}",
            Kind.T2_TSE: f"{P} T2 FSE{fs}",
            Kind.T2_FS: f"{P} T2 FSE FS",
            Kind.PD: f"{P} PD FSE",
            Kind.STIR: f"{P} STIR",
            Kind.DIXON: f"{P} {w} FLEX{pc}",
            Kind.MPRAGE_3D: f"{P} 3D BRAVO{pc}",
            Kind.SPACE_3D: f"{P} CUBE {w}{pc}",
            Kind.SPACE_STIR_3D: f"{P} CUBE STIR",
            Kind.DWI: f"{P} DWI",
            Kind.FLAIR: f"{P} T2 FLAIR",
            Kind.GRE_T2STAR: f"{P} GRE T2*",
        }[k]
    if vendor is Vendor.PHILIPS:
        spir = "_SPIR" if fsat else ""
        gd = "_GD" if post else ""
        return {
            Kind.LOCALIZER: "SURVEY",
            Kind.T1_TSE: f"T1W_TSE{spir}_{p}{gd}",
            Kind.T1_FS_POST: f"T1W_TSE{spir}_{p}{gd}",
            Kind.T2_TSE: f"T2W_TSE{spir}_{p}",
            Kind.T2_FS: f"T2W_TSE{spir}_{p}",
            Kind.PD: f"PDW_TSE_{p}",
            Kind.STIR: f"STIR_{p}",
            Kind.DIXON: f"{w}W_mDIXON_TSE_{p}{gd}",
            Kind.MPRAGE_3D: f"T1W_3D_TFE_{p}{gd}",
            Kind.SPACE_3D: f"{w}W_3D_VISTA_{p}",
            Kind.SPACE_STIR_3D: f"3D_STIR_VISTA_{p}",
            Kind.DWI: f"DWI_{p}",
            Kind.FLAIR: f"T2W_FLAIR_{p}",
            Kind.GRE_T2STAR: f"T2*W_FFE_{p}",
        }[k]
    # UIH
    fs = "_fs" if fsat else ""
    pc = "_+c" if post else ""
    o = "_obl" if obl else ""
    return {
        Kind.LOCALIZER: "localizer",
        Kind.T1_TSE: f"t1_fse{fs}_{p}{o}{pc}",
        Kind.T1_FS_POST: f"t1_fse_fs_{p}{o}{pc}",
        Kind.T2_TSE: f"t2_fse{fs}_{p}{o}",
        Kind.T2_FS: f"t2_fse_fs_{p}{o}",
        Kind.PD: f"pd_fse_{p}{o}",
        Kind.STIR: f"t2_fse_stir_{p}{o}",
        Kind.DIXON: f"{w.lower()}_fse_dixon_{p}{o}{pc}",
        Kind.MPRAGE_3D: f"t1_gre_mprage_{p}{pc}",
        Kind.SPACE_3D: f"{w.lower()}_fse_mx3d_{p}",
        Kind.SPACE_STIR_3D: f"t2_fse_mx3d_stir_{p}",
        Kind.DWI: f"dwi_{p}",
        Kind.FLAIR: f"t2_flair_{p}",
        Kind.GRE_T2STAR: f"t2star_gre_{p}",
    }[k]


@dataclass(frozen=True)
class _Profile:
    """The vendor-specific acquisition-describing header values of one series."""

    sequence_name: str | None
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    image_type: tuple[str, ...]
    private: tuple[tuple[int, str, int, str, Any], ...] = ()  # (group, creator, offset, VR, value)


def _weighting(spec: SeriesSpec) -> str:
    k = spec.kind_
    if spec.weighting:
        return spec.weighting.upper()
    if k in (Kind.T1_TSE, Kind.T1_FS_POST, Kind.MPRAGE_3D):
        return "T1"
    if k is Kind.PD:
        return "PD"
    return "T2"


def _is_inversion(k: Kind) -> bool:
    return k in (Kind.STIR, Kind.FLAIR, Kind.SPACE_STIR_3D, Kind.MPRAGE_3D)


def _profile(vendor: Vendor, spec: SeriesSpec, ph: _Physics) -> _Profile:
    """Sequence name, Scanning Sequence/Variant, Scan Options, Image Type and private tags."""
    k, fsat = spec.kind_, spec.is_fat_sat
    sseq: tuple[str, ...]
    svar: tuple[str, ...]
    itype: tuple[str, ...]
    priv: tuple[tuple[int, str, int, str, Any], ...]
    gre = k in (Kind.LOCALIZER, Kind.GRE_T2STAR, Kind.MPRAGE_3D)
    epi = k is Kind.DWI
    inv = _is_inversion(k)
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
        opts: list[str] = []
        if inv and not gre:
            opts.append("IR")
        if k is Kind.MPRAGE_3D:
            opts.append("IR")
        if not gre and not epi:
            opts.append("PFP")
        if fsat or epi:
            opts.append("FS")
        name = {
            Kind.LOCALIZER: "*fl2d1",
            Kind.GRE_T2STAR: "*fl2d1r4",
            Kind.MPRAGE_3D: "*tfl3d1_16ns",
            Kind.SPACE_3D: "*spc_125ns",
            Kind.SPACE_STIR_3D: "*spcir_125ns",
            Kind.STIR: "*tir2d1_15",
            Kind.FLAIR: "*tir2d1_16",
            Kind.DWI: "*ep_b800t",
        }.get(k, f"*tse2d1_{ph.etl}")
        if k is Kind.MPRAGE_3D:
            sseq, svar = ("GR", "IR"), ("SK", "SP", "MP")
        elif gre:
            sseq, svar = ("GR",), ("SP", "OSP")
        elif epi:
            sseq, svar = ("EP",), ("SK", "SP")
        elif inv:
            sseq, svar = ("SE", "IR"), ("SK", "SP", "MP", "OSP")
        else:
            sseq, svar = ("SE",), ("SK", "SP", "OSP")
        itype = ("ORIGINAL", "PRIMARY", "M", "ND", "NORM")
        if epi:
            itype = ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "NORM")
        if k is Kind.MPRAGE_3D or k in (Kind.SPACE_3D, Kind.SPACE_STIR_3D):
            itype = ("ORIGINAL", "PRIMARY", "M", "ND", "NORM")
        priv = ((0x0051, "SIEMENS MR HEADER", 0x0F, "LO", "BO1,2;SP4-6"),)
        return _Profile(name, sseq, svar, tuple(opts), itype, priv)

    if vendor is Vendor.GE:
        freq = {Plane.AXIAL: "FSA_GEMS", Plane.CORONAL: "FSS_GEMS", Plane.SAGITTAL: "FSS_GEMS"}[spec.plane_]
        if k is Kind.LOCALIZER:
            opts_t: tuple[str, ...] = ("FAST_GEMS",)
            psd, internal = "3-plane", "FGRE"
        elif k is Kind.MPRAGE_3D:
            opts_t = ("FAST_GEMS", "EDR_GEMS", "IR_GEMS", "ACC_GEMS")
            psd, internal = "efgre3d", "EFGRE3D"
        elif k in (Kind.SPACE_3D, Kind.SPACE_STIR_3D):
            opts_t = ("FAST_GEMS", "EDR_GEMS", "ACC_GEMS") + (("IR_GEMS",) if k is Kind.SPACE_STIR_3D else ()) + (
                ("FS",) if fsat else ())
            psd, internal = "cube", "CUBE"
        elif k is Kind.STIR:
            opts_t = ("IR_GEMS", "FAST_GEMS", "EDR_GEMS", freq, "ACC_GEMS")
            psd, internal = "fsirm", "FSE-IR"
        elif k is Kind.FLAIR:
            opts_t = ("FAST_GEMS", "EDR_GEMS", "T2FLAIR_GEMS", "ACC_GEMS")
            psd, internal = "fsirm", "FSE-IR"
        elif k is Kind.DWI:
            opts_t = ("EPI_GEMS", "FS", "ACC_GEMS")
            psd, internal = "epi2", "EPI"
        elif k is Kind.GRE_T2STAR:
            opts_t = ("FAST_GEMS", "EDR_GEMS", freq)
            psd, internal = "fgre", "FGRE"
        elif k is Kind.DIXON:
            opts_t = ("FAST_GEMS", "EDR_GEMS", freq, "FLEX_GEMS", "ACC_GEMS")
            psd, internal = "fse-flex", "FSE-XL"
        else:  # T1/T2/PD FSE
            opts_t = ("FAST_GEMS", "EDR_GEMS", freq, "SAT_GEMS", "ACC_GEMS")
            if fsat:
                opts_t = ("FAST_GEMS", "EDR_GEMS", "FS", "ACC_GEMS")
            psd, internal = "fse-xl", "FSE-XL"
        if k is Kind.MPRAGE_3D:
            sseq, svar = ("GR", "IR"), ("SS", "SK", "MP")
        elif gre:
            sseq, svar = ("GR",), ("SS", "SK")
        elif epi:
            sseq, svar = ("EP",), ("SK", "SS")
        elif inv:
            sseq, svar = ("SE", "IR"), ("SK", "OSP")
        else:
            sseq, svar = ("SE",), ("SK", "OSP")
        priv = (
            (0x0019, "GEMS_ACQU_01", 0x9C, "LO", psd),
            (0x0019, "GEMS_ACQU_01", 0x9E, "LO", internal),
        )
        return _Profile(None, sseq, svar, opts_t, ("ORIGINAL", "PRIMARY", "OTHER"), priv)

    if vendor is Vendor.PHILIPS:
        if k is Kind.LOCALIZER:
            tech, sseq, svar, itype = "FFE", ("GR",), ("SP",), ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
        elif k is Kind.MPRAGE_3D:
            tech, sseq, svar, itype = "T1TFE", ("GR",), ("MP", "SP"), ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
        elif k is Kind.GRE_T2STAR:
            tech, sseq, svar, itype = "FFE", ("GR",), ("SP",), ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
        elif k is Kind.DWI:
            tech, sseq, svar, itype = "DwiSE", ("SE",), ("SK",), ("ORIGINAL", "PRIMARY", "DW_SE", "DW", "SE")
        elif inv:
            tech, sseq, svar, itype = "IR", ("IR",), ("SK",), ("ORIGINAL", "PRIMARY", "M_IR", "M", "IR")
            if k in (Kind.SPACE_STIR_3D,):
                tech = "TSE"
        else:
            tech, sseq, svar, itype = "TSE", ("SE",), ("SK",), ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE")
        opts_p: tuple[str, ...] = ("FS",) if fsat else ("OTHER",)
        if k is Kind.DIXON:
            opts_p = ("OTHER",)
        prepulse = "INVERSION" if inv else "NO"
        priv = (
            (0x2001, "Philips Imaging DD 001", 0x20, "LO", tech),
            (0x2001, "Philips Imaging DD 001", 0x21, "CS", "Y" if fsat and k is not Kind.DIXON else "N"),
            (0x2001, "Philips Imaging DD 001", 0x1C, "CS", prepulse),
        )
        return _Profile(None, sseq, svar, opts_p, itype, priv)

    if vendor is Vendor.CANON:
        # Canon often writes no Sequence Name; Scan Options carry FS / IR.
        opts_c: list[str] = []
        if fsat or epi:
            opts_c.append("FS")
        if inv:
            opts_c.append("IR")
        if k is Kind.MPRAGE_3D:
            sseq, svar = ("GR", "IR"), ("SP", "MP")
        elif gre:
            sseq, svar = ("GR",), ("SP",)
        elif epi:
            sseq, svar = ("EP",), ("SK",)
        elif inv:
            sseq, svar = ("IR", "SE"), ("SK",)
        else:
            sseq, svar = ("SE",), ("SK",)
        return _Profile(None, sseq, svar, tuple(opts_c), ("ORIGINAL", "PRIMARY", "OTHER"))

    if vendor is Vendor.HITACHI:
        opts_h: list[str] = []
        if fsat or epi:
            opts_h.append("FS")
        if inv:
            opts_h.append("IR")
        name = {Kind.LOCALIZER: "GE2D", Kind.GRE_T2STAR: "GE2D", Kind.MPRAGE_3D: "RSSG3D", Kind.DWI: "SSEPI",
                Kind.STIR: "IR_FSE", Kind.FLAIR: "IR_FSE"}.get(k, "FSE3D" if spec.is_3d else "FSE")
        if gre:
            sseq, svar = (("GR", "IR") if k is Kind.MPRAGE_3D else ("GR",)), ("SP",)
        elif epi:
            sseq, svar = ("EP",), ("SK",)
        elif inv:
            sseq, svar = ("IR",), ("SK",)
        else:
            sseq, svar = ("SE",), ("SK",)
        return _Profile(name, sseq, svar, tuple(opts_h), ("ORIGINAL", "PRIMARY", "OTHER"))

    # UIH
    opts_u: list[str] = []
    if fsat or epi:
        opts_u.append("FS")
    if inv:
        opts_u.append("IR")
    name = {Kind.LOCALIZER: "gre_fsp", Kind.GRE_T2STAR: "gre", Kind.MPRAGE_3D: "gre_fsp_3d", Kind.DWI: "epi_dwi",
            Kind.STIR: "fse_ir", Kind.FLAIR: "fse_ir"}.get(k, "fse_mx" if spec.is_3d else "fse")
    if gre:
        sseq, svar = (("GR", "IR") if k is Kind.MPRAGE_3D else ("GR",)), ("SP",)
    elif epi:
        sseq, svar = ("EP",), ("SK",)
    elif inv:
        sseq, svar = ("SE", "IR"), ("SK",)
    else:
        sseq, svar = ("SE",), ("SK",)
    return _Profile(name, sseq, svar, tuple(opts_u), ("ORIGINAL", "PRIMARY", "M", "ND"))


# ----------------------------------------------------------------------------------------- geometry

CENTER = (0.0, 30.0, -120.0)  # mid-pelvis, patient coordinates (LPS), mm


def plexus_planes(tilt_deg: float = 30.0) -> tuple[tuple[Plane, float], tuple[Plane, float]]:
    """(oblique coronal, oblique axial) plane/tilt pairs that are mutually orthogonal.

    A coronal plane tilted by +t about left-right has normal (0, cos t, sin t); an axial plane tilted
    by -t has normal (0, -sin t, cos t): their dot product is 0.
    """
    return (Plane.CORONAL, tilt_deg), (Plane.AXIAL, -tilt_deg)


def _positions(orientation: Sequence[float], n: int, step: float, rows: int, cols: int, pixel: float,
               center: Sequence[float] = CENTER) -> list[tuple[float, ...]]:
    row = np.array(orientation[:3])
    col = np.array(orientation[3:])
    normal = np.array(slice_normal(orientation) or (0.0, 0.0, 1.0))
    c = np.array(center)
    corner = c - row * (cols * pixel / 2) - col * (rows * pixel / 2)
    out = []
    for i in range(n):
        p = corner + normal * (i - (n - 1) / 2) * step
        out.append(tuple(float(round(v, 4)) for v in p))
    return out


# --------------------------------------------------------------------------------------- datasets


def _fmt(value: float) -> str:
    """DS text without float noise (e.g. 0.78 not 0.7800000000000001)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _vec(values: Iterable[float]) -> list[str]:
    return [_fmt(v) for v in values]


def _add_time(hhmmss: str, minutes: float) -> str:
    base = dt.datetime.strptime(hhmmss[:6], "%H%M%S")
    t = base + dt.timedelta(seconds=round(minutes * 60))
    return t.strftime("%H%M%S") + ".000000"


def _pixels(rows: int, cols: int, level: int, slice_index: int) -> np.ndarray:
    """A small deterministic phantom: a bright disc on a dark background, varying by slice."""
    y, x = np.mgrid[0:rows, 0:cols]
    r = np.hypot(y - rows / 2 + 0.5, x - cols / 2 + 0.5)
    img = np.where(r < rows * (0.30 + 0.03 * (slice_index % 3)), level, level // 8)
    img = img + ((x + y + slice_index) % 7) * 3
    return img.astype(np.uint16)


_LEVEL = {"T1": 900, "T2": 1400, "PD": 1100}


@dataclass(frozen=True)
class _Image:
    """One image to write: its dataset and the file name inside the study folder."""

    name: str
    dataset: Dataset


def _study_common(ds: Dataset, study: StudySpec, uids: dict[str, str]) -> None:
    v = study.vendor_
    info = _VENDOR_INFO[v]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.AccessionNumber = study.accession
    ds.Modality = study.modality_
    ds.Manufacturer = info["manufacturer"]
    ds.InstitutionName = study.institution
    ds.ReferringPhysicianName = study.referring
    ds.StationName = study.station or info["station"]
    ds.StudyDescription = study.study_description
    ds.PatientName = study.patient_name or f"SAMPLE^{v.name.split('_')[0]}"
    ds.PatientID = study.patient_id or f"SAMPLE-{study.accession}"
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = uids["study"]
    ds.StudyID = study.accession[-6:]
    ds.BodyPartExamined = study.body_part
    if study.requested_procedure:
        ds.RequestedProcedureDescription = study.requested_procedure
    if study.procedure_code:
        value, scheme, meaning = study.procedure_code
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = scheme
        item.CodeMeaning = meaning
        ds.ProcedureCodeSequence = DicomSequence([item])
    req = Dataset()
    req.RequestedProcedureID = study.accession[:16]
    req.RequestedProcedureDescription = study.requested_procedure or study.study_description
    req.ScheduledProcedureStepID = study.accession[:14] + "-1"
    ds.RequestAttributesSequence = DicomSequence([req])


def scanner_of(study: StudySpec) -> tuple[str, str]:
    """(Manufacturer, Manufacturer's Model Name) that :func:`write_study` writes for this study."""
    model, _software = _model(study, study.field_strength, ct=study.modality_ == "CT")
    return _VENDOR_INFO[study.vendor_]["manufacturer"], model


def _model(study: StudySpec, fs: float, ct: bool = False) -> tuple[str, str]:
    info = _VENDOR_INFO[study.vendor_]
    if ct:
        return study.model or info.get("ct_model", "CT"), study.software or info.get("ct_software", "1.0")
    models = info["model"]
    model = study.model or models.get(fs) or models[3.0 if fs >= 2.5 else 1.5]
    return model, study.software or info["software"]


def _apply_overrides(ds: Dataset, spec: SeriesSpec) -> None:
    for keyword in spec.omit:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword, value in spec.overrides:
        _set_raw(ds, keyword, value)


def _set_raw(ds: Dataset, keyword: str, value: Any) -> None:
    """Set ``keyword`` to ``value`` verbatim: strings (or lists of strings, joined by backslash) are
    stored as raw bytes without validation, so malformed values ("abc" in a DS) reach the file."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"unknown DICOM keyword {keyword!r}")
    if not isinstance(value, (str, list, tuple)):
        setattr(ds, keyword, value)
        return
    text = value if isinstance(value, str) else "\\".join(str(v) for v in value)
    raw = text.encode("latin-1")
    if len(raw) % 2:
        raw += b"\x00" if pydicom.datadict.dictionary_VR(tag) == "UI" else b" "
    vr = pydicom.datadict.dictionary_VR(tag)
    ds[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)


@dataclass(frozen=True)
class _SeriesPlan:
    """A resolved series: which spec, which Dixon output (if split), numbers, times, UIDs."""

    spec: SeriesSpec
    index: int
    number: int
    output: str | None  # Dixon output written as its own series (Siemens/GE/Canon/...)
    start: str  # HHMMSS.ffffff
    uid: str


def _plan(study: StudySpec) -> list[_SeriesPlan]:
    """Series numbers and start times in acquisition order; split Dixon outputs where the vendor does."""
    vendor = study.vendor_
    plans: list[_SeriesPlan] = []
    minutes = 1.0
    number = 0
    for index, spec in enumerate(study.series):
        ph = _physics(spec, vendor, spec.field_strength or study.field_strength)
        start = _add_time(study.study_time, minutes)
        number = spec.series_number if spec.series_number is not None else number + 1
        if spec.kind_ is Kind.DIXON and vendor is not Vendor.PHILIPS:
            for j, out in enumerate(spec.dixon_outputs):
                n = number + j
                plans.append(_SeriesPlan(spec, index, n, out, start, uid(_seed(study), "series", index, out)))
            number = number + len(spec.dixon_outputs) - 1
        else:
            plans.append(_SeriesPlan(spec, index, number, None, start, uid(_seed(study), "series", index)))
        minutes += ph.minutes + 0.5
    if vendor is Vendor.PHILIPS:  # Philips numbers series 101, 201, 301, ...
        plans = [replace(p, number=p.number * 100 + 1) if p.spec.series_number is None else p for p in plans]
    return plans


def _seed(study: StudySpec) -> str:
    return study.uid_seed or study.accession


def _first_post_start(study: StudySpec, plans: list[_SeriesPlan]) -> str | None:
    for p in plans:
        if p.spec.is_post:
            return p.start
    return None


def _contrast_agent(study: StudySpec, spec: SeriesSpec) -> str:
    """Contrast/Bolus Agent as each vendor usually leaves it (often empty on Siemens/GE MR)."""
    if spec.contrast_agent is not None:
        return spec.contrast_agent
    if not spec.is_post:
        return ""
    if study.modality_ == "CT":
        return "Omnipaque 350"
    return {
        Vendor.SIEMENS: "",
        Vendor.SIEMENS_XA: "",
        Vendor.GE: "",
        Vendor.PHILIPS: "GADOVIST",
        Vendor.CANON: "Gadovist 1.0",
        Vendor.HITACHI: "GADAVIST",
        Vendor.UIH: "Gadavist",
    }[study.vendor_]


def _dixon_image_type(vendor: Vendor, output: str) -> tuple[str, ...]:
    if vendor is Vendor.PHILIPS:
        return ("ORIGINAL", "PRIMARY", output, output, "DIXON")
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
        word = {"W": "WATER", "F": "FAT", "IP": "IN_PHASE", "OP": "OPP_PHASE"}[output]
        return ("DERIVED", "PRIMARY", "DIXON", word)
    if vendor is Vendor.GE:
        return ("DERIVED", "PRIMARY", "FLEX", {"W": "WATER", "F": "FAT", "IP": "IN_PHASE", "OP": "OUT_PHASE"}[output])
    return ("ORIGINAL", "PRIMARY", {"W": "WATER", "F": "FAT", "IP": "IN_PHASE", "OP": "OUT_PHASE"}[output])


def _dixon_description(vendor: Vendor, base: str, output: str) -> str:
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
        return base + {"W": "_W", "F": "_F", "IP": "_in", "OP": "_opp"}[output]
    if vendor is Vendor.GE:
        return {"W": "WATER: ", "F": "FAT: ", "IP": "InPhase: ", "OP": "OutPhase: "}[output] + base
    return base + {"W": " WATER", "F": " FAT", "IP": " IN", "OP": " OUT"}[output]


def _localizer_orientations() -> list[tuple[float, ...]]:
    return [orientation_from_angles(p) for p in (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)]


def _mr_series_images(study: StudySpec, plan: _SeriesPlan, uids: dict[str, str]) -> list[_Image]:
    """Classic MR Image Storage files (one per slice; one series per plan)."""
    vendor = study.vendor_
    spec = plan.spec
    fs = spec.field_strength or study.field_strength
    ph = _physics(spec, vendor, fs)
    prof = _profile(vendor, spec, ph)
    matrix = spec.matrix or 32
    thickness = spec.slice_thickness or ph.thickness
    step = thickness + ph.gap
    description = spec.description if spec.description is not None else _description(vendor, spec)
    outputs: list[str | None] = [plan.output]
    stacks: list[tuple[tuple[float, ...], str | None]]
    if spec.kind_ is Kind.DIXON and vendor is Vendor.PHILIPS:
        outputs = list(spec.dixon_outputs)
    elif plan.output is not None and spec.description is None:
        description = _dixon_description(vendor, description, plan.output)
    if spec.kind_ is Kind.LOCALIZER:
        stacks = [(o, None) for o in _localizer_orientations()]
    else:
        o = orientation_from_angles(spec.plane_, spec.tilt_deg)
        stacks = [(o, out) for out in outputs]
    agent = _contrast_agent(study, spec)
    model, software = _model(study, fs)
    protocol = spec.protocol_name if spec.protocol_name is not None else description
    if vendor is Vendor.GE and spec.protocol_name is None and study.requested_procedure:
        protocol = study.requested_procedure  # GE: Protocol Name is often the exam-level protocol
    images: list[_Image] = []
    instance = 0
    acq_minutes = 0.2
    for orientation, output in stacks:
        n = spec.slices
        positions = _positions(orientation, n, step, matrix, matrix, ph.pixel)
        b_values: tuple[int | None, ...] = ph.b_values or (None,)
        for b in b_values:
            for s in range(n):
                instance += 1
                ds = Dataset()
                _study_common(ds, study, uids)
                ds.SOPClassUID = MRImageStorage
                ds.SOPInstanceUID = uid(_seed(study), "image", plan.index, plan.output, output, b, instance)
                itype = prof.image_type
                if output is not None:
                    itype = _dixon_image_type(vendor, output)
                if spec.kind_ is Kind.DWI and vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA) and b:
                    itype = ("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "ND", "NORM")
                ds.ImageType = list(itype)
                ds.SeriesDate = study.study_date
                ds.SeriesTime = plan.start
                ds.AcquisitionDate = study.study_date
                ds.AcquisitionTime = _add_time(plan.start[:6], acq_minutes)
                ds.ContentDate = study.study_date
                ds.ContentTime = _add_time(plan.start[:6], ph.minutes + 0.1)
                ds.ManufacturerModelName = model
                ds.SoftwareVersions = software
                ds.DeviceSerialNumber = "12345"
                ds.SeriesDescription = description
                ds.ProtocolName = protocol
                ds.SeriesInstanceUID = plan.uid
                ds.SeriesNumber = plan.number
                ds.AcquisitionNumber = 1
                ds.InstanceNumber = instance
                ds.FrameOfReferenceUID = uids["frame"]
                ds.PositionReferenceIndicator = ""
                ds.ScanningSequence = list(prof.scanning_sequence)
                ds.SequenceVariant = list(prof.sequence_variant)
                ds.ScanOptions = list(prof.scan_options) if prof.scan_options else ""
                ds.MRAcquisitionType = "3D" if spec.is_3d else "2D"
                if prof.sequence_name is not None:
                    ds.SequenceName = prof.sequence_name if not (b and spec.kind_ is Kind.DWI) else f"*ep_b{b}t"
                    if spec.kind_ is Kind.DWI and b == 0 and vendor in (Vendor.SIEMENS,):
                        ds.SequenceName = "*ep_b0"
                ds.AngioFlag = "N"
                ds.SliceThickness = _fmt(thickness)
                ds.RepetitionTime = _fmt(ph.tr)
                ds.EchoTime = _fmt(ph.te)
                if ph.ti is not None:
                    ds.InversionTime = _fmt(ph.ti)
                ds.NumberOfAverages = "1"
                ds.ImagingFrequency = _fmt(42.577478 * fs)
                ds.ImagedNucleus = "1H"
                ds.EchoNumbers = "1"
                ds.MagneticFieldStrength = _fmt(fs)
                ds.SpacingBetweenSlices = _fmt(step)
                ds.EchoTrainLength = str(ph.etl)
                ds.PercentSampling = "100"
                ds.PercentPhaseFieldOfView = "80"
                ds.PixelBandwidth = "220"
                if b is not None:
                    ds.DiffusionBValue = float(b)
                ds.ContrastBolusAgent = agent
                if agent or spec.is_post:
                    inj = study.injection_time
                    ds.ContrastBolusRoute = "IV" if agent else ""
                    if inj:
                        ds.ContrastBolusStartTime = inj
                ds.ReceiveCoilName = {Vendor.SIEMENS: "BO1,2;SP4-6", Vendor.GE: "GEM PA",
                                      Vendor.PHILIPS: "dS Anterior"}.get(vendor, "Body")
                ds.AcquisitionMatrix = [0, ph.acq_matrix[0], ph.acq_matrix[1], 0]
                ds.InPlanePhaseEncodingDirection = "ROW" if spec.plane_ is Plane.AXIAL else "COL"
                ds.FlipAngle = _fmt(ph.flip)
                ds.PatientPosition = "HFS"
                ds.ImagePositionPatient = _vec(positions[s])
                ds.ImageOrientationPatient = _vec(orientation)
                ds.SliceLocation = _fmt(float(np.dot(positions[s], slice_normal(orientation) or (0, 0, 1))))
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = "MONOCHROME2"
                ds.Rows = matrix
                ds.Columns = matrix
                ds.PixelSpacing = _vec((ph.pixel, ph.pixel))
                ds.BitsAllocated = 16
                ds.BitsStored = 12
                ds.HighBit = 11
                ds.PixelRepresentation = 0
                ds.WindowCenter = "600"
                ds.WindowWidth = "1200"
                for group, creator, offset, vr, value in prof.private:
                    ds.private_block(group, creator, create=True).add_new(offset, vr, value)
                level = _LEVEL.get(_weighting(spec), 1000) // (2 if output in ("F",) else 1)
                ds.PixelData = _pixels(matrix, matrix, level, s).tobytes()
                _apply_overrides(ds, spec)
                name = f"{plan.number:04d}_{instance:03d}.dcm"
                images.append(_Image(name, ds))
    return images


def _item(**kwargs: Any) -> Dataset:
    item = Dataset()
    for k, v in kwargs.items():
        setattr(item, k, v)
    return item


def _enhanced_series_image(study: StudySpec, plan: _SeriesPlan, uids: dict[str, str]) -> list[_Image]:
    """Siemens XA: one Enhanced MR Image Storage object per series, frames in functional groups."""
    vendor = study.vendor_
    spec = plan.spec
    fs = spec.field_strength or study.field_strength
    ph = _physics(spec, vendor, fs)
    prof = _profile(vendor, spec, ph)
    matrix = spec.matrix or 16
    thickness = spec.slice_thickness or ph.thickness
    step = thickness + ph.gap
    description = spec.description if spec.description is not None else _description(vendor, spec)
    if plan.output is not None and spec.description is None:
        description = _dixon_description(vendor, description, plan.output)
    k = spec.kind_
    if k is Kind.LOCALIZER:
        frames = [(o, pos) for o in _localizer_orientations()
                  for pos in _positions(o, spec.slices, step, matrix, matrix, ph.pixel)]
    else:
        o = orientation_from_angles(spec.plane_, spec.tilt_deg)
        frames = [(o, pos) for pos in _positions(o, spec.slices, step, matrix, matrix, ph.pixel)]
    uniform = len({f[0] for f in frames}) == 1
    itype = prof.image_type[:2] + ("M", "NONE")
    if plan.output is not None:
        itype = ("DERIVED", "PRIMARY", "DIXON", {"W": "WATER", "F": "FAT", "IP": "IN_PHASE", "OP": "OPP_PHASE"}[plan.output])
    contrast = {"T1": "T1", "T2": "T2", "PD": "PROTON_DENSITY"}[_weighting(spec)]
    if k is Kind.FLAIR:
        contrast = "FLUID_ATTENUATED"
    if k is Kind.DWI:
        contrast = "DIFFUSION"
    if k is Kind.LOCALIZER:
        contrast = "MIXED"
    agent = _contrast_agent(study, spec)
    model, software = _model(study, fs)
    gre = "GR" in prof.scanning_sequence
    ds = Dataset()
    _study_common(ds, study, uids)
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = uid(_seed(study), "image", plan.index, plan.output, "enhanced")
    ds.ImageType = list(itype)
    ds.SeriesDate = study.study_date
    ds.SeriesTime = plan.start
    ds.ContentDate = study.study_date
    ds.ContentTime = _add_time(plan.start[:6], ph.minutes + 0.1)
    acq_dt = study.study_date + _add_time(plan.start[:6], 0.2)
    ds.AcquisitionDateTime = acq_dt
    ds.ManufacturerModelName = model
    ds.SoftwareVersions = software
    ds.DeviceSerialNumber = "175012"
    ds.SeriesDescription = description
    ds.ProtocolName = spec.protocol_name if spec.protocol_name is not None else description
    ds.SeriesInstanceUID = plan.uid
    ds.SeriesNumber = plan.number
    ds.InstanceNumber = 1
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = uids["frame"]
    ds.PositionReferenceIndicator = ""
    ds.ContentQualification = "PRODUCT"
    ds.PulseSequenceName = prof.sequence_name or ""
    ds.MRAcquisitionType = "3D" if spec.is_3d else "2D"
    ds.EchoPulseSequence = "GRADIENT" if gre else "SPIN"
    ds.MultipleSpinEcho = "NO" if gre else "YES"
    ds.MultiPlanarExcitation = "NO" if spec.is_3d else "YES"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "YES" if k is Kind.DWI else "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT" if spec.is_fat_sat or k is Kind.DWI else "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL" if not gre else "SINGLE"
    ds.AcquisitionContrast = contrast
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.ResonantNucleus = "1H"
    ds.MagneticFieldStrength = _fmt(fs)
    ds.ImagingFrequency = 42.577478 * fs
    ds.KSpaceFiltering = "NONE"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ContrastBolusAgent = agent
    if agent:
        ds.ContrastBolusRoute = "IV"
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = matrix
    ds.Columns = matrix
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.DimensionOrganizationType = "3D" if uniform else ""
    dim_uid = uid(_seed(study), "dimension", plan.index, plan.output)
    ds.DimensionOrganizationSequence = DicomSequence([_item(DimensionOrganizationUID=dim_uid)])
    ds.DimensionIndexSequence = DicomSequence([
        _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="In-Stack Position Number"),
    ])
    mod = _item(InversionRecovery="YES" if _is_inversion(k) else "NO", FlowCompensation="NONE",
                Spoiling="RF" if gre else "NONE", T2Preparation="NO", SpectrallySelectedExcitation="NONE",
                SpatialPresaturation="SLAB" if vendor is Vendor.SIEMENS_XA and not gre else "NONE",
                PartialFourier="NO", ParallelAcquisition="YES", ParallelReductionFactorInPlane=2,
                ParallelAcquisitionTechnique="GRAPPA")
    if ph.ti is not None:
        mod.InversionTimes = [ph.ti]
    shared = _item(
        PixelMeasuresSequence=DicomSequence([_item(SliceThickness=_fmt(thickness), SpacingBetweenSlices=_fmt(step),
                                                   PixelSpacing=_vec((ph.pixel, ph.pixel)))]),
        MRTimingAndRelatedParametersSequence=DicomSequence([_item(RepetitionTime=ph.tr, FlipAngle=ph.flip,
                                                                  EchoTrainLength=ph.etl, RFEchoTrainLength=ph.etl,
                                                                  GradientEchoTrainLength=0)]),
        MRFOVGeometrySequence=DicomSequence([_item(InPlanePhaseEncodingDirection="ROW",
                                                   MRAcquisitionFrequencyEncodingSteps=ph.acq_matrix[0],
                                                   MRAcquisitionPhaseEncodingStepsInPlane=ph.acq_matrix[1],
                                                   PercentSampling=100.0, PercentPhaseFieldOfView=80.0)]),
        MRModifierSequence=DicomSequence([mod]),
        MREchoSequence=DicomSequence([_item(EffectiveEchoTime=ph.te)]),
        MRReceiveCoilSequence=DicomSequence([_item(ReceiveCoilName="BO1,2;SP4-6", ReceiveCoilType="MULTICOIL",
                                                   QuadratureReceiveCoil="NO")]),
        MRAveragesSequence=DicomSequence([_item(NumberOfAverages=1.0)]),
    )
    if uniform:
        shared.PlaneOrientationSequence = DicomSequence([_item(ImageOrientationPatient=_vec(frames[0][0]))])
    if spec.is_post:
        shared.ContrastBolusUsageSequence = DicomSequence([_item(ContrastBolusAgentNumber=1,
                                                                 ContrastBolusAgentAdministered="YES")])
    if prof.scan_options:
        # XA keeps Scan Options only in the series private data (0021,105C), inside (0021,10FE)
        sds = Dataset()
        sds.private_block(0x0021, "SIEMENS MR SDS 01", create=True).add_new(0x5C, "CS", list(prof.scan_options))
        shared.private_block(0x0021, "SIEMENS MR SDS 01", create=True).add_new(0xFE, "SQ", DicomSequence([sds]))
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    pixels = []
    level = _LEVEL.get(_weighting(spec), 1000)
    for i, (orientation, position) in enumerate(frames):
        stack = 1 + (i // spec.slices if not uniform else 0)
        in_stack = 1 + (i % spec.slices)
        frame_time = study.study_date + _add_time(plan.start[:6], 0.2 + 0.01 * i)
        group = _item(
            FrameContentSequence=DicomSequence([_item(FrameAcquisitionNumber=1, FrameAcquisitionDateTime=frame_time,
                                                      FrameReferenceDateTime=frame_time,
                                                      FrameAcquisitionDuration=ph.minutes * 60000.0,
                                                      StackID=str(stack), InStackPositionNumber=in_stack,
                                                      DimensionIndexValues=[stack, in_stack])]),
            PlanePositionSequence=DicomSequence([_item(ImagePositionPatient=_vec(position))]),
            MRImageFrameTypeSequence=DicomSequence([_item(FrameType=list(itype), PixelPresentation="MONOCHROME",
                                                          VolumetricProperties="VOLUME",
                                                          VolumeBasedCalculationTechnique="NONE",
                                                          ComplexImageComponent="MAGNITUDE",
                                                          AcquisitionContrast=contrast)]),
            FrameVOILUTSequence=DicomSequence([_item(WindowCenter="600", WindowWidth="1200")]),
        )
        if not uniform:
            group.PlaneOrientationSequence = DicomSequence([_item(ImageOrientationPatient=_vec(orientation))])
        per_frame.append(group)
        pixels.append(_pixels(matrix, matrix, level, in_stack - 1))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    if agent:
        ds.ContrastBolusAgentSequence = DicomSequence([_item(CodeValue="C-B0538", CodingSchemeDesignator="SRT",
                                                             CodeMeaning=agent, ContrastBolusAgentNumber=1,
                                                             ContrastBolusIngredientConcentration=1.0)])
    for group_no, creator, offset, vr, value in prof.private:
        ds.private_block(group_no, creator, create=True).add_new(offset, vr, value)
    ds.PixelData = np.stack(pixels).tobytes()
    _apply_overrides(ds, spec)
    return [_Image(f"{plan.number:04d}_001.dcm", ds)]


def _ct_series_images(study: StudySpec, plan: _SeriesPlan, uids: dict[str, str]) -> list[_Image]:
    """CT Image Storage: thin axial source or derived reformats, with IV contrast fields when post."""
    vendor = study.vendor_
    spec = plan.spec
    k = spec.kind_
    ph = _physics(spec, vendor, 0.0)
    matrix = spec.matrix or 32
    thickness = spec.slice_thickness or ph.thickness
    plane = Plane.AXIAL if k is Kind.CT_AXIAL else spec.plane_
    orientation = orientation_from_angles(plane, spec.tilt_deg)
    if k is Kind.CT_LOCALIZER:
        orientation = orientation_from_angles(Plane.CORONAL)
    positions = _positions(orientation, spec.slices, thickness, matrix, matrix, ph.pixel)
    agent = _contrast_agent(study, spec)
    model, software = _model(study, 0.0, ct=True)
    ge = vendor is Vendor.GE
    if k is Kind.CT_LOCALIZER:
        itype = ("ORIGINAL", "PRIMARY", "LOCALIZER")
    elif k is Kind.CT_AXIAL:
        itype = ("ORIGINAL", "PRIMARY", "AXIAL")
    else:
        itype = ("DERIVED", "SECONDARY", "REFORMATTED") if ge else ("DERIVED", "SECONDARY", "MPR")
    p = {Plane.AXIAL: "Axial", Plane.CORONAL: "Coronal", Plane.SAGITTAL: "Sagittal"}[plane]
    if spec.description is not None:
        description = spec.description
    elif k is Kind.CT_LOCALIZER:
        description = "Scout" if ge else "Topogram  0.6  T20f"
    elif k is Kind.CT_AXIAL:
        description = f"{_fmt(thickness)}mm {'STND' if ge else 'Br40'} {'+C' if agent else 'W/O'}".strip()
    else:
        description = f"{p} {_fmt(thickness)}mm {'+C' if agent else 'W/O'}".strip()
    images = []
    for s in range(spec.slices):
        instance = s + 1
        ds = Dataset()
        _study_common(ds, study, uids)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = uid(_seed(study), "image", plan.index, instance)
        ds.ImageType = list(itype)
        ds.SeriesDate = study.study_date
        ds.SeriesTime = plan.start
        ds.AcquisitionDate = study.study_date
        ds.AcquisitionTime = plan.start
        ds.ContentDate = study.study_date
        ds.ContentTime = _add_time(plan.start[:6], ph.minutes)
        ds.ManufacturerModelName = model
        ds.SoftwareVersions = software
        ds.SeriesDescription = description
        ds.ProtocolName = spec.protocol_name if spec.protocol_name is not None else study.study_description
        ds.SeriesInstanceUID = plan.uid
        ds.SeriesNumber = plan.number
        ds.AcquisitionNumber = 2 if agent else 1
        ds.InstanceNumber = instance
        ds.FrameOfReferenceUID = uids["frame"]
        ds.PositionReferenceIndicator = ""
        if k is not Kind.CT_REFORMAT:
            ds.KVP = "120" if not ge else "120"
            ds.XRayTubeCurrent = 240
            ds.ExposureTime = 500
            ds.DataCollectionDiameter = "500"
            ds.ReconstructionDiameter = "380"
            ds.GantryDetectorTilt = "0"
            ds.TableHeight = "160"
            ds.RotationDirection = "CW"
            ds.FilterType = "BODY FILTER" if ge else "FLAT"
            ds.FocalSpots = "1.2"
            ds.ConvolutionKernel = "STANDARD" if ge else "Br40d"
            ds.SpiralPitchFactor = 0.984375 if ge else 0.6
        else:
            ds.KVP = "120"
            ds.ConvolutionKernel = "STANDARD" if ge else "Br40d"
        ds.SliceThickness = _fmt(thickness)
        ds.ContrastBolusAgent = agent
        if agent:
            ds.ContrastBolusRoute = "IV"
            ds.ContrastBolusVolume = "100"
            ds.ContrastBolusStartTime = study.injection_time or _add_time(plan.start[:6], -1.2)
        ds.PatientPosition = "FFS"
        ds.ImagePositionPatient = _vec(positions[s])
        ds.ImageOrientationPatient = _vec(orientation)
        ds.SliceLocation = _fmt(positions[s][2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = matrix
        ds.Columns = matrix
        ds.PixelSpacing = _vec((ph.pixel, ph.pixel))
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = _pixels(matrix, matrix, 1024 + (180 if agent else 40), s).tobytes()
        _apply_overrides(ds, spec)
        images.append(_Image(f"{plan.number:04d}_{instance:03d}.dcm", ds))
    return images


def build_datasets(study: StudySpec) -> list[tuple[str, Dataset]]:
    """Every image of the study as (file name, dataset), without writing anything."""
    seed = _seed(study)
    uids = {"study": uid(seed, "study"), "frame": uid(seed, "frame-of-reference")}
    plans = _plan(study)
    if study.injection_time is None:
        first_post = _first_post_start(study, plans)
        if first_post is not None:
            study = replace(study, injection_time=_add_time(first_post[:6], -2.0))
    out: list[tuple[str, Dataset]] = []
    for plan in plans:
        if plan.spec.kind_ in CT_KINDS:
            images = _ct_series_images(study, plan, uids)
        elif study.vendor_ is Vendor.SIEMENS_XA:
            images = _enhanced_series_image(study, plan, uids)
        else:
            images = _mr_series_images(study, plan, uids)
        out.extend((img.name, img.dataset) for img in images)
    return out


# ------------------------------------------------------------------------------------------- writing


def _write(ds: Dataset, path: Path, syntax: Syntax, file_meta: bool) -> None:
    ts = _SYNTAX_UID[syntax]
    little = syntax is not Syntax.EXPLICIT_BE
    implicit = syntax is Syntax.IMPLICIT_LE
    if not little:
        arr = np.frombuffer(ds.PixelData, dtype="<u2")
        ds.PixelData = arr.astype(">u2").tobytes()
    if file_meta:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ts
        meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")  # fixed: files stay byte-identical
        meta.ImplementationVersionName = "PROTOCOLCHECK"
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        with warnings.catch_warnings():  # deliberately malformed override values warn on write
            warnings.simplefilter("ignore", UserWarning)
            pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:
        if syntax is Syntax.DEFLATED:
            raise ValueError("a deflated dataset needs file meta (file_meta=True)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pydicom.dcmwrite(path, ds, implicit_vr=implicit, little_endian=little)


def write_study(spec: StudySpec, outdir: str | os.PathLike[str]) -> list[Path]:
    """Write every image of ``spec`` into ``outdir`` (created if needed); return the paths in order.

    File names are ``<series number>_<instance>.dcm``; an existing file of the same name is replaced.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    syntax = Syntax(spec.syntax)
    paths = []
    for name, ds in build_datasets(spec):
        path = out / name
        _write(ds, path, syntax, spec.file_meta)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------ study builders

PLEXUS_DESCRIPTION = "MRI LUMBOSACRAL PLEXUS WO+W CONTRAST"
PLEXUS_CODE = ("72197", "C4", "MRI lumbosacral plexus without and with contrast")


def plexus_series(
    tilt_deg: float = 30.0,
    *,
    oblique: bool = True,
    fluid_fat_suppressed: bool = True,
    post_contrast: bool = True,
    dixon: bool = False,
    slices: int = 3,
    localizer: bool = True,
) -> tuple[SeriesSpec, ...]:
    """The series of a dedicated lumbosacral plexus MRI, optionally missing parts.

    Complete: localizer; oblique coronal T1 TSE; oblique coronal STIR; oblique axial T2 TSE; oblique
    axial T2 FS; post-contrast oblique coronal and axial T1 FS. ``oblique=False`` gives true coronal /
    axial planes; ``dixon=True`` replaces the STIR/T2 FS with a T2 Dixon and the post T1 FS with T1 Dixon.
    """
    (cor, cor_t), (ax, ax_t) = plexus_planes(tilt_deg if oblique else 0.0)
    series: list[SeriesSpec] = []
    if localizer:
        series.append(SeriesSpec(Kind.LOCALIZER, slices=1))
    series.append(SeriesSpec(Kind.T1_TSE, cor, cor_t, slices))
    if dixon:
        series.append(SeriesSpec(Kind.DIXON, cor, cor_t, slices, weighting="T2"))
        series.append(SeriesSpec(Kind.T2_TSE, ax, ax_t, slices))
    else:
        if fluid_fat_suppressed:
            series.append(SeriesSpec(Kind.STIR, cor, cor_t, slices))
        series.append(SeriesSpec(Kind.T2_TSE, ax, ax_t, slices))
        if fluid_fat_suppressed:
            series.append(SeriesSpec(Kind.T2_FS, ax, ax_t, slices))
    if post_contrast:
        if dixon:
            series.append(SeriesSpec(Kind.DIXON, cor, cor_t, slices, weighting="T1", post_contrast=True))
            series.append(SeriesSpec(Kind.DIXON, ax, ax_t, slices, weighting="T1", post_contrast=True))
        else:
            series.append(SeriesSpec(Kind.T1_FS_POST, cor, cor_t, slices))
            series.append(SeriesSpec(Kind.T1_FS_POST, ax, ax_t, slices))
    return tuple(series)


def plexus_study(
    vendor: Vendor | str = Vendor.SIEMENS,
    accession: str = "PLX0001",
    *,
    field_strength: float = 3.0,
    study_date: str = "20250314",
    study_time: str = "081500",
    with_contrast_ordered: bool = True,
    series: Sequence[SeriesSpec] | None = None,
    **series_options: Any,
) -> StudySpec:
    """A lumbosacral plexus MRI study; ``series_options`` go to :func:`plexus_series`."""
    if with_contrast_ordered:
        description, code = PLEXUS_DESCRIPTION, PLEXUS_CODE
    else:
        description, code = "MRI LUMBOSACRAL PLEXUS WO CONTRAST", ("72195", "C4", "MRI lumbosacral plexus without contrast")
        series_options.setdefault("post_contrast", False)
    return StudySpec(
        vendor=vendor,
        accession=accession,
        series=tuple(series) if series is not None else plexus_series(**series_options),
        study_date=study_date,
        study_time=study_time,
        study_description=description.replace("MRI ", "MR "),
        requested_procedure=description,
        procedure_code=code,
        body_part="PELVIS",
        field_strength=field_strength,
    )


def pelvis_study(
    vendor: Vendor | str = Vendor.SIEMENS,
    accession: str = "PEL0001",
    *,
    field_strength: float = 1.5,
    study_date: str = "20250314",
    study_time: str = "101500",
    slices: int = 3,
) -> StudySpec:
    """A standard MR pelvis without contrast: true axial/coronal/sagittal T1/T2, no plexus views."""
    series = (
        SeriesSpec(Kind.LOCALIZER, slices=1),
        SeriesSpec(Kind.T2_TSE, Plane.SAGITTAL, 0, slices),
        SeriesSpec(Kind.T1_TSE, Plane.AXIAL, 0, slices),
        SeriesSpec(Kind.T2_TSE, Plane.AXIAL, 0, slices),
        SeriesSpec(Kind.T2_TSE, Plane.CORONAL, 0, slices),
    )
    return StudySpec(
        vendor=vendor,
        accession=accession,
        series=series,
        study_date=study_date,
        study_time=study_time,
        study_description="MR PELVIS WO",
        requested_procedure="MRI PELVIS WITHOUT CONTRAST",
        procedure_code=("72195", "C4", "MRI pelvis without contrast"),
        body_part="PELVIS",
        field_strength=field_strength,
    )


def ct_study(
    vendor: Vendor | str = Vendor.SIEMENS,
    accession: str = "CT0001",
    *,
    with_contrast: bool = True,
    study_date: str = "20250314",
    study_time: str = "140500",
    slices: int = 4,
) -> StudySpec:
    """CT abdomen/pelvis: scout, thin axial source, coronal and sagittal reformats (IV contrast optional)."""
    post = with_contrast
    series = (
        SeriesSpec(Kind.CT_LOCALIZER, Plane.CORONAL, slices=1, post_contrast=False),
        SeriesSpec(Kind.CT_AXIAL, Plane.AXIAL, slices=slices, post_contrast=post),
        SeriesSpec(Kind.CT_REFORMAT, Plane.CORONAL, slices=max(2, slices // 2), post_contrast=post),
        SeriesSpec(Kind.CT_REFORMAT, Plane.SAGITTAL, slices=max(2, slices // 2), post_contrast=post),
    )
    if with_contrast:
        description, code = "CT ABDOMEN PELVIS W CONTRAST", ("74177", "C4", "CT abdomen and pelvis with contrast")
    else:
        description, code = "CT ABDOMEN PELVIS WO CONTRAST", ("74176", "C4", "CT abdomen and pelvis without contrast")
    return StudySpec(
        vendor=vendor,
        accession=accession,
        series=series,
        study_date=study_date,
        study_time=study_time,
        study_description=description,
        requested_procedure=description,
        procedure_code=code,
        body_part="ABDOMEN",
        modality="CT",
    )


_SCENARIOS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("complete", {}),
    ("no-fluid-fs", {"fluid_fat_suppressed": False}),
    ("no-post", {"post_contrast": False}),
    ("no-oblique", {"oblique": False}),
    ("dixon", {"dixon": True}),
)


def varied_studies(count: int, *, seed: int = 0, slices: int = 3,
                   start_date: dt.date = dt.date(2025, 1, 6)) -> list[StudySpec]:
    """``count`` deterministic plexus studies cycling vendors, field strengths, tilts and scenarios.

    For benchmarks and corpus tests: study ``i`` is vendor ``i % 7``, one of five scenarios (complete,
    missing fluid fat suppression, missing post-contrast, no oblique planes, Dixon), 1.5 or 3 T, a
    tilt of 20-35 degrees, one study per 20 minutes from ``start_date``. Accessions are
    ``SYN<seed><i>``; the same arguments always give the same specs.
    """
    vendors = list(Vendor)
    out = []
    for i in range(count):
        name, options = _SCENARIOS[(i // len(vendors) + seed) % len(_SCENARIOS)]
        vendor = vendors[(i + seed) % len(vendors)]
        when = dt.datetime.combine(start_date, dt.time(7, 0)) + dt.timedelta(minutes=20 * i)
        spec = plexus_study(
            vendor,
            f"SYN{seed:02d}{i:06d}",
            field_strength=3.0 if (i + seed) % 3 else 1.5,
            study_date=when.strftime("%Y%m%d"),
            study_time=when.strftime("%H%M%S"),
            tilt_deg=20.0 + (i * 7 + seed) % 16,
            slices=slices,
            **options,
        )
        out.append(spec)
    return out
