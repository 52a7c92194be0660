"""Classify each stack of a study field by field, then apply the study-level rules; ``describe`` a result.

Decide from acquisition parameters and vendor conventions first, series text last; when the headers
do not decide, say unknown rather than guess. Every field carries evidence: records of the rule that
decided it and the header facts it used, or why it stayed unknown (``SeriesClass.reasons[field]``), rendered
as short human strings in ``SeriesClass.evidence[field]``.
"""

from __future__ import annotations

from protocolcheck.classify.contrast import post_contrast
from protocolcheck.classify.facts import facts_of
from protocolcheck.classify.fat import dixon_label, fat_suppression
from protocolcheck.classify.flags import derived, localizer
from protocolcheck.classify.geometry import acquisition, plane, series_planes
from protocolcheck.classify.inversion import inversion
from protocolcheck.classify.model import Evidence, FatSuppression, Field, SeriesClass, Technique, Weighting
from protocolcheck.classify.study import acquisition_stamp, apply_study_rules
from protocolcheck.classify.technique import UNRECOGNISED, technique
from protocolcheck.classify.thresholds import THRESHOLDS as T
from protocolcheck.classify.weighting import diffusion_epi, diffusion_reason, weighting
from protocolcheck.dicom.study import Stack, Study


def classify_stack(stack: Stack, study: Study | None = None) -> SeriesClass:
    """Classify one stack (study-level facts, e.g. contrast order, come from ``classify_study``)."""
    f = facts_of(stack)
    h = f.first
    tech, tech_ev = technique(f)
    dwi_reason = diffusion_reason(f, tech) if f.is_mr else None
    inv, inv_ev = inversion(f, tech)
    weight, w_ev = weighting(f, tech, inv, dwi_reason)
    dixon, dixon_why = dixon_label(f)
    epi_diffusion = diffusion_epi(f, tech, dwi_reason)
    fat, method, fat_ev = fat_suppression(f, inv, inv_ev, dixon, dixon_why, weight, epi_diffusion)
    post, post_ev = post_contrast(f, epi=tech is Technique.EPI)
    named_plane, obl, normal, plane_ev = plane(f)
    acq, acq_ev = acquisition(f)
    loc, loc_ev = localizer(f, stack, series_planes(stack, study), tech, acq)
    der, der_ev = derived(f)
    reasons: dict[Field, tuple[Evidence, ...]] = {
        Field.TECHNIQUE: tuple(tech_ev) or (UNRECOGNISED.cite(),),
        # the sequence family is part of the weighting decision, so it leads that evidence list
        Field.WEIGHTING: tuple(tech_ev + w_ev) if f.is_mr and not dwi_reason else tuple(w_ev),
        Field.INVERSION: tuple(inv_ev),
        Field.FAT_SUPPRESSION: tuple(fat_ev),
        Field.POST_CONTRAST: tuple(post_ev),
        Field.PLANE: tuple(plane_ev),
        Field.ACQUISITION: tuple(acq_ev),
        Field.LOCALIZER: tuple(loc_ev),
        Field.DERIVED: tuple(der_ev),
    }
    if dixon_why:
        reasons[Field.DIXON] = (dixon_why,)
    return SeriesClass(
        study_instance_uid=stack.study_instance_uid,
        series_instance_uid=stack.series_instance_uid,
        stack=stack.label,
        series_number=h.series_number,
        series_description=h.series_description,
        modality=h.modality,
        manufacturer=h.manufacturer,
        instances=len(stack.instances),
        weighting=weight,
        inversion=inv,
        fat_suppressed=fat,
        fat_suppression=method,
        post_contrast=post,
        plane=named_plane,
        obliquity_deg=obl,
        normal=normal,
        acquisition=acq,
        localizer=loc,
        derived=der,
        reasons=reasons,
        slice_thickness=h.slice_thickness,
        field_strength=h.field_strength,
        repetition_time=f.tr,
        echo_time=f.te,
        inversion_time=f.ti,
        image_type=h.image_type,
        acquisition_time=acquisition_stamp(stack),
        dixon=dixon,
        vendor=f.vendor,
        technique=tech,
        b_values=f.b_values,
        accession_number=h.accession_number.strip(),
        study_date=h.study_date.strip(),
        study_description=h.study_description.strip(),
    )


def classify_study(study: Study) -> list[SeriesClass]:
    """Classify every stack of a study, in acquisition order, then apply the study-level rules
    (:mod:`protocolcheck.classify.study`: exam-level agent, fat naming, contrast start time and order)."""
    return apply_study_rules([classify_stack(stack, study) for stack in study.stacks], study)


def describe(c: SeriesClass) -> str:
    """One-line human summary, e.g. "oblique coronal T2 STIR 2D (28° oblique)".

    Parts: [oblique] plane, weighting, inversion (FLAIR/STIR/IR), fat suppression (FS/method unless
    it is STIR), post-contrast ("+C") or pre-contrast, 2D/3D, then Dixon/localizer/derived flags and
    the obliquity in degrees when the plane is tilted by more than ``oblique_deg`` (thresholds).
    """
    parts: list[str] = []
    oblique = c.obliquity_deg is not None and c.obliquity_deg > T.oblique_deg
    if c.plane:
        parts.append(("oblique " if oblique else "") + c.plane.value)
    else:
        parts.append("unknown plane")
    parts.append(c.weighting.value if c.weighting is not Weighting.UNKNOWN else "unknown weighting")
    if c.inversion is not None:
        parts.append(c.inversion.value)
    if c.fat_suppressed and c.fat_suppression is not FatSuppression.STIR:
        method = c.fat_suppression
        parts.append("FS" if method in (None, FatSuppression.UNSPECIFIED) else f"FS ({method.value})")
    if c.post_contrast is not None:
        parts.append("+C" if c.post_contrast else "pre-contrast")
    if c.acquisition is not None:
        parts.append(c.acquisition.value)
    if c.dixon:
        parts.append(f"Dixon {c.dixon.value}")
    if c.localizer:
        parts.append("localizer")
    if c.derived:
        parts.append("derived")
    text = " ".join(parts)
    if oblique and c.obliquity_deg is not None:
        text += f" ({c.obliquity_deg:.0f}° oblique)"
    return text
