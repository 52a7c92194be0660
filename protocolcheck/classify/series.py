"""Classify each stack of a study: weighting, inversion, fat suppression, contrast, plane, 2D/3D,
localizer and derived, each with the header facts that decided it.

Decide from acquisition parameters and vendor conventions first, series text last; when the
headers do not decide, say unknown rather than guess. Every decided field carries evidence: a list of
short human strings naming the header fact (``SeriesClass.evidence[field]``); undecided fields say why.

The decision table (rules and thresholds) is documented next to the code that applies it and
summarised in ``DECISION_TABLE`` so reports and documentation can quote it.

Extra output fields beyond the DESIGN.md contract:

* ``dixon``: ``"W" | "F" | "IP" | "OP" | None`` - the Dixon output this stack is. Siemens writes Dixon
  water images as DERIVED, so ``derived`` is true for them; downstream rules that want "the
  fat-suppressed acquisition" should accept ``dixon == "W"`` even when ``derived`` is true.
* ``vendor``: normalised manufacturer (``siemens``/``ge``/``philips``/``canon``/``hitachi``/``uih``/
  ``other``/``unknown``).
* ``technique``: sequence family used by the rules (``SE``/``TSE``/``GRE``/``IR-GRE``/``bSSFP``/``EPI``/
  ``None``).
* ``b_values``: the distinct diffusion b-values seen in the stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from protocolcheck.dicom.geometry import obliquity_deg, plane_of, slice_normal
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.study import Stack, Study


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


class Vendor(str, Enum):
    """Manufacturer families whose header conventions differ."""

    SIEMENS = "siemens"
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"  # Canon and Toshiba
    HITACHI = "hitachi"  # Hitachi and Fujifilm
    UIH = "uih"
    OTHER = "other"
    UNKNOWN = "unknown"


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
    # additions (see module docstring)
    dixon: str | None = None
    vendor: str = Vendor.UNKNOWN.value
    technique: str | None = None
    b_values: tuple[float, ...] = ()

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
            "dixon": self.dixon,
            "vendor": self.vendor,
            "technique": self.technique,
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


# --------------------------------------------------------------------------------------------------
# Thresholds (ms unless noted). Field strength in tesla; None means unknown (1.5 T-like cut-offs).
# --------------------------------------------------------------------------------------------------

STIR_MAX_TI = 350.0  # SE/TSE with TI <= this -> STIR (1.5 T ~140-170, 3 T ~180-250)
FLAIR_MIN_TI = 1400.0  # TI >= this -> FLAIR (2D 1.5 T ~2000-2200, 3D 3 T Philips VISTA ~1650)
SE_T2_MIN_TE = 60.0  # SE/TSE TE >= this -> T2 whatever the TR
SE_T2_BORDER_TE = 50.0  # 50 <= TE < 60 -> T2 when TR >= SE_LONG_TR
SE_SHORT_TE = 35.0  # TE <= this counts as short for T1
SE_LONG_TR = 1500.0  # TR >= this counts as long (PD/T2)
GRE_T2STAR_MIN_TE = 9.0  # spoiled GRE TE >= this (flip <= 45) -> T2*
GRE_T1_MAX_TE = 9.0
GRE_FAST_TR = 50.0  # GRE TR below this: 3D/fast spoiled gradient echo
GRE_T2STAR_MIN_TR = 300.0  # 2D multi-echo GRE with TR >= this and flip <= 45 -> T2* (MEDIC/MERGE/mFFE)
GRE_MULTI_ECHO_MIN = 2  # echo train length of a multi-echo gradient echo
SE3D_T1_MAX_TR = 900.0  # 3D TSE (SPACE/CUBE/VISTA) T1 uses TR ~500-900 ms; PD ~1000-1500 ms
SE3D_T1_MAX_TE = 30.0
OBLIQUE_DEG = 10.0  # describe() calls a plane "oblique" beyond this angle
LOCALIZER_MAX_IMAGES = 7
LOCALIZER_MIN_THICKNESS = 5.0  # mm


def se_t1_max_tr(field_t: float | None) -> float:
    """Longest TR still called T1 for a short-TE spin echo: 3 T T1 TSE often uses TR 650-1100 ms."""
    return 1250.0 if field_t is not None and field_t >= 2.0 else 1000.0


DECISION_TABLE: tuple[tuple[str, str], ...] = (
    ("weighting", "DWI: any b-value > 0 (DiffusionBValue / Siemens '*ep_b<N>'), Image Type DIFFUSION/TRACEW/ADC/FA, "
                  "Philips DwiSE; derived maps (ADC, FA, TRACEW) keep weighting DWI and are flagged derived"),
    ("weighting", "other: CT and non-MR; angiography (TOF/PC names, Image Type ANGIO/VELOCITY), parameter maps, "
                  "field maps, perfusion maps, phase images"),
    ("weighting", "inversion with TI <= 350 ms (SE/TSE) -> T2 + STIR; TI >= 1400 ms -> T2 + FLAIR (T1 when TE < 30 ms); "
                  "350 < TI < 1400 ms -> T1 + IR (MPRAGE, T1 FLAIR, IR-prepared GRE)"),
    ("weighting", "IR-prepared / magnetisation-prepared GRE (Siemens *tfl, GE IR_GEMS/BRAVO, Philips TFE with MP) -> T1"),
    ("weighting", "balanced SSFP (TrueFISP/FIESTA/B-FFE/CISS) -> T2 (T2/T1 contrast, reported as T2)"),
    ("weighting", f"SE/TSE: TE >= {SE_T2_MIN_TE:g} -> T2; {SE_T2_BORDER_TE:g} <= TE < {SE_T2_MIN_TE:g} and TR >= "
                  f"{SE_LONG_TR:g} -> T2; TE <= {SE_SHORT_TE:g} and TR <= 1000 (1.5 T) / 1250 (3 T) -> T1; "
                  f"TE < {SE_T2_BORDER_TE:g} and TR >= {SE_LONG_TR:g} -> PD; 3D TSE: TR <= {SE3D_T1_MAX_TR:g} and TE <= "
                  f"{SE3D_T1_MAX_TE:g} -> T1, longer TR with TE < {SE_T2_BORDER_TE:g} -> PD; in the PD/T2 border (TE 40-60) "
                  "and T1/PD border (TR 0.8-1.6x the T1 cut-off) a series name naming the neighbour decides; otherwise "
                  "series text, else unknown"),
    ("weighting", f"GRE: TE >= {GRE_T2STAR_MIN_TE:g} and flip <= 45 -> T2* (also SWI/SWAN/MEDIC/MERGE names); 2D multi-echo "
                  f"(echo train >= {GRE_MULTI_ECHO_MIN}) with TR >= {GRE_T2STAR_MIN_TR:g} and flip <= 45 -> T2*; "
                  f"TE < {GRE_T1_MAX_TE:g} and (flip >= 25 or TR < {GRE_FAST_TR:g}) -> T1; otherwise text"),
    ("weighting", "EPI without diffusion: GRE-EPI -> T2* (BOLD/DSC), SE-EPI -> T2"),
    ("weighting", "no sequence type: text tokens (T1/T2/PD/FLAIR/STIR/MPRAGE/VIBE/LAVA/THRIVE/DWI/SWI...)"),
    ("inversion", "IR present (Scanning Sequence IR, Scan Options IR, enhanced InversionRecovery YES, Siemens *tir/*spcir, "
                  "GE T1FLAIR/T2FLAIR/IR_GEMS, Philips IR) and TI: <= 350 STIR (SE) / IR (GRE); 350-1400 IR; >= 1400 FLAIR; "
                  "without TI: GE FLAIR tokens, then text (stir/tirm, flair/dark fluid, mprage/bravo); no IR flag and no TI "
                  "but a gradient echo named MPRAGE/MP2RAGE/BRAVO -> IR"),
    ("fat_suppression", "STIR inversion -> STIR; Dixon water (Image Type W/WATER, GE 'WATER:' prefix) -> DIXON; "
                        "Dixon fat/in/opposed phase -> not suppressed"),
    ("fat_suppression", "Scan Options tokens FS/SFS/FAT_SAT/FATSAT -> suppressed, method UNSPECIFIED (DICOM's one fat "
                        "token covers fat sat, SPAIR and SPIR) unless Philips (2001,1021)=Y (SPIR) or the text names SPAIR/"
                        "SPIR/CHESS; WE -> WATER_EXCITATION; GE FSA/FSP/FSS/FSI/FSR/FSL_GEMS and SAT_GEMS ignored"),
    ("fat_suppression", "enhanced SpectrallySelectedSuppression FAT/FAT_AND_WATER/WATER_FAT -> suppressed, method "
                        "UNSPECIFIED unless the text names it; NONE -> false"),
    ("fat_suppression", "text: fatsat/fat sat/fs (word)/spair/spir (not spiral)/stir/dixon water/water excitation; "
                        "negatives nfs/non-fs/no fat sat -> false"),
    ("fat_suppression", "false without text when the vendor always writes a fat token and none is there: Siemens classic "
                        "MR (non-XA, options empty or without FS/WE), Siemens XA (classic or enhanced) with Scan Options "
                        "present but no FS/WE, GE classic with Scan Options present (not LAVA/VIBRANT/DISCO, not IDEAL/FLEX), "
                        "Philips with Scan Options present but no FS, or (2001,1021)=N; never for DWI or unlabelled Dixon"),
    ("fat_suppression", "study naming convention: if another series of the study names fat suppression (FS/fatsat/SPAIR/"
                        "SPIR) and this one's description does not, an otherwise unknown stack is not fat suppressed"),
    ("post_contrast", "Contrast/Bolus Agent non-empty and not NONE/NO -> post (unless already on the study's first "
                      "acquisition: exam-level, ignored); else SeriesDescription text (ProtocolName only if the description "
                      "is empty, never GE's) with negatives pre/native/w/o/without/non-contrast beating positives +C/C+/"
                      "post/gad/gd/contrast/KM/CE/dynamic/agent brand names; CT also Route and CTA/angio; else order: "
                      "acquired before the first post-contrast acquisition -> pre; after it -> post (localizers stay "
                      "unknown)"),
    ("plane", "normal = row x column of Image Orientation (Patient); largest |component| names the plane; "
              "obliquity = angle to that axis; missing orientation -> null"),
    ("acquisition", "MR Acquisition Type 2D/3D; else sequence names (*fl3d, *tfl3d, *spc, *ci3d, 3D GE names, "
                    "Philips 3D); else '3D' in text; CT -> null"),
    ("localizer", "Image Type LOCALIZER; several planes in one series with few images; names localizer/scout/survey/"
                  "3-plane/loc/tri-pilot/topogram; 2D fast GRE (TR < 50 ms) with <= 7 images of >= 5 mm"),
    ("derived", "Image Type DERIVED or SECONDARY or tokens MPR/MIP/MINIP/PROJECTION/MOCO/SUB/ADC/TRACEW/FA/REFORMATTED; "
                "text ADC/MIP/MPR/subtraction; Dixon water stays derived=true with dixon='W'"),
)


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------

def vendor_of(manufacturer: str) -> Vendor:
    """Normalise Manufacturer (0008,0070) to a vendor family."""
    m = (manufacturer or "").strip().lower()
    if not m:
        return Vendor.UNKNOWN
    if "siemens" in m:
        return Vendor.SIEMENS
    if m.startswith("ge ") or m in ("ge", "gems") or "ge medical" in m or "ge healthcare" in m or "general electric" in m:
        return Vendor.GE
    if "philips" in m:
        return Vendor.PHILIPS
    if "toshiba" in m or "canon" in m:
        return Vendor.CANON
    if "hitachi" in m or "fujifilm" in m:
        return Vendor.HITACHI
    if "uih" in m or "united imaging" in m or "united-imaging" in m:
        return Vendor.UIH
    return Vendor.OTHER


def _field_tesla(value: float | None) -> float | None:
    """Magnetic Field Strength in tesla (a few systems write gauss, e.g. 15000)."""
    if value is None or value <= 0:
        return None
    if value > 100:
        return value / 10000.0
    return value


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.3g}"


_B = r"(?<![a-z])"  # no letter before
_E = r"(?![a-z])"  # no letter after


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _first_match(text: str, patterns: Sequence[tuple[re.Pattern[str], str]]) -> tuple[str, str] | None:
    """(label, matched text) of the first pattern found in text."""
    for pattern, label in patterns:
        m = pattern.search(text)
        if m:
            return label, m.group(0)
    return None


# Text patterns (lower-case text). Order matters: first match wins within a list.
_WEIGHT_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(_B + r"(?:dwi|dti|diff|diffusion|trace|adc|ep2d_diff|resolve|dwibs|ivim)" + _E), "DWI"),
    (_rx(r"(?<![a-z0-9])b\s?(?:[5-9]\d\d|[1-9]\d\d\d)(?![0-9])"), "DWI"),
    (_rx(_B + r"(?:swi|swan|swip|susceptibility|hemo|haemo|medic|merge|fsbb|t2\s?\*|t2\s?star|t2star|t2\*w|t2_star|gre_t2)"), "T2*"),
    (_rx(_B + r"(?:flair|dark[\s_\-]?fluid|stir|tirm|spcir|stir3d)"), "T2"),
    (_rx(_B + r"(?:mprage|mp[\s_\-]?rage|tfl|bravo|spgr|fspgr|vibe|lava|thrive|tfe|flash|starvibe|quick3d|t1ffe|e[\s_-]?thrive|water[\s_-]?t1|t1w?)" + r"(?![0-9])"), "T1"),
    (_rx(_B + r"(?:pdw?|pd[\s_\-]?fs|dp|pdfs|proton[\s_\-]?density|pd[\s_-]?t2)" + r"(?![0-9a-z])"), "PD"),
    (_rx(_B + r"(?:t2w?|haste|ssfse|space|cube|vista|ciss|fiesta|trufi|mrcp|t2ffe)" + r"(?![0-9])"), "T2"),
)

_FATSAT_NEG = _rx(_B + r"(?:nfs|nonfs|non[\s_\-]?fs|no[\s_\-]?fs|nofs|w/?o[\s_\-]?fs|non[\s_\-]?fat[\s_\-]?sat|no[\s_\-]?fat[\s_\-]?sat|without[\s_\-]?fat)" + _E)
_FATSAT_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(_B + r"spair" + _E), "SPAIR"),
    (_rx(_B + r"spir" + _E), "SPIR"),
    (_rx(_B + r"(?:stir|tirm|stir3d|spcir[\s_]*stir)"), "STIR"),
    (_rx(_B + r"(?:water[\s_\-]?exc\w*|we|proset|pasta|wats?)" + _E), "WATER_EXCITATION"),
    (_rx(_B + r"(?:fat[\s_\-]?sat\w*|fat[\s_\-]?sup\w*|fatsup\w*|chess|fs|f/s|fat[\s_\-]?supp\w*)" + r"(?![a-z])"), "UNSPECIFIED"),
    (_rx(r"(?<![a-z])(?:t1|t2|pd|dp|stir)[\s_\-]?fs(?![a-z])"), "UNSPECIFIED"),
    (_rx(r"(?<![a-z])fs[\s_\-]?(?:t1|t2|pd)(?![a-z])"), "UNSPECIFIED"),
)

_CONTRAST_BRANDS = (
    "gadovist", "gadavist", "dotarem", "magnevist", "prohance", "multihance", "clariscan", "omniscan", "elucirem",
    "vueway", "eovist", "primovist", "ablavar", "vasovist", "optimark", "gadoterate", "gadobutrol", "gadoteridol",
    "gadopiclenol", "gadoxetate", "gadobenate", "gadodiamide", "gadopentetate", "artirem", "cyclolux", "dotagraf",
    "gadoversetamide", "feridex", "resovist",
)
_POST_NEG: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(_B + r"pre(?:[\s_\-]*(?:contrast|con|gad|gado|gd|c|km|inj|injection))?" + _E
         + r"(?![\s_\-]*(?:sat|op|operative|scan|pulse|puls)(?![a-z]))"), "pre"),
    (_rx(_B + r"(?:nativ|native|natif|nativo)" + _E), "native"),
    (_rx(r"(?:w/o|" + _B + r"wo" + _E + r")(?![\s_\-]*(?:fs|fat|sat|fatsat)(?![a-z]))"), "w/o"),
    (_rx(_B + r"without" + _E + r"(?![\s_\-]*(?:fs|fat|sat|fatsat)(?![a-z]))"), "without"),
    (_rx(_B + r"non[\s_\-]*(?:contrast|con|enhanced|gad|gd|c)" + _E), "non-contrast"),
    (_rx(_B + r"no[\s_\-]*(?:contrast|gad|gd|km|c)" + _E), "no contrast"),
    (_rx(_B + r"(?:unenhanced|ohne|sans|senza|plain)" + _E), "unenhanced"),
)
_POST_POS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(r"\+\s*(?:c|gd|gad|gado|km|mdc|contrast|ce)" + _E), "+C"),
    (_rx(_B + r"(?:c|gd|gad)\s*\+"), "C+"),
    (_rx(_B + r"post(?![\s_\-]*op)(?:[\s_\-]*(?:contrast|con|gad|gado|gd|c|km|inj|injection))?" + _E), "post"),
    (_rx(_B + r"(?:gd|gad|gado|gadolinium|gdcontrast)" + _E), "gad"),
    (_rx(_B + r"(?:contrast|kontrast|contraste|km|mdc)" + _E), "contrast"),
    (_rx(_B + r"(?:ce|dce|dsc|dyn|dynamic|dynamics|enhanced)" + _E), "contrast-enhanced/dynamic"),
    (_rx(_B + r"w/\s*c" + _E), "w/C"),
    (_rx(_B + r"(?:arterial|venous|portal|delayed|equilibrium|hepatobiliary|hbp|nephrographic|excretory)" + _E), "contrast phase"),
    (_rx("|".join(_CONTRAST_BRANDS)), "agent brand name"),
)
_SUBTRACTION = _rx(_B + r"(?:sub|subtraction|subtracted)" + _E)
_AGENT_EMPTY = {"", "NONE", "NO", "N", "0", "-", "NONE GIVEN", "NOT GIVEN", "NULL", "NIL", "NA", "N/A", "NO CONTRAST"}

_LOCALIZER_TEXT = _rx(
    r"(?:localiz|localis|scout|survey|surview|topogram|scanogram)|"
    + _B + r"(?:loc|locs|locator|3[\s_\-]?pl(?:ane)?|three[\s_\-]?plane|tri[\s_\-]?pilot|pilot|topo|scano|"
    r"positioning|autoalign|aa_?scout)" + r"(?![a-z])"
)

_DERIVED_TOKENS = {
    "MPR", "MIP", "MINIP", "MNIP", "PROJECTION IMAGE", "PROJECTION", "MOCO", "SUB", "SUBTRACTION", "ADC", "EADC",
    "TRACEW", "FA", "COLFA", "REFORMATTED", "REFORMAT", "CALC", "COMPOSED", "CPR", "CURVED", "CSA MPR",
    "CSA RESAMPLED", "CSAPARALLEL", "RESAMPLED", "VOLUME RENDER", "VR", "FUSED", "T1 MAP", "T2 MAP",
}
_DERIVED_TEXT = _rx(_B + r"(?:adc|mip|minip|mpr|reformat\w*|subtraction|sub|colfa|fa[\s_-]?map|moco)" + _E)

_OTHER_IMAGE_TYPES = {
    "ANGIO", "VELOCITY", "FLOW_ENCODED", "PHASE", "P", "T1MAP", "T2MAP", "T1_MAP", "T2_MAP", "T2STAR_MAP",
    "R2STAR", "R2", "R1", "PERFUSION", "ASL", "CBF", "CBV", "MTT", "TTP", "RELCBF", "RELCBV", "FIELD_MAP",
    "B0MAP", "B1MAP", "FIELDMAP", "PD_MAP", "T1 MAP", "T2 MAP", "MAP", "QSM",
}
_DIFFUSION_IMAGE_TYPES = {"DIFFUSION", "TRACEW", "ADC", "EADC", "FA", "TRACE", "ISOTROPIC", "DWI", "EXP", "COLFA",
                          "DIFFUSION_WEIGHTED"}
_OTHER_TEXT = _rx(
    _B + r"(?:tof|mra|angio\w*|pca|phase[\s_\-]?contrast|velocity|flow|field[\s_\-]?map\w*|fmap|b0map|b1map|"
    r"t1[\s_\-]?map\w*|t2[\s_\-]?map\w*|molli|shmolli|mapit|relaxometry|asl|pcasl|pasl|cbf|spectro\w*|"
    r"mrs|csi|svs|cine|tagging)" + _E
)
_DIXON_PREFIX = _rx(r"^\s*(water|fat|inphase|in[\s_-]?phase|outphase|out[\s_-]?phase|opp[\s_-]?phase)\s*:")
_DIXON_TEXT = _rx(_B + r"(?:dixon|mdixon|ideal|flex|fact|wfs|wfop|fatsep|f-w|w-f)" + _E)
_DIXON_LABEL_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(_B + r"(?:w|water|wat)" + _E), "W"),
    (_rx(_B + r"(?:f|fat)" + _E), "F"),
    (_rx(_B + r"(?:ip|in|inphase|in[\s_-]phase)" + _E), "IP"),
    (_rx(_B + r"(?:op|opp|out|outphase|opposed|opp[\s_-]phase|out[\s_-]phase)" + _E), "OP"),
)
_DIXON_IMAGE_TYPE = {
    "W": "W", "WATER": "W",
    "F": "F", "FAT": "F",
    "IP": "IP", "IN_PHASE": "IP", "INPHASE": "IP",
    "OP": "OP", "OPP_PHASE": "OP", "OUT_PHASE": "OP", "OPPOSED_PHASE": "OP", "OUTPHASE": "OP",
}

# Scan Options tokens.
_FS_TOKENS = {"FS", "SFS", "FAT_SAT", "FATSAT", "FSAT", "SPECTRAL_FAT_SAT", "FAT SAT"}
_WE_TOKENS = {"WE", "WATER_EXCITATION", "WATEREXCITATION"}
_GE_NOT_FAT = {"FSA_GEMS", "FSP_GEMS", "FSS_GEMS", "FSI_GEMS", "FSR_GEMS", "FSL_GEMS", "SAT_GEMS", "FSAT_GEMS"}


# --------------------------------------------------------------------------------------------------
# Facts of one stack
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Facts:
    """What the rules look at, collected once from the stack's instances."""

    first: InstanceHeader
    vendor: Vendor
    modality: str
    field_t: float | None
    tr: float | None
    te: float | None
    ti: float | None
    flip: float | None
    b_values: tuple[float, ...]
    image_type: tuple[str, ...]
    scan_options: frozenset[str]
    scanning_sequence: frozenset[str]
    sequence_variant: frozenset[str]
    seq_name: str  # Sequence Name or Pulse Sequence Name, lower case, without leading '*'
    vendor_seq: str  # GE (0019,109C) / Philips (2001,1020), lower case
    description: str
    protocol: str
    agents: tuple[str, ...]
    routes: tuple[str, ...]
    images: int

    @property
    def is_mr(self) -> bool:
        return self.modality == "MR" or (not self.modality and bool(
            self.scanning_sequence or self.seq_name or self.tr is not None or self.first.mr_acquisition_type))

    @property
    def names(self) -> str:
        """Sequence names joined for pattern tests."""
        return " ".join(n for n in (self.seq_name, self.vendor_seq, self.first.pulse_sequence_name.lower().lstrip("*")) if n)

    @property
    def text(self) -> str:
        """Series text to read: SeriesDescription, then ProtocolName (not GE's, which is often exam-level)."""
        parts = [self.description]
        if self.protocol and self.protocol.lower() != self.description.lower():
            if self.vendor is not Vendor.GE or not self.description:
                parts.append(self.protocol)
        return " | ".join(p for p in parts if p).lower()

    def text_source(self) -> str:
        return "SeriesDescription" if self.description else ("ProtocolName" if self.protocol else "text")


def _first_number(values: Iterable[float | None]) -> float | None:
    for v in values:
        if v is not None:
            return v
    return None


def _split_tokens(values: Iterable[str]) -> frozenset[str]:
    """Upper-case tokens; Toshiba/Canon write combined values such as 'SE_EP', so split on '_' too."""
    out: set[str] = set()
    for v in values:
        v = v.strip().upper()
        if v:
            out.add(v)
            out.update(p for p in re.split(r"[_\s]+", v) if p)
    return frozenset(out)


def _facts(stack: Stack) -> _Facts:
    hs = stack.instances
    h = hs[0]
    image_type = tuple(dict.fromkeys(tuple(h.image_type) + tuple(h.frame_type)))
    options: set[str] = set()
    for x in hs:
        options.update(t.strip().upper() for t in x.scan_options + x.vendor_scan_options)
    b_values = sorted({round(x.diffusion_b_value, 1) for x in hs if x.diffusion_b_value is not None})
    # Siemens writes b-values in the sequence name (*ep_b1000t) even when (0018,9087) is absent.
    for x in hs:
        m = re.search(r"ep_b(\d+)", x.sequence_name or x.pulse_sequence_name or "")
        if m:
            b = float(m.group(1))
            if b not in b_values:
                b_values.append(b)
    tis = [x.inversion_time for x in hs if x.inversion_time is not None and x.inversion_time > 0]
    agents = tuple(dict.fromkeys(x.contrast_agent.strip() for x in hs if x.contrast_agent.strip()))
    routes = tuple(dict.fromkeys(x.contrast_route.strip() for x in hs if x.contrast_route.strip()))
    return _Facts(
        first=h,
        vendor=vendor_of(h.manufacturer),
        modality=h.modality.upper(),
        field_t=_field_tesla(h.field_strength),
        tr=_first_number(x.repetition_time for x in hs),
        te=_first_number(x.echo_time for x in hs),
        ti=min(tis) if tis else None,
        flip=_first_number(x.flip_angle for x in hs),
        b_values=tuple(sorted(b_values)),
        image_type=tuple(t.upper() for t in image_type),
        scan_options=frozenset(options),
        scanning_sequence=_split_tokens(h.scanning_sequence),
        sequence_variant=frozenset(t.upper() for t in h.sequence_variant),
        seq_name=(h.sequence_name or h.pulse_sequence_name).strip().lstrip("*").lower(),
        vendor_seq=h.vendor_sequence.strip().lower(),
        description=h.series_description.strip(),
        protocol=h.protocol_name.strip(),
        agents=agents,
        routes=routes,
        images=stack.frame_count,
    )


# --------------------------------------------------------------------------------------------------
# Technique (sequence family)
# --------------------------------------------------------------------------------------------------

_SIEMENS_SE = re.compile(r"^(?:tse|tser|tseb|tsev|qtse|h2d|h3d|haste|spc|spcr|spcir|spcs|se|ise|tir|ir|tirm|tse3d|tsk|blade|fse|vfl)")
_SIEMENS_GRE = re.compile(r"^(?:fl|tfl|me|swi|de|gre|medic|fl3d|qfl|ute|vibe|dess|psif|fisp|fi|tfi|ci|trufi|csi|pc)")
_SIEMENS_EPI = re.compile(r"^(?:ep|epfid|epse|epi|re_b|ep2d|ep3d|epir)")
_BSSFP_NAMES = re.compile(r"(?:^|[^a-z])(?:tfi|fi2d|fi3d|ci3d|ci2d|trufi|truefisp|fiesta|fiestac|fiesta-c|b-?ffe|bffe|"
                          r"bssfp|true[\s_-]?ssfp|truessfp|ciss|balanced|basg|true[\s_-]?fisp|cosmic)")
_BSSFP_TEXT = _rx(_B + r"(?:fiesta|fiesta[\s_-]?c|trufi|truefisp|true[\s_-]?fisp|ciss|b[\s_-]?ffe|bffe|bssfp|true[\s_-]?ssfp|balanced)" + _E)
_GE_SE = re.compile(r"(?:fse|frfse|ssfse|cube|propeller|se$|^se|fsepr|fse-xl|fse_|irfse|fsir|t1flair|t2flair|3dfse|mavric)")
_GE_GRE = re.compile(r"(?:gre|spgr|fspgr|fgre|efgre|lava|bravo|swan|merge|cosmic|tof|mde|ideal|starmap|3dgrass|grass|disco|fame|vibrant)")
_EPI_NAMES = re.compile(r"(?:^|[^a-z])(?:epi|epi2|ep2d|epse|epfid|ep_b|dwi|dti|diff|resolve|rs_epi|mux|seepi|feepi|dwise)")
_IRGRE_NAMES = re.compile(r"(?:^|[^a-z])(?:tfl|mprage|mp2rage|bravo|ir[\s_-]?fspgr|irfspgr|t1tfe|tfe|3d_tfe|mpr|tfl3d|tfl2d|ir_gre)")


def _technique(f: _Facts) -> tuple[str | None, list[str]]:
    """Sequence family: SE, TSE, GRE, IR-GRE, bSSFP, EPI, or None; with evidence."""
    ev: list[str] = []
    names = f.names
    ss, sv = f.scanning_sequence, f.sequence_variant
    if not f.is_mr:
        return None, ev
    # Siemens-style names ('*tse2d1_3', 'epse2d1_72', 'ep_b1000t'); other vendors' free text ('FLAIR_AX') is not one.
    raw_name = (f.first.sequence_name or f.first.pulse_sequence_name).strip()
    siemens_style = raw_name.startswith("*") or bool(re.match(r"^(?:[a-z]{1,6}[23]d\d|ep_b|re_b|epse|epfid|spc)", f.seq_name))
    siemens_name = f.seq_name if f.vendor is Vendor.SIEMENS or siemens_style else ""
    if _BSSFP_NAMES.search(names) or (siemens_name and re.match(r"^(?:tfi|fi\d|ci\d|trufi)", siemens_name)):
        ev.append(f"sequence name '{names}' -> balanced SSFP")
        return "bSSFP", ev
    if "EP" in ss or _EPI_NAMES.search(names) or (siemens_name and _SIEMENS_EPI.match(siemens_name)):
        ev.append("Scanning Sequence EP -> EPI" if "EP" in ss else f"sequence name '{names}' -> EPI")
        return "EPI", ev
    if f.first.echo_planar == "YES":
        ev.append("enhanced EchoPlanarPulseSequence YES -> EPI")
        return "EPI", ev
    if siemens_name:
        if re.match(r"^(?:tfl)", siemens_name):
            ev.append(f"SequenceName '*{siemens_name}' -> turbo FLASH (MPRAGE family)")
            return ("IR-GRE" if ("IR" in ss or "IR" in f.scan_options or "MP" in sv or f.ti) else "GRE"), ev
        if _SIEMENS_SE.match(siemens_name):
            ev.append(f"SequenceName '*{siemens_name}' -> turbo/spin echo")
            return ("TSE" if not siemens_name.startswith(("se", "ise")) else "SE"), ev
        if _SIEMENS_GRE.match(siemens_name):
            ev.append(f"SequenceName '*{siemens_name}' -> gradient echo")
            return "GRE", ev
    vs = f.vendor_seq
    if f.vendor is Vendor.PHILIPS and not vs:
        # Enhanced Philips objects name the technique in Pulse Sequence Name (0018,9005): T1TFE, TSE, FFE, DwiSE, GraSE.
        vs = f.first.pulse_sequence_name.strip().lower()
    if f.vendor is Vendor.PHILIPS and vs:
        v = vs.replace("-", "").replace("_", "")
        if "tfe" in v:
            ev.append(f"Philips scanning technique '{vs}' -> TFE (magnetisation-prepared GRE)")
            return "IR-GRE", ev
        if "ffe" in v:
            ev.append(f"Philips scanning technique '{vs}' -> FFE (gradient echo)")
            return "GRE", ev
        if "tse" in v or v.startswith("se") or v in ("ir", "irse", "irtse"):
            ev.append(f"Philips scanning technique '{vs}' -> spin echo")
            return ("TSE" if "tse" in v else "SE"), ev
    if f.vendor is Vendor.GE and names:
        if _GE_SE.search(names):
            ev.append(f"GE pulse sequence '{names}' -> spin echo family")
            return "TSE", ev
        if re.search(r"bravo|irfspgr|ir-fspgr|mprage", names):
            ev.append(f"GE pulse sequence '{names}' -> IR-prepared GRE")
            return "IR-GRE", ev
        if _GE_GRE.search(names):
            ev.append(f"GE pulse sequence '{names}' -> gradient echo")
            return "GRE", ev
    bssfp_text = _BSSFP_TEXT.search(f.text) if "GR" in ss and (f.tr is None or f.tr < 15) else None
    if bssfp_text:
        ev.append(f"Scanning Sequence GR and {f.text_source()} '{bssfp_text.group(0)}' -> balanced SSFP")
        return "bSSFP", ev
    if "GR" in ss:
        prepared = "MP" in sv or "IR" in ss
        ev.append("Scanning Sequence GR" + (" with " + ("MP" if "MP" in sv else "IR") + " -> prepared gradient echo" if prepared else " -> gradient echo"))
        return ("IR-GRE" if prepared else "GRE"), ev
    if "SE" in ss:
        fast = "SK" in sv or (f.first.echo_train_length or 0) > 1
        ev.append("Scanning Sequence SE" + (" with SK/echo train -> turbo spin echo" if fast else " -> spin echo"))
        return ("TSE" if fast else "SE"), ev
    if "IR" in ss:
        ev.append("Scanning Sequence IR (no SE/GR given) -> inversion recovery spin echo")
        return "TSE", ev
    eps = f.first.echo_pulse_sequence
    if eps in ("SPIN", "GRADIENT", "BOTH"):
        if eps == "GRADIENT":
            prepared = f.first.inversion_recovery == "YES"
            ev.append("enhanced EchoPulseSequence GRADIENT" + (" with InversionRecovery -> prepared gradient echo" if prepared else " -> gradient echo"))
            return ("IR-GRE" if prepared else "GRE"), ev
        ev.append(f"enhanced EchoPulseSequence {eps} -> spin echo family")
        return "TSE", ev
    hints = set(f.image_type[2:])
    if hints & {"M_SE", "SE"}:
        ev.append("Image Type M_SE/SE (Philips) -> spin echo")
        return "TSE", ev
    if hints & {"M_IR", "IR"}:
        ev.append("Image Type M_IR/IR (Philips) -> inversion recovery spin echo")
        return "TSE", ev
    if hints & {"M_FFE", "FFE", "SW_M_FFE"}:
        ev.append("Image Type M_FFE/FFE (Philips) -> gradient echo")
        return "GRE", ev
    # Vendor-neutral names (Canon/Toshiba/UIH/Hitachi use short names such as FSE2D, FE3D, SE2D, fse, gre).
    if re.search(r"(?:^|[^a-z])(?:fse|tse|se|fase|ssfse|haste|frfse|vfa|mvox|ir|fsir|fastir)(?:\d|[^a-z]|$)", names):
        ev.append(f"sequence name '{names}' -> spin echo family")
        return "TSE", ev
    if re.search(r"(?:^|[^a-z])(?:fe|ffe|gre|gr|ge|fl|flash|spgr|fspgr|qfe|fsbb|swi|rssg|rsge|sarge|fe3d|fe2d)(?:\d|[^a-z]|$)", names):
        ev.append(f"sequence name '{names}' -> gradient echo")
        return "GRE", ev
    return None, ev


# --------------------------------------------------------------------------------------------------
# Weighting and inversion
# --------------------------------------------------------------------------------------------------

def _is_dwi(f: _Facts, technique: str | None) -> str | None:
    if any(b > 0 for b in f.b_values):
        return f"b-values {', '.join(_fmt(b) for b in f.b_values)} s/mm² -> diffusion"
    diff_types = [t for t in f.image_type if t in _DIFFUSION_IMAGE_TYPES]
    if diff_types:
        return f"Image Type {'/'.join(diff_types)} -> diffusion"
    if f.first.acquisition_contrast == "DIFFUSION":
        return "enhanced AcquisitionContrast DIFFUSION -> diffusion"
    if re.search(r"dwi|dti|diff|ep_b|resolve", f.names):
        return f"sequence name '{f.names}' -> diffusion"
    if technique not in ("GRE", "IR-GRE", "bSSFP") and not ("GR" in f.scanning_sequence and technique == "EPI"):
        m = _first_match(f.text, _WEIGHT_TEXT[:2])
        if m:
            return f"{'EPI' if technique == 'EPI' else 'non-gradient-echo'} sequence and {f.text_source()} '{m[1]}' -> diffusion"
    return None


def _inversion_present(f: _Facts, technique: str | None) -> str | None:
    if "IR" in f.scanning_sequence:
        return "Scanning Sequence IR"
    if "IR" in f.scan_options:
        return "Scan Options IR"
    if f.first.inversion_recovery == "YES":
        return "enhanced InversionRecovery YES"
    ge = f.scan_options & {"IR_GEMS", "T1FLAIR_GEMS", "T2FLAIR_GEMS", "IRP_GEMS"}
    if ge:
        return "GE Scan Options " + "/".join(sorted(ge))
    if re.match(r"^(?:tir|ir|spcir|tirm|tfl)", f.seq_name) and f.vendor in (Vendor.SIEMENS, Vendor.UNKNOWN, Vendor.OTHER):
        return f"SequenceName '*{f.seq_name}'"
    if "M_IR" in f.image_type or "IR" in f.image_type[2:]:
        return "Image Type IR"
    if f.ti is not None and f.ti > 0:
        return f"Inversion Time {_fmt(f.ti)} ms"
    return None


def _inversion(f: _Facts, technique: str | None) -> tuple[Inversion | None, list[str]]:
    """Inversion type from TI (field-aware ranges), vendor tokens, then text."""
    present = _inversion_present(f, technique)
    ev: list[str] = []
    text = f.text
    declared = f.first.acquisition_contrast
    if not present and declared in ("STIR", "FLUID_ATTENUATED"):
        label = Inversion.STIR if declared == "STIR" else Inversion.FLAIR
        return label, [f"enhanced AcquisitionContrast {declared} -> {label.value}"]
    if not present:
        # Text-only inversion (no header flag at all): STIR / FLAIR names on vendors that do not flag IR.
        m = re.search(_B + r"(?:stir|tirm)" + _E, text)
        if m and not re.search(r"dark[\s_\-]?fluid|flair", text) and technique not in ("GRE", "IR-GRE", "bSSFP"):
            return Inversion.STIR, [f"no inversion flag or TI; {f.text_source()} '{m.group(0)}' -> STIR"]
        m = re.search(_B + r"(?:mp[\s_\-]?rage|mp2rage|bravo)", text + " " + f.names)
        if m and technique in ("GRE", "IR-GRE"):
            # MPRAGE/BRAVO are inversion-prepared by definition; enhanced exports may drop TI and the IR flags.
            return Inversion.IR, [f"no inversion flag or TI; gradient echo named '{m.group(0)}' (inversion-prepared by "
                                  "definition) -> T1 inversion preparation (IR)"]
        m = re.search(_B + r"(?:flair|dark[\s_\-]?fluid)", text)
        if m and technique not in ("GRE", "IR-GRE", "bSSFP", "EPI"):
            if re.search(_B + r"t1[\s_\-]?(?:w[\s_\-]?)?flair", text):
                return Inversion.IR, [f"no inversion flag or TI; {f.text_source()} '{m.group(0)}' with T1 -> T1 IR (T1 FLAIR)"]
            return Inversion.FLAIR, [f"no inversion flag or TI; {f.text_source()} '{m.group(0)}' -> FLAIR"]
        return None, ["no inversion pulse in Scanning Sequence, Scan Options, enhanced flags or TI"]
    ev.append(f"{present} -> inversion recovery")
    ti = f.ti
    gre = technique in ("GRE", "IR-GRE", "bSSFP")
    if ti is not None and ti > 0:
        if ti <= STIR_MAX_TI:
            if gre:
                ev.append(f"TI {_fmt(ti)} ms with gradient echo -> T1 inversion preparation")
                return Inversion.IR, ev
            ev.append(f"TI {_fmt(ti)} ms <= {STIR_MAX_TI:g} with spin echo -> STIR")
            return Inversion.STIR, ev
        if ti >= FLAIR_MIN_TI and not gre:
            ev.append(f"TI {_fmt(ti)} ms >= {FLAIR_MIN_TI:g} -> FLAIR")
            return Inversion.FLAIR, ev
        ev.append(f"TI {_fmt(ti)} ms between {STIR_MAX_TI:g} and {FLAIR_MIN_TI:g} -> T1 inversion preparation (IR)")
        return Inversion.IR, ev
    # No usable TI: vendor tokens, then names and text.
    if "T2FLAIR_GEMS" in f.scan_options:
        ev.append("GE Scan Options T2FLAIR_GEMS -> FLAIR")
        return Inversion.FLAIR, ev
    if "T1FLAIR_GEMS" in f.scan_options:
        ev.append("GE Scan Options T1FLAIR_GEMS -> T1 IR (T1 FLAIR)")
        return Inversion.IR, ev
    if technique == "IR-GRE" or gre:
        ev.append("no TI; inversion with gradient echo -> T1 inversion preparation (IR)")
        return Inversion.IR, ev
    m = re.search(_B + r"(?:flair|dark[\s_\-]?fluid)", text)
    if m:
        if re.search(_B + r"t1[\s_\-]?(?:w[\s_\-]?)?flair", text):
            ev.append(f"no TI; {f.text_source()} '{m.group(0)}' with T1 -> T1 IR")
            return Inversion.IR, ev
        ev.append(f"no TI; {f.text_source()} '{m.group(0)}' -> FLAIR")
        return Inversion.FLAIR, ev
    m = re.search(_B + r"(?:stir|tirm)" + _E, text)
    if m:
        ev.append(f"no TI; {f.text_source()} '{m.group(0)}' -> STIR")
        return Inversion.STIR, ev
    m = re.search(_B + r"(?:mprage|mp[\s_-]?rage|bravo|ir|t1)", text)
    if m:
        ev.append(f"no TI; {f.text_source()} '{m.group(0)}' -> T1 inversion preparation (IR)")
        return Inversion.IR, ev
    ev.append("inversion present but no TI or naming decides STIR/FLAIR/IR -> unknown")
    return None, ev


_ACQUISITION_CONTRAST = {
    "T1": Weighting.T1, "T2": Weighting.T2, "PROTON_DENSITY": Weighting.PD, "T2_STAR": Weighting.T2STAR,
    "DIFFUSION": Weighting.DWI, "FLUID_ATTENUATED": Weighting.T2, "STIR": Weighting.T2,
    "FLOW_ENCODED": Weighting.OTHER, "PERFUSION": Weighting.OTHER, "TOF": Weighting.OTHER, "TAGGING": Weighting.OTHER,
}


def _text_weighting(f: _Facts) -> tuple[Weighting, str] | None:
    text = f.text
    if not text:
        return None
    m = _first_match(text, _WEIGHT_TEXT)
    if m is None:
        return None
    label, matched = m
    return Weighting(label), f"{f.text_source()} '{matched}' -> {label}"


def _physics_se(f: _Facts) -> tuple[Weighting | None, str]:
    tr, te = f.tr, f.te
    if te is None:
        return None, "no TE"
    t1_max = se_t1_max_tr(f.field_t)
    field_note = f" at {f.field_t:g} T" if f.field_t else ""
    if f.first.mr_acquisition_type == "3D" and tr is not None and te < SE_T2_MIN_TE:
        # 3D variable-flip-angle TSE (SPACE/CUBE/VISTA): PD uses TR ~1000-1500 ms, T1 ~500-900 ms with TE <= 30.
        t1_max, field_note = SE3D_T1_MAX_TR, " (3D TSE)"
        if te <= SE3D_T1_MAX_TE and tr <= t1_max:
            return Weighting.T1, f"3D TSE TR {_fmt(tr)} ms <= {t1_max:g} and TE {_fmt(te)} ms <= {SE3D_T1_MAX_TE:g} -> T1"
        if te < SE_T2_BORDER_TE and tr > t1_max:
            return Weighting.PD, f"3D TSE TR {_fmt(tr)} ms > {t1_max:g} and TE {_fmt(te)} ms < {SE_T2_BORDER_TE:g} -> PD"
    if te >= SE_T2_MIN_TE:
        return Weighting.T2, f"TE {_fmt(te)} ms >= {SE_T2_MIN_TE:g} -> T2"
    if tr is None:
        return None, f"TE {_fmt(te)} ms but no TR"
    if te >= SE_T2_BORDER_TE and tr >= SE_LONG_TR:
        return Weighting.T2, f"TR {_fmt(tr)} ms >= {SE_LONG_TR:g} and TE {_fmt(te)} ms >= {SE_T2_BORDER_TE:g} -> T2"
    if te <= SE_SHORT_TE and tr <= t1_max:
        return Weighting.T1, f"TR {_fmt(tr)} ms <= {t1_max:g}{field_note} and TE {_fmt(te)} ms <= {SE_SHORT_TE:g} -> T1"
    if te < SE_T2_BORDER_TE and tr >= SE_LONG_TR:
        return Weighting.PD, f"TR {_fmt(tr)} ms >= {SE_LONG_TR:g} and TE {_fmt(te)} ms < {SE_T2_BORDER_TE:g} -> PD"
    return None, f"TR {_fmt(tr)} ms / TE {_fmt(te)} ms between the T1, PD and T2 ranges"


def _se_border(f: _Facts, physics: Weighting, named: Weighting | None) -> str | None:
    """Name the PD/T2 or T1/PD border zone when spin-echo parameters sit in it and the text names the
    neighbouring weighting (intermediate TE 40-60 ms; TR within about 30 % of the T1 cut-off)."""
    tr, te = f.tr, f.te
    if named is None or named is physics or tr is None or te is None:
        return None
    if {physics, named} == {Weighting.PD, Weighting.T2} and tr >= SE_LONG_TR and 40.0 <= te < SE_T2_MIN_TE:
        return "PD/T2"
    t1_max = se_t1_max_tr(f.field_t)
    if {physics, named} == {Weighting.T1, Weighting.PD} and te <= SE_SHORT_TE and 0.8 * t1_max < tr <= 1.6 * t1_max:
        return "T1/PD"
    return None


def _physics_gre(f: _Facts) -> tuple[Weighting | None, str]:
    tr, te, flip = f.tr, f.te, f.flip
    if te is None:
        return None, "no TE"
    if te >= GRE_T2STAR_MIN_TE and (flip is None or flip <= 45):
        return Weighting.T2STAR, f"gradient echo TE {_fmt(te)} ms >= {GRE_T2STAR_MIN_TE:g}, flip {_fmt(flip)}° -> T2*"
    etl = f.first.echo_train_length
    if (etl is not None and etl >= GRE_MULTI_ECHO_MIN and tr is not None and tr >= GRE_T2STAR_MIN_TR
            and flip is not None and flip <= 45 and f.first.mr_acquisition_type != "3D"):
        # Multi-echo 2D GRE (MEDIC/MERGE/mFFE) combines its echoes; the header keeps the first echo's short TE.
        return Weighting.T2STAR, (f"2D multi-echo gradient echo ({_fmt(etl)} echoes) TR {_fmt(tr)} ms >= "
                                  f"{GRE_T2STAR_MIN_TR:g}, flip {_fmt(flip)}° <= 45 -> T2* (echoes combined; first TE {_fmt(te)} ms)")
    if te < GRE_T1_MAX_TE:
        if flip is not None and flip >= 25:
            return Weighting.T1, f"gradient echo TE {_fmt(te)} ms, flip {_fmt(flip)}° >= 25 -> T1 (spoiled)"
        if tr is not None and tr < GRE_FAST_TR:
            return Weighting.T1, f"gradient echo TR {_fmt(tr)} ms < {GRE_FAST_TR:g}, TE {_fmt(te)} ms -> T1 (spoiled)"
    return None, f"gradient echo TR {_fmt(tr)} / TE {_fmt(te)} ms / flip {_fmt(flip)}° not decisive"


def _weighting(f: _Facts, technique: str | None, inversion: Inversion | None, dwi_reason: str | None
               ) -> tuple[Weighting, list[str]]:
    ev: list[str] = []
    if not f.is_mr:
        return Weighting.OTHER, [f"Modality {f.modality or '?'} -> other (not MR)"]
    if dwi_reason:
        return Weighting.DWI, [dwi_reason]
    other_types = [t for t in f.image_type[2:] if t in _OTHER_IMAGE_TYPES]
    if other_types:
        return Weighting.OTHER, [f"Image Type {'/'.join(other_types)} -> map/angiography/phase (other)"]
    if re.search(r"(?:^|[^a-z])(?:fl[23]d\d*r?_t|tof|fl\d?d\d*_v|pc3d|pc2d|3dtof|2dtof|pcvipr|asl|pcasl|tgse|qflow)", f.names):
        return Weighting.OTHER, [f"sequence name '{f.names}' -> angiography/flow/perfusion (other)"]
    m = _OTHER_TEXT.search(f.text)
    if (m and technique != "EPI") or (m and technique == "EPI" and re.search("asl|perfusion|pcasl|pasl", m.group(0))):
        return Weighting.OTHER, [f"{f.text_source()} '{m.group(0)}' -> angiography/map/perfusion/flow (other)"]
    te = f.te
    if inversion is Inversion.STIR:
        return Weighting.T2, ["STIR (short-TI inversion recovery) is reported as T2"]
    if inversion is Inversion.FLAIR:
        if te is not None and te < 30 and not re.search("t2", f.text):
            return Weighting.T1, [f"FLAIR-range TI with TE {_fmt(te)} ms < 30 -> T1 (T1 FLAIR)"]
        return Weighting.T2, ["FLAIR (long-TI inversion recovery) is reported as T2"]
    if inversion is Inversion.IR and technique not in ("bSSFP",):
        if te is not None and te >= SE_T2_MIN_TE and technique in ("SE", "TSE"):
            return Weighting.T2, [f"inversion-prepared spin echo with TE {_fmt(te)} ms >= {SE_T2_MIN_TE:g} -> T2"]
        return Weighting.T1, ["T1 inversion preparation (IR, 350-1400 ms or IR-prepared GRE) -> T1"]
    if technique == "IR-GRE":
        return Weighting.T1, ["magnetisation-prepared gradient echo (MPRAGE/TFE/BRAVO family) -> T1"]
    if technique == "bSSFP":
        return Weighting.T2, ["balanced SSFP (T2/T1 contrast) is reported as T2"]
    if technique == "EPI":
        if "GR" in f.scanning_sequence or re.search(r"epfid|fid|bold|fmri|perf|dsc", f.names + " " + f.text):
            return Weighting.T2STAR, ["gradient-echo EPI without diffusion -> T2* (BOLD/perfusion)"]
        return Weighting.T2, ["spin-echo EPI without diffusion -> T2"]
    text = _text_weighting(f)
    declared = _ACQUISITION_CONTRAST.get(f.first.acquisition_contrast)
    if declared is not None:
        # The scanner's own label (enhanced MR Acquisition Contrast) outranks series text.
        text = (declared, f"enhanced AcquisitionContrast {f.first.acquisition_contrast} -> {declared.value}")
    if technique in ("SE", "TSE"):
        w, why = _physics_se(f)
        if w is not None:
            ev.append(why)
            border = _se_border(f, w, text[0] if text else None)
            if border is not None and text is not None:
                ev.append(f"{text[1]} (parameters are at the {border} border, so the name decides)")
                return text[0], ev
            if text and text[0] is not w:
                ev.append(f"{text[1]} (ignored: acquisition parameters decide)")
            return w, ev
        ev.append(why)
    elif technique == "GRE":
        if re.search(r"swi|swan|medic|merge|me2d|me3d|fsbb|t2ffe|mffe", f.names):
            return Weighting.T2STAR, [f"sequence name '{f.names}' -> susceptibility/multi-echo GRE (T2*)"]
        w, why = _physics_gre(f)
        if w is not None:
            ev.append(why)
            if text and text[0] is not w:
                ev.append(f"{text[1]} (ignored: acquisition parameters decide)")
            return w, ev
        ev.append(why)
    elif technique is None and f.tr is not None and f.te is not None:
        # No sequence type at all: only clear-cut parameter combinations.
        tr, te = f.tr, f.te
        if tr >= SE_LONG_TR and te >= 80:
            return Weighting.T2, [f"no sequence type; TR {_fmt(tr)} / TE {_fmt(te)} ms (long/long) -> T2"]
        if tr < GRE_FAST_TR and te < GRE_T1_MAX_TE:
            return Weighting.T1, [f"no sequence type; TR {_fmt(tr)} / TE {_fmt(te)} ms (fast, short TE) -> T1"]
        ev.append(f"no sequence type; TR {_fmt(tr)} / TE {_fmt(te)} ms not decisive")
    else:
        ev.append("no sequence type and no TR/TE")
    if text is not None:
        ev.append(text[1])
        return text[0], ev
    ev.append("no series text naming the weighting -> unknown")
    return Weighting.UNKNOWN, ev


# --------------------------------------------------------------------------------------------------
# Dixon, fat suppression
# --------------------------------------------------------------------------------------------------

def _dixon(f: _Facts) -> tuple[str | None, str | None]:
    for value in f.image_type[2:]:
        label = _DIXON_IMAGE_TYPE.get(value)
        if label:
            # Siemens/Philips Dixon outputs; Philips also writes W/F/IP/OP, never for non-Dixon images.
            if value in ("W", "F") and not (f.vendor is Vendor.PHILIPS or "DIXON" in f.image_type or _DIXON_TEXT.search(f.text)):
                if f.vendor is not Vendor.UNKNOWN and f.vendor is not Vendor.OTHER and value == "F":
                    continue
            return label, f"Image Type {value} -> Dixon {label}"
    m = _DIXON_PREFIX.search(f.description)
    if m:
        word = m.group(1).lower().replace(" ", "").replace("_", "").replace("-", "")
        label = {"water": "W", "fat": "F", "inphase": "IP", "outphase": "OP", "oppphase": "OP"}[word]
        return label, f"SeriesDescription prefix '{m.group(0).strip()}' -> Dixon {label}"
    text = f.text
    if _DIXON_TEXT.search(text) or "DIXON" in f.image_type:
        for pattern, label in _DIXON_LABEL_TEXT:
            mm = pattern.search(text)
            if mm:
                return label, f"Dixon series text '{mm.group(0)}' -> Dixon {label}"
    return None, None


def _named_method(f: _Facts, spair_text: re.Match[str] | None, spir_text: re.Match[str] | None
                  ) -> tuple[FatSuppression, str] | None:
    """The spectral method the series text names, when a header token already proves fat suppression."""
    if spair_text:
        return FatSuppression.SPAIR, f"{f.text_source()} '{spair_text.group(0)}' -> SPAIR"
    if spir_text and f.vendor in (Vendor.PHILIPS, Vendor.CANON):
        return FatSuppression.SPIR, f"{f.text_source()} '{spir_text.group(0)}' -> SPIR"
    chess = re.search(_B + r"chess" + _E, f.text)
    if chess:
        return FatSuppression.CHESS, f"{f.text_source()} '{chess.group(0)}' -> CHESS"
    return None


def _fat(f: _Facts, inversion: Inversion | None, inv_ev: list[str], dixon: str | None, dixon_why: str | None,
         weighting: Weighting) -> tuple[bool | None, FatSuppression | None, list[str]]:
    if not f.is_mr:
        return None, None, [f"Modality {f.modality or '?'}: fat suppression not applicable"]
    text = f.text
    ev: list[str] = []
    if inversion is Inversion.STIR:
        return True, FatSuppression.STIR, ["STIR inversion (" + (inv_ev[-1] if inv_ev else "short TI") + ") -> fat suppressed"]
    if dixon == "W":
        return True, FatSuppression.DIXON, [f"{dixon_why} -> water image is fat suppressed"]
    if dixon in ("F", "IP", "OP"):
        return False, None, [f"{dixon_why} -> not fat suppressed"]
    ignored = sorted(t for t in f.scan_options if t in _GE_NOT_FAT or (t.startswith("FS") and t.endswith("_GEMS")))
    if ignored:
        ev.append("ignored GE token(s) " + ", ".join(f"'{t}'" for t in ignored) + " (readout direction / spatial sat, not fat saturation)")
    spair_text = re.search(_B + r"spair" + _E, text)
    spir_text = re.search(_B + r"spir" + _E, text)
    we = f.scan_options & _WE_TOKENS
    if we:
        return True, FatSuppression.WATER_EXCITATION, ev + [f"Scan Options token '{sorted(we)[0]}' -> water excitation"]
    if f.first.spectrally_selected_excitation == "WATER":
        return True, FatSuppression.WATER_EXCITATION, ev + ["enhanced SpectrallySelectedExcitation WATER -> water excitation"]
    fs = f.scan_options & _FS_TOKENS
    philips_spir = f.first.philips_spir.strip().upper()[:1]
    if fs:
        token = sorted(fs)[0]
        if philips_spir == "Y":
            return True, FatSuppression.SPIR, ev + [f"Scan Options token '{token}' and Philips (2001,1021) SPIR = Y -> SPIR"]
        method = _named_method(f, spair_text, spir_text)
        if method is not None:
            return True, method[0], ev + [f"Scan Options token '{token}' and {method[1]}"]
        # DICOM defines one fat token (FS) for every spectral method: Siemens writes it for fat sat and SPAIR,
        # GE for its fat options, Philips for SPIR/SPAIR. The token proves suppression, not the method.
        return True, FatSuppression.UNSPECIFIED, ev + [
            f"Scan Options token '{token}' -> fat suppressed (the token does not say CHESS, SPAIR or SPIR)"]
    if philips_spir == "Y":
        return True, FatSuppression.SPIR, ev + ["Philips (2001,1021) SPIR = Y -> SPIR"]
    sss = f.first.spectrally_selected_suppression.strip().upper()
    if sss in ("FAT", "FAT_AND_WATER", "WATER_FAT", "FAT_WATER"):
        method = _named_method(f, spair_text, spir_text)
        if method is not None:
            return True, method[0], ev + [f"enhanced SpectrallySelectedSuppression {sss} and {method[1]}"]
        return True, FatSuppression.UNSPECIFIED, ev + [
            f"enhanced SpectrallySelectedSuppression {sss} -> fat suppressed (the flag does not name the method)"]
    # Series text (a negative names the absence explicitly).
    neg = _FATSAT_NEG.search(text)
    if neg:
        return False, None, ev + [f"{f.text_source()} '{neg.group(0)}' -> explicitly not fat suppressed"]
    m = _first_match(text, _FATSAT_TEXT)
    if m:
        label, matched = m
        if label == "STIR" and inversion in (Inversion.FLAIR, Inversion.IR):
            pass  # 'tirm' in a dark-fluid name is FLAIR, not STIR
        else:
            method = FatSuppression(label)
            return True, method, ev + [f"{f.text_source()} '{matched}' -> fat suppressed ({method.value})"]
    if sss == "NONE":
        return False, None, ev + ["enhanced SpectrallySelectedSuppression NONE -> not fat suppressed"]
    dixon_seq = f.scan_options & {"IDEAL_GEMS", "FLEX_GEMS", "DIXW", "DIXF"} or _DIXON_TEXT.search(text)
    if dixon_seq:
        ev.append("Dixon acquisition but this output is not labelled water/fat/in/opposed phase")
    # Vendors that always write a fat token when spectral fat suppression is on.
    elif (not f.first.enhanced and weighting is not Weighting.DWI and f.vendor is Vendor.SIEMENS
          and not f.scan_options and "XA" not in f.first.software_versions.upper()):
        return False, None, ev + ["Siemens classic MR with empty Scan Options (no FS/WE token) -> not fat suppressed"]
    elif f.scan_options and weighting is not Weighting.DWI and (not f.first.enhanced or f.vendor in (Vendor.SIEMENS, Vendor.PHILIPS)):
        # Enhanced objects count too for Siemens XA (Scan Options from (0021,105C) carry FS and WE: 'PFP\\FS\\PER',
        # 'IR\\WE') and Philips (FS on fat-suppressed enhanced exports as on classic ones).
        opts = "/".join(sorted(f.scan_options))
        if f.vendor is Vendor.SIEMENS:
            return False, None, ev + [f"Siemens Scan Options {opts} without FS/WE token (Siemens writes them for fat sat, SPAIR and water excitation) -> not fat suppressed"]
        if f.vendor is Vendor.GE and not f.first.enhanced and not re.search(_B + r"(?:lava|vibrant|disco)" + _E, text):
            return False, None, ev + [f"GE Scan Options {opts} without FS token -> not fat suppressed"]
        if (f.vendor is Vendor.PHILIPS and philips_spir != "Y"
                and not re.search(_B + r"(?:e[\s_-]?thrive|thrive|proset|wats|mdixon)" + _E, text)):
            return False, None, ev + [f"Philips Scan Options {opts} without FS token (Philips writes FS when SPIR/SPAIR is on) -> not fat suppressed"]
    if f.vendor is Vendor.PHILIPS and philips_spir == "N" and not fs and not dixon_seq and weighting is not Weighting.DWI:
        return False, None, ev + ["Philips (2001,1021) SPIR = N, no FS Scan Option, no fat-sat text -> not fat suppressed"]
    ev.append("no fat-suppression token, flag or text, and this vendor's headers do not prove absence -> unknown")
    return None, None, ev


# --------------------------------------------------------------------------------------------------
# Contrast
# --------------------------------------------------------------------------------------------------

def _agent_given(values: Iterable[str]) -> str | None:
    for v in values:
        if v.strip().upper() not in _AGENT_EMPTY:
            return v.strip()
    return None


def _contrast_text(text: str) -> tuple[bool | None, str | None]:
    if not text:
        return None, None
    neg = _first_match(text, _POST_NEG)
    pos = _first_match(text, _POST_POS)
    if neg and pos and _SUBTRACTION.search(text):
        return True, f"'{pos[1]}' with subtraction -> post-contrast (subtraction of pre from post)"
    if neg:
        return False, f"'{neg[1]}' -> pre-contrast (negatives win)" + (f"; ignored '{pos[1]}'" if pos else "")
    if pos:
        return True, f"'{pos[1]}' -> post-contrast"
    return None, None


def _contrast(f: _Facts, use_agent: bool = True) -> tuple[bool | None, list[str]]:
    agent = _agent_given(f.agents) if use_agent else None
    if agent:
        return True, [f"Contrast/Bolus Agent '{agent}' -> post-contrast"]
    if f.agents and not use_agent:
        ignored = (f"Contrast/Bolus Agent '{f.agents[0]}' is already on the study's first acquisition "
                   "(exam-level value), so it does not decide")
    elif f.agents:
        ignored = f"Contrast/Bolus Agent '{f.agents[0]}' means none"
    else:
        ignored = ""
    # Series description first; ProtocolName only when the description is silent (GE: never, exam-level).
    sources = [("SeriesDescription", f.description)]
    if f.vendor is not Vendor.GE or not f.description:
        sources.append(("ProtocolName", f.protocol))
    for name, text in sources:
        value, why = _contrast_text(text.lower())
        if value is not None:
            return value, ([ignored] if ignored else []) + [f"{name} {why}"]
    if not f.is_mr:
        m = re.search(_B + r"(?:cta|angio\w*|perfusion)" + _E, f.description.lower())
        if m:
            return True, ([ignored] if ignored else []) + [f"SeriesDescription '{m.group(0)}' (CT angiography/perfusion) -> post-contrast"]
    route = _agent_given(f.routes)
    if route and not f.is_mr:
        return True, [f"Contrast/Bolus Route '{route}' -> post-contrast"]
    return None, ([ignored] if ignored else []) + ["no contrast agent in header and no contrast words in series text"]


# --------------------------------------------------------------------------------------------------
# Geometry, 2D/3D, localizer, derived
# --------------------------------------------------------------------------------------------------

def _acquisition(f: _Facts) -> tuple[Acquisition | None, list[str]]:
    if not f.is_mr:
        return None, [f"Modality {f.modality or '?'}: MR acquisition type not applicable"]
    mat = f.first.mr_acquisition_type.strip().upper()
    if mat in ("2D", "3D"):
        return Acquisition(mat), [f"MR Acquisition Type {mat}"]
    names = f.names
    if re.search(r"3d|spc|cube|vista|bravo|lava|vibe|efgre3d|3dfgre|tfl3d|ci3d|fi3d|swi3d|spgr3d|mprage|space", names):
        return Acquisition.THREE_D, [f"sequence name '{names}' -> 3D"]
    if re.search(r"2d|h2d|ssfse|haste", names):
        return Acquisition.TWO_D, [f"sequence name '{names}' -> 2D"]
    text = f.text
    m = re.search(r"(?<![a-z0-9])(?:3d|3-d|space|cube|vista|mprage|mp-rage|vibe|lava|thrive|bravo|starvibe|isotropic)(?![a-z0-9])", text)
    if m:
        return Acquisition.THREE_D, [f"{f.text_source()} '{m.group(0)}' -> 3D"]
    m = re.search(r"(?<![a-z0-9])(?:2d|2-d)(?![a-z0-9])", text)
    if m:
        return Acquisition.TWO_D, [f"{f.text_source()} '{m.group(0)}' -> 2D"]
    return None, ["no MR Acquisition Type, 2D/3D sequence name or text"]


def _derived(f: _Facts) -> tuple[bool, list[str]]:
    it = f.image_type
    reasons: list[str] = []
    if it and it[0] == "DERIVED":
        reasons.append("Image Type DERIVED")
    if len(it) > 1 and it[1] == "SECONDARY":
        reasons.append("Image Type SECONDARY")
    tokens = [t for t in it[2:] if t in _DERIVED_TOKENS]
    if tokens:
        reasons.append("Image Type " + "/".join(tokens))
    if reasons:
        return True, [", ".join(reasons) + " -> derived"]
    m = _DERIVED_TEXT.search(f.text)
    if m:
        basis = "no Image Type" if not it else f"Image Type {'/'.join(it[:2])} but"
        return True, [f"{basis} {f.text_source()} '{m.group(0)}' -> derived"]
    if it:
        return False, [f"Image Type {'/'.join(it[:2])} -> original"]
    return False, ["no Image Type and no derived naming -> original"]


def _localizer(f: _Facts, stack: Stack, series_planes: set[str], technique: str | None, acquisition: Acquisition | None
               ) -> tuple[bool, list[str]]:
    if "LOCALIZER" in f.image_type or "SCOUT" in f.image_type:
        return True, ["Image Type LOCALIZER"]
    if len(series_planes) >= 2 and f.images <= 15:
        return True, [f"series holds {len(series_planes)} planes ({', '.join(sorted(series_planes))}) with few images -> localizer"]
    m = _LOCALIZER_TEXT.search(f.text)
    if m:
        return True, [f"{f.text_source()} '{m.group(0)}' -> localizer"]
    thick = f.first.slice_thickness
    if (f.is_mr and technique == "GRE" and acquisition is not Acquisition.THREE_D and f.tr is not None and f.tr < GRE_FAST_TR
            and f.images <= LOCALIZER_MAX_IMAGES and thick is not None and thick >= LOCALIZER_MIN_THICKNESS
            and not f.b_values):
        return True, [f"2D fast gradient echo (TR {_fmt(f.tr)} ms) with {f.images} images of {_fmt(thick)} mm -> localizer"]
    if stack.series_orientation_count > 1 and not series_planes and f.images <= 15:
        return True, [f"series holds {stack.series_orientation_count} orientations with few images -> localizer"]
    return False, ["no localizer Image Type, naming or geometry"]


def _plane(f: _Facts) -> tuple[str | None, float | None, tuple[float, float, float] | None, list[str]]:
    normal = slice_normal(f.first.image_orientation)
    if normal is None:
        why = "no Image Orientation (Patient)" if f.first.image_orientation is None else "degenerate Image Orientation (Patient)"
        return None, None, None, [why + " -> plane unknown"]
    plane = plane_of(normal)
    obl = obliquity_deg(normal)
    n = tuple(round(c + 0.0, 3) for c in normal)
    return plane.value if plane else None, obl, normal, [
        f"slice normal ({n[0]:g}, {n[1]:g}, {n[2]:g}) -> {plane.value if plane else '?'}, {obl:.1f}° from the true plane"]


def _acq_time(stack: Stack) -> str:
    """Earliest 'YYYYMMDDHHMMSS.frac' of the stack (acquisition, then series, then content time)."""
    best = ""
    for h in stack.instances:
        for date, time in ((h.acquisition_date or h.series_date or h.study_date, h.acquisition_time),
                           (h.series_date or h.study_date, h.series_time),
                           (h.acquisition_date or h.series_date or h.study_date, h.content_time)):
            t = time.strip()
            if t:
                stamp = (date.strip() or "00000000") + t
                if not best or stamp < best:
                    best = stamp
                break
    return best


def _series_planes(stack: Stack, study: Study | None) -> set[str]:
    if study is None or stack.series_orientation_count < 2:
        return set()
    planes = set()
    for other in study.stacks:
        if other.series_instance_uid == stack.series_instance_uid:
            for h in other.instances:
                p = plane_of(slice_normal(h.image_orientation))
                if p:
                    planes.add(p.value)
    return planes


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------

def classify_stack(stack: Stack, study: Study | None = None) -> SeriesClass:
    """Classify one stack (study-level facts, e.g. contrast order, come from ``classify_study``)."""
    f = _facts(stack)
    h = f.first
    technique, tech_ev = _technique(f)
    dwi_reason = _is_dwi(f, technique) if f.is_mr else None
    inversion, inv_ev = (_inversion(f, technique) if f.is_mr
                         else (None, [f"Modality {f.modality or '?'}: not applicable"]))
    weighting, w_ev = _weighting(f, technique, inversion, dwi_reason)
    dixon, dixon_why = _dixon(f) if f.is_mr else (None, None)
    fat, method, fat_ev = _fat(f, inversion, inv_ev, dixon, dixon_why, weighting)
    post, post_ev = _contrast(f)
    plane, obl, normal, plane_ev = _plane(f)
    acquisition, acq_ev = _acquisition(f)
    localizer, loc_ev = _localizer(f, stack, _series_planes(stack, study), technique, acquisition)
    derived, der_ev = _derived(f)
    evidence: dict[str, list[str]] = {
        "technique": tech_ev or ["no sequence type, scanning sequence or known sequence name"],
        # the sequence family is part of the weighting decision, so it leads that evidence list
        "weighting": (tech_ev + w_ev) if f.is_mr and not dwi_reason else w_ev,
        "inversion": inv_ev,
        "fat_suppression": fat_ev,
        "post_contrast": post_ev,
        "plane": plane_ev,
        "acquisition": acq_ev,
        "localizer": loc_ev,
        "derived": der_ev,
    }
    if dixon_why:
        evidence["dixon"] = [dixon_why]
    return SeriesClass(
        study_instance_uid=stack.study_instance_uid,
        series_instance_uid=stack.series_instance_uid,
        stack=stack.label,
        series_number=h.series_number,
        series_description=h.series_description,
        modality=h.modality,
        manufacturer=h.manufacturer,
        instances=len(stack.instances),
        weighting=weighting,
        inversion=inversion,
        fat_suppressed=fat,
        fat_suppression=method,
        post_contrast=post,
        plane=plane,
        obliquity_deg=obl,
        normal=normal,
        acquisition=acquisition,
        localizer=localizer,
        derived=derived,
        evidence=evidence,
        slice_thickness=h.slice_thickness,
        field_strength=h.field_strength,
        repetition_time=f.tr,
        echo_time=f.te,
        inversion_time=f.ti,
        image_type=h.image_type,
        acquisition_time=_acq_time(stack),
        dixon=dixon,
        vendor=f.vendor.value,
        technique=technique,
        b_values=f.b_values,
    )


def _stamp_seconds(stamp: str) -> float | None:
    """'YYYYMMDDHHMMSS[.frac]' (time part may be short) -> sortable seconds; None if unusable."""
    m = re.match(r"^(\d{8})(\d{2})(\d{2})?(\d{2})?(\.\d+)?", stamp.replace(":", ""))
    if not m:
        return None
    date, hh, mm, ss, frac = m.groups()
    try:
        day = int(date)
        return day * 86400.0 + int(hh) * 3600 + int(mm or 0) * 60 + int(ss or 0) + float(frac or 0)
    except ValueError:
        return None


_INHERENT_FAT_SUPPRESSION = _rx(_B + r"(?:lava|vibrant|disco|thrive|ethrive|e-thrive|dwibs|mrcp|flex|dixon|ideal)" + _E)


def _names_fat_suppression(description: str) -> str | None:
    """The fat-suppression word in a series description (not STIR, which names its own technique)."""
    text = description.lower()
    for pattern, label in _FATSAT_TEXT:
        if label == "STIR":
            continue
        m = pattern.search(text)
        if m:
            return m.group(0)
    return None


def _fat_naming_convention(results: list[SeriesClass]) -> list[SeriesClass]:
    """Where headers cannot prove absence, a study whose other series *name* fat suppression in their
    descriptions ('T2 FSE FS AX') tells us an unnamed one ('T2 FSE AX') is not fat suppressed."""
    namers = [r for r in results if r.modality == "MR" and r.fat_suppressed is True
              and _names_fat_suppression(r.series_description)]
    if not namers:
        return results
    example = namers[0]
    word = _names_fat_suppression(example.series_description)
    out = []
    for r in results:
        if (r.fat_suppressed is None and r.modality == "MR" and r.series_description.strip() and not r.localizer
                and r.dixon is None and r.weighting not in (Weighting.DWI, Weighting.OTHER, Weighting.UNKNOWN)
                and not _INHERENT_FAT_SUPPRESSION.search(r.series_description.lower())):
            evidence = dict(r.evidence)
            evidence["fat_suppression"] = list(r.evidence.get("fat_suppression", [])) + [
                f"series {example.series_number} ('{example.series_description}') names fat suppression ('{word}') "
                f"and this description does not -> not fat suppressed (site naming convention)"]
            out.append(replace(r, fat_suppressed=False, fat_suppression=None, evidence=evidence))
        else:
            out.append(r)
    return out


def _exam_level_agent(results: list[SeriesClass], study: Study) -> list[SeriesClass]:
    """Contrast/Bolus Agent already on the first acquisition of an MR study (the localizer is never
    acquired after injection) is an exam-level value: decide those stacks from text and order instead."""
    timed = [(t, i) for i, r in enumerate(results)
             if r.modality == "MR" and not r.derived and (t := _stamp_seconds(r.acquisition_time)) is not None]
    if len(timed) < 2:
        return results
    _t, first = min(timed)
    if not (results[first].post_contrast is True
            and results[first].evidence.get("post_contrast", [""])[0].startswith("Contrast/Bolus Agent")):
        return results
    out = list(results)
    for i, (r, stack) in enumerate(zip(results, study.stacks)):
        if r.modality == "MR" and r.post_contrast is True and r.evidence["post_contrast"][0].startswith("Contrast/Bolus Agent"):
            value, why = _contrast(_facts(stack), use_agent=False)
            evidence = dict(r.evidence)
            evidence["post_contrast"] = why
            out[i] = replace(r, post_contrast=value, evidence=evidence)
    return out


def _with_post_reason(r: SeriesClass, why: str, value: bool | None = None) -> SeriesClass:
    """``r`` with a study-level contrast reason appended (and the phase set, when ``value`` is given)."""
    evidence = dict(r.evidence)
    evidence["post_contrast"] = list(r.evidence.get("post_contrast", [])) + [why]
    return replace(r, evidence=evidence, post_contrast=r.post_contrast if value is None else value)


def _contrast_start_time(results: list[SeriesClass], study: Study) -> list[SeriesClass]:
    """Contrast/Bolus Start Time dates the injection: a stack the headers and text leave open is
    post-contrast when acquired after it and pre-contrast when acquired before it (same day)."""
    # Contrast/Bolus Start Time is a time of day (TM): date it with the series' own acquisition date.
    starts = sorted(
        (t, r.acquisition_time[:8] + " " + stack.first.contrast_start_time)
        for r, stack in zip(results, study.stacks)
        if stack.first.contrast_start_time and r.acquisition_time[:8].isdigit()
        and (t := _stamp_seconds(r.acquisition_time[:8] + stack.first.contrast_start_time)) is not None
    )
    if not starts:
        return results
    start, stamp = starts[0]
    out = list(results)
    for i, r in enumerate(results):
        t = _stamp_seconds(r.acquisition_time)
        if r.post_contrast is not None or r.localizer or t is None or t == start:
            continue
        value = t > start
        why = (f"acquired at {r.acquisition_time} {'after' if value else 'before'} Contrast/Bolus Start Time "
               f"{stamp} -> {'post' if value else 'pre'}-contrast")
        out[i] = _with_post_reason(r, why, value)
    return out


def classify_study(study: Study) -> list[SeriesClass]:
    """Classify every stack of a study, in acquisition order.

    Study-level rules:

    * contrast order: a stack whose contrast phase the headers and text leave open is post-contrast
      when it was acquired after the first post-contrast acquisition of the same modality (whatever
      its weighting: a T2 after the injection is a post-contrast acquisition), and pre-contrast when
      acquired before it; localizers stay unknown;
    * contrast start time: a stack left open is post when acquired after the Contrast/Bolus Start
      Time written on any series of the study, pre when acquired before it;
    * fat-suppression naming: when headers cannot prove absence and other series of the study name
      fat suppression in their descriptions, a description without such a word means no fat suppression;
    * exam-level contrast agent: when the study's first acquisition already carries a Contrast/Bolus
      Agent, the element is exam-level and text plus order decide instead.
    """
    results = _exam_level_agent([classify_stack(stack, study) for stack in study.stacks], study)
    results = _fat_naming_convention(results)
    results = _contrast_start_time(results, study)
    known_post = [
        (t, r) for r in results
        if r.post_contrast is True and not r.derived and (t := _stamp_seconds(r.acquisition_time)) is not None
    ]
    if not known_post:
        return results
    out: list[SeriesClass] = []
    for r in results:
        if r.post_contrast is not None:
            out.append(r)
            continue
        t = _stamp_seconds(r.acquisition_time)
        same = [(pt, p) for pt, p in known_post if p.modality == r.modality]
        if t is None or not same:
            out.append(r)
            continue
        first_t, first = min(same, key=lambda x: x[0])
        label = f"series {first.series_number}" if first.series_number is not None else "the first post-contrast series"
        if t > first_t:
            if r.localizer:
                out.append(_with_post_reason(
                    r, f"localizer acquired after {label} ('{first.series_description}') -> left unknown"))
                continue
            value, why = True, (f"acquired after {label} ('{first.series_description}'), the first post-contrast "
                                "acquisition: the agent was already given -> post-contrast")
        elif t < first_t:
            value, why = False, f"acquired before {label} ('{first.series_description}'), the first post-contrast acquisition -> pre-contrast"
        else:
            out.append(r)
            continue
        out.append(_with_post_reason(r, why, value))
    return out


def describe(c: SeriesClass) -> str:
    """One-line human summary, e.g. "oblique coronal T2 STIR 2D (28° oblique)".

    Parts: [oblique] plane, weighting, inversion (FLAIR/STIR/IR), fat suppression (FS/method unless
    it is STIR), post-contrast ("+C") or pre-contrast, 2D/3D, then localizer/derived/Dixon flags and
    the obliquity in degrees when the plane is tilted by more than OBLIQUE_DEG.
    """
    parts: list[str] = []
    oblique = c.obliquity_deg is not None and c.obliquity_deg > OBLIQUE_DEG
    if c.plane:
        parts.append(("oblique " if oblique else "") + c.plane)
    else:
        parts.append("unknown plane")
    parts.append(c.weighting.value if c.weighting is not Weighting.UNKNOWN else "unknown weighting")
    if c.inversion is not None:
        parts.append(c.inversion.value)
    if c.fat_suppressed and c.fat_suppression is not FatSuppression.STIR:
        method = c.fat_suppression
        parts.append("FS" if method in (None, FatSuppression.UNSPECIFIED) else f"FS ({method.value})")
    if c.post_contrast is True:
        parts.append("+C")
    elif c.post_contrast is False:
        parts.append("pre-contrast")
    if c.acquisition is not None:
        parts.append(c.acquisition.value)
    if c.dixon:
        parts.append(f"Dixon {c.dixon}")
    if c.localizer:
        parts.append("localizer")
    if c.derived:
        parts.append("derived")
    text = " ".join(parts)
    if oblique and c.obliquity_deg is not None:
        text += f" ({c.obliquity_deg:.0f}° oblique)"
    return text


__all__ = [
    "DECISION_TABLE",
    "Acquisition",
    "FatSuppression",
    "Inversion",
    "SeriesClass",
    "Vendor",
    "Weighting",
    "classify_stack",
    "classify_study",
    "describe",
    "vendor_of",
]

