"""Technique: the sequence family (SE, TSE, GRE, IR-GRE, bSSFP, EPI) the weighting rules reason about.

The steps run in order and the first that recognises the sequence decides: balanced SSFP and EPI
names, Siemens sequence names, the Philips scanning technique, GE pulse sequence names, Scanning
Sequence (0018,0020), the enhanced Echo Pulse Sequence, Philips Image Type hints, and last the short
vendor-neutral names Canon, Toshiba, UIH and Hitachi write.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from protocolcheck.classify.facts import StackFacts
from protocolcheck.classify.model import Evidence, Field, Technique, Vendor
from protocolcheck.classify.textmatch import B, E, rx
from protocolcheck.classify.thresholds import THRESHOLDS as T

Decision = tuple[Technique, Evidence]

GRADIENT_ECHO = (Technique.GRE, Technique.IR_GRE, Technique.BSSFP)  # families without a refocusing pulse
SPIN_ECHO = (Technique.SE, Technique.TSE)

_SIEMENS_SE = re.compile(r"^(?:tse|tser|tseb|tsev|qtse|h2d|h3d|haste|spc|spcr|spcir|spcs|se|ise|tir|ir|tirm|tse3d|tsk|"
                         r"blade|fse|vfl)")
_SIEMENS_GRE = re.compile(r"^(?:fl|tfl|me|swi|de|gre|medic|fl3d|qfl|ute|vibe|dess|psif|fisp|fi|tfi|ci|trufi|csi|pc)")
_SIEMENS_EPI = re.compile(r"^(?:ep|epfid|epse|epi|re_b|ep2d|ep3d|epir)")
_BSSFP_NAMES = re.compile(r"(?:^|[^a-z])(?:tfi|fi2d|fi3d|ci3d|ci2d|trufi|truefisp|fiesta|fiestac|fiesta-c|b-?ffe|bffe|"
                          r"bssfp|true[\s_-]?ssfp|truessfp|ciss|balanced|basg|true[\s_-]?fisp|cosmic)")
_BSSFP_TEXT = rx(B + r"(?:fiesta|fiesta[\s_-]?c|trufi|truefisp|true[\s_-]?fisp|ciss|b[\s_-]?ffe|bffe|bssfp|"
                    r"true[\s_-]?ssfp|balanced)" + E)
_GE_SE = re.compile(r"(?:fse|frfse|ssfse|cube|propeller|se$|^se|fsepr|fse-xl|fse_|irfse|fsir|t1flair|t2flair|3dfse|"
                    r"mavric)")
_GE_GRE = re.compile(r"(?:gre|spgr|fspgr|fgre|efgre|lava|bravo|swan|merge|cosmic|tof|mde|ideal|starmap|3dgrass|grass|"
                     r"disco|fame|vibrant)")
_EPI_NAMES = re.compile(r"(?:^|[^a-z])(?:epi|epi2|ep2d|epse|epfid|ep_b|dwi|dti|diff|resolve|rs_epi|mux|seepi|feepi|"
                        r"dwise)")
_SIEMENS_STYLE = re.compile(r"^(?:[a-z]{1,6}[23]d\d|ep_b|re_b|epse|epfid|spc)")
_NEUTRAL_SE = re.compile(r"(?:^|[^a-z])(?:fse|tse|se|fase|ssfse|haste|frfse|vfa|mvox|ir|fsir|fastir)(?:\d|[^a-z]|$)")
_NEUTRAL_GRE = re.compile(r"(?:^|[^a-z])(?:fe|ffe|gre|gr|ge|fl|flash|spgr|fspgr|qfe|fsbb|swi|rssg|rsge|sarge|fe3d|"
                          r"fe2d)(?:\d|[^a-z]|$)")


_rule = Field.TECHNIQUE.rule


BSSFP_NAME = _rule("bssfp-name", "sequence name '{names}' -> balanced SSFP")
EPI_SCANNING = _rule("epi-scanning-sequence", "Scanning Sequence EP -> EPI")
EPI_NAME = _rule("epi-name", "sequence name '{names}' -> EPI")
EPI_ENHANCED = _rule("epi-enhanced", "enhanced EchoPlanarPulseSequence YES -> EPI")
SIEMENS_TFL = _rule("siemens-tfl", "SequenceName '*{name}' -> turbo FLASH (MPRAGE family)")
SIEMENS_SE = _rule("siemens-se", "SequenceName '*{name}' -> turbo/spin echo")
SIEMENS_GRE = _rule("siemens-gre", "SequenceName '*{name}' -> gradient echo")
PHILIPS_TFE = _rule("philips-tfe", "Philips scanning technique '{technique}' -> TFE (magnetisation-prepared GRE)")
PHILIPS_FFE = _rule("philips-ffe", "Philips scanning technique '{technique}' -> FFE (gradient echo)")
PHILIPS_SE = _rule("philips-se", "Philips scanning technique '{technique}' -> spin echo")
GE_SE = _rule("ge-se", "GE pulse sequence '{names}' -> spin echo family")
GE_IR_GRE = _rule("ge-ir-gre", "GE pulse sequence '{names}' -> IR-prepared GRE")
GE_GRE = _rule("ge-gre", "GE pulse sequence '{names}' -> gradient echo")
BSSFP_TEXT = _rule("bssfp-text", "Scanning Sequence GR and {source} '{match}' -> balanced SSFP")
GR_PREPARED = _rule("gr-prepared", "Scanning Sequence GR with {preparation} -> prepared gradient echo")
GR = _rule("gr", "Scanning Sequence GR -> gradient echo")
SE_TURBO = _rule("se-turbo", "Scanning Sequence SE with SK/echo train -> turbo spin echo")
SE = _rule("se", "Scanning Sequence SE -> spin echo")
IR_ONLY = _rule("ir-only", "Scanning Sequence IR (no SE/GR given) -> inversion recovery spin echo")
ENHANCED_GRADIENT_PREPARED = _rule("enhanced-gradient-prepared", "enhanced EchoPulseSequence GRADIENT with "
                                   "InversionRecovery -> prepared gradient echo")
ENHANCED_GRADIENT = _rule("enhanced-gradient", "enhanced EchoPulseSequence GRADIENT -> gradient echo")
ENHANCED_SPIN = _rule("enhanced-spin", "enhanced EchoPulseSequence {echo} -> spin echo family")
IMAGE_TYPE_SE = _rule("image-type-se", "Image Type M_SE/SE (Philips) -> spin echo")
IMAGE_TYPE_IR = _rule("image-type-ir", "Image Type M_IR/IR (Philips) -> inversion recovery spin echo")
IMAGE_TYPE_FFE = _rule("image-type-ffe", "Image Type M_FFE/FFE (Philips) -> gradient echo")
NEUTRAL_SE = _rule("neutral-se", "sequence name '{names}' -> spin echo family")
NEUTRAL_GRE = _rule("neutral-gre", "sequence name '{names}' -> gradient echo")
UNRECOGNISED = _rule("unrecognised", "no sequence type, scanning sequence or known sequence name")


def siemens_name(f: StackFacts) -> str:
    """The sequence name when it is a Siemens-style one ('*tse2d1_3', 'epse2d1_72', 'ep_b1000t'), else ''.

    Other vendors' free text in the same element ('FLAIR_AX') is not one.
    """
    raw_name = (f.first.sequence_name or f.first.pulse_sequence_name).strip()
    siemens_style = raw_name.startswith("*") or bool(_SIEMENS_STYLE.match(f.seq_name))
    return f.seq_name if f.vendor is Vendor.SIEMENS or siemens_style else ""


def _balanced_or_echo_planar(f: StackFacts) -> Decision | None:
    names, ss, siemens = f.names, f.scanning_sequence, siemens_name(f)
    if _BSSFP_NAMES.search(names) or (siemens and re.match(r"^(?:tfi|fi\d|ci\d|trufi)", siemens)):
        return Technique.BSSFP, BSSFP_NAME.cite(names=names)
    if "EP" in ss:
        return Technique.EPI, EPI_SCANNING.cite()
    if _EPI_NAMES.search(names) or (siemens and _SIEMENS_EPI.match(siemens)):
        return Technique.EPI, EPI_NAME.cite(names=names)
    if f.first.echo_planar == "YES":
        return Technique.EPI, EPI_ENHANCED.cite()
    return None


def _siemens(f: StackFacts) -> Decision | None:
    name = siemens_name(f)
    if not name:
        return None
    if re.match(r"^(?:tfl)", name):
        prepared = "IR" in f.scanning_sequence or "IR" in f.scan_options or "MP" in f.sequence_variant or f.ti
        return (Technique.IR_GRE if prepared else Technique.GRE), SIEMENS_TFL.cite(name=name)
    if _SIEMENS_SE.match(name):
        return (Technique.SE if name.startswith(("se", "ise")) else Technique.TSE), SIEMENS_SE.cite(name=name)
    if _SIEMENS_GRE.match(name):
        return Technique.GRE, SIEMENS_GRE.cite(name=name)
    return None


def _philips(f: StackFacts) -> Decision | None:
    if f.vendor is not Vendor.PHILIPS:
        return None
    # Enhanced Philips objects name the technique in Pulse Sequence Name (0018,9005): T1TFE, TSE, FFE, DwiSE, GraSE.
    vs = f.vendor_seq or f.first.pulse_sequence_name.strip().lower()
    if not vs:
        return None
    v = vs.replace("-", "").replace("_", "")
    if "tfe" in v:
        return Technique.IR_GRE, PHILIPS_TFE.cite(technique=vs)
    if "ffe" in v:
        return Technique.GRE, PHILIPS_FFE.cite(technique=vs)
    if "tse" in v or v.startswith("se") or v in ("ir", "irse", "irtse"):
        return (Technique.TSE if "tse" in v else Technique.SE), PHILIPS_SE.cite(technique=vs)
    return None


def _ge(f: StackFacts) -> Decision | None:
    names = f.names
    if f.vendor is not Vendor.GE or not names:
        return None
    if _GE_SE.search(names):
        return Technique.TSE, GE_SE.cite(names=names)
    if re.search(r"bravo|irfspgr|ir-fspgr|mprage", names):
        return Technique.IR_GRE, GE_IR_GRE.cite(names=names)
    if _GE_GRE.search(names):
        return Technique.GRE, GE_GRE.cite(names=names)
    return None


def _scanning_sequence(f: StackFacts) -> Decision | None:
    ss, sv = f.scanning_sequence, f.sequence_variant
    bssfp_text = _BSSFP_TEXT.search(f.text) if "GR" in ss and (f.tr is None or f.tr < T.bssfp_max_tr) else None
    if bssfp_text:
        return Technique.BSSFP, BSSFP_TEXT.cite(source=f.text_source(), match=bssfp_text.group(0), tr=f.tr,
                                                limit=T.bssfp_max_tr)
    if "GR" in ss:
        if "MP" in sv or "IR" in ss:
            return Technique.IR_GRE, GR_PREPARED.cite(preparation="MP" if "MP" in sv else "IR")
        return Technique.GRE, GR.cite()
    if "SE" in ss:
        if "SK" in sv or (f.first.echo_train_length or 0) > T.se_single_echo_train:
            return Technique.TSE, SE_TURBO.cite(echo_train=f.first.echo_train_length)
        return Technique.SE, SE.cite()
    if "IR" in ss:
        return Technique.TSE, IR_ONLY.cite()
    return None


def _echo_pulse_sequence(f: StackFacts) -> Decision | None:
    eps = f.first.echo_pulse_sequence
    if eps == "GRADIENT":
        if f.first.inversion_recovery == "YES":
            return Technique.IR_GRE, ENHANCED_GRADIENT_PREPARED.cite()
        return Technique.GRE, ENHANCED_GRADIENT.cite()
    if eps in ("SPIN", "BOTH"):
        return Technique.TSE, ENHANCED_SPIN.cite(echo=eps)
    return None


def _philips_image_type(f: StackFacts) -> Decision | None:
    hints = set(f.image_type[2:])
    if hints & {"M_SE", "SE"}:
        return Technique.TSE, IMAGE_TYPE_SE.cite()
    if hints & {"M_IR", "IR"}:
        return Technique.TSE, IMAGE_TYPE_IR.cite()
    if hints & {"M_FFE", "FFE", "SW_M_FFE"}:
        return Technique.GRE, IMAGE_TYPE_FFE.cite()
    return None


def _neutral_names(f: StackFacts) -> Decision | None:
    """Vendor-neutral names (Canon/Toshiba/UIH/Hitachi use short names such as FSE2D, FE3D, SE2D, fse, gre)."""
    names = f.names
    if _NEUTRAL_SE.search(names):
        return Technique.TSE, NEUTRAL_SE.cite(names=names)
    if _NEUTRAL_GRE.search(names):
        return Technique.GRE, NEUTRAL_GRE.cite(names=names)
    return None


STEPS: tuple[Callable[[StackFacts], Decision | None], ...] = (
    _balanced_or_echo_planar, _siemens, _philips, _ge, _scanning_sequence, _echo_pulse_sequence,
    _philips_image_type, _neutral_names,
)


def technique(f: StackFacts) -> tuple[Technique | None, list[Evidence]]:
    """Sequence family, or None when no step recognises it (and always None for non-MR); with evidence
    (none for non-MR; the engine records UNRECOGNISED when no step decided)."""
    if not f.is_mr:
        return None, []
    for step in STEPS:
        decided = step(f)
        if decided is not None:
            return decided[0], [decided[1]]
    return None, []
