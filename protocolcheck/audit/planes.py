"""Plane rules: orthogonal views through the oblique planes (or one thin 3D acquisition)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocolcheck.audit.matching import considered, match_failures, quotes, series_name, series_summary
from protocolcheck.classify import SeriesClass
from protocolcheck.clinical.findings import Finding, FindingCode
from protocolcheck.clinical.protocol import PlaneRule, Protocol
from protocolcheck.dicom.geometry import angle_between

MAX_LISTED = 4  # series named in an explanation


@dataclass(frozen=True)
class PlaneResult:
    rule: PlaneRule
    met: bool
    explanation: str
    series: tuple[SeriesClass, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)


def check_plane_rule(rule: PlaneRule, series: Sequence[SeriesClass]) -> PlaneResult:
    """``orthogonal-pair``: two counted series perpendicular within tolerance, each oblique enough;
    or (``isotropic_3d_counts``) one 3D acquisition with slices no thicker than ``isotropic_max_mm``."""
    counted = _counted(rule, series)
    if rule.isotropic_3d_counts:
        isotropic = _isotropic_3d(rule, counted)
        if isotropic is not None:
            return isotropic
    oriented = [s for s in counted if s.normal is not None]
    met, best = _oblique_pair(rule, oriented)
    if met is not None:
        return met
    return PlaneResult(rule, False, _why_unmet(rule, counted, oriented, best), tuple(oriented),
                       {"planes": [{"series": s.series_instance_uid, "series_number": s.series_number,
                                    "plane": s.plane, "obliquity_deg": None if s.obliquity_deg is None
                                    else round(s.obliquity_deg, 1)} for s in oriented]})


def _counted(rule: PlaneRule, series: Sequence[SeriesClass]) -> list[SeriesClass]:
    """The series the rule counts: its ``series`` match, no localizer, reformats only of a 3D acquisition."""
    has_3d = any(s.acquisition is not None and s.acquisition.value == "3D" and not s.derived and not s.localizer
                 for s in series)
    counted: list[SeriesClass] = []
    for s in series:
        if s.localizer or match_failures(rule.series, s):
            continue
        if s.derived and not (rule.reformats_count and has_3d):
            continue
        counted.append(s)
    return counted


def _isotropic_3d(rule: PlaneRule, counted: Sequence[SeriesClass]) -> PlaneResult | None:
    """The rule met by a 3D acquisition thin enough to reformat the oblique views from, if one was counted."""
    for s in counted:
        if (s.acquisition is not None and s.acquisition.value == "3D" and not s.derived
                and s.slice_thickness is not None and s.slice_thickness <= rule.isotropic_max_mm):
            return PlaneResult(rule, True, f"3D isotropic acquisition {series_summary(s)} with "
                               f"{s.slice_thickness:g} mm slices: orthogonal oblique views are reformatted from it",
                               (s,), {"isotropic_3d": s.series_instance_uid})
    return None


def _oblique_pair(rule: PlaneRule, oriented: Sequence[SeriesClass],
                  ) -> tuple[PlaneResult | None, tuple[float, SeriesClass, SeriesClass] | None]:
    """The rule met by the first perpendicular pair that is oblique enough; else the most oblique
    perpendicular pair (obliquity, series, series), if any."""
    best: tuple[float, SeriesClass, SeriesClass] | None = None
    for i, a in enumerate(oriented):
        for b in oriented[i + 1:]:
            angle = angle_between(a.normal, b.normal)
            if angle is None or angle < 90.0 - rule.tolerance_deg:
                continue
            oblique = min(a.obliquity_deg or 0.0, b.obliquity_deg or 0.0)
            if oblique >= rule.min_obliquity_deg:
                return PlaneResult(rule, True, f"{series_summary(a)} and {series_summary(b)} are {angle:.0f}\u00b0 "
                                   "apart and both oblique", (a, b),
                                   {"pair": [a.series_instance_uid, b.series_instance_uid],
                                    "angle_deg": round(angle, 1)}), None
            if best is None or oblique > best[0]:
                best = (oblique, a, b)
    return None, best


def _why_unmet(rule: PlaneRule, counted: Sequence[SeriesClass], oriented: Sequence[SeriesClass],
               best: tuple[float, SeriesClass, SeriesClass] | None) -> str:
    """Why no pair met the rule: only straight pairs, too few oriented series, or none perpendicular."""
    planes = ", ".join(
        f"{series_name(s)} {s.plane or 'unknown plane'} {s.obliquity_deg or 0:.0f}\u00b0 off axis" for s in oriented[:8]
    ) or "none"
    if best is not None:
        _, a, b = best
        why = (f"orthogonal pairs exist (e.g. {series_name(a)} and {series_name(b)}) but they are in straight planes, "
               f"not oblique (each needs \u2265 {rule.min_obliquity_deg:g}\u00b0 off the scanner axes)")
    elif len(oriented) < 2:
        why = f"fewer than two acquired series with a known orientation (found: {planes})"
    else:
        why = f"no two acquired series are perpendicular within {rule.tolerance_deg:g}\u00b0"
    unknown = [series_name(s) for s in counted if s.normal is None]
    if unknown:
        why += f"; orientation unknown for {', '.join(unknown[:MAX_LISTED])}"
    return why


def check_plane_rules(protocol: Protocol, series: Sequence[SeriesClass]) -> list[PlaneResult]:
    return [check_plane_rule(rule, series) for rule in protocol.planes if rule.rule == "orthogonal-pair"]


def plane_finding(protocol: Protocol, result: PlaneResult) -> Finding:
    """The finding for an unmet plane rule: the rule, the planes acquired, and what to do."""
    rule = result.rule
    expected = (f"two acquired series perpendicular to each other (within {rule.tolerance_deg:g}\u00b0), each at "
                f"least {rule.min_obliquity_deg:g}\u00b0 off the scanner axes")
    if rule.isotropic_3d_counts:
        expected += f", or one 3D acquisition with slices \u2264 {rule.isotropic_max_mm:g} mm"
    found = tuple(considered(s, [f"{s.plane or 'unknown plane'}, {s.obliquity_deg or 0:.0f}\u00b0 off the scanner "
                                 "axes"]) for s in result.series)
    return Finding(
        code=FindingCode.MISSING_SEQUENCE,
        severity=rule.level.severity,
        summary=f"{rule.level.value.capitalize()} views missing ({rule.label}): {result.explanation}",
        requirement=rule.id,
        requirement_name=rule.label,
        expected=expected,
        found=found,
        found_note="" if found else "no acquired series with a known orientation",
        action=rule.action or "Angle two series along the course of the plexus, perpendicular to each other",
        note=rule.note,
        series=tuple(dict.fromkeys(s.series_instance_uid for s in result.series)),
        citations=rule.citations,
        guideline=quotes(protocol, rule.citations),
        evidence={"rule": rule.rule, "tolerance_deg": rule.tolerance_deg,
                  "min_obliquity_deg": rule.min_obliquity_deg, **result.evidence},
    )
