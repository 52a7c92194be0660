"""Every number the classifier compares a header value against, in one typed table.

``THRESHOLDS`` is the one instance of :class:`Thresholds`; each field is the number itself (so rules read
``T.stir_max_ti``) and carries, in its metadata, the unit, a one-line reason and the source.
:func:`rows` lists them for the decision table and the README. Times are in ms, field strength in
tesla. Change a number here and every rule, the evidence text and the generated tables follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from protocolcheck.classify.model import StrValueEnum


class Source(StrValueEnum):
    """Where a threshold comes from (:data:`CITATIONS` gives the full reference)."""

    PHYSICS = "physics"
    VENDOR = "vendor"
    CORPUS = "corpus"
    DICOM = "dicom"
    REPORTING = "reporting"
    REALDATA = "realdata"


CITATIONS: dict[Source, str] = {
    Source.PHYSICS: ("MR physics: Bernstein, King & Zhou, Handbook of MRI Pulse Sequences (Elsevier 2004); "
                     "Westbrook & Talbot, MRI in Practice (5th ed., Wiley 2018)"),
    Source.VENDOR: "vendor protocol conventions (Siemens, GE, Philips application guides; dcm2niix vendor notes)",
    Source.CORPUS: "set on the real scanner series of tests/data/real_headers (see its README)",
    Source.DICOM: "DICOM PS3.3 C.8.3.1 (MR Image module) and C.8.13 (Enhanced MR), vendor conformance statements",
    Source.REPORTING: "reporting convention of this tool (not a physics boundary)",
    Source.REALDATA: ("checked on the real clinical series of shared/realdata (issue 13; "
                      "tests/test_classify_realdata.py); judged on held-out scanners and sites"),
}


def _limit(value: float, unit: str, reason: str, *sources: Source) -> Any:
    """One table entry: the number, with its unit, reason and sources as field metadata."""
    return field(default=value, metadata={"unit": unit, "reason": reason, "sources": sources})


@dataclass(frozen=True)
class Thresholds:
    """The classifier's cut-offs (see the module docstring). Comparisons are written in each reason."""

    # --- inversion time
    stir_max_ti: float = _limit(
        350.0, "ms", "SE/TSE with TI <= this is STIR (fat nulls at ~140-170 ms at 1.5 T, ~180-250 ms at 3 T)",
        Source.PHYSICS)
    flair_min_ti: float = _limit(
        1400.0, "ms", "TI >= this nulls fluid: FLAIR (2D 1.5 T ~2000-2200 ms; 3D 3 T Philips VISTA ~1650 ms)",
        Source.PHYSICS, Source.CORPUS)
    # --- spin echo weighting
    se_t2_min_te: float = _limit(60.0, "ms", "SE/TSE TE >= this is T2 whatever the TR", Source.PHYSICS)
    se_t2_border_te: float = _limit(
        50.0, "ms", "SE/TSE TE >= this (below se_t2_min_te) is T2 when TR is long; below it long TR is PD",
        Source.PHYSICS)
    se_short_te: float = _limit(35.0, "ms", "SE/TSE TE <= this is short enough for T1", Source.PHYSICS)
    se_long_tr: float = _limit(1500.0, "ms", "SE/TSE TR >= this is long (PD or T2)", Source.PHYSICS)
    se_t1_max_tr_low_field: float = _limit(
        1000.0, "ms", "longest TR still T1 for a short-TE spin echo below high_field_t", Source.PHYSICS)
    se_t1_max_tr_high_field: float = _limit(
        1250.0, "ms", "longest TR still T1 for a short-TE spin echo at high_field_t and above (3 T T1 TSE uses "
        "TR 650-1100 ms)", Source.VENDOR, Source.CORPUS)
    high_field_t: float = _limit(
        2.0, "T", "field strength >= this uses the high-field T1 TR cut-off (between 1.5 T and 3 T systems)",
        Source.PHYSICS)
    pd_t2_border_min_te: float = _limit(
        40.0, "ms", "long-TR SE/TSE with TE from this up to se_t2_min_te is the PD/T2 border (intermediate "
        "weighting): a series name naming PD or T2 decides", Source.PHYSICS, Source.CORPUS)
    t1_pd_border_low: float = _limit(
        0.8, "x T1 TR cut-off", "short-TE SE/TSE with TR above this multiple of the T1 cut-off is at the T1/PD "
        "border: a series name naming T1 or PD decides", Source.CORPUS)
    t1_pd_border_high: float = _limit(
        1.6, "x T1 TR cut-off", "upper end (inclusive) of the T1/PD border zone", Source.CORPUS)
    se3d_t1_max_tr: float = _limit(
        900.0, "ms", "3D variable-flip-angle TSE (SPACE/CUBE/VISTA) TR <= this is T1 (T1 ~500-900 ms, PD "
        "~1000-1500 ms)", Source.VENDOR)
    se3d_t1_max_te: float = _limit(30.0, "ms", "3D TSE TE <= this (with short TR) is T1", Source.VENDOR)
    se_single_echo_train: float = _limit(
        1.0, "echo", "spin echo with an echo train > this is turbo/fast spin echo", Source.DICOM)
    # --- gradient echo weighting
    gre_t2star_min_te: float = _limit(9.0, "ms", "spoiled GRE TE >= this (low flip) is T2*", Source.PHYSICS)
    gre_t2star_max_flip: float = _limit(
        45.0, "deg", "GRE flip <= this leaves T2* contrast (above it T1 saturation dominates)", Source.PHYSICS)
    gre_t1_max_te: float = _limit(9.0, "ms", "GRE TE < this can be T1 (spoiled)", Source.PHYSICS)
    gre_t1_min_flip: float = _limit(25.0, "deg", "short-TE GRE with flip >= this is T1 (spoiled)", Source.PHYSICS)
    gre_fast_tr: float = _limit(
        50.0, "ms", "GRE TR < this is a fast/3D spoiled gradient echo (T1 with short TE; localizer-like)",
        Source.PHYSICS)
    gre_t2star_min_tr: float = _limit(
        300.0, "ms", "2D multi-echo GRE (MEDIC/MERGE/mFFE) with TR >= this and low flip is T2*", Source.VENDOR)
    gre_multi_echo_min: float = _limit(2.0, "echoes", "echo train >= this is a multi-echo gradient echo",
                                       Source.DICOM)
    bssfp_max_tr: float = _limit(
        15.0, "ms", "GR named FIESTA/TrueFISP/B-FFE with TR < this (or no TR) is balanced SSFP (TR 3-6 ms)",
        Source.PHYSICS)
    # --- inversion and unnamed sequences
    t1_flair_max_te: float = _limit(
        30.0, "ms", "FLAIR-range TI with TE < this (and no T2 in the name) is T1 FLAIR", Source.PHYSICS)
    spin_echo_min_te: float = _limit(
        5.0, "ms", "no spin echo refocuses faster: an inversion sequence with a shorter TE is a gradient echo (GE "
        "writes MPRAGE as Scanning Sequence RM\\IR with TE ~2-3 ms), never a T1-FLAIR", Source.PHYSICS)
    csf_t1: float = _limit(
        4000.0, "ms", "longitudinal relaxation of CSF (~3500-4500 ms at 1.5-3 T): sets the TI that nulls fluid after "
        "an inversion repeated every TR, TI_null = T1csf x ln(2 / (1 + exp(-TR / T1csf)))", Source.PHYSICS)
    fluid_null_tolerance: float = _limit(
        0.35, "x TI_null", "a spin-echo inversion with short TE whose TI is within this fraction of the CSF null "
        "point is a T1-FLAIR (inversion FLAIR, weighting T1: the labels' taxonomy); farther off it is a T1 IR "
        "(e.g. Philips T1W_IR TI 450 ms at TR 2500 ms, null 1058 ms)", Source.PHYSICS, Source.REALDATA)
    unnamed_t2_min_te: float = _limit(
        80.0, "ms", "no sequence type: TR >= se_long_tr with TE >= this is T2 in any sequence family",
        Source.PHYSICS)
    # --- diffusion and field strength
    dwi_min_b: float = _limit(0.0, "s/mm²", "any b-value > this is diffusion weighting", Source.DICOM)
    gauss_min: float = _limit(
        100.0, "(T or G)", "Magnetic Field Strength > this is in gauss (some systems write 15000), not tesla",
        Source.CORPUS)
    # --- localizers and geometry
    localizer_max_images: float = _limit(
        7.0, "images", "2D fast GRE with <= this many thick images is a localizer", Source.VENDOR)
    localizer_min_thickness: float = _limit(
        5.0, "mm", "slice thickness >= this counts as thick for the fast-GRE localizer rule", Source.VENDOR)
    localizer_min_planes: float = _limit(
        2.0, "planes", "a series with >= this many planes/orientations and few images is a localizer",
        Source.VENDOR)
    localizer_multi_plane_max_images: float = _limit(
        15.0, "images", "'few images' for the several-planes localizer rule (three-plane localizers: 3-15)",
        Source.VENDOR)
    oblique_deg: float = _limit(
        10.0, "deg", "describe() calls a plane oblique beyond this angle from the true plane", Source.REPORTING)


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class ThresholdRow:
    """One line of the threshold table, for documentation."""

    name: str
    value: float
    unit: str
    reason: str
    sources: tuple[Source, ...]


def rows(table: Thresholds = THRESHOLDS) -> list[ThresholdRow]:
    """Every threshold with its unit, reason and sources, in declaration order."""
    return [ThresholdRow(f.name, getattr(table, f.name), f.metadata["unit"], f.metadata["reason"],
                         tuple(f.metadata["sources"])) for f in fields(table)]


def se_t1_max_tr(field_t: float | None, table: Thresholds = THRESHOLDS) -> float:
    """Longest TR still called T1 for a short-TE spin echo at this field strength (unknown: low field)."""
    if field_t is not None and field_t >= table.high_field_t:
        return table.se_t1_max_tr_high_field
    return table.se_t1_max_tr_low_field
