"""The header records every stage works on: :class:`InstanceHeader` (one image or frame group),
:class:`Unreadable` and :class:`Skipped`; the vendor tags and frame-group macros both readers fill
them from; and the texts that name files and UIDs in messages without leaking values."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


# SOP classes that carry no image to classify: skipped, not errors.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.1.3.10",  # DICOMDIR
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, fiducials, segmentation-like
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF/CDA
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR spectroscopy
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects
    "1.2.840.10008.5.1.4.31",  # worklist / non-storage
    "1.3.12.2.1107.5.9.1",  # Siemens CSA Non-Image Storage (private: spectroscopy raw, protocol data)
)

ENHANCED_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image Storage
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
    }
)

# Private elements used by classification, by vendor creator.
GE_PULSE_SEQUENCE_NAME = ("GEMS_ACQU_01", 0x0019, 0x9C)  # (0019,109C)
GE_INTERNAL_PULSE_SEQUENCE = ("GEMS_ACQU_01", 0x0019, 0x9E)  # (0019,109E)
PHILIPS_SCANNING_TECHNIQUE = ("Philips Imaging DD 001", 0x2001, 0x20)  # (2001,1020)
PHILIPS_SPIR = ("Philips Imaging DD 001", 0x2001, 0x21)  # (2001,1021)
PHILIPS_PREPULSE = ("Philips Imaging DD 001", 0x2001, 0x1C)  # (2001,101C)
SIEMENS_XA_SCAN_OPTIONS = ("SIEMENS MR SDS 01", 0x0021, 0x5C)  # (0021,105C): XA30 moved Scan Options here
GE_SERIES_CONTRAST = ("GEMS_ACQU_01", 0x0019, 0x11)  # (0019,1011) Series contrast: 0 none, non-zero contrast given
GE_SAT_FAT = ("GEMS_ACQU_01", 0x0019, 0xA4)  # (0019,10A4) SAT fat/water/bone: 1 fat saturation on


@dataclass(frozen=True)
class InstanceHeader:
    """The header facts of one image (or one group of like frames of an enhanced object)."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str = ""
    manufacturer: str = ""
    model: str = ""
    software_versions: str = ""
    field_strength: float | None = None
    institution: str = ""
    station_name: str = ""
    # patient (kept for explicit opt-in reporting only; never rendered by default)
    patient_id: str = ""
    patient_name: str = ""
    # study level
    accession_number: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    requested_procedure_description: str = ""
    procedure_codes: tuple[str, ...] = ()
    body_part: str = ""
    # series level
    series_date: str = ""
    series_time: str = ""
    acquisition_date: str = ""
    acquisition_time: str = ""
    content_time: str = ""
    series_number: int | None = None
    acquisition_number: int | None = None
    instance_number: int | None = None
    series_description: str = ""
    protocol_name: str = ""
    image_type: tuple[str, ...] = ()
    # acquisition
    scanning_sequence: tuple[str, ...] = ()
    sequence_variant: tuple[str, ...] = ()
    scan_options: tuple[str, ...] = ()
    sequence_name: str = ""
    pulse_sequence_name: str = ""
    vendor_sequence: str = ""  # GE (0019,109C) or Philips (2001,1020)
    mr_acquisition_type: str = ""
    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    flip_angle: float | None = None
    echo_train_length: float | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    pixel_spacing: tuple[float, float] | None = None
    rows: int | None = None
    columns: int | None = None
    image_orientation: tuple[float, ...] | None = None
    image_position: tuple[float, ...] | None = None
    diffusion_b_value: float | None = None
    # contrast
    contrast_agent: str = ""
    contrast_route: str = ""
    contrast_start_time: str = ""
    # enhanced-object standard flags ("YES"/"NO"/"" when absent)
    spectrally_selected_suppression: str = ""
    inversion_recovery: str = ""
    acquisition_contrast: str = ""
    frame_type: tuple[str, ...] = ()
    philips_spir: str = ""
    philips_prepulse: str = ""
    ge_series_contrast: str = ""  # GE (0019,1011), "" when absent
    ge_sat_fat: str = ""  # GE (0019,10A4), "" when absent
    angio_flag: str = ""  # (0018,0025) Angio Flag Y/N, upper case
    # enhanced MR Pulse Sequence module flags (upper case, "" when absent) and Siemens XA private options
    echo_pulse_sequence: str = ""  # (0018,9008) SPIN / GRADIENT / BOTH
    echo_planar: str = ""  # (0018,9018) YES / NO
    steady_state: str = ""  # (0018,9017) FREE_PRECESSION / TRANSVERSE / TIME_REVERSED / LONGITUDINAL / NONE
    spectrally_selected_excitation: str = ""  # (0018,9026) WATER / FAT / NONE
    vendor_scan_options: tuple[str, ...] = ()  # Siemens XA (0021,105C), tokens upper case
    # CT
    kvp: float | None = None
    convolution_kernel: str = ""
    # bookkeeping
    frames: int = 1
    enhanced: bool = False
    value_problems: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.study_instance_uid, self.series_instance_uid)

    def __reduce__(self) -> tuple[Any, tuple[tuple[Any, ...]]]:
        """Pickled as its values in field order (the field names once per class, not once per record):
        records cross process boundaries by the thousand (parallel scans, spilled study runs)."""
        return _instance_header, (_header_values(self),)


def _instance_header(values: tuple[Any, ...]) -> InstanceHeader:
    """Unpickle an :class:`InstanceHeader` (see its ``__reduce__``): the fields as they were pickled."""
    record = object.__new__(InstanceHeader)
    record.__dict__.update(zip(_HEADER_FIELDS, values, strict=True))
    return record


_HEADER_FIELDS = tuple(f.name for f in dataclasses.fields(InstanceHeader))
_header_values = attrgetter(*_HEADER_FIELDS)
if hasattr(InstanceHeader, "__post_init__"):  # pragma: no cover - a guard for whoever adds one
    raise TypeError("InstanceHeader unpickling fills the fields without __init__: adapt _instance_header")


FOLDER_NOT_LISTED = "folder could not be listed"  # how the reason of an unlistable folder begins


@dataclass(frozen=True)
class Unreadable:
    """A file that could not be used, and why (becomes an ``unreadable-file`` finding), or a folder that
    could not be listed (``unreadable-folder``; its reason starts with :data:`FOLDER_NOT_LISTED`, which
    survives the results store, where only the path and the reason are kept)."""

    path: str
    reason: str

    @property
    def is_folder(self) -> bool:
        return self.reason.startswith(FOLDER_NOT_LISTED)


@dataclass(frozen=True)
class Skipped:
    """A DICOM file deliberately not classified (DICOMDIR, reports, presentation states)."""

    path: str
    reason: str


ScanRecord = InstanceHeader | Unreadable | Skipped



# Functional-group macros whose contents are copied onto the flat record for enhanced objects.
_FRAME_MACROS: dict[str, tuple[tuple[str, str, str], ...]] = {
    # macro sequence: ((keyword in macro item, record field, kind), ...)
    "PlaneOrientationSequence": (("ImageOrientationPatient", "image_orientation", "vec6"),),
    "PlanePositionSequence": (("ImagePositionPatient", "image_position", "vec3"),),
    "PixelMeasuresSequence": (
        ("SliceThickness", "slice_thickness", "num"),
        ("SpacingBetweenSlices", "spacing_between_slices", "num"),
        ("PixelSpacing", "pixel_spacing", "vec2"),
    ),
    "MRTimingAndRelatedParametersSequence": (
        ("RepetitionTime", "repetition_time", "num"),
        ("FlipAngle", "flip_angle", "num"),
        ("EchoTrainLength", "echo_train_length", "num"),
    ),
    "MREchoSequence": (("EffectiveEchoTime", "echo_time", "num"),),
    "MRModifierSequence": (
        ("InversionRecovery", "inversion_recovery", "upper"),
        ("InversionTimes", "inversion_time", "num"),
        ("SpectrallySelectedExcitation", "spectrally_selected_excitation", "upper"),
    ),
    "MRImageFrameTypeSequence": (
        ("FrameType", "frame_type", "texts"),
        ("AcquisitionContrast", "acquisition_contrast", "upper"),
    ),
    "CTImageFrameTypeSequence": (("FrameType", "frame_type", "texts"),),
    "MRDiffusionSequence": (("DiffusionBValue", "diffusion_b_value", "num"),),
    "FrameContentSequence": (),
    "MRFOVGeometrySequence": (),
    "MRImagingModifierSequence": (),
    "MRSpectroscopyFrameTypeSequence": (),
    "CTAcquisitionDetailsSequence": (("KVP", "kvp", "num"),),
    "CTReconstructionSequence": (("ConvolutionKernel", "convolution_kernel", "text"),),
    "ContrastBolusUsageSequence": (),
}


def group_frames(frames: Iterable[dict[str, Any]], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-frame fields grouped by frame type, orientation (to 0.01) and echo time: the first frame's
    fields of each group, with the group's frame count (and the frame type as the image type when the
    file has none). Shared by the pydicom reader and ``fastheaders``."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    counts: dict[tuple[Any, ...], int] = {}
    for fields in frames:
        orientation = fields.get("image_orientation")
        key = (
            fields.get("frame_type"),
            tuple(round(v, 2) for v in orientation) if orientation else None,
            fields.get("echo_time"),
        )
        if key not in groups:
            groups[key] = fields
            counts[key] = 0
        counts[key] += 1
    records = []
    for key, fields in groups.items():
        fields["frames"] = counts[key]
        if fields.get("frame_type") and not base.get("image_type"):
            fields["image_type"] = fields["frame_type"]
        records.append(fields)
    return records


# Quoted words an exception message may keep: VRs and struct codes (1-2 characters) and type names.
_HARMLESS_QUOTED = frozenset({"PersonName", "NoneType", "MultiValue", "Sequence", "Dataset", "DSfloat", "DSdecimal",
                              "IS", "str", "int", "float", "bytes", "list", "tuple", "dict", "RawDataElement"})
_BYTES_LITERAL = re.compile(r"b'(?:[^'\\\n]|\\.)*'" "|" r'b"(?:[^"\\\n]|\\.)*"')
_QUOTED = re.compile(r"'([^'\n]*)'" "|" r'"([^"\n]*)"')


def problem_text(exc: BaseException, *, with_type: bool = True, limit: int = 300) -> str:
    """An exception as the reason text of a record: the values it quotes are withheld.

    pydicom's messages quote the offending bytes (``received b'DOE^JANE' ... (0010,0010)``); those
    bytes may be a patient's name or birth date, and reasons go to logs and reports. Tags, VRs and
    the explanation stay; the text is cut at ``limit`` characters.
    """
    text = _BYTES_LITERAL.sub("<value withheld>", str(exc))

    def keep(match: re.Match[str]) -> str:
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        return match.group(0) if len(quoted) <= 2 or quoted in _HARMLESS_QUOTED else "'<value withheld>'"

    text = _QUOTED.sub(keep, text)
    if len(text) > limit:
        text = text[:limit] + "\u2026"
    return f"{type(exc).__name__}: {text}" if with_type else text


def uid_for_message(uid: str) -> str:
    """A UID as messages show it: its leading UID characters only (at most 64), so that a corrupt value
    never carries the bytes after it (a patient name among them) into logs and reports."""
    prefix = _UID_PREFIX.match(uid)  # always matches (the pattern matches "")
    shown = prefix.group() if prefix else ""
    return shown if shown == uid else f"{shown}\u2026 (malformed)"


_UID_PREFIX = re.compile(r"[0-9.]{0,64}")


