"""Inversion: STIR, FLAIR or IR (T1 preparation), or none.

An inversion pulse is present when a header flag says so (Scanning Sequence IR, Scan Options IR,
enhanced Inversion Recovery, GE tokens, Siemens names, Image Type) or a TI is written. Then the TI
decides by range (with the sequence family); without a TI, GE tokens, the family and the series text
decide. Without any flag, only unambiguous names (STIR/TIRM, MPRAGE/BRAVO, FLAIR) do.
"""

from __future__ import annotations

import re

from protocolcheck.classify.facts import StackFacts, fmt
from protocolcheck.classify.model import Inversion, Technique, Vendor
from protocolcheck.classify.technique import GRADIENT_ECHO
from protocolcheck.classify.textmatch import B, E
from protocolcheck.classify.thresholds import THRESHOLDS as T

Decision = tuple[Inversion | None, str]

_STIR_TEXT = re.compile(B + r"(?:stir|tirm)" + E)
_FLAIR_TEXT = re.compile(B + r"(?:flair|dark[\s_\-]?fluid)")
_T1_FLAIR_TEXT = re.compile(B + r"t1[\s_\-]?(?:w[\s_\-]?)?flair")
_GE_INVERSION = {"IR_GEMS", "T1FLAIR_GEMS", "T2FLAIR_GEMS", "IRP_GEMS"}

# The decision table's lines for this field (protocolcheck.classify.table), with the thresholds applied.
RULES: tuple[str, ...] = (
    ("IR present (Scanning Sequence IR, Scan Options IR, enhanced InversionRecovery YES, Siemens *tir/*spcir, "
    f"GE T1FLAIR/T2FLAIR/IR_GEMS, Philips IR) and TI: <= {T.stir_max_ti:g} STIR (SE) / IR (GRE); "
    f"{T.stir_max_ti:g}-{T.flair_min_ti:g} IR; >= {T.flair_min_ti:g} FLAIR; without TI: GE FLAIR tokens, then text "
    "(stir/tirm, flair/dark fluid, mprage/bravo); no IR flag and no TI but a gradient echo named MPRAGE/MP2RAGE/BRAVO "
    "-> IR"),
)


def inversion_flag(f: StackFacts) -> str | None:
    """The header fact that shows an inversion pulse, or None."""
    if "IR" in f.scanning_sequence:
        return "Scanning Sequence IR"
    if "IR" in f.scan_options:
        return "Scan Options IR"
    if f.first.inversion_recovery == "YES":
        return "enhanced InversionRecovery YES"
    ge = f.scan_options & _GE_INVERSION
    if ge:
        return "GE Scan Options " + "/".join(sorted(ge))
    siemens_like = f.vendor in (Vendor.SIEMENS, Vendor.UNKNOWN, Vendor.OTHER)
    if siemens_like and re.match(r"^(?:tir|ir|spcir|tirm|tfl)", f.seq_name):
        return f"SequenceName '*{f.seq_name}'"
    if "M_IR" in f.image_type or "IR" in f.image_type[2:]:
        return "Image Type IR"
    if f.ti is not None and f.ti > 0:
        return f"Inversion Time {fmt(f.ti)} ms"
    return None


def _without_flag(f: StackFacts, technique: Technique | None) -> Decision:
    """No flag and no TI: the scanner's Acquisition Contrast label, then unambiguous names."""
    declared = f.first.acquisition_contrast
    if declared in ("STIR", "FLUID_ATTENUATED"):
        label = Inversion.STIR if declared == "STIR" else Inversion.FLAIR
        return label, f"enhanced AcquisitionContrast {declared} -> {label.value}"
    text, source = f.text, f.text_source()
    m = _STIR_TEXT.search(text)
    if m and not re.search(r"dark[\s_\-]?fluid|flair", text) and technique not in GRADIENT_ECHO:
        return Inversion.STIR, f"no inversion flag or TI; {source} '{m.group(0)}' -> STIR"
    m = re.search(B + r"(?:mp[\s_\-]?rage|mp2rage|bravo)", text + " " + f.names)
    if m and technique in (Technique.GRE, Technique.IR_GRE):
        # MPRAGE/BRAVO are inversion-prepared by definition; enhanced exports may drop TI and the IR flags.
        return Inversion.IR, (f"no inversion flag or TI; gradient echo named '{m.group(0)}' (inversion-prepared by "
                              "definition) -> T1 inversion preparation (IR)")
    m = _FLAIR_TEXT.search(text)
    if m and technique not in GRADIENT_ECHO and technique is not Technique.EPI:
        if _T1_FLAIR_TEXT.search(text):
            return Inversion.IR, f"no inversion flag or TI; {source} '{m.group(0)}' with T1 -> T1 IR (T1 FLAIR)"
        return Inversion.FLAIR, f"no inversion flag or TI; {source} '{m.group(0)}' -> FLAIR"
    return None, "no inversion pulse in Scanning Sequence, Scan Options, enhanced flags or TI"


def _by_ti(ti: float, gradient_echo: bool) -> Decision:
    """The inversion's purpose from its TI (short: STIR, or T1 preparation before a gradient echo)."""
    if ti <= T.stir_max_ti:
        if gradient_echo:
            return Inversion.IR, f"TI {fmt(ti)} ms with gradient echo -> T1 inversion preparation"
        return Inversion.STIR, f"TI {fmt(ti)} ms <= {T.stir_max_ti:g} with spin echo -> STIR"
    if ti >= T.flair_min_ti and not gradient_echo:
        return Inversion.FLAIR, f"TI {fmt(ti)} ms >= {T.flair_min_ti:g} -> FLAIR"
    return Inversion.IR, (f"TI {fmt(ti)} ms between {T.stir_max_ti:g} and {T.flair_min_ti:g} -> T1 inversion "
                          "preparation (IR)")


def _without_ti(f: StackFacts, gradient_echo: bool) -> Decision:
    """Inversion present but no usable TI: GE tokens, the sequence family, then names and text."""
    if "T2FLAIR_GEMS" in f.scan_options:
        return Inversion.FLAIR, "GE Scan Options T2FLAIR_GEMS -> FLAIR"
    if "T1FLAIR_GEMS" in f.scan_options:
        return Inversion.IR, "GE Scan Options T1FLAIR_GEMS -> T1 IR (T1 FLAIR)"
    if gradient_echo:
        return Inversion.IR, "no TI; inversion with gradient echo -> T1 inversion preparation (IR)"
    text, source = f.text, f.text_source()
    m = _FLAIR_TEXT.search(text)
    if m:
        if _T1_FLAIR_TEXT.search(text):
            return Inversion.IR, f"no TI; {source} '{m.group(0)}' with T1 -> T1 IR"
        return Inversion.FLAIR, f"no TI; {source} '{m.group(0)}' -> FLAIR"
    m = _STIR_TEXT.search(text)
    if m:
        return Inversion.STIR, f"no TI; {source} '{m.group(0)}' -> STIR"
    m = re.search(B + r"(?:mprage|mp[\s_-]?rage|bravo|ir|t1)", text)
    if m:
        return Inversion.IR, f"no TI; {source} '{m.group(0)}' -> T1 inversion preparation (IR)"
    return None, "inversion present but no TI or naming decides STIR/FLAIR/IR -> unknown"


def inversion(f: StackFacts, technique: Technique | None) -> tuple[Inversion | None, list[str]]:
    """Inversion type from TI (by range), vendor tokens, then text; with evidence."""
    flag = inversion_flag(f)
    if not flag:
        label, why = _without_flag(f, technique)
        return label, [why]
    gradient_echo = technique in GRADIENT_ECHO
    if f.ti is not None and f.ti > 0:
        label, why = _by_ti(f.ti, gradient_echo)
    else:
        label, why = _without_ti(f, gradient_echo)
    return label, [f"{flag} -> inversion recovery", why]
