"""The header facts the rules look at, collected once per stack (:class:`StackFacts`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from protocolcheck.classify.model import Vendor
from protocolcheck.classify.thresholds import THRESHOLDS as T
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.study import Stack

GAUSS_PER_TESLA = 10000.0


def vendor_of(manufacturer: str) -> Vendor:
    """Normalise Manufacturer (0008,0070) to a vendor family."""
    m = (manufacturer or "").strip().lower()
    if not m:
        return Vendor.UNKNOWN
    if "siemens" in m:
        return Vendor.SIEMENS
    if (m.startswith("ge ") or m in ("ge", "gems") or "ge medical" in m or "ge healthcare" in m
            or "general electric" in m):
        return Vendor.GE
    if "philips" in m:
        return Vendor.PHILIPS
    if "toshiba" in m or "canon" in m:
        return Vendor.CANON
    if "hitachi" in m or "fujifilm" in m:
        return Vendor.HITACHI
    if "uih" in m or "united imaging" in m or "united-imaging" in m:
        return Vendor.UIH
    return Vendor.OTHER


def field_tesla(value: float | None) -> float | None:
    """Magnetic Field Strength in tesla (a few systems write gauss, e.g. 15000)."""
    if value is None or value <= 0:
        return None
    if value > T.gauss_min:
        return value / GAUSS_PER_TESLA
    return value


@dataclass(frozen=True)
class StackFacts:
    """What the rules look at, collected once from the stack's instances."""

    first: InstanceHeader
    vendor: Vendor
    modality: str
    field_t: float | None
    tr: float | None
    te: float | None
    ti: float | None
    flip: float | None
    b_values: tuple[float, ...]
    image_type: tuple[str, ...]
    scan_options: frozenset[str]
    scanning_sequence: frozenset[str]
    sequence_variant: frozenset[str]
    seq_name: str  # Sequence Name or Pulse Sequence Name, lower case, without leading '*'
    vendor_seq: str  # GE (0019,109C) / Philips (2001,1020), lower case
    description: str
    protocol: str
    agents: tuple[str, ...]
    routes: tuple[str, ...]
    images: int

    @property
    def is_mr(self) -> bool:
        return self.modality == "MR" or (not self.modality and bool(
            self.scanning_sequence or self.seq_name or self.tr is not None or self.first.mr_acquisition_type))

    @property
    def names(self) -> str:
        """Sequence names joined for pattern tests."""
        pulse = self.first.pulse_sequence_name.lower().lstrip("*")
        return " ".join(n for n in (self.seq_name, self.vendor_seq, pulse) if n)

    @property
    def text(self) -> str:
        """Series text to read: SeriesDescription, then ProtocolName (not GE's, which is often exam-level)."""
        parts = [self.description]
        if (self.protocol and self.protocol.lower() != self.description.lower()
                and (self.vendor is not Vendor.GE or not self.description)):
            parts.append(self.protocol)
        return " | ".join(p for p in parts if p).lower()

    def text_source(self) -> str:
        return "SeriesDescription" if self.description else ("ProtocolName" if self.protocol else "text")


def _first_number(values: Iterable[float | None]) -> float | None:
    for v in values:
        if v is not None:
            return v
    return None


def _split_tokens(values: Iterable[str]) -> frozenset[str]:
    """Upper-case tokens; Toshiba/Canon write combined values such as 'SE_EP', so split on '_' too."""
    out: set[str] = set()
    for v in values:
        v = v.strip().upper()
        if v:
            out.add(v)
            out.update(p for p in re.split(r"[_\s]+", v) if p)
    return frozenset(out)


def _b_values(hs: Iterable[InstanceHeader]) -> tuple[float, ...]:
    """Diffusion b-values (0018,9087), and Siemens' b in the sequence name (*ep_b1000t) when that is absent."""
    hs = list(hs)
    b_values = sorted({round(x.diffusion_b_value, 1) for x in hs if x.diffusion_b_value is not None})
    for x in hs:
        m = re.search(r"ep_b(\d+)", x.sequence_name or x.pulse_sequence_name or "")
        if m:
            b = float(m.group(1))
            if b not in b_values:
                b_values.append(b)
    return tuple(sorted(b_values))


def facts_of(stack: Stack) -> StackFacts:
    """Collect the facts of one stack (the first image's, or the first value any image has)."""
    hs = stack.instances
    h = hs[0]
    image_type = tuple(dict.fromkeys(tuple(h.image_type) + tuple(h.frame_type)))
    options: set[str] = set()
    for x in hs:
        options.update(t.strip().upper() for t in x.scan_options + x.vendor_scan_options)
    tis = [x.inversion_time for x in hs if x.inversion_time is not None and x.inversion_time > 0]
    agents = tuple(dict.fromkeys(x.contrast_agent.strip() for x in hs if x.contrast_agent.strip()))
    routes = tuple(dict.fromkeys(x.contrast_route.strip() for x in hs if x.contrast_route.strip()))
    return StackFacts(
        first=h,
        vendor=vendor_of(h.manufacturer),
        modality=h.modality.upper(),
        field_t=field_tesla(h.field_strength),
        tr=_first_number(x.repetition_time for x in hs),
        te=_first_number(x.echo_time for x in hs),
        ti=min(tis) if tis else None,
        flip=_first_number(x.flip_angle for x in hs),
        b_values=_b_values(hs),
        image_type=tuple(t.upper() for t in image_type),
        scan_options=frozenset(options),
        scanning_sequence=_split_tokens(h.scanning_sequence),
        sequence_variant=frozenset(t.upper() for t in h.sequence_variant),
        seq_name=(h.sequence_name or h.pulse_sequence_name).strip().lstrip("*").lower(),
        vendor_seq=h.vendor_sequence.strip().lower(),
        description=h.series_description.strip(),
        protocol=h.protocol_name.strip(),
        agents=agents,
        routes=routes,
        images=stack.frame_count,
    )
