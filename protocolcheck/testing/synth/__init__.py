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

from protocolcheck.testing.synth.images import build_datasets, plexus_planes, scanner_of, series_plans
from protocolcheck.testing.synth.spec import Kind, SeriesSpec, StudySpec, Syntax, Vendor, uid
from protocolcheck.testing.synth.studies import (
    PLEXUS_DESCRIPTION,
    ct_study,
    pelvis_study,
    plexus_series,
    plexus_study,
    varied_studies,
    write_dataset,
    write_study,
)

__all__ = [
    "PLEXUS_DESCRIPTION",
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
    "series_plans",
    "uid",
    "varied_studies",
    "write_dataset",
    "write_study",
]
