"""Localizer and derived flags."""

from __future__ import annotations

from protocolcheck.classify.facts import StackFacts
from protocolcheck.classify.model import Acquisition, Evidence, Field, Plane, Rule, Technique
from protocolcheck.classify.textmatch import B, E, rx
from protocolcheck.classify.thresholds import THRESHOLDS as T
from protocolcheck.dicom.study import Stack

_LOCALIZER_TEXT = rx(
    r"(?:localiz|localis|scout|survey|surview|topogram|scanogram)|"
    + B + r"(?:loc|locs|locator|3[\s_\-]?pl(?:ane)?|three[\s_\-]?plane|tri[\s_\-]?pilot|pilot|topo|scano|"
    r"positioning|autoalign|aa_?scout|smart[\s_-]?(?:brain|exam|plan\w*|spine|knee|survey)|awplan\w*|planning|"
    r"planscan)(?![a-z])"
)
# Projections (MIP) are reformatted in several planes from one volume: several planes do not make them localizers.
_PROJECTION_TOKENS = frozenset({"MIP", "MINIP", "MNIP", "PROJECTION IMAGE", "PROJECTION", "CSA MIP"})
_DERIVED_TOKENS = {
    "MPR", "MIP", "MINIP", "MNIP", "PROJECTION IMAGE", "PROJECTION", "MOCO", "SUB", "SUBTRACTION", "ADC", "EADC",
    "TRACEW", "FA", "COLFA", "REFORMATTED", "REFORMAT", "CALC", "COMPOSED", "CPR", "CURVED", "CSA MPR",
    "CSA RESAMPLED", "CSAPARALLEL", "RESAMPLED", "VOLUME RENDER", "VR", "FUSED", "T1 MAP", "T2 MAP",
}
_DERIVED_TEXT = rx(B + r"(?:adc|mip|minip|mpr|reformat\w*|subtraction|sub|colfa|fa[\s_-]?map|moco|mobiview|composed|"
                   r"composing|stitch\w*)" + E)

# The decision table's lines for these fields (protocolcheck.classify.table), with the thresholds applied.
LOCALIZER_RULES: tuple[str, ...] = (
    ("Image Type LOCALIZER; several planes in one series with few images; names localizer/scout/survey/"
    f"3-plane/loc/tri-pilot/topogram; 2D fast GRE (TR < {T.gre_fast_tr:g} ms) with <= {T.localizer_max_images:g} "
    f"images of >= {T.localizer_min_thickness:g} mm; planning scans named SmartBrain/SmartExam/AWPLAN/planning "
    "(Philips auto-planning surveys); projections (MIP) in several planes are not localizers"),
)
DERIVED_RULES: tuple[str, ...] = (
    ("Image Type DERIVED or SECONDARY or tokens MPR/MIP/MINIP/PROJECTION/MOCO/SUB/ADC/TRACEW/FA/REFORMATTED; "
    "text ADC/MIP/MPR/subtraction, composed/stitched (Philips MobiView, composing); Dixon water stays derived=true "
    "with dixon='W'"),
)


LOCALIZER_IMAGE_TYPE = Rule(Field.LOCALIZER, "image-type", "Image Type LOCALIZER")
LOCALIZER_PLANES = Rule(Field.LOCALIZER, "planes",
                        "series holds {count} planes ({planes}) with few images -> localizer")
LOCALIZER_TEXT = Rule(Field.LOCALIZER, "text", "{source} '{match}' -> localizer")
LOCALIZER_FAST_GRE = Rule(Field.LOCALIZER, "fast-gre", "2D fast gradient echo (TR {tr:num} ms) with {images} images "
                          "of {thickness:num} mm -> localizer")
LOCALIZER_ORIENTATIONS = Rule(Field.LOCALIZER, "orientations",
                              "series holds {count} orientations with few images -> localizer")
NOT_LOCALIZER = Rule(Field.LOCALIZER, "none", "no localizer Image Type, naming or geometry")
DERIVED_IMAGE_TYPE = Rule(Field.DERIVED, "image-type", "{reasons} -> derived")
DERIVED_TEXT = Rule(Field.DERIVED, "text", "{basis} {source} '{match}' -> derived")
ORIGINAL = Rule(Field.DERIVED, "original", "Image Type {image_type:/} -> original")
ORIGINAL_UNTYPED = Rule(Field.DERIVED, "original-untyped", "no Image Type and no derived naming -> original")


def localizer(f: StackFacts, stack: Stack, planes: set[Plane], technique: Technique | None,
              acquisition: Acquisition | None) -> tuple[bool, list[Evidence]]:
    """Image Type, several planes with few images, naming, or a thick 2D fast GRE with few images."""
    if "LOCALIZER" in f.image_type or "SCOUT" in f.image_type:
        return True, [LOCALIZER_IMAGE_TYPE.cite()]
    few = f.images <= T.localizer_multi_plane_max_images and not _PROJECTION_TOKENS & set(f.image_type)
    if len(planes) >= T.localizer_min_planes and few:
        named = ", ".join(sorted(p.value for p in planes))
        return True, [LOCALIZER_PLANES.cite(count=len(planes), planes=named, images=f.images)]
    m = _LOCALIZER_TEXT.search(f.text)
    if m:
        return True, [LOCALIZER_TEXT.cite(source=f.text_source(), match=m.group(0))]
    thick = f.first.slice_thickness
    if (f.is_mr and technique is Technique.GRE and acquisition is not Acquisition.THREE_D and f.tr is not None
            and f.tr < T.gre_fast_tr and f.images <= T.localizer_max_images and thick is not None
            and thick >= T.localizer_min_thickness and not f.b_values):
        return True, [LOCALIZER_FAST_GRE.cite(tr=f.tr, images=f.images, thickness=thick)]
    if stack.series_orientation_count >= T.localizer_min_planes and not planes and few:
        return True, [LOCALIZER_ORIENTATIONS.cite(count=stack.series_orientation_count, images=f.images)]
    return False, [NOT_LOCALIZER.cite()]


def derived(f: StackFacts) -> tuple[bool, list[Evidence]]:
    """Image Type DERIVED/SECONDARY or a derived token; else derived naming in the series text."""
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
        return True, [DERIVED_IMAGE_TYPE.cite(reasons=", ".join(reasons), image_type=it)]
    m = _DERIVED_TEXT.search(f.text)
    if m:
        basis = "no Image Type" if not it else f"Image Type {'/'.join(it[:2])} but"
        return True, [DERIVED_TEXT.cite(basis=basis, source=f.text_source(), match=m.group(0), image_type=it)]
    if it:
        return False, [ORIGINAL.cite(image_type=it[:2])]
    return False, [ORIGINAL_UNTYPED.cite()]
