"""The reference header reader: pydicom, for every file the lean reader (:mod:`.lean`) hands back.

Bad input never raises out of the scan: a file that is not DICOM, is truncated or cannot be parsed
becomes an :class:`Unreadable` record naming the file and the reason; an element whose value is
malformed (``TR = "abc"``) becomes ``None`` and a note in :attr:`InstanceHeader.value_problems`.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

from protocolcheck.dicom.limits import DEFLATED_SYNTAX, InflateLimitExceeded, inflate_limit, inflated_size
from protocolcheck.dicom.pixels import ImageSize, pixel_data_problem
from protocolcheck.dicom.records import (
    _FRAME_MACROS,
    ENHANCED_SOP_CLASSES,
    GE_PULSE_SEQUENCE_NAME,
    GE_SAT_FAT,
    GE_SERIES_CONTRAST,
    MEDIA_STORAGE_DIRECTORY,
    NON_IMAGE_SOP_PREFIXES,
    PHILIPS_PREPULSE,
    PHILIPS_SCANNING_TECHNIQUE,
    PHILIPS_SPIR,
    SIEMENS_XA_SCAN_OPTIONS,
    InstanceHeader,
    Skipped,
    group_frames,
    problem_text,
    uid_for_message,
)
from protocolcheck.dicom.safeio import open_regular

_PYDICOM: Any = None


def _pydicom() -> Any:
    """pydicom's names, imported on first use: a run that reads no file with pydicom (a re-run that
    finds nothing new, ``report``, ``recommend``) does not pay for importing it."""
    global _PYDICOM
    if _PYDICOM is None:
        import pydicom  # noqa: PLC0415 - deferred on purpose (see the docstring)
        from pydicom.dataelem import RawDataElement  # noqa: PLC0415 - deferred with pydicom
        from pydicom.dataset import Dataset  # noqa: PLC0415 - deferred with pydicom
        from pydicom.errors import InvalidDicomError  # noqa: PLC0415 - deferred with pydicom
        from pydicom.multival import MultiValue  # noqa: PLC0415 - deferred with pydicom
        from pydicom.tag import Tag  # noqa: PLC0415 - deferred with pydicom

        _PYDICOM = SimpleNamespace(dcmread=pydicom.dcmread, RawDataElement=RawDataElement, Dataset=Dataset,
                                   InvalidDicomError=InvalidDicomError, Tag=Tag, multiple=(list, tuple, MultiValue))
    return _PYDICOM


class _Reader:
    """Collects values from one dataset, turning malformed ones into ``None`` plus a note."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.problems: list[str] = []
        self.multiple: tuple[type[Sequence[Any]], ...] = _pydicom().multiple  # value types that hold several values

    def raw(self, ds: Dataset, keyword: str) -> Any:
        try:
            if keyword not in ds:
                return None
            elem = ds[keyword]
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad bytes
            self.problems.append(f"{keyword}: {exc}")
            return None
        try:
            return elem.value
        except Exception as exc:  # noqa: BLE001 - pydicom converts lazily and raises many types on bad values
            self.problems.append(f"{keyword}: unreadable value ({exc})")
            return None

    def text(self, ds: Dataset, keyword: str) -> str:
        value = self.raw(ds, keyword)
        if value is None:
            return ""
        if isinstance(value, self.multiple):
            return "\\".join(str(v) for v in value).strip()
        return str(value).strip()

    def texts(self, ds: Dataset, keyword: str) -> tuple[str, ...]:
        value = self.raw(ds, keyword)
        if value is None or value == "":
            return ()
        if isinstance(value, self.multiple):
            return tuple(str(v).strip().upper() for v in value if str(v).strip())
        return tuple(t.strip().upper() for t in str(value).split("\\") if t.strip())

    def number(self, ds: Dataset, keyword: str) -> float | None:
        value = self.raw(ds, keyword)
        if value is None or value == "":
            return None
        if isinstance(value, self.multiple):
            value = value[0] if len(value) else None
            if value is None:
                return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.problems.append(f"{keyword}: not a number ({str(value)[:40]!r})")
            return None
        if not math.isfinite(number):
            self.problems.append(f"{keyword}: not a finite number ({number})")
            return None
        return number

    def integer(self, ds: Dataset, keyword: str) -> int | None:
        number = self.number(ds, keyword)
        if number is None:
            return None
        if not number.is_integer():
            self.problems.append(f"{keyword}: not an integer ({number})")
            return None
        return int(number)

    def vector(self, ds: Dataset, keyword: str, length: int) -> tuple[float, ...] | None:
        value = self.raw(ds, keyword)
        if value is None or value == "":
            return None
        try:
            items = [float(v) for v in (value if isinstance(value, self.multiple) else [value])]
        except (TypeError, ValueError):
            self.problems.append(f"{keyword}: not numbers ({str(value)[:60]!r})")
            return None
        if len(items) != length or not all(math.isfinite(v) for v in items):
            self.problems.append(f"{keyword}: expected {length} finite numbers, got {items[:8]}")
            return None
        return tuple(items)

    def private(self, ds: Dataset, spec: tuple[str, int, int]) -> str:
        creator, group, offset = spec
        try:
            block = ds.private_block(group, creator)
            elem = block[offset]
        except (KeyError, ValueError):
            return ""
        except Exception as exc:  # noqa: BLE001 - a malformed private block is a value problem, not a crash
            self.problems.append(f"({group:04X},{creator}) private: {exc}")
            return ""
        value = elem.value
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace").strip("\x00 ")
        if isinstance(value, self.multiple):
            value = "\\".join(str(v) for v in value)
        return str(value).strip()

    def first_item(self, ds: Dataset, keyword: str) -> Dataset | None:
        value = self.raw(ds, keyword)
        if value is None:
            return None
        try:
            return value[0] if len(value) else None
        except Exception:  # noqa: BLE001 - a sequence pydicom cannot decode has no first item
            return None


def _codes(reader: _Reader, ds: Dataset) -> tuple[str, ...]:
    codes: list[str] = []
    for keyword in ("ProcedureCodeSequence", "RequestedProcedureCodeSequence"):
        value = reader.raw(ds, keyword)
        for item in value or ():
            code = reader.text(item, "CodeValue")
            if code and code not in codes:
                codes.append(code)
    return tuple(codes)


def _requested_description(reader: _Reader, ds: Dataset) -> str:
    text = reader.text(ds, "RequestedProcedureDescription")
    if text:
        return text
    item = reader.first_item(ds, "RequestAttributesSequence")
    return reader.text(item, "RequestedProcedureDescription") if item is not None else ""


def _contrast(reader: _Reader, ds: Dataset) -> tuple[str, str, str]:
    agent = reader.text(ds, "ContrastBolusAgent")
    route = reader.text(ds, "ContrastBolusRoute")
    start = reader.text(ds, "ContrastBolusStartTime")
    if not agent:
        # Enhanced objects: Contrast/Bolus Agent Sequence or the shared functional group usage.
        item = reader.first_item(ds, "ContrastBolusAgentSequence")
        if item is not None:
            agent = reader.text(item, "CodeMeaning") or reader.text(item, "CodeValue")
    return agent, route, start


def _xa_scan_options(reader: _Reader, ds: Dataset) -> str:
    """Siemens XA Scan Options (0021,105C): top level (interoperability export) or, in enhanced
    objects, inside the series private sequence (0021,10FE) of the shared functional groups."""
    value = reader.private(ds, SIEMENS_XA_SCAN_OPTIONS)
    if value:
        return value
    shared = reader.first_item(ds, "SharedFunctionalGroupsSequence")
    if shared is None:
        return ""
    try:
        block = shared.private_block(0x0021, SIEMENS_XA_SCAN_OPTIONS[0])
        items = block[0xFE].value
        item = items[0] if len(items) else None
    except Exception:  # noqa: BLE001 - absent or malformed private data: no options
        return ""
    return reader.private(item, SIEMENS_XA_SCAN_OPTIONS) if isinstance(item, _pydicom().Dataset) else ""


def _base_fields(reader: _Reader, ds: Dataset, path: str) -> dict[str, Any]:
    r = reader
    agent, route, start = _contrast(r, ds)
    pixel_spacing = r.vector(ds, "PixelSpacing", 2)
    return {
        "path": path,
        "sop_class_uid": r.text(ds, "SOPClassUID"),
        "sop_instance_uid": r.text(ds, "SOPInstanceUID"),
        "study_instance_uid": r.text(ds, "StudyInstanceUID"),
        "series_instance_uid": r.text(ds, "SeriesInstanceUID"),
        "modality": r.text(ds, "Modality").upper(),
        "manufacturer": r.text(ds, "Manufacturer"),
        "model": r.text(ds, "ManufacturerModelName"),
        "software_versions": r.text(ds, "SoftwareVersions"),
        "field_strength": r.number(ds, "MagneticFieldStrength"),
        "institution": r.text(ds, "InstitutionName"),
        "station_name": r.text(ds, "StationName"),
        "patient_id": r.text(ds, "PatientID"),
        "patient_name": r.text(ds, "PatientName"),
        "accession_number": r.text(ds, "AccessionNumber"),
        "study_date": r.text(ds, "StudyDate"),
        "study_time": r.text(ds, "StudyTime"),
        "study_description": r.text(ds, "StudyDescription"),
        "requested_procedure_description": _requested_description(r, ds),
        "procedure_codes": _codes(r, ds),
        "body_part": r.text(ds, "BodyPartExamined"),
        "series_date": r.text(ds, "SeriesDate"),
        "series_time": r.text(ds, "SeriesTime"),
        "acquisition_date": r.text(ds, "AcquisitionDate") or r.text(ds, "AcquisitionDateTime")[:8],
        "acquisition_time": r.text(ds, "AcquisitionTime") or r.text(ds, "AcquisitionDateTime")[8:],
        "content_time": r.text(ds, "ContentTime"),
        "series_number": r.integer(ds, "SeriesNumber"),
        "acquisition_number": r.integer(ds, "AcquisitionNumber"),
        "instance_number": r.integer(ds, "InstanceNumber"),
        "series_description": r.text(ds, "SeriesDescription"),
        "protocol_name": r.text(ds, "ProtocolName"),
        "image_type": r.texts(ds, "ImageType"),
        "scanning_sequence": r.texts(ds, "ScanningSequence"),
        "sequence_variant": r.texts(ds, "SequenceVariant"),
        "scan_options": r.texts(ds, "ScanOptions"),
        "sequence_name": r.text(ds, "SequenceName"),
        "pulse_sequence_name": r.text(ds, "PulseSequenceName"),
        "vendor_sequence": r.private(ds, GE_PULSE_SEQUENCE_NAME) or r.private(ds, PHILIPS_SCANNING_TECHNIQUE),
        "mr_acquisition_type": r.text(ds, "MRAcquisitionType").upper(),
        "repetition_time": r.number(ds, "RepetitionTime"),
        "echo_time": r.number(ds, "EchoTime"),
        "inversion_time": r.number(ds, "InversionTime"),
        "flip_angle": r.number(ds, "FlipAngle"),
        "echo_train_length": r.number(ds, "EchoTrainLength"),
        "slice_thickness": r.number(ds, "SliceThickness"),
        "spacing_between_slices": r.number(ds, "SpacingBetweenSlices"),
        "pixel_spacing": pixel_spacing,
        "rows": r.integer(ds, "Rows"),
        "columns": r.integer(ds, "Columns"),
        "image_orientation": r.vector(ds, "ImageOrientationPatient", 6),
        "image_position": r.vector(ds, "ImagePositionPatient", 3),
        "diffusion_b_value": r.number(ds, "DiffusionBValue"),
        "contrast_agent": agent,
        "contrast_route": route,
        "contrast_start_time": start,
        "spectrally_selected_suppression": r.text(ds, "SpectrallySelectedSuppression").upper(),
        "inversion_recovery": r.text(ds, "InversionRecovery").upper(),
        "acquisition_contrast": r.text(ds, "AcquisitionContrast").upper(),
        "philips_spir": r.private(ds, PHILIPS_SPIR),
        "philips_prepulse": r.private(ds, PHILIPS_PREPULSE),
        "ge_series_contrast": r.private(ds, GE_SERIES_CONTRAST),
        "ge_sat_fat": r.private(ds, GE_SAT_FAT),
        "angio_flag": r.text(ds, "AngioFlag").upper(),
        "echo_pulse_sequence": r.text(ds, "EchoPulseSequence").upper(),
        "echo_planar": r.text(ds, "EchoPlanarPulseSequence").upper(),
        "steady_state": r.text(ds, "SteadyStatePulseSequence").upper(),
        "spectrally_selected_excitation": r.text(ds, "SpectrallySelectedExcitation").upper(),
        "vendor_scan_options": tuple(t.strip().upper() for t in _xa_scan_options(r, ds).split("\\") if t.strip()),
        "kvp": r.number(ds, "KVP"),
        "convolution_kernel": r.text(ds, "ConvolutionKernel"),
    }



def _apply_macros(reader: _Reader, group: Dataset | None, fields: dict[str, Any]) -> None:
    if group is None:
        return
    for macro, entries in _FRAME_MACROS.items():
        item = reader.first_item(group, macro)
        if item is None:
            continue
        for keyword, name, kind in entries:
            if keyword not in item:
                continue
            value = _macro_value(reader, item, keyword, kind)
            if value not in (None, "", ()):
                fields[name] = value
        if macro == "ContrastBolusUsageSequence" and not fields.get("contrast_agent") \
                and reader.text(item, "ContrastBolusAgentAdministered").upper() == "YES":
            fields["contrast_agent"] = "ADMINISTERED"


def _macro_value(reader: _Reader, item: Dataset, keyword: str, kind: str) -> Any:
    """One macro field's value, read as its ``kind`` in :data:`_FRAME_MACROS` says."""
    if kind == "num":
        return reader.number(item, keyword)
    if kind == "vec6":
        return reader.vector(item, keyword, 6)
    if kind == "vec3":
        return reader.vector(item, keyword, 3)
    if kind == "vec2":
        return reader.vector(item, keyword, 2)
    if kind == "texts":
        return reader.texts(item, keyword)
    if kind == "upper":
        return reader.text(item, keyword).upper()
    return reader.text(item, keyword)


def _enhanced_records(reader: _Reader, ds: Dataset, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten an enhanced multi-frame object into one record per group of like frames.

    Frames that share frame type and orientation (and echo time) form one record, so a multi-frame
    three-plane localizer or a Dixon object becomes several stacks just as classic files would.
    """
    shared = reader.first_item(ds, "SharedFunctionalGroupsSequence")
    common = dict(base)
    _apply_macros(reader, shared, common)
    # Enhanced MR has its own standard flags at the top level (Spectrally Selected Suppression, ...)
    per_frame = reader.raw(ds, "PerFrameFunctionalGroupsSequence") or []

    def frames() -> Iterator[dict[str, Any]]:
        for item in per_frame:
            fields = dict(common)
            _apply_macros(reader, item, fields)
            yield fields

    records = group_frames(frames(), base)
    if not records:
        common["frames"] = reader.integer(ds, "NumberOfFrames") or 1
        return [common]
    return records




class _BoundedReader(io.BufferedReader):
    """A buffered file whose large reads never ask for more than the bytes left in the file.

    pydicom reads a value with ``fp.read(declared_length)``, and CPython allocates the whole declared
    size before reading: a hostile length (0xFFFFFFF0 in a 200-byte file) would ask for 4 GB. Capped,
    the read comes back short and the file is reported as truncated; normal reads are untouched.
    """

    def __init__(self, path: str) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > _BIG_READ:
            size = max(0, min(size, self._size - self.tell()))
        return super().read(size)


_BIG_READ = 1 << 16


def _check_deflated(fh: io.BufferedReader, size: int) -> None:
    """Raise :class:`.limits.InflateLimitExceeded` if the dataset is deflated and would expand beyond
    :func:`.limits.inflate_limit`.

    The transfer syntax is the one pydicom will read: its own preamble and file meta parsers are run
    here on the same handle (whatever the meta's length or padding), never a search of a byte window.
    The deflated stream is then inflated in 1 MB steps without being kept, so the check stays bounded.
    """
    from pydicom.filereader import _read_file_meta_info, read_preamble  # noqa: PLC0415 - pydicom is deferred

    try:
        read_preamble(fh, True)
        meta = _read_file_meta_info(fh)
        syntax = str(meta.get("TransferSyntaxUID", "") or "").strip("\x00 ")
        if syntax == DEFLATED_SYNTAX:
            start = fh.tell()
            inflated_size(fh.read, inflate_limit(size - start))
    except InflateLimitExceeded:
        raise
    except Exception:  # noqa: BLE001 - a meta or stream pydicom cannot read: its own read says why
        return
    finally:
        fh.seek(0)


def _open_at(path: str) -> tuple[Dataset, int]:
    """dcmread of the header through our own handle (also without preamble or file meta, as real
    archives need); returns the dataset and the offset where reading stopped (the Pixel Data tag when
    present), to check the pixel data length cheaply. Declared lengths are bounded by the file size
    (:class:`_BoundedReader`) and deflated data by :func:`_check_deflated`, so no input makes the reader
    allocate more than the file justifies."""
    with _BoundedReader(path) as fh:
        _check_deflated(fh, fh._size)
        pd = _pydicom()
        try:
            ds = pd.dcmread(fh, stop_before_pixels=True)
        except pd.InvalidDicomError:
            fh.seek(0)
            if not _looks_like_raw_dataset(fh.read(8)):
                raise
            fh.seek(0)
            ds = pd.dcmread(fh, stop_before_pixels=True, force=True)
        return ds, fh.tell()


def _looks_like_raw_dataset(head: bytes) -> bool:
    """True if bytes start like a DICOM dataset without preamble/meta (implicit or explicit VR)."""
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    group_be = int.from_bytes(head[0:2], "big")
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _truncated_element(ds: Dataset) -> str | None:
    """Reason text if the last element read is shorter than its declared length (file cut mid-value).

    pydicom stops quietly at end of file, so a file cut inside its header would otherwise come back
    as a shorter, plausible-looking dataset. Checked before any value is converted.
    """
    tags = list(ds.keys())
    if not tags:
        return None
    raw = ds.get_item(tags[-1])
    if isinstance(raw, _pydicom().RawDataElement) and isinstance(raw.value, bytes) and raw.length != 0xFFFFFFFF \
            and len(raw.value) < raw.length:
        return f"file ends inside element {_pydicom().Tag(raw.tag)}: {len(raw.value)} of {raw.length} bytes"
    return None


def _pixel_data_problem(path: str, ds: Dataset, offset: int, size: int) -> str | None:
    """A note if the Pixel Data element declares more bytes than the file holds (cut in the pixels).

    ``offset`` is where header reading stopped (the Pixel Data tag, when there is one).
    """
    if offset <= 0 or offset >= size:
        return None
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if syntax == DEFLATED_SYNTAX:  # deflated: offsets refer to the compressed stream
        return None
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return None
    order: Literal["little", "big"] = "little" if little else "big"
    try:
        with open_regular(path, "rb") as fh:
            fh.seek(offset)
            head = fh.read(12)

            def read_at(position: int, n: int) -> bytes:
                fh.seek(position)
                return fh.read(n)

            element = _pixel_data_header(head, bool(implicit), order)
            if element is None:
                return None
            length, header = element
            return pixel_data_problem(read_at, size, offset + header, length, _image_size(ds), little=bool(little))
    except OSError:
        return None


def _pixel_data_header(head: bytes, implicit: bool, order: Literal["little", "big"]) -> tuple[int, int] | None:
    """(declared length, header size) when ``head`` starts the Pixel Data element, else None."""
    if len(head) < 8:
        return None
    group, element = int.from_bytes(head[0:2], order), int.from_bytes(head[2:4], order)
    if (group, element) != (0x7FE0, 0x0010):
        return None
    if implicit:
        return int.from_bytes(head[4:8], order), 8
    if head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"UT", b"SQ", b"OV", b"UC", b"UR"):
        if len(head) < 12:
            return None
        return int.from_bytes(head[8:12], order), 12
    return int.from_bytes(head[6:8], order), 8


def _image_size(ds: Dataset) -> ImageSize:
    """Rows, Columns, Bits Allocated, Samples per Pixel and Number of Frames as the header states them
    (None for a value that is absent or not a whole number)."""

    def whole(keyword: str) -> int | None:
        try:
            value = ds.get(keyword)
            value = value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value
            number = float(value) if value not in (None, "") else None
        except Exception:  # noqa: BLE001 - a malformed value is reported elsewhere; here it is unknown
            return None
        return int(number) if number is not None and math.isfinite(number) and number.is_integer() else None

    return ImageSize(whole("Rows"), whole("Columns"), whole("BitsAllocated"), whole("SamplesPerPixel"),
                     whole("NumberOfFrames"))


def _force_read(ds: Dataset) -> None:
    """Walk the dataset so that truncation and bad lengths surface here, not later."""
    for _elem in ds.iterall():
        pass


def read_file_pydicom(path: str | os.PathLike[str]) -> list[InstanceHeader] | Skipped:
    """Read one file's header with pydicom into one record (several for enhanced multi-frame objects).

    Returns :class:`Skipped` for DICOM files that are not images (DICOMDIR, SR, PR...).
    Raises :class:`ValueError` with a human reason for files that cannot be used.
    """
    name = os.fspath(path)
    size = _regular_file_size(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds, stopped_at = _parse_header(name)
        try:
            return _records(name, ds, _pixel_data_problem(name, ds, stopped_at, size))
        except ValueError:
            raise
        except Exception as exc:  # never let a strange header escape as a traceback
            raise ValueError(f"malformed DICOM header: {problem_text(exc)}") from exc


def _regular_file_size(name: str) -> int:
    """The size of the regular, non-empty file ``name``; ValueError saying why it cannot be read."""
    try:
        status = os.stat(name)
    except OSError as exc:
        if "\\x" in name and not os.path.lexists(name):  # a name escaped by _text_path
            raise ValueError("file name is not valid UTF-8 (shown with \\x escapes); rename the file to read it") \
                from exc
        raise ValueError(f"cannot open: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(status.st_mode):  # opening a named pipe would wait forever for a writer
        raise ValueError("not a regular file (a named pipe, socket or device); not read")
    if status.st_size == 0:
        raise ValueError("empty file (0 bytes)")
    return status.st_size


def _parse_header(name: str) -> tuple[Dataset, int]:
    """The file's header, read whole (see :func:`_open_at`); ValueError with a human reason if it cannot be.

    Call with pydicom's warnings silenced."""
    truncated: str | None = None
    try:
        ds, stopped_at = _open_at(name)
        truncated = _truncated_element(ds)
        if not truncated:
            _force_read(ds)
    except _pydicom().InvalidDicomError:
        raise ValueError("not a DICOM file (no 'DICM' marker and not a raw DICOM dataset)") from None
    except RecursionError:
        raise ValueError("malformed DICOM: sequences nested too deeply to read") from None
    except InflateLimitExceeded:
        raise  # its message is the reason
    except ValueError as exc:
        raise ValueError(f"malformed DICOM: {problem_text(exc)}") from exc
    except (EOFError, OSError) as exc:
        raise ValueError(f"truncated or unreadable DICOM: {problem_text(exc, with_type=False)}") from exc
    except Exception as exc:  # pydicom raises many types on malformed files
        raise ValueError(f"malformed DICOM: {problem_text(exc)}") from exc
    if truncated:
        raise ValueError(f"truncated DICOM: {truncated}")
    return ds, stopped_at


def _records(name: str, ds: Dataset, pixel_problem: str | None) -> list[InstanceHeader] | Skipped:
    """The records of one parsed dataset (see :func:`read_file`)."""
    reader = _Reader(ds)
    if pixel_problem:
        reader.problems.append(pixel_problem)
    sop_class = reader.text(ds, "SOPClassUID")
    if not sop_class:
        meta = getattr(ds, "file_meta", None)
        sop_class = str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    if "DirectoryRecordSequence" in ds or sop_class == MEDIA_STORAGE_DIRECTORY:
        return Skipped(name, "DICOMDIR (media directory, not an image)")
    if sop_class.startswith(NON_IMAGE_SOP_PREFIXES):
        return Skipped(name, f"not an image object (SOP Class {uid_for_message(sop_class)})")
    base = _base_fields(reader, ds, name)
    base["sop_class_uid"] = sop_class
    if not base["study_instance_uid"] or not base["series_instance_uid"]:
        missing = " and ".join(k for k, f in (("Study", "study_instance_uid"), ("Series", "series_instance_uid"))
                               if not base[f])
        raise ValueError(f"missing {missing} Instance UID (not an image object, or a file cut short)")
    enhanced = sop_class in ENHANCED_SOP_CLASSES or "PerFrameFunctionalGroupsSequence" in ds
    if enhanced:
        try:
            field_sets = _enhanced_records(reader, ds, base)
        except Exception as exc:  # pydicom raises many types on malformed sequences
            raise ValueError(f"malformed functional groups: {problem_text(exc)}") from exc
        for fields in field_sets:
            fields["enhanced"] = True
    else:
        base["frames"] = reader.integer(ds, "NumberOfFrames") or 1
        field_sets = [base]
    problems = tuple(dict.fromkeys(reader.problems))
    return [InstanceHeader(**fields, value_problems=problems) for fields in field_sets]


def records_from_dataset(name: str, ds: Dataset) -> list[InstanceHeader] | Skipped:
    """The records of a dataset that arrived as an object, not a file (DICOMweb metadata): the same
    fields, from the same code, as :func:`read_file_pydicom`. ``name`` says where it came from.
    Raises :class:`ValueError` with a human reason when the dataset cannot be used."""
    return _records(name, ds, None)
