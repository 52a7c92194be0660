"""The decision table, assembled from each field module's rule lines (thresholds applied there)."""

from __future__ import annotations

from protocolcheck.classify import (
    contrast,
    fat,
    flags,
    geometry,
    inversion,
    study,
    weighting,
)

DECISION_TABLE: tuple[tuple[str, str], ...] = (
    *(("weighting", line) for line in weighting.RULES),
    *(("inversion", line) for line in inversion.RULES),
    *(("fat_suppression", line) for line in fat.RULES + study.FAT_RULES),
    *(("post_contrast", line) for line in contrast.RULES),
    *(("plane", line) for line in geometry.PLANE_RULES),
    *(("acquisition", line) for line in geometry.ACQUISITION_RULES),
    *(("localizer", line) for line in flags.LOCALIZER_RULES),
    *(("derived", line) for line in flags.DERIVED_RULES),
)
