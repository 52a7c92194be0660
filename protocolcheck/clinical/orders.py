"""Order texts and codes understood: modality, body part, contrast, laterality -> the exam, or "not understood".

The vocabulary is ``order_parsing`` of ``protocols/rules.yaml``.  An order is understood only when its
modality and its body part are both stated (in the description, or by a procedure code the rules
know); otherwise :attr:`ParsedOrder.understood` is False and the order check says so
(``order-not-understood``) instead of guessing: "pelvis" alone is not an MRI, "XR pelvis" is a radiograph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocolcheck.clinical.decision import Exam
from protocolcheck.clinical.rules import Rules, load_rules

_CONTRAST_WORDS = {"without": "without IV contrast", "with": "with IV contrast",
                   "without-and-with": "without and with IV contrast"}


@dataclass(frozen=True)
class ParsedOrder:
    """What an order's description and/or code say about the exam."""

    description: str
    code: str
    modality: str | None
    region: str | None
    contrast: str | None
    region_from_code: bool
    key: str | None
    candidates: tuple[str, ...]
    notes: tuple[str, ...] = ()
    laterality: str | None = None
    name: str = ""  # how messages name the exam ("Radiographs of the pelvis")

    @property
    def understood(self) -> bool:
        """Modality and body part are both known (the contrast may still be unstated)."""
        return self.modality is not None and self.region is not None

    def missing(self) -> list[str]:
        """What could not be read from the order ("the modality", "the body part")."""
        modality = "modality (MRI, CT, radiographs, ultrasound, nuclear medicine)"
        return [label for label, value in ((modality, self.modality), ("body part", self.region)) if value is None]

    def exam(self, rules: Rules) -> Exam:
        if self.key is not None:
            return Exam.of(rules.procedures[self.key])
        return Exam(None, self.name, self.modality or "", self.region or "", self.contrast or "")

    def to_dict(self, rules: Rules | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"description": self.description, "code": self.code or None, "modality": self.modality,
                                "region": self.region, "contrast": self.contrast, "laterality": self.laterality,
                                "understood": self.understood, "exam": self.name or None,
                                "procedure_key": self.key, "notes": list(self.notes)}
        if rules is not None and self.key:
            proc = rules.procedures[self.key]
            data["procedure"] = proc.name
            data["protocol"] = proc.protocol
        return data


def _label(rules: Rules, axis: str, value: str | None) -> str:
    return next((v.label for v in rules.order_parsing[axis] if v.value == value), value or "")


def exam_name(rules: Rules, modality: str | None, region: str | None, contrast: str | None) -> str:
    """A readable name for an exam the rules do not list: "radiographs of the pelvis", "MR angiography of the hip"."""
    text = _label(rules, "modality", modality) or "An exam"
    if region:
        text += f" of the {_label(rules, 'region', region)}"
    if contrast in _CONTRAST_WORDS and modality not in ("XR", "US"):
        text += " " + _CONTRAST_WORDS[contrast]
    return text


def parse_order(description: str, code: str = "", rules: Rules | None = None) -> ParsedOrder:
    """Identify the ordered exam from its description and/or procedure (CPT) code; never guesses."""
    rules = rules or load_rules()
    text = (description or "").strip()
    code = (code or "").strip().upper()
    notes: list[str] = []

    def first(axis: str) -> str | None:
        return next((v.value for v in rules.order_parsing[axis] if v.pattern.search(text)), None)

    modality, region, contrast, side = first("modality"), first("region"), first("contrast"), first("laterality")
    region_from_code = False
    if code:
        coded = next((p for p in rules.procedures.values() if code in p.codes), None)
        if coded is None:
            notes.append(f"procedure code {code} is not known to the rules; the description decides")
        elif modality and modality != coded.modality:
            notes.append(f"procedure code {code} is {coded.name}, but the description names another modality; "
                         "the description decides")
        else:
            modality = modality or coded.modality
            if region is None:
                region, region_from_code = coded.region, True
            contrast = contrast or coded.contrast
    if modality is None or region is None:
        return ParsedOrder(text, code, modality, region, contrast, region_from_code, None, (), tuple(notes), side,
                           exam_name(rules, modality, region, contrast) if modality or region else "")
    candidates = tuple(p.key for p in rules.procedures.values()
                       if p.modality == modality and p.region == region
                       and (contrast in (None, p.contrast) or (contrast == "without" and p.contrast == "none")))
    key = candidates[0] if len(candidates) == 1 else None
    name = rules.procedures[key].name if key else exam_name(rules, modality, region, contrast)
    return ParsedOrder(text, code, modality, region, contrast, region_from_code, key, candidates, tuple(notes), side,
                       name)
