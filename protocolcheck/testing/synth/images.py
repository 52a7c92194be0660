"""Datasets as scanners write them: geometry, the common study attributes, classic and enhanced MR images
and CT images, series by series."""


from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
)

from protocolcheck.dicom.geometry import Plane, orientation_from_angles, slice_normal
from protocolcheck.testing.synth.spec import CT_KINDS, Kind, SeriesSpec, StudySpec, Vendor, uid
from protocolcheck.testing.synth.vendors import (
    _VENDOR_INFO,
    _description,
    _is_inversion,
    _Physics,
    _physics,
    _Profile,
    _profile,
    _weighting,
)

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


def series_plans(study: StudySpec) -> list[_SeriesPlan]:
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


class _MrBasics(NamedTuple):
    """What an MR series' files are written from: the vendor, the series spec, the field strength, the
    physics and the vendor's sequence profile, the matrix, slice thickness and step, the description."""

    vendor: Vendor
    spec: SeriesSpec
    fs: float
    ph: _Physics
    prof: _Profile
    matrix: int
    thickness: float
    step: float
    description: str


def _mr_basics(study: StudySpec, plan: _SeriesPlan, default_matrix: int) -> _MrBasics:
    vendor = study.vendor_
    spec = plan.spec
    fs = spec.field_strength or study.field_strength
    ph = _physics(spec, vendor, fs)
    prof = _profile(vendor, spec, ph)
    thickness = spec.slice_thickness or ph.thickness
    description = spec.description if spec.description is not None else _description(vendor, spec)
    return _MrBasics(vendor, spec, fs, ph, prof, spec.matrix or default_matrix, thickness, thickness + ph.gap,
                     description)


def _mr_series_images(study: StudySpec, plan: _SeriesPlan, uids: dict[str, str]) -> list[_Image]:
    """Classic MR Image Storage files (one per slice; one series per plan)."""
    vendor, spec, fs, ph, prof, matrix, thickness, step, description = _mr_basics(study, plan, default_matrix=32)
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
    vendor, spec, fs, ph, prof, matrix, thickness, step, description = _mr_basics(study, plan, default_matrix=16)
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
        dixon = {"W": "WATER", "F": "FAT", "IP": "IN_PHASE", "OP": "OPP_PHASE"}[plan.output]
        itype = ("DERIVED", "PRIMARY", "DIXON", dixon)
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
            ds.KVP = "120"
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
    plans = series_plans(study)
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


