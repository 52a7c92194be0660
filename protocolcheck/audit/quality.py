"""Quality limits: acquisition parameters (2D slice thickness, field strength) a protocol bounds."""

from __future__ import annotations

from collections.abc import Sequence

from protocolcheck.audit.matching import FIELD_LABELS, UNITS, considered, match_failures, quotes, series_name
from protocolcheck.classify import SeriesClass
from protocolcheck.clinical.findings import Finding, FindingCode
from protocolcheck.clinical.protocol import Protocol, QualityLimit


def _limit_text(limit: QualityLimit) -> str:
    return f"{limit.range.describe()}{UNITS.get(limit.parameter, '')}"


def check_limit(protocol: Protocol, limit: QualityLimit, series: Sequence[SeriesClass]) -> Finding | None:
    """One ``parameter-out-of-range`` finding naming every series outside ``limit`` (an unknown value
    is not held against a series; localizers and derived images are never judged)."""
    outside: list[tuple[SeriesClass, float]] = []
    for s in series:
        if s.localizer or s.derived or match_failures(limit.series, s):
            continue
        value = getattr(s, limit.parameter, None)
        if value is not None and not limit.range.contains(float(value)):
            outside.append((s, float(value)))
    if not outside:
        return None
    unit = UNITS.get(limit.parameter, "")
    name = FIELD_LABELS.get(limit.parameter, limit.parameter)
    count = f"{len(outside)} series" if len(outside) > 1 else series_name(outside[0][0])
    action = limit.action or (f"Repeat {'these series' if len(outside) > 1 else 'the series'} with "
                              f"{name} {_limit_text(limit)}")
    return Finding(
        code=FindingCode.PARAMETER,
        severity=limit.level.severity,
        summary=f"{limit.label} outside the limit ({_limit_text(limit)}) in {count}",
        requirement=limit.id,
        requirement_name=limit.label,
        expected=f"{limit.label} {_limit_text(limit)}",
        found=tuple(considered(s, [f"{name} {value:g}{unit} (limit {_limit_text(limit)})"]) for s, value in outside),
        note=f"Site policy: {limit.site_policy}" if limit.site_policy else "",
        action=action,
        series=tuple(dict.fromkeys(s.series_instance_uid for s, _ in outside)),
        citations=limit.citations,
        guideline=quotes(protocol, limit.citations),
        evidence={"parameter": limit.parameter, "min": limit.range.min, "max": limit.range.max,
                  "values": {s.series_instance_uid: value for s, value in outside}},
    )


def check_limits(protocol: Protocol, series: Sequence[SeriesClass]) -> list[Finding]:
    return [f for f in (check_limit(protocol, limit, series) for limit in protocol.limits) if f is not None]
