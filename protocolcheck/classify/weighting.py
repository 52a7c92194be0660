"""Weighting: T1, T2, PD, T2*, DWI, other or unknown.

In order: not MR -> other; diffusion (b-values, Image Type, names); non-anatomical images (maps,
angiography, flow, perfusion) -> other; the preparation decides (STIR, FLAIR, IR, prepared GRE, bSSFP,
EPI); then TR/TE/flip by sequence family (spin echo, gradient echo, none), where a series name only
decides in the border zones; last the scanner's Acquisition Contrast label or the series text.
"""

from __future__ import annotations

import re

from protocolcheck.classify.facts import StackFacts
from protocolcheck.classify.model import Evidence, Field, Inversion, Technique, Weighting
from protocolcheck.classify.technique import GRADIENT_ECHO, SPIN_ECHO
from protocolcheck.classify.textmatch import B, E, first_match, rx
from protocolcheck.classify.thresholds import THRESHOLDS as T
from protocolcheck.classify.thresholds import se_t1_max_tr

Decision = tuple[Weighting, Evidence]

# Text patterns (lower-case text). Order matters: first match wins; the first two name diffusion.
WEIGHT_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (rx(B + r"(?:dwi|dti|diff|diffusion|trace|adc|ep2d_diff|resolve|dwibs|ivim)" + E), "DWI"),
    (rx(r"(?<![a-z0-9])b\s?(?:[5-9]\d\d|[1-9]\d\d\d)(?![0-9])"), "DWI"),
    (rx(B + r"(?:swi|swan|swip|susceptibility|hemo|haemo|medic|merge|fsbb|t2\s?\*|t2\s?star|t2star|t2\*w|t2_star|"
            r"gre_t2)"), "T2*"),
    (rx(B + r"(?:flair|dark[\s_\-]?fluid|stir|tirm|spcir|stir3d)"), "T2"),
    (rx(B + r"(?:mprage|mp[\s_\-]?rage|tfl|bravo|spgr|fspgr|vibe|lava|thrive|tfe|flash|starvibe|quick3d|t1ffe|"
            r"e[\s_-]?thrive|water[\s_-]?t1|t1w?)" + r"(?![0-9])"), "T1"),
    (rx(B + r"(?:pdw?|pd[\s_\-]?fs|dp|pdfs|proton[\s_\-]?density|pd[\s_-]?t2)" + r"(?![0-9a-z])"), "PD"),
    (rx(B + r"(?:t2w?|haste|ssfse|space|cube|vista|ciss|fiesta|trufi|mrcp|t2ffe)" + r"(?![0-9])"), "T2"),
)
_DIFFUSION_IMAGE_TYPES = {"DIFFUSION", "TRACEW", "ADC", "EADC", "FA", "TRACE", "ISOTROPIC", "DWI", "EXP", "COLFA",
                          "DIFFUSION_WEIGHTED"}
# Parametric maps computed from diffusion images are maps, not diffusion-weighted images (issue 13's taxonomy:
# ADC, eADC and FA maps are 'other'); trace-weighted (TRACEW) and b0 images stay DWI.
_DIFFUSION_MAP_IMAGE_TYPES = {"ADC", "EADC", "FA", "COLFA", "EXP", "EXPONENTIAL", "TENSOR", "MD", "RA",
                              "ADC_UNSPECIFIED"}
_DIFFUSION_MAP_TEXT = rx(B + r"(?:e?adc|apparent[\s_-]?diffusion[\s_-]?coefficient|exponential[\s_-]?(?:apparent|adc)|"
                         r"fa[\s_-]?map|fractional[\s_-]?anisotropy|colfa|md[\s_-]?map)" + E)
# Projections (MIP/MinIP) show no single weighting: 'other' (issue 13).
PROJECTION_IMAGE_TYPES = frozenset({"MIP", "MINIP", "MNIP", "PROJECTION IMAGE", "PROJECTION", "CSA MIP"})
_OTHER_IMAGE_TYPES = {
    "ANGIO", "VELOCITY", "FLOW_ENCODED", "PHASE", "P", "T1MAP", "T2MAP", "T1_MAP", "T2_MAP", "T2STAR_MAP",
    "R2STAR", "R2", "R1", "PERFUSION", "ASL", "CBF", "CBV", "MTT", "TTP", "RELCBF", "RELCBV", "FIELD_MAP",
    "B0MAP", "B1MAP", "FIELDMAP", "PD_MAP", "T1 MAP", "T2 MAP", "MAP", "QSM",
}
_OTHER_TEXT = rx(
    B + r"(?:tof|mra|angio\w*|pca|phase[\s_\-]?contrast|velocity|flow|field[\s_\-]?map\w*|fmap|b0map|b1map|"
    r"t1[\s_\-]?map\w*|t2[\s_\-]?map\w*|molli|shmolli|mapit|relaxometry|asl|pcasl|pasl|cbf|spectro\w*|"
    r"mrs|csi|svs|cine|tagging|cartigram|s?3di(?:_mc\w*)?|inflow|qiss|nate|perfusion|perf|dsc)" + E
)
_OTHER_NAMES = re.compile(r"(?:^|[^a-z])(?:fl[23]d\d*r?_t|tof|fl\d?d\d*_v|pc3d|pc2d|3dtof|2dtof|pcvipr|asl|pcasl|"
                          r"tgse|qflow)")
# enhanced MR Acquisition Contrast (0008,9209) -> weighting
_ACQUISITION_CONTRAST = {
    "T1": Weighting.T1, "T2": Weighting.T2, "PROTON_DENSITY": Weighting.PD, "T2_STAR": Weighting.T2STAR,
    "DIFFUSION": Weighting.DWI, "FLUID_ATTENUATED": Weighting.T2, "STIR": Weighting.T2,
    "FLOW_ENCODED": Weighting.OTHER, "PERFUSION": Weighting.OTHER, "TOF": Weighting.OTHER, "TAGGING": Weighting.OTHER,
}

# The decision table's lines for this field (protocolcheck.classify.table), with the thresholds applied.
RULES: tuple[str, ...] = (
    ("other: parametric diffusion maps (Image Type ADC/eADC/FA, or an ADC/FA name on a stack without b > 0) and "
     "projections (Image Type MIP/PROJECTION IMAGE)"),
    (f"DWI: any b-value > {T.dwi_min_b:g} (DiffusionBValue / Siemens '*ep_b<N>'), Image Type DIFFUSION/TRACEW, "
     "Philips DwiSE; b0 and trace-weighted images are DWI"),
    ("other: CT and non-MR; angiography (TOF/PC/inflow/QISS names, Image Type ANGIO/VELOCITY, Angio Flag Y), "
     "parameter maps, field maps, perfusion (ASL, DSC) maps and series, phase images"),
    (f"inversion with TI <= {T.stir_max_ti:g} ms (SE/TSE) -> T2 + STIR; TI >= {T.flair_min_ti:g} ms -> T2 + FLAIR "
     "(T1 when "
    f"TE < {T.t1_flair_max_te:g} ms); {T.stir_max_ti:g} < TI < {T.flair_min_ti:g} ms -> T1 + IR (MPRAGE, T1 FLAIR, "
    "IR-prepared GRE)"),
    "IR-prepared / magnetisation-prepared GRE (Siemens *tfl, GE IR_GEMS/BRAVO, Philips TFE with MP) -> T1",
    "balanced SSFP (TrueFISP/FIESTA/B-FFE/CISS) -> T2 (T2/T1 contrast, reported as T2)",
    (f"SE/TSE: TE >= {T.se_t2_min_te:g} -> T2; {T.se_t2_border_te:g} <= TE < {T.se_t2_min_te:g} and TR >= "
    f"{T.se_long_tr:g} -> T2; TE <= {T.se_short_te:g} and TR <= {T.se_t1_max_tr_low_field:g} (1.5 T) / "
    f"{T.se_t1_max_tr_high_field:g} (3 T) -> T1; TE < {T.se_t2_border_te:g} and TR >= {T.se_long_tr:g} -> PD; 3D TSE: "
    f"TR <= {T.se3d_t1_max_tr:g} and TE <= {T.se3d_t1_max_te:g} -> T1, longer TR with TE < {T.se_t2_border_te:g} "
    "-> PD; "
    f"in the PD/T2 border (TE {T.pd_t2_border_min_te:g}-{T.se_t2_min_te:g}) and T1/PD border (TR "
    f"{T.t1_pd_border_low:g}-{T.t1_pd_border_high:g}x the T1 cut-off) a series name naming the neighbour decides; "
    "otherwise series text, else unknown"),
    (f"GRE: TE >= {T.gre_t2star_min_te:g} and flip <= {T.gre_t2star_max_flip:g} -> T2* (also SWI/SWAN/MEDIC/MERGE "
    f"names); 2D multi-echo (echo train >= {T.gre_multi_echo_min:g}) with TR >= {T.gre_t2star_min_tr:g} and flip <= "
    f"{T.gre_t2star_max_flip:g} -> T2*; TE < {T.gre_t1_max_te:g} and (flip >= {T.gre_t1_min_flip:g} or TR < "
    f"{T.gre_fast_tr:g}) -> T1; otherwise text"),
    "EPI without diffusion: perfusion (DSC) -> other; GRE-EPI -> T2* (BOLD), SE-EPI -> T2",
    "no sequence type: text tokens (T1/T2/PD/FLAIR/STIR/MPRAGE/VIBE/LAVA/THRIVE/DWI/SWI...)",
)


_rule = Field.WEIGHTING.rule


NOT_MR = _rule("not-mr", "Modality {modality} -> other (not MR)")
DWI_B_VALUES = _rule("dwi-b-values", "b-values {b_values:nums} s/mm² -> diffusion")
DWI_IMAGE_TYPE = _rule("dwi-image-type", "Image Type {image_type:/} -> diffusion")
DWI_DECLARED = _rule("dwi-declared", "enhanced AcquisitionContrast DIFFUSION -> diffusion")
DWI_NAME = _rule("dwi-name", "sequence name '{names}' -> diffusion")
DWI_TEXT = _rule("dwi-text", "{kind} sequence and {source} '{match}' -> diffusion")
MAP_IMAGE_TYPE = _rule("map-image-type", "Image Type {image_type:/} -> parametric diffusion map (other, not a "
                       "diffusion-weighted image)")
MAP_TEXT = _rule("map-text", "{source} '{match}' and no b-value > {b_max:g} -> parametric diffusion map (other)")
PROJECTION = _rule("projection", "Image Type {image_type:/} -> projection image (MIP: other)")
EPI_DIFFUSION = _rule("epi-diffusion", "diffusion EPI ({because})")
EPI_MAP_IMAGE_TYPE = _rule("epi-map-image-type", "map of an EPI diffusion acquisition (Image Type {image_type:/})")
EPI_MAP_TEXT = _rule("epi-map-text", "map of an EPI diffusion acquisition ({source} '{match}' and no b-value > "
                     "{b_max:g})")
ANGIO_FLAG = _rule("angio-flag", "Angio Flag (0018,0025) Y -> angiography (other)")
OTHER_IMAGE_TYPE = _rule("other-image-type", "Image Type {image_type:/} -> map/angiography/phase (other)")
OTHER_NAME = _rule("other-name", "sequence name '{names}' -> angiography/flow/perfusion (other)")
OTHER_TEXT = _rule("other-text", "{source} '{match}' -> angiography/map/perfusion/flow (other)")
STIR = _rule("stir", "STIR (short-TI inversion recovery) is reported as T2")
T1_FLAIR = _rule("t1-flair", "FLAIR-range TI with TE {te:num} ms < {te_max:g} -> T1 (T1 FLAIR)")
FLAIR = _rule("flair", "FLAIR (long-TI inversion recovery) is reported as T2")
IR_SPIN_ECHO_T2 = _rule("ir-spin-echo-t2", "inversion-prepared spin echo with TE {te:num} ms >= {te_min:g} -> T2")
IR_T1 = _rule("ir-t1", "T1 inversion preparation (IR, {ti_min:g}-{ti_max:g} ms or IR-prepared GRE) -> T1")
PREPARED_GRE = _rule("prepared-gre", "magnetisation-prepared gradient echo (MPRAGE/TFE/BRAVO family) -> T1")
BSSFP = _rule("bssfp", "balanced SSFP (T2/T1 contrast) is reported as T2")
EPI_GRADIENT = _rule("epi-gradient", "gradient-echo EPI without diffusion -> T2* (BOLD)")
EPI_SPIN = _rule("epi-spin", "spin-echo EPI without diffusion -> T2")
DECLARED = _rule("declared", "enhanced AcquisitionContrast {declared} -> {weighting}")
NAMED = _rule("named", "{source} '{match}' -> {weighting}")
NO_TE = _rule("no-te", "no TE")
SE3D_T1 = _rule("se3d-t1", "3D TSE TR {tr:num} ms <= {tr_max:g} and TE {te:num} ms <= {te_max:g} -> T1")
SE3D_PD = _rule("se3d-pd", "3D TSE TR {tr:num} ms > {tr_min:g} and TE {te:num} ms < {te_max:g} -> PD")
SE_T2 = _rule("se-t2", "TE {te:num} ms >= {te_min:g} -> T2")
SE_NO_TR = _rule("se-no-tr", "TE {te:num} ms but no TR")
SE_T2_BORDER = _rule("se-t2-border", "TR {tr:num} ms >= {tr_min:g} and TE {te:num} ms >= {te_min:g} -> T2")
SE_T1 = _rule("se-t1", "TR {tr:num} ms <= {tr_max:g} and TE {te:num} ms <= {te_max:g} -> T1")
SE_T1_AT_FIELD = _rule("se-t1-at-field",
                       "TR {tr:num} ms <= {tr_max:g} at {field_t:g} T and TE {te:num} ms <= {te_max:g} -> T1")
SE_T1_3D = _rule("se-t1-3d", "TR {tr:num} ms <= {tr_max:g} (3D TSE) and TE {te:num} ms <= {te_max:g} -> T1")
SE_PD = _rule("se-pd", "TR {tr:num} ms >= {tr_min:g} and TE {te:num} ms < {te_max:g} -> PD")
SE_BETWEEN = _rule("se-between", "TR {tr:num} ms / TE {te:num} ms between the T1, PD and T2 ranges")
BORDER_NAMED = _rule("border-named", "{named} (parameters are at the {border} border, so the name decides)")
NAME_IGNORED = _rule("name-ignored", "{named} (ignored: acquisition parameters decide)")
GRE_SUSCEPTIBILITY = _rule("gre-susceptibility", "sequence name '{names}' -> susceptibility/multi-echo GRE (T2*)")
GRE_T2STAR = _rule("gre-t2star", "gradient echo TE {te:num} ms >= {te_min:g}, flip {flip:num}° -> T2*")
GRE_MULTI_ECHO = _rule("gre-multi-echo",
                       "2D multi-echo gradient echo ({echoes:num} echoes) TR {tr:num} ms >= {tr_min:g}, flip "
                       "{flip:num}° <= {flip_max:g} -> T2* (echoes combined; first TE {te:num} ms)")
GRE_T1_FLIP = _rule("gre-t1-flip", "gradient echo TE {te:num} ms, flip {flip:num}° >= {flip_min:g} -> T1 (spoiled)")
GRE_T1_FAST = _rule("gre-t1-fast", "gradient echo TR {tr:num} ms < {tr_max:g}, TE {te:num} ms -> T1 (spoiled)")
GRE_UNDECIDED = _rule("gre-undecided", "gradient echo TR {tr:num} / TE {te:num} ms / flip {flip:num}° not decisive")
UNTYPED_NO_TR_TE = _rule("untyped-no-tr-te", "no sequence type and no TR/TE")
UNTYPED_T2 = _rule("untyped-t2", "no sequence type; TR {tr:num} / TE {te:num} ms (long/long) -> T2")
UNTYPED_T1 = _rule("untyped-t1", "no sequence type; TR {tr:num} / TE {te:num} ms (fast, short TE) -> T1")
UNTYPED_UNDECIDED = _rule("untyped-undecided", "no sequence type; TR {tr:num} / TE {te:num} ms not decisive")
UNKNOWN = _rule("unknown", "no series text naming the weighting -> unknown")


def diffusion_reason(f: StackFacts, technique: Technique | None) -> Evidence | None:
    """Why this stack is diffusion weighted, or None."""
    if any(b > T.dwi_min_b for b in f.b_values):
        return DWI_B_VALUES.cite(b_values=f.b_values)
    diff_types = tuple(t for t in f.image_type if t in _DIFFUSION_IMAGE_TYPES)
    if diff_types:
        return DWI_IMAGE_TYPE.cite(image_type=diff_types)
    if f.first.acquisition_contrast == "DIFFUSION":
        return DWI_DECLARED.cite()
    if re.search(r"dwi|dti|diff|ep_b|resolve", f.names):
        return DWI_NAME.cite(names=f.names)
    if technique not in GRADIENT_ECHO and not ("GR" in f.scanning_sequence and technique is Technique.EPI):
        m = first_match(f.text, WEIGHT_TEXT[:2])
        if m:
            kind = "EPI" if technique is Technique.EPI else "non-gradient-echo"
            return DWI_TEXT.cite(kind=kind, source=f.text_source(), match=m[1])
    return None


def map_or_projection(f: StackFacts) -> Evidence | None:
    """Why this stack is a parametric diffusion map (ADC, eADC, FA) or a projection (MIP), or None."""
    maps = tuple(t for t in f.image_type[2:] if t in _DIFFUSION_MAP_IMAGE_TYPES)
    if maps:
        return MAP_IMAGE_TYPE.cite(image_type=maps)
    m = _DIFFUSION_MAP_TEXT.search(f.text)
    if m and not any(b > T.dwi_min_b for b in f.b_values):
        return MAP_TEXT.cite(source=f.text_source(), match=m.group(0), b_max=T.dwi_min_b)
    projection = tuple(t for t in f.image_type[2:] if t in PROJECTION_IMAGE_TYPES)
    if projection:
        return PROJECTION.cite(image_type=projection)
    return None


def diffusion_epi(f: StackFacts, technique: Technique | None, dwi_reason: Evidence | None) -> Evidence | None:
    """Why this stack is echo-planar diffusion (its images, or a map computed from them), or None."""
    if technique is not Technique.EPI or not f.is_mr:
        return None
    if dwi_reason:
        return EPI_DIFFUSION.cite(because=dwi_reason)
    kind = map_or_projection(f)
    if kind is not None and kind.rule is MAP_IMAGE_TYPE:
        return EPI_MAP_IMAGE_TYPE.cite(**dict(kind.facts))
    if kind is not None and kind.rule is MAP_TEXT:
        return EPI_MAP_TEXT.cite(**dict(kind.facts))
    return None


def _not_anatomical(f: StackFacts, technique: Technique | None) -> Decision | None:
    """Maps, angiography, flow, perfusion and phase images -> other."""
    if f.first.angio_flag == "Y":
        return Weighting.OTHER, ANGIO_FLAG.cite()
    other_types = tuple(t for t in f.image_type[2:] if t in _OTHER_IMAGE_TYPES)
    if other_types:
        return Weighting.OTHER, OTHER_IMAGE_TYPE.cite(image_type=other_types)
    if _OTHER_NAMES.search(f.names):
        return Weighting.OTHER, OTHER_NAME.cite(names=f.names)
    m = _OTHER_TEXT.search(f.text)
    if m and (technique is not Technique.EPI or re.search("asl|perfusion|pcasl|pasl|perf|dsc", m.group(0))):
        return Weighting.OTHER, OTHER_TEXT.cite(source=f.text_source(), match=m.group(0))
    return None


def _by_preparation(f: StackFacts, technique: Technique | None, inversion: Inversion | None) -> Decision | None:
    """Inversion-prepared, magnetisation-prepared, balanced and echo-planar sequences."""
    te = f.te
    if inversion is Inversion.STIR:
        return Weighting.T2, STIR.cite()
    if inversion is Inversion.FLAIR:
        if te is not None and te < T.t1_flair_max_te and not re.search("t2", f.text):
            return Weighting.T1, T1_FLAIR.cite(te=te, te_max=T.t1_flair_max_te)
        return Weighting.T2, FLAIR.cite()
    if inversion is Inversion.IR and technique is not Technique.BSSFP:
        if te is not None and te >= T.se_t2_min_te and technique in SPIN_ECHO:
            return Weighting.T2, IR_SPIN_ECHO_T2.cite(te=te, te_min=T.se_t2_min_te)
        return Weighting.T1, IR_T1.cite(ti_min=T.stir_max_ti, ti_max=T.flair_min_ti)
    if technique is Technique.IR_GRE:
        return Weighting.T1, PREPARED_GRE.cite()
    if technique is Technique.BSSFP:
        return Weighting.T2, BSSFP.cite()
    if technique is Technique.EPI:
        if "GR" in f.scanning_sequence or re.search(r"epfid|fid|bold|fmri", f.names + " " + f.text):
            return Weighting.T2STAR, EPI_GRADIENT.cite()
        return Weighting.T2, EPI_SPIN.cite()
    return None


def _named(f: StackFacts) -> Decision | None:
    """The weighting the scanner's label (enhanced Acquisition Contrast) or, failing it, the series text names."""
    declared = _ACQUISITION_CONTRAST.get(f.first.acquisition_contrast)
    if declared is not None:
        # The scanner's own label outranks series text.
        return declared, DECLARED.cite(declared=f.first.acquisition_contrast, weighting=declared.value)
    if not f.text:
        return None
    m = first_match(f.text, WEIGHT_TEXT)
    if m is None:
        return None
    label, matched = m
    return Weighting(label), NAMED.cite(source=f.text_source(), match=matched, weighting=label)


def _spin_echo_3d(f: StackFacts, tr: float, te: float) -> Decision | None:
    """3D variable-flip-angle TSE (SPACE/CUBE/VISTA): PD uses TR ~1000-1500 ms, T1 ~500-900 ms with short TE."""
    tr_max = T.se3d_t1_max_tr
    if te <= T.se3d_t1_max_te and tr <= tr_max:
        return Weighting.T1, SE3D_T1.cite(tr=tr, tr_max=tr_max, te=te, te_max=T.se3d_t1_max_te)
    if te < T.se_t2_border_te and tr > tr_max:
        return Weighting.PD, SE3D_PD.cite(tr=tr, tr_min=tr_max, te=te, te_max=T.se_t2_border_te)
    return None


def _spin_echo_t1(f: StackFacts, tr: float, te: float, three_d: bool) -> Evidence | None:
    """Short TE and TR up to the T1 cut-off (the 3D TSE one, else the field strength's) -> T1."""
    if te > T.se_short_te:
        return None
    if three_d:
        tr_max = T.se3d_t1_max_tr
        return SE_T1_3D.cite(tr=tr, tr_max=tr_max, te=te, te_max=T.se_short_te) if tr <= tr_max else None
    tr_max = se_t1_max_tr(f.field_t, T)
    if tr > tr_max:
        return None
    if f.field_t:
        return SE_T1_AT_FIELD.cite(tr=tr, tr_max=tr_max, field_t=f.field_t, te=te, te_max=T.se_short_te)
    return SE_T1.cite(tr=tr, tr_max=tr_max, te=te, te_max=T.se_short_te)


def physics_se(f: StackFacts) -> tuple[Weighting | None, Evidence]:
    """Spin-echo weighting from TR and TE (field-strength-aware T1 cut-off; 3D TSE has its own)."""
    tr, te = f.tr, f.te
    if te is None:
        return None, NO_TE.cite()
    three_d = f.first.mr_acquisition_type == "3D" and tr is not None and te < T.se_t2_min_te
    if three_d and tr is not None:
        decided = _spin_echo_3d(f, tr, te)
        if decided is not None:
            return decided
    if te >= T.se_t2_min_te:
        return Weighting.T2, SE_T2.cite(te=te, te_min=T.se_t2_min_te)
    if tr is None:
        return None, SE_NO_TR.cite(te=te)
    if te >= T.se_t2_border_te and tr >= T.se_long_tr:
        return Weighting.T2, SE_T2_BORDER.cite(tr=tr, tr_min=T.se_long_tr, te=te, te_min=T.se_t2_border_te)
    t1 = _spin_echo_t1(f, tr, te, three_d)
    if t1 is not None:
        return Weighting.T1, t1
    if te < T.se_t2_border_te and tr >= T.se_long_tr:
        return Weighting.PD, SE_PD.cite(tr=tr, tr_min=T.se_long_tr, te=te, te_max=T.se_t2_border_te)
    return None, SE_BETWEEN.cite(tr=tr, te=te)


def se_border(f: StackFacts, physics: Weighting, named: Weighting | None) -> str | None:
    """Name the PD/T2 or T1/PD border zone when spin-echo parameters sit in it and the text names the
    neighbouring weighting (intermediate TE; TR near the T1 cut-off)."""
    tr, te = f.tr, f.te
    if named is None or named is physics or tr is None or te is None:
        return None
    if ({physics, named} == {Weighting.PD, Weighting.T2} and tr >= T.se_long_tr
            and T.pd_t2_border_min_te <= te < T.se_t2_min_te):
        return "PD/T2"
    t1_max = se_t1_max_tr(f.field_t, T)
    if ({physics, named} == {Weighting.T1, Weighting.PD} and te <= T.se_short_te
            and T.t1_pd_border_low * t1_max < tr <= T.t1_pd_border_high * t1_max):
        return "T1/PD"
    return None


def physics_gre(f: StackFacts) -> tuple[Weighting | None, Evidence]:
    """Gradient-echo weighting from TE, flip angle, TR and the echo train."""
    tr, te, flip = f.tr, f.te, f.flip
    if te is None:
        return None, NO_TE.cite()
    low_flip = T.gre_t2star_max_flip
    if te >= T.gre_t2star_min_te and (flip is None or flip <= low_flip):
        return Weighting.T2STAR, GRE_T2STAR.cite(te=te, te_min=T.gre_t2star_min_te, flip=flip)
    etl = f.first.echo_train_length
    if (etl is not None and etl >= T.gre_multi_echo_min and tr is not None and tr >= T.gre_t2star_min_tr
            and flip is not None and flip <= low_flip and f.first.mr_acquisition_type != "3D"):
        # Multi-echo 2D GRE (MEDIC/MERGE/mFFE) combines its echoes; the header keeps the first echo's short TE.
        return Weighting.T2STAR, GRE_MULTI_ECHO.cite(echoes=etl, tr=tr, tr_min=T.gre_t2star_min_tr, flip=flip,
                                                     flip_max=low_flip, te=te)
    if te < T.gre_t1_max_te:
        if flip is not None and flip >= T.gre_t1_min_flip:
            return Weighting.T1, GRE_T1_FLIP.cite(te=te, flip=flip, flip_min=T.gre_t1_min_flip)
        if tr is not None and tr < T.gre_fast_tr:
            return Weighting.T1, GRE_T1_FAST.cite(tr=tr, tr_max=T.gre_fast_tr, te=te)
    return None, GRE_UNDECIDED.cite(tr=tr, te=te, flip=flip)


def _spin_echo(f: StackFacts, named: Decision | None) -> tuple[Weighting | None, list[Evidence]]:
    w, why = physics_se(f)
    if w is None:
        return None, [why]
    ev = [why]
    border = se_border(f, w, named[0] if named else None)
    if border is not None and named is not None:
        return named[0], ev + [BORDER_NAMED.cite(named=named[1], border=border)]
    if named and named[0] is not w:
        ev.append(NAME_IGNORED.cite(named=named[1]))
    return w, ev


def _gradient_echo(f: StackFacts, named: Decision | None) -> tuple[Weighting | None, list[Evidence]]:
    if re.search(r"swi|swan|medic|merge|me2d|me3d|fsbb|t2ffe|mffe", f.names):
        return Weighting.T2STAR, [GRE_SUSCEPTIBILITY.cite(names=f.names)]
    w, why = physics_gre(f)
    if w is None:
        return None, [why]
    ev = [why]
    if named and named[0] is not w:
        ev.append(NAME_IGNORED.cite(named=named[1]))
    return w, ev


def _no_sequence_type(f: StackFacts) -> tuple[Weighting | None, list[Evidence]]:
    """No sequence type at all: only clear-cut parameter combinations."""
    tr, te = f.tr, f.te
    if tr is None or te is None:
        return None, [UNTYPED_NO_TR_TE.cite()]
    if tr >= T.se_long_tr and te >= T.unnamed_t2_min_te:
        return Weighting.T2, [UNTYPED_T2.cite(tr=tr, te=te, tr_min=T.se_long_tr, te_min=T.unnamed_t2_min_te)]
    if tr < T.gre_fast_tr and te < T.gre_t1_max_te:
        return Weighting.T1, [UNTYPED_T1.cite(tr=tr, te=te, tr_max=T.gre_fast_tr, te_max=T.gre_t1_max_te)]
    return None, [UNTYPED_UNDECIDED.cite(tr=tr, te=te)]


def weighting(f: StackFacts, technique: Technique | None, inversion: Inversion | None,
              dwi_reason: Evidence | None) -> tuple[Weighting, list[Evidence]]:
    """The weighting and its evidence (the technique's evidence is prepended by the caller)."""
    if not f.is_mr:
        return Weighting.OTHER, [NOT_MR.cite(modality=f.modality or "?")]
    kind = map_or_projection(f)
    if kind:
        return Weighting.OTHER, [kind]
    if dwi_reason:
        return Weighting.DWI, [dwi_reason]
    decided = _not_anatomical(f, technique) or _by_preparation(f, technique, inversion)
    if decided is not None:
        return decided[0], [decided[1]]
    named = _named(f)
    if technique in SPIN_ECHO:
        w, ev = _spin_echo(f, named)
    elif technique is Technique.GRE:
        w, ev = _gradient_echo(f, named)
    else:
        w, ev = _no_sequence_type(f)
    if w is not None:
        return w, ev
    if named is not None:
        return named[0], ev + [named[1]]
    return Weighting.UNKNOWN, ev + [UNKNOWN.cite()]
