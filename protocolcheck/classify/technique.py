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
from protocolcheck.classify.model import Technique, Vendor
from protocolcheck.classify.textmatch import B, E, rx
from protocolcheck.classify.thresholds import THRESHOLDS as T

Decision = tuple[Technique, str]

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
        return Technique.BSSFP, f"sequence name '{names}' -> balanced SSFP"
    if "EP" in ss or _EPI_NAMES.search(names) or (siemens and _SIEMENS_EPI.match(siemens)):
        return Technique.EPI, "Scanning Sequence EP -> EPI" if "EP" in ss else f"sequence name '{names}' -> EPI"
    if f.first.echo_planar == "YES":
        return Technique.EPI, "enhanced EchoPlanarPulseSequence YES -> EPI"
    return None


def _siemens(f: StackFacts) -> Decision | None:
    name = siemens_name(f)
    if not name:
        return None
    if re.match(r"^(?:tfl)", name):
        prepared = "IR" in f.scanning_sequence or "IR" in f.scan_options or "MP" in f.sequence_variant or f.ti
        family = Technique.IR_GRE if prepared else Technique.GRE
        return family, f"SequenceName '*{name}' -> turbo FLASH (MPRAGE family)"
    if _SIEMENS_SE.match(name):
        family = Technique.SE if name.startswith(("se", "ise")) else Technique.TSE
        return family, f"SequenceName '*{name}' -> turbo/spin echo"
    if _SIEMENS_GRE.match(name):
        return Technique.GRE, f"SequenceName '*{name}' -> gradient echo"
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
        return Technique.IR_GRE, f"Philips scanning technique '{vs}' -> TFE (magnetisation-prepared GRE)"
    if "ffe" in v:
        return Technique.GRE, f"Philips scanning technique '{vs}' -> FFE (gradient echo)"
    if "tse" in v or v.startswith("se") or v in ("ir", "irse", "irtse"):
        return (Technique.TSE if "tse" in v else Technique.SE), f"Philips scanning technique '{vs}' -> spin echo"
    return None


def _ge(f: StackFacts) -> Decision | None:
    names = f.names
    if f.vendor is not Vendor.GE or not names:
        return None
    if _GE_SE.search(names):
        return Technique.TSE, f"GE pulse sequence '{names}' -> spin echo family"
    if re.search(r"bravo|irfspgr|ir-fspgr|mprage", names):
        return Technique.IR_GRE, f"GE pulse sequence '{names}' -> IR-prepared GRE"
    if _GE_GRE.search(names):
        return Technique.GRE, f"GE pulse sequence '{names}' -> gradient echo"
    return None


def _scanning_sequence(f: StackFacts) -> Decision | None:
    ss, sv = f.scanning_sequence, f.sequence_variant
    bssfp_text = _BSSFP_TEXT.search(f.text) if "GR" in ss and (f.tr is None or f.tr < T.bssfp_max_tr) else None
    if bssfp_text:
        return Technique.BSSFP, f"Scanning Sequence GR and {f.text_source()} '{bssfp_text.group(0)}' -> balanced SSFP"
    if "GR" in ss:
        prepared = "MP" in sv or "IR" in ss
        how = "MP" if "MP" in sv else "IR"
        why = f" with {how} -> prepared gradient echo" if prepared else " -> gradient echo"
        return (Technique.IR_GRE if prepared else Technique.GRE), "Scanning Sequence GR" + why
    if "SE" in ss:
        fast = "SK" in sv or (f.first.echo_train_length or 0) > T.se_single_echo_train
        why = " with SK/echo train -> turbo spin echo" if fast else " -> spin echo"
        return (Technique.TSE if fast else Technique.SE), "Scanning Sequence SE" + why
    if "IR" in ss:
        return Technique.TSE, "Scanning Sequence IR (no SE/GR given) -> inversion recovery spin echo"
    return None


def _echo_pulse_sequence(f: StackFacts) -> Decision | None:
    eps = f.first.echo_pulse_sequence
    if eps == "GRADIENT":
        prepared = f.first.inversion_recovery == "YES"
        why = " with InversionRecovery -> prepared gradient echo" if prepared else " -> gradient echo"
        return (Technique.IR_GRE if prepared else Technique.GRE), "enhanced EchoPulseSequence GRADIENT" + why
    if eps in ("SPIN", "BOTH"):
        return Technique.TSE, f"enhanced EchoPulseSequence {eps} -> spin echo family"
    return None


def _philips_image_type(f: StackFacts) -> Decision | None:
    hints = set(f.image_type[2:])
    if hints & {"M_SE", "SE"}:
        return Technique.TSE, "Image Type M_SE/SE (Philips) -> spin echo"
    if hints & {"M_IR", "IR"}:
        return Technique.TSE, "Image Type M_IR/IR (Philips) -> inversion recovery spin echo"
    if hints & {"M_FFE", "FFE", "SW_M_FFE"}:
        return Technique.GRE, "Image Type M_FFE/FFE (Philips) -> gradient echo"
    return None


def _neutral_names(f: StackFacts) -> Decision | None:
    """Vendor-neutral names (Canon/Toshiba/UIH/Hitachi use short names such as FSE2D, FE3D, SE2D, fse, gre)."""
    names = f.names
    if _NEUTRAL_SE.search(names):
        return Technique.TSE, f"sequence name '{names}' -> spin echo family"
    if _NEUTRAL_GRE.search(names):
        return Technique.GRE, f"sequence name '{names}' -> gradient echo"
    return None


STEPS: tuple[Callable[[StackFacts], Decision | None], ...] = (
    _balanced_or_echo_planar, _siemens, _philips, _ge, _scanning_sequence, _echo_pulse_sequence,
    _philips_image_type, _neutral_names,
)


def technique(f: StackFacts) -> tuple[Technique | None, list[str]]:
    """Sequence family, or None when no step recognises it (and always None for non-MR); with evidence."""
    if not f.is_mr:
        return None, []
    for step in STEPS:
        decided = step(f)
        if decided is not None:
            return decided[0], [decided[1]]
    return None, []
