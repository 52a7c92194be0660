"""Inversion: STIR, FLAIR or IR (T1 preparation), or none.

An inversion pulse is present when a header flag says so (Scanning Sequence IR, Scan Options IR,
enhanced Inversion Recovery, GE tokens, Siemens names, Image Type) or a TI is written. Then the TI
decides by range (with the sequence family); without a TI, GE tokens, the family and the series text
decide. Without any flag, only unambiguous names (STIR/TIRM, MPRAGE/BRAVO, FLAIR) do.
"""

from __future__ import annotations

import math
import re

from protocolcheck.classify.facts import StackFacts
from protocolcheck.classify.model import Evidence, Field, Inversion, Technique, Vendor
from protocolcheck.classify.technique import GRADIENT_ECHO
from protocolcheck.classify.textmatch import B, E
from protocolcheck.classify.thresholds import THRESHOLDS as T

Decision = tuple[Inversion | None, Evidence]

_STIR_TEXT = re.compile(B + r"(?:stir|tirm)" + E)
_FLAIR_TEXT = re.compile(B + r"(?:flair|dark[\s_\-]?fluid)")
_T1_FLAIR_TEXT = re.compile(B + r"t1[\s_\-]?(?:w[\s_\-]?)?flair")
_GE_INVERSION = {"IR_GEMS", "T1FLAIR_GEMS", "T2FLAIR_GEMS", "IRP_GEMS"}
_PHILIPS_INVERSION_PREPULSE = {"INV", "IR", "INVERSION"}  # (2001,101C) Prepulse Type
# Sequences whose Inversion Time element holds another delay: ASL post-labelling delay, QISS quiescent interval.
_TI_NOT_INVERSION = re.compile(B + r"(?:asl|pcasl|pasl|qiss|quiescent|perfusion)" + E)
_INVERSION_PREPARED_GRE = re.compile(B + r"(?:mp[\s_\-]?rage|mp2rage|bravo|tfl|tfe)")

# The decision table's lines for this field (protocolcheck.classify.table), with the thresholds applied.
RULES: tuple[str, ...] = (
    ("IR present (Scanning Sequence IR, Scan Options IR, enhanced InversionRecovery YES, Siemens *tir/*spcir, "
    f"GE T1FLAIR/T2FLAIR/IR_GEMS, Philips IR) and TI: <= {T.stir_max_ti:g} STIR (SE) / IR (GRE); "
    f"{T.stir_max_ti:g}-{T.flair_min_ti:g} IR; >= {T.flair_min_ti:g} FLAIR; without TI: GE FLAIR tokens, then text "
    "(stir/tirm, flair/dark fluid, mprage/bravo); no IR flag and no TI but a gradient echo named MPRAGE/MP2RAGE/BRAVO "
    "-> IR"),
    ("T1-FLAIR is inversion FLAIR (weighting T1): GE T1FLAIR_GEMS, a 'T1 FLAIR' name, or a spin echo (TE "
     f"{T.spin_echo_min_te:g}-{T.t1_flair_max_te:g} ms) whose TI lies within {T.fluid_null_tolerance:.0%} of the CSF "
     f"null point T1csf x ln(2/(1+exp(-TR/T1csf))), T1csf {T.csf_t1:g} ms"),
    "Philips prepulse type (2001,101C) INV -> inversion present (SmartBrain/T1 TFE with inversion prepulse: IR)",
    ("a TI on an ASL, perfusion or QISS sequence without an inversion flag is a labelling delay or quiescent "
     "interval, not an inversion"),
)


_rule = Field.INVERSION.rule


FLAG_SCANNING_SEQUENCE = _rule("flag-scanning-sequence", "Scanning Sequence IR")
FLAG_SCAN_OPTIONS = _rule("flag-scan-options", "Scan Options IR")
FLAG_ENHANCED = _rule("flag-enhanced", "enhanced InversionRecovery YES")
FLAG_GE = _rule("flag-ge", "GE Scan Options {tokens:/}")
FLAG_SIEMENS_NAME = _rule("flag-siemens-name", "SequenceName '*{name}'")
FLAG_IMAGE_TYPE = _rule("flag-image-type", "Image Type IR")
FLAG_PHILIPS_PREPULSE = _rule("flag-philips-prepulse", "Philips prepulse type (2001,101C) {prepulse}")
FLAG_TI = _rule("flag-ti", "Inversion Time {ti:num} ms")
PRESENT = _rule("present", "{flag} -> inversion recovery")
NOT_APPLICABLE = _rule("not-applicable", "Modality {modality}: not applicable")
DECLARED = _rule("declared", "enhanced AcquisitionContrast {declared} -> {inversion}")
UNFLAGGED_STIR = _rule("unflagged-stir", "no inversion flag or TI; {source} '{match}' -> STIR")
UNFLAGGED_MPRAGE = _rule("unflagged-mprage", "no inversion flag or TI; gradient echo named '{match}' "
                         "(inversion-prepared by definition) -> T1 inversion preparation (IR)")
UNFLAGGED_T1_FLAIR = _rule("unflagged-t1-flair", "no inversion flag or TI; {source} '{match}' with T1 -> T1-FLAIR")
UNFLAGGED_FLAIR = _rule("unflagged-flair", "no inversion flag or TI; {source} '{match}' -> FLAIR")
TI_ANOTHER_DELAY = _rule("ti-another-delay", "Inversion Time {ti:num} ms on an ASL/perfusion/QISS series and no "
                         "inversion flag: a labelling delay or quiescent interval -> not an inversion recovery")
NONE = _rule("none", "no inversion pulse in Scanning Sequence, Scan Options, enhanced flags or TI")
TI_GRADIENT_ECHO = _rule("ti-gradient-echo", "TI {ti:num} ms with gradient echo -> T1 inversion preparation")
TI_STIR = _rule("ti-stir", "TI {ti:num} ms <= {ti_max:g} with spin echo -> STIR")
TI_FLAIR = _rule("ti-flair", "TI {ti:num} ms >= {ti_min:g} -> FLAIR")
T1_FLAIR_NULL = _rule("t1-flair-null", "spin echo TI {ti:num} ms within {tolerance:.0%} of the CSF null point "
                      "{null:.0f} ms at TR {tr:num} ms, TE {te:num} ms < {te_max:g} -> T1-FLAIR (fluid-attenuated T1)")
TI_IR = _rule("ti-ir", "TI {ti:num} ms between {ti_min:g} and {ti_max:g} -> T1 inversion preparation (IR)")
GE_T2FLAIR = _rule("ge-t2flair", "GE Scan Options T2FLAIR_GEMS -> FLAIR")
GE_T1FLAIR = _rule("ge-t1flair", "GE Scan Options T1FLAIR_GEMS -> T1-FLAIR (inversion FLAIR)")
NO_TI_GRADIENT_ECHO = _rule("no-ti-gradient-echo",
                            "no TI; inversion with gradient echo -> T1 inversion preparation (IR)")
NO_TI_T1_FLAIR = _rule("no-ti-t1-flair", "no TI; {source} '{match}' with T1 -> T1-FLAIR (inversion FLAIR)")
NO_TI_FLAIR = _rule("no-ti-flair", "no TI; {source} '{match}' -> FLAIR")
NO_TI_STIR = _rule("no-ti-stir", "no TI; {source} '{match}' -> STIR")
NO_TI_IR = _rule("no-ti-ir", "no TI; {source} '{match}' -> T1 inversion preparation (IR)")
UNDECIDED = _rule("undecided", "inversion present but no TI or naming decides STIR/FLAIR/IR -> unknown")


def inversion_flag(f: StackFacts) -> Evidence | None:
    """The header fact that shows an inversion pulse, or None."""
    if "IR" in f.scanning_sequence:
        return FLAG_SCANNING_SEQUENCE.cite()
    if "IR" in f.scan_options:
        return FLAG_SCAN_OPTIONS.cite()
    if f.first.inversion_recovery == "YES":
        return FLAG_ENHANCED.cite()
    ge = f.scan_options & _GE_INVERSION
    if ge:
        return FLAG_GE.cite(tokens=tuple(sorted(ge)))
    siemens_like = f.vendor in (Vendor.SIEMENS, Vendor.UNKNOWN, Vendor.OTHER)
    if siemens_like and re.match(r"^(?:tir|ir|spcir|tirm|tfl)", f.seq_name):
        return FLAG_SIEMENS_NAME.cite(name=f.seq_name)
    if "M_IR" in f.image_type or "IR" in f.image_type[2:]:
        return FLAG_IMAGE_TYPE.cite()
    prepulse = f.first.philips_prepulse.strip().upper()
    if f.vendor is Vendor.PHILIPS and prepulse in _PHILIPS_INVERSION_PREPULSE:
        return FLAG_PHILIPS_PREPULSE.cite(prepulse=prepulse)
    if f.ti is not None and f.ti > 0 and not ti_is_another_delay(f):
        return FLAG_TI.cite(ti=f.ti)
    return None


def ti_is_another_delay(f: StackFacts) -> bool:
    """The TI element of an ASL, perfusion or QISS series holds a labelling delay or quiescent interval."""
    return bool(_TI_NOT_INVERSION.search(f.text + " " + f.names)) or bool(
        {"ASL", "PERFUSION", "PERFUSION_ASL"} & set(f.image_type))


def fluid_null_ti(tr: float | None) -> float | None:
    """The TI that nulls CSF after an inversion repeated every TR (full recovery between neglected)."""
    if tr is None or tr <= 0:
        return None
    return T.csf_t1 * math.log(2.0 / (1.0 + math.exp(-tr / T.csf_t1)))


def _without_flag(f: StackFacts, technique: Technique | None) -> Decision:
    """No flag and no TI: the scanner's Acquisition Contrast label, then unambiguous names."""
    declared = f.first.acquisition_contrast
    if declared in ("STIR", "FLUID_ATTENUATED"):
        label = Inversion.STIR if declared == "STIR" else Inversion.FLAIR
        return label, DECLARED.cite(declared=declared, inversion=label.value)
    text, source = f.text, f.text_source()
    m = _STIR_TEXT.search(text)
    if m and not re.search(r"dark[\s_\-]?fluid|flair", text) and technique not in GRADIENT_ECHO:
        return Inversion.STIR, UNFLAGGED_STIR.cite(source=source, match=m.group(0))
    m = re.search(B + r"(?:mp[\s_\-]?rage|mp2rage|bravo)", text + " " + f.names)
    if m and technique in (Technique.GRE, Technique.IR_GRE):
        # MPRAGE/BRAVO are inversion-prepared by definition; enhanced exports may drop TI and the IR flags.
        return Inversion.IR, UNFLAGGED_MPRAGE.cite(match=m.group(0))
    m = _FLAIR_TEXT.search(text)
    if m and technique not in GRADIENT_ECHO and technique is not Technique.EPI:
        if _T1_FLAIR_TEXT.search(text):
            return Inversion.FLAIR, UNFLAGGED_T1_FLAIR.cite(source=source, match=m.group(0))
        return Inversion.FLAIR, UNFLAGGED_FLAIR.cite(source=source, match=m.group(0))
    if f.ti is not None and f.ti > 0:
        return None, TI_ANOTHER_DELAY.cite(ti=f.ti)
    return None, NONE.cite()


def _t1_flair(f: StackFacts, technique: Technique | None, ti: float) -> Evidence | None:
    """Why a mid-range TI on a short-TE spin echo is a T1-FLAIR (TI near the CSF null point), or None."""
    null = fluid_null_ti(f.tr)
    te = f.te
    if (technique not in (Technique.SE, Technique.TSE) or te is None or null is None
            or not T.spin_echo_min_te <= te < T.t1_flair_max_te
            or _INVERSION_PREPARED_GRE.search(f.text + " " + f.names)):
        return None
    if abs(ti - null) > T.fluid_null_tolerance * null:
        return None
    return T1_FLAIR_NULL.cite(ti=ti, tolerance=T.fluid_null_tolerance, null=null, tr=f.tr, te=te,
                              te_max=T.t1_flair_max_te)


def _by_ti(ti: float, gradient_echo: bool, t1_flair: Evidence | None = None) -> Decision:
    """The inversion's purpose from its TI (short: STIR, or T1 preparation before a gradient echo)."""
    if ti <= T.stir_max_ti:
        if gradient_echo:
            return Inversion.IR, TI_GRADIENT_ECHO.cite(ti=ti)
        return Inversion.STIR, TI_STIR.cite(ti=ti, ti_max=T.stir_max_ti)
    if ti >= T.flair_min_ti and not gradient_echo:
        return Inversion.FLAIR, TI_FLAIR.cite(ti=ti, ti_min=T.flair_min_ti)
    if t1_flair and not gradient_echo:
        return Inversion.FLAIR, t1_flair
    return Inversion.IR, TI_IR.cite(ti=ti, ti_min=T.stir_max_ti, ti_max=T.flair_min_ti)


def _without_ti(f: StackFacts, gradient_echo: bool) -> Decision:
    """Inversion present but no usable TI: GE tokens, the sequence family, then names and text."""
    if "T2FLAIR_GEMS" in f.scan_options:
        return Inversion.FLAIR, GE_T2FLAIR.cite()
    if "T1FLAIR_GEMS" in f.scan_options:
        return Inversion.FLAIR, GE_T1FLAIR.cite()
    if gradient_echo:
        return Inversion.IR, NO_TI_GRADIENT_ECHO.cite()
    text, source = f.text, f.text_source()
    m = _FLAIR_TEXT.search(text)
    if m:
        if _T1_FLAIR_TEXT.search(text):
            return Inversion.FLAIR, NO_TI_T1_FLAIR.cite(source=source, match=m.group(0))
        return Inversion.FLAIR, NO_TI_FLAIR.cite(source=source, match=m.group(0))
    m = _STIR_TEXT.search(text)
    if m:
        return Inversion.STIR, NO_TI_STIR.cite(source=source, match=m.group(0))
    m = re.search(B + r"(?:mprage|mp[\s_-]?rage|bravo|ir|t1)", text)
    if m:
        return Inversion.IR, NO_TI_IR.cite(source=source, match=m.group(0))
    return None, UNDECIDED.cite()


def inversion(f: StackFacts, technique: Technique | None) -> tuple[Inversion | None, list[Evidence]]:
    """Inversion type from TI (by range), vendor tokens, then text; with evidence."""
    if not f.is_mr:
        return None, [NOT_APPLICABLE.cite(modality=f.modality or "?")]
    flag = inversion_flag(f)
    if not flag:
        label, why = _without_flag(f, technique)
        return label, [why]
    gradient_echo = technique in GRADIENT_ECHO
    if f.ti is not None and f.ti > 0:
        t1_flair = GE_T1FLAIR.cite() if "T1FLAIR_GEMS" in f.scan_options else _t1_flair(f, technique, f.ti)
        label, why = _by_ti(f.ti, gradient_echo, t1_flair)
    else:
        label, why = _without_ti(f, gradient_echo)
    return label, [PRESENT.cite(flag=flag), why]
