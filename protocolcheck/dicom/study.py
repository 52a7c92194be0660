"""Group instance headers into studies, series and stacks.

A *series* is everything sharing a Series Instance UID. A *stack* is a part of a series whose images
share image type, orientation and echo time: a Dixon series (W/F/IP/OP in one series), a three-plane
localizer or a dual-echo series is several stacks. We never merge by Series Number or Protocol Name
(that merges derived images into originals).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from protocolcheck.dicom.geometry import Vector, angle_between, plane_of, slice_normal
from protocolcheck.dicom.records import InstanceHeader

# Image Type values that name a Dixon / multi-contrast output, mapped to the stack label.
DIXON_LABELS = {
    "W": "W", "WATER": "W",
    "F": "F", "FAT": "F",
    "IP": "IP", "IN_PHASE": "IP", "INPHASE": "IP",
    "OP": "OP", "OPP_PHASE": "OP", "OUT_PHASE": "OP", "OPPOSED_PHASE": "OP", "OUTPHASE": "OP",
}
ORIENTATION_SPLIT_DEG = 5.0


@dataclass(frozen=True)
class Stack:
    """Images of one series that share image type, orientation and echo: the unit we classify."""

    study_instance_uid: str
    series_instance_uid: str
    label: str | None
    instances: tuple[InstanceHeader, ...]
    series_stack_count: int = 1
    series_orientation_count: int = 1

    @property
    def first(self) -> InstanceHeader:
        return self.instances[0]

    @property
    def frame_count(self) -> int:
        return sum(h.frames for h in self.instances)

    @property
    def normal(self) -> Vector | None:
        return slice_normal(self.first.image_orientation)


@dataclass
class Study:
    """All stacks of one Study Instance UID, in acquisition order."""

    study_instance_uid: str
    stacks: list[Stack] = field(default_factory=list)

    @property
    def first(self) -> InstanceHeader:
        return self.stacks[0].first

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.stacks)

    @property
    def paths(self) -> list[str]:
        return sorted({h.path for s in self.stacks for h in s.instances})


def _dixon_label(image_type: tuple[str, ...]) -> str | None:
    for value in image_type[2:]:
        label = DIXON_LABELS.get(value)
        if label:
            return label
    return None


def _orientation_clusters(headers: list[InstanceHeader]) -> list[list[InstanceHeader]]:
    """Split by orientation: a new cluster when the normal differs by more than a few degrees."""
    clusters: list[tuple[Vector | None, list[InstanceHeader]]] = []
    # Images of a series mostly share one orientation: an orientation seen before joins the cluster it
    # joined then (clusters only ever get appended, so its first match is still the same one).
    cluster_of: dict[tuple[float, ...] | None, list[InstanceHeader]] = {}
    for h in headers:
        known = cluster_of.get(h.image_orientation)
        if known is not None:
            known.append(h)
            continue
        n = slice_normal(h.image_orientation)
        for normal, members in clusters:
            angle = angle_between(n, normal)
            if (n is None and normal is None) or (angle is not None and angle <= ORIENTATION_SPLIT_DEG):
                members.append(h)
                break
        else:
            members = [h]
            clusters.append((n, members))
        cluster_of[h.image_orientation] = members
    return [members for _n, members in clusters]


def _sort_key(h: InstanceHeader) -> tuple:
    return (h.acquisition_number or 0, h.instance_number or 0, h.sop_instance_uid)


def split_series(headers: list[InstanceHeader]) -> list[Stack]:
    """Split one series into stacks by image type, echo time and orientation."""
    headers = sorted(headers, key=_sort_key)
    parts = _split_parts(headers)
    orientation_counts = len(_orientation_clusters(headers))
    stacks: list[Stack] = []
    plane_labels_needed = len(parts) > 1
    seen: dict[str, int] = {}
    for labels, cluster in parts:
        label_parts = list(labels)
        if plane_labels_needed and orientation_counts > 1:
            plane = plane_of(slice_normal(cluster[0].image_orientation))
            label_parts.append(plane.value if plane else "unknown-plane")
        if label_parts:
            # several blocks in the same plane (multi-angle axials) get distinct labels: axial, axial-2, ...
            key = " ".join(label_parts)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                label_parts[-1] += f"-{seen[key]}"
        stacks.append(
            Stack(
                study_instance_uid=cluster[0].study_instance_uid,
                series_instance_uid=cluster[0].series_instance_uid,
                label=" ".join(label_parts) if label_parts else None,
                instances=tuple(cluster),
                series_stack_count=len(parts),
                series_orientation_count=orientation_counts,
            )
        )
    return stacks


def _split_parts(headers: list[InstanceHeader]) -> list[tuple[list[str], list[InstanceHeader]]]:
    """The series' instances by image type, then echo time, then orientation; each part with its labels
    (the Dixon output or image type when the types differ, the TE when the echoes do)."""
    by_type: dict[tuple[str, ...], list[InstanceHeader]] = {}
    for h in headers:
        by_type.setdefault(h.image_type, []).append(h)
    parts: list[tuple[list[str], list[InstanceHeader]]] = []
    for image_type, members in by_type.items():
        echoes: dict[float | None, list[InstanceHeader]] = {}
        for h in members:
            echoes.setdefault(None if h.echo_time is None else round(h.echo_time, 1), []).append(h)
        # Diffusion and multi-echo GRE readouts keep one stack when only TE varies slightly.
        for te, echo_members in echoes.items():
            for cluster in _orientation_clusters(echo_members):
                labels: list[str] = []
                if len(by_type) > 1:
                    labels.append(_dixon_label(image_type) or "/".join(image_type[2:4]) or "?")
                if len(echoes) > 1:
                    labels.append(f"TE{te:g}" if te is not None else "TE?")
                parts.append((labels, cluster))
    return parts


def _series_order_key(stack: Stack) -> tuple:
    h = stack.first
    times = [t for t in (h.series_date + h.series_time, h.acquisition_date + h.acquisition_time) if t.strip()]
    number = h.series_number if h.series_number is not None else 1 << 30
    return (times[0] if times else "~", number, h.series_instance_uid, stack.label or "")


def group_studies(headers: Iterable[InstanceHeader]) -> Iterator[Study]:
    """Group headers into studies (ordered by Study UID) with stacks in acquisition order."""
    studies: dict[str, dict[str, list[InstanceHeader]]] = {}
    for h in headers:
        studies.setdefault(h.study_instance_uid, {}).setdefault(h.series_instance_uid, []).append(h)
    for study_uid in sorted(studies):
        study = Study(study_uid)
        for series_headers in studies[study_uid].values():
            study.stacks.extend(split_series(series_headers))
        study.stacks.sort(key=_series_order_key)
        yield study
