"""Fat suppression (yes/no/unknown and the method) and the Dixon output label.

In order: STIR inversion and Dixon outputs; header tokens and flags (water excitation, Scan Options
FS, Philips SPIR, enhanced Spectrally Selected Suppression), with the series text naming the method;
series text (negatives first); absence proven by vendors that always write a fat token; else unknown.
"""

from __future__ import annotations

import re

from protocolcheck.classify.facts import StackFacts
from protocolcheck.classify.model import DixonLabel, Evidence, FatSuppression, Field, Inversion, Rule, Vendor, Weighting
from protocolcheck.classify.textmatch import B, E, first_match, rx

# (suppressed, method, evidence)
Decision = tuple[bool | None, FatSuppression | None, Evidence]

FATSAT_NEG = rx(B + r"(?:nfs|nonfs|non[\s_\-]?fs|no[\s_\-]?fs|nofs|w/?o[\s_\-]?fs|non[\s_\-]?fat[\s_\-]?sat|"
                   r"no[\s_\-]?fat[\s_\-]?sat|without[\s_\-]?fat)" + E)
FATSAT_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (rx(B + r"spair" + E), "SPAIR"),
    (rx(B + r"spir" + E), "SPIR"),
    (rx(B + r"(?:stir|tirm|stir3d|spcir[\s_]*stir)"), "STIR"),
    (rx(B + r"(?:water[\s_\-]?exc\w*|we|proset|pasta|wats?)" + E), "WATER_EXCITATION"),
    (rx(B + r"(?:fat[\s_\-]?sat\w*|fat[\s_\-]?sup\w*|fatsup\w*|chess|fs|f/s|fat[\s_\-]?supp\w*)" + r"(?![a-z])"),
     "UNSPECIFIED"),
    (rx(r"(?<![a-z])(?:t1|t2|pd|dp|stir)[\s_\-]?fs(?![a-z])"), "UNSPECIFIED"),
    (rx(r"(?<![a-z])fs[\s_\-]?(?:t1|t2|pd)(?![a-z])"), "UNSPECIFIED"),
)
DIXON_TEXT = rx(B + r"(?:dixon|mdixon|ideal|flex|fact|wfs|wfop|fatsep|f-w|w-f)" + E)
_DIXON_PREFIX = rx(r"^\s*(water|fat|inphase|in[\s_-]?phase|outphase|out[\s_-]?phase|opp[\s_-]?phase)\s*:")
_DIXON_PREFIX_LABEL = {"water": DixonLabel.WATER, "fat": DixonLabel.FAT, "inphase": DixonLabel.IN_PHASE,
                       "outphase": DixonLabel.OPPOSED_PHASE, "oppphase": DixonLabel.OPPOSED_PHASE}
_DIXON_LABEL_TEXT: tuple[tuple[re.Pattern[str], DixonLabel], ...] = (
    (rx(B + r"(?:w|water|wat)" + E), DixonLabel.WATER),
    (rx(B + r"(?:f|fat)" + E), DixonLabel.FAT),
    (rx(B + r"(?:ip|in|inphase|in[\s_-]phase)" + E), DixonLabel.IN_PHASE),
    (rx(B + r"(?:op|opp|out|outphase|opposed|opp[\s_-]phase|out[\s_-]phase)" + E), DixonLabel.OPPOSED_PHASE),
)
_DIXON_IMAGE_TYPE = {
    "W": DixonLabel.WATER, "WATER": DixonLabel.WATER,
    "F": DixonLabel.FAT, "FAT": DixonLabel.FAT,
    "IP": DixonLabel.IN_PHASE, "IN_PHASE": DixonLabel.IN_PHASE, "INPHASE": DixonLabel.IN_PHASE,
    "OP": DixonLabel.OPPOSED_PHASE, "OPP_PHASE": DixonLabel.OPPOSED_PHASE, "OUT_PHASE": DixonLabel.OPPOSED_PHASE,
    "OPPOSED_PHASE": DixonLabel.OPPOSED_PHASE, "OUTPHASE": DixonLabel.OPPOSED_PHASE,
}

# Scan Options tokens.
_FS_TOKENS = {"FS", "SFS", "FAT_SAT", "FATSAT", "FSAT", "SPECTRAL_FAT_SAT", "FAT SAT"}
_WE_TOKENS = {"WE", "WATER_EXCITATION", "WATEREXCITATION"}
_GE_NOT_FAT = {"FSA_GEMS", "FSP_GEMS", "FSS_GEMS", "FSI_GEMS", "FSR_GEMS", "FSL_GEMS", "SAT_GEMS", "FSAT_GEMS"}
_DIXON_TOKENS = {"IDEAL_GEMS", "FLEX_GEMS", "DIXW", "DIXF"}
_FAT_SUPPRESSED_VALUES = ("FAT", "FAT_AND_WATER", "WATER_FAT", "FAT_WATER")  # Spectrally Selected Suppression

# The decision table's lines for this field (protocolcheck.classify.table).
RULES: tuple[str, ...] = (
    ("STIR inversion -> STIR; Dixon water (Image Type W/WATER, GE 'WATER:' prefix) -> DIXON; "
    "Dixon fat/in/opposed phase -> not suppressed"),
    ("Scan Options tokens FS/SFS/FAT_SAT/FATSAT -> suppressed, method UNSPECIFIED (DICOM's one fat "
    "token covers fat sat, SPAIR and SPIR) unless Philips (2001,1021)=Y (SPIR) or the text names SPAIR/"
    "SPIR/CHESS; WE -> WATER_EXCITATION; GE FSA/FSP/FSS/FSI/FSR/FSL_GEMS and SAT_GEMS ignored"),
    ("enhanced SpectrallySelectedSuppression FAT/FAT_AND_WATER/WATER_FAT -> suppressed, method "
    "UNSPECIFIED unless the text names it; NONE -> false"),
    ("text: fatsat/fat sat/fs (word)/spair/spir (not spiral)/stir/dixon water/water excitation; "
    "negatives nfs/non-fs/no fat sat -> false"),
    ("false without text when the vendor always writes a fat token and none is there: Siemens classic "
    "MR (non-XA, options empty or without FS/WE), Siemens XA (classic or enhanced) with Scan Options "
    "present but no FS/WE, GE classic with Scan Options present (not LAVA/VIBRANT/DISCO, not IDEAL/FLEX), "
    "Canon classic with Scan Options present but no FS, Philips with Scan Options present but no FS, or "
    "(2001,1021)=N; never for DWI or unlabelled Dixon"),
    ("Siemens Scan Options SFS -> SPAIR; GE (0019,10A4) SAT fat = 1 -> suppressed; Spectrally Selected Excitation "
     "WATER -> water excitation except on Philips, which writes it on every series (a default proves nothing)"),
    ("echo-planar diffusion (DWI, and ADC/FA maps computed from it) -> suppressed: EPI cannot be read without "
     "fat suppression (fat shifts by many pixels along the phase direction), and GE writes no fat flag for it"),
)


_rule = Field.FAT_SUPPRESSION.rule


DIXON_IMAGE_TYPE = Rule(Field.DIXON, "image-type", "Image Type {value} -> Dixon {label}")
DIXON_PREFIX = Rule(Field.DIXON, "prefix", "SeriesDescription prefix '{prefix}' -> Dixon {label}")
DIXON_SERIES_TEXT = Rule(Field.DIXON, "text", "Dixon series text '{match}' -> Dixon {label}")

NOT_APPLICABLE = _rule("not-applicable", "Modality {modality}: fat suppression not applicable")
STIR = _rule("stir", "STIR inversion ({because}) -> fat suppressed")
DIXON_WATER = _rule("dixon-water", "{because} -> water image is fat suppressed")
DIXON_NOT_WATER = _rule("dixon-not-water", "{because} -> not fat suppressed")
GE_IGNORED = _rule("ge-ignored",
                   "ignored GE token(s) {tokens:quoted} (readout direction / spatial sat, not fat saturation)")
WE_TOKEN = _rule("we-token", "Scan Options token '{token}' -> water excitation")
WE_EXCITATION = _rule("we-excitation", "Spectrally Selected Excitation WATER -> water excitation")
WE_PHILIPS_DEFAULT = _rule("we-philips-default", "Spectrally Selected Excitation WATER ignored: Philips writes it on "
                           "every series, fat-suppressed or not")
SIEMENS_SFS = _rule("siemens-sfs", "Siemens Scan Options token 'SFS' -> SPAIR (spectral adiabatic inversion)")
GE_SAT_FAT = _rule("ge-sat-fat", "GE (0019,10A4) SAT fat/water/bone = 1 -> fat saturation on")
DIFFUSION_EPI = _rule("diffusion-epi", "{because}: echo-planar diffusion is acquired fat-suppressed (fat would shift "
                      "many pixels along the EPI phase direction), whether or not the vendor writes a fat flag")
CANON_NO_FS = _rule("canon-no-fs", "Canon Scan Options {options:/} without FS token (Canon writes FS when fat "
                    "suppression is on) -> not fat suppressed")
FS_SPIR = _rule("fs-spir", "Scan Options token '{token}' and Philips (2001,1021) SPIR = Y -> SPIR")
FS_NAMED = _rule("fs-named", "Scan Options token '{token}' and {named}")
FS = _rule("fs", "Scan Options token '{token}' -> fat suppressed (the token does not say CHESS, SPAIR or SPIR)")
SPIR_FLAG = _rule("spir-flag", "Philips (2001,1021) SPIR = Y -> SPIR")
SUPPRESSION_NAMED = _rule("suppression-named", "enhanced SpectrallySelectedSuppression {value} and {named}")
SUPPRESSION = _rule("suppression", "enhanced SpectrallySelectedSuppression {value} -> fat suppressed (the flag "
                    "does not name the method)")
METHOD_NAMED = _rule("method-named", "{source} '{match}' -> {method}")
TEXT_NEGATIVE = _rule("text-negative", "{source} '{match}' -> explicitly not fat suppressed")
TEXT = _rule("text", "{source} '{match}' -> fat suppressed ({method})")
SUPPRESSION_NONE = _rule("suppression-none", "enhanced SpectrallySelectedSuppression NONE -> not fat suppressed")
DIXON_UNLABELLED = _rule("dixon-unlabelled", "Dixon acquisition but this output is not labelled water/fat/in/opposed "
                         "phase")
SIEMENS_EMPTY = _rule("siemens-empty",
                      "Siemens classic MR with empty Scan Options (no FS/WE token) -> not fat suppressed")
SIEMENS_NO_FS = _rule("siemens-no-fs", "Siemens Scan Options {options:/} without FS/WE token (Siemens writes them for "
                      "fat sat, SPAIR and water excitation) -> not fat suppressed")
GE_NO_FS = _rule("ge-no-fs", "GE Scan Options {options:/} without FS token -> not fat suppressed")
PHILIPS_NO_FS = _rule("philips-no-fs", "Philips Scan Options {options:/} without FS token (Philips writes FS when "
                      "SPIR/SPAIR is on) -> not fat suppressed")
PHILIPS_SPIR_N = _rule("philips-spir-n", "Philips (2001,1021) SPIR = N, no FS Scan Option, no fat-sat text -> not fat "
                       "suppressed")
UNKNOWN = _rule("unknown", "no fat-suppression token, flag or text, and this vendor's headers do not prove absence "
                "-> unknown")


# --------------------------------------------------------------------------------------------------
# Dixon


def dixon_label(f: StackFacts) -> tuple[DixonLabel | None, Evidence | None]:
    """Which Dixon output this stack is (Image Type, a GE 'WATER:' prefix, Dixon series text), and why."""
    if not f.is_mr:
        return None, None
    # Siemens/Philips Dixon outputs; Philips writes W/F/IP/OP only for Dixon images. A bare 'F' from another
    # known vendor outside a Dixon context is not a fat image.
    dixon_context = f.vendor is Vendor.PHILIPS or "DIXON" in f.image_type or bool(DIXON_TEXT.search(f.text))
    for value in f.image_type[2:]:
        label = _DIXON_IMAGE_TYPE.get(value)
        if label is None:
            continue
        if value == "F" and not dixon_context and f.vendor not in (Vendor.UNKNOWN, Vendor.OTHER):
            continue
        return label, DIXON_IMAGE_TYPE.cite(value=value, label=label)
    m = _DIXON_PREFIX.search(f.description)
    if m:
        word = m.group(1).lower().replace(" ", "").replace("_", "").replace("-", "")
        label = _DIXON_PREFIX_LABEL[word]
        return label, DIXON_PREFIX.cite(prefix=m.group(0).strip(), label=label)
    text = f.text
    if DIXON_TEXT.search(text) or "DIXON" in f.image_type:
        for pattern, label in _DIXON_LABEL_TEXT:
            mm = pattern.search(text)
            if mm:
                return label, DIXON_SERIES_TEXT.cite(match=mm.group(0), label=label)
    return None, None


# --------------------------------------------------------------------------------------------------
# Fat suppression


def _named_method(f: StackFacts) -> tuple[FatSuppression, Evidence] | None:
    """The spectral method the series text names, when a header token already proves fat suppression."""
    spair = re.search(B + r"spair" + E, f.text)
    if spair:
        return FatSuppression.SPAIR, METHOD_NAMED.cite(source=f.text_source(), match=spair.group(0), method="SPAIR")
    spir = re.search(B + r"spir" + E, f.text)
    if spir and f.vendor in (Vendor.PHILIPS, Vendor.CANON):
        return FatSuppression.SPIR, METHOD_NAMED.cite(source=f.text_source(), match=spir.group(0), method="SPIR")
    chess = re.search(B + r"chess" + E, f.text)
    if chess:
        return FatSuppression.CHESS, METHOD_NAMED.cite(source=f.text_source(), match=chess.group(0), method="CHESS")
    return None


def _philips_spir(f: StackFacts) -> str:
    """Philips (2001,1021) SPIR flag: 'Y', 'N' or ''."""
    return f.first.philips_spir.strip().upper()[:1]


def _by_inversion_or_dixon(inversion: Inversion | None, inv_ev: list[Evidence], dixon: DixonLabel | None,
                           dixon_why: Evidence | None) -> Decision | None:
    if inversion is Inversion.STIR:
        return True, FatSuppression.STIR, STIR.cite(because=inv_ev[-1] if inv_ev else "short TI")
    if dixon is DixonLabel.WATER:
        return True, FatSuppression.DIXON, DIXON_WATER.cite(because=dixon_why)
    if dixon is not None:
        return False, None, DIXON_NOT_WATER.cite(because=dixon_why)
    return None


def _ignored_ge_tokens(f: StackFacts) -> list[Evidence]:
    ignored = sorted(t for t in f.scan_options if t in _GE_NOT_FAT or (t.startswith("FS") and t.endswith("_GEMS")))
    return [GE_IGNORED.cite(tokens=tuple(ignored))] if ignored else []


def _by_fat_token(f: StackFacts, fs: frozenset[str], spir: str) -> Decision:
    """A fat token in Scan Options proves suppression; the method only when a flag, token or name says it."""
    token = min(fs)
    if spir == "Y":
        return True, FatSuppression.SPIR, FS_SPIR.cite(token=token)
    if f.vendor is Vendor.SIEMENS and "SFS" in fs:
        return True, FatSuppression.SPAIR, SIEMENS_SFS.cite()
    method = _named_method(f)
    if method is not None:
        return True, method[0], FS_NAMED.cite(token=token, named=method[1])
    # DICOM defines one fat token (FS) for every spectral method: Siemens writes it for fat sat and SPAIR,
    # GE for its fat options, Philips for SPIR/SPAIR. The token proves suppression, not the method.
    return True, FatSuppression.UNSPECIFIED, FS.cite(token=token)


def _by_header(f: StackFacts) -> Decision | None:
    """Water excitation, the FS Scan Option, the Philips SPIR flag and enhanced Spectrally Selected Suppression."""
    we = f.scan_options & _WE_TOKENS
    if we:
        return True, FatSuppression.WATER_EXCITATION, WE_TOKEN.cite(token=min(we))
    if f.first.spectrally_selected_excitation == "WATER" and f.vendor is not Vendor.PHILIPS:
        return True, FatSuppression.WATER_EXCITATION, WE_EXCITATION.cite()
    fs = f.scan_options & _FS_TOKENS
    spir = _philips_spir(f)
    if fs:
        return _by_fat_token(f, fs, spir)
    if spir == "Y":
        return True, FatSuppression.SPIR, SPIR_FLAG.cite()
    sss = f.first.spectrally_selected_suppression.strip().upper()
    if sss in _FAT_SUPPRESSED_VALUES:
        method = _named_method(f)
        if method is not None:
            return True, method[0], SUPPRESSION_NAMED.cite(value=sss, named=method[1])
        return True, FatSuppression.UNSPECIFIED, SUPPRESSION.cite(value=sss)
    if f.vendor is Vendor.GE and f.first.ge_sat_fat.strip() == "1":
        return True, FatSuppression.UNSPECIFIED, GE_SAT_FAT.cite()
    return None


def _defaults_noted(f: StackFacts) -> list[Evidence]:
    """Header values written on every series of a vendor, named so a reader sees they were not evidence."""
    if f.vendor is Vendor.PHILIPS and f.first.spectrally_selected_excitation == "WATER":
        return [WE_PHILIPS_DEFAULT.cite()]
    return []


def _by_diffusion_epi(f: StackFacts, diffusion_epi: Evidence | None) -> Decision | None:
    if not diffusion_epi or FATSAT_NEG.search(f.text):
        return None
    return True, FatSuppression.UNSPECIFIED, DIFFUSION_EPI.cite(because=diffusion_epi)


def _by_text(f: StackFacts, inversion: Inversion | None) -> Decision | None:
    """Series text: a negative names the absence explicitly; else the first fat-suppression word; else an
    enhanced Spectrally Selected Suppression NONE."""
    neg = FATSAT_NEG.search(f.text)
    if neg:
        return False, None, TEXT_NEGATIVE.cite(source=f.text_source(), match=neg.group(0))
    m = first_match(f.text, FATSAT_TEXT)
    if m:
        label, matched = m
        # 'tirm' in a dark-fluid name is FLAIR, not STIR
        if not (label == "STIR" and inversion in (Inversion.FLAIR, Inversion.IR)):
            method = FatSuppression(label)
            return True, method, TEXT.cite(source=f.text_source(), match=matched, method=method.value)
    if f.first.spectrally_selected_suppression.strip().upper() == "NONE":
        return False, None, SUPPRESSION_NONE.cite()
    return None


def _vendor_absence(f: StackFacts, weighting: Weighting) -> Decision | None:
    """Not suppressed, proven by vendors that always write a fat token when spectral fat suppression is on."""
    text, spir = f.text, _philips_spir(f)
    if weighting is Weighting.DWI:
        return None
    if (not f.first.enhanced and f.vendor is Vendor.SIEMENS and not f.scan_options
            and "XA" not in f.first.software_versions.upper()):
        return False, None, SIEMENS_EMPTY.cite()
    if f.scan_options and (not f.first.enhanced or f.vendor in (Vendor.SIEMENS, Vendor.PHILIPS)):
        # Enhanced objects count too for Siemens XA (Scan Options from (0021,105C) carry FS and WE: 'PFP\\FS\\PER',
        # 'IR\\WE') and Philips (FS on fat-suppressed enhanced exports as on classic ones).
        options = tuple(sorted(f.scan_options))
        if f.vendor is Vendor.SIEMENS:
            return False, None, SIEMENS_NO_FS.cite(options=options)
        if f.vendor is Vendor.GE and not f.first.enhanced and not re.search(B + r"(?:lava|vibrant|disco)" + E, text):
            return False, None, GE_NO_FS.cite(options=options)
        if f.vendor is Vendor.CANON and not f.first.enhanced:
            return False, None, CANON_NO_FS.cite(options=options)
        if (f.vendor is Vendor.PHILIPS and spir != "Y"
                and not re.search(B + r"(?:e[\s_-]?thrive|thrive|proset|wats|mdixon)" + E, text)):
            return False, None, PHILIPS_NO_FS.cite(options=options)
    if f.vendor is Vendor.PHILIPS and spir == "N" and not (f.scan_options & _FS_TOKENS):
        return False, None, PHILIPS_SPIR_N.cite()
    return None


def fat_suppression(f: StackFacts, inversion: Inversion | None, inv_ev: list[Evidence], dixon: DixonLabel | None,
                    dixon_why: Evidence | None, weighting: Weighting, diffusion_epi: Evidence | None = None
                    ) -> tuple[bool | None, FatSuppression | None, list[Evidence]]:
    """Whether fat was suppressed, the method when the headers name it, and the evidence."""
    if not f.is_mr:
        return None, None, [NOT_APPLICABLE.cite(modality=f.modality or "?")]
    decided = _by_inversion_or_dixon(inversion, inv_ev, dixon, dixon_why)
    if decided is not None:
        return decided[0], decided[1], [decided[2]]
    ev = _ignored_ge_tokens(f) + _defaults_noted(f)
    decided = _by_header(f) or _by_diffusion_epi(f, diffusion_epi) or _by_text(f, inversion)
    if decided is None:
        if f.scan_options & _DIXON_TOKENS or DIXON_TEXT.search(f.text):
            ev.append(DIXON_UNLABELLED.cite())
        else:
            decided = _vendor_absence(f, weighting)
    if decided is not None:
        return decided[0], decided[1], ev + [decided[2]]
    return None, None, ev + [UNKNOWN.cite()]
