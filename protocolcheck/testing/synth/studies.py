"""Writing studies to files, and the typical studies the tests, the samples and the benchmarks use."""


from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
)

from protocolcheck.dicom.geometry import Plane
from protocolcheck.testing.synth.images import build_datasets, plexus_planes
from protocolcheck.testing.synth.spec import _SYNTAX_UID, Kind, SeriesSpec, StudySpec, Syntax, Vendor

# ------------------------------------------------------------------------------------------- writing


def write_dataset(ds: Dataset, path: Path, syntax: Syntax, file_meta: bool) -> None:
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
        write_dataset(ds, path, syntax, spec.file_meta)
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
        description = "MRI LUMBOSACRAL PLEXUS WO CONTRAST"
        code = ("72195", "C4", "MRI lumbosacral plexus without contrast")
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
        _name, options = _SCENARIOS[(i // len(vendors) + seed) % len(_SCENARIOS)]
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
