"""Patient-safety checks that hold whatever protocol a study is audited against: contrast given
despite a recorded or derived contraindication, and an MRI for a patient with a device.

A contrast-free protocol simply ignores post-contrast series and a CT protocol knows nothing of
implants, so without these checks a contraindicated injection or an unchecked pacemaker would pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocolcheck.audit.facts import StudyFacts
from protocolcheck.audit.matching import considered, quotes
from protocolcheck.classify import SeriesClass
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.findings import Finding, FindingCode, Severity
from protocolcheck.clinical.protocol import Protocol

# statements that make the contrast-free exam the appropriate one, where the protocol cites them
CONTRAST_FREE_CITATIONS = ("acr-plexus-wo-appropriate", "acr-plexopathy-2021")
# the statement naming the alternative when MRI is contraindicated, where the protocol cites it
MRI_ALTERNATIVE_CITATIONS = ("seed-ct-when-mri-contraindicated",)


@dataclass(frozen=True)
class DeviceMention:
    """A device named in the clinical text (order, worklist item, context), as the clinical core read it."""

    label: str  # e.g. "cardiac pacemaker or defibrillator"
    source: str  # where it was named, e.g. "indication", "Requested Procedure Description"
    text: str = ""  # the words that named it


def _context(context: ClinicalContext | None) -> str:
    """``the clinical context (ctx.csv line 3)``: where a fact was recorded, when known."""
    source = context.source if context is not None else ""
    return f"the clinical context ({source})" if source else "the clinical context"


def _cited(protocol: Protocol | None, ids: Sequence[str]) -> tuple[str, ...]:
    return tuple(i for i in ids if protocol is not None and i in protocol.citations)[:1]


def check_contrast_safety(protocol: Protocol | None, series: Sequence[SeriesClass], context: ClinicalContext | None,
                          *, gadolinium_egfr_below: float | None = None,
                          reasons: Mapping[str, str] | None = None) -> list[Finding]:
    """Post-contrast series in a study whose patient should not have had that agent: ``reasons`` are the
    clinical core's answers (``{"gadolinium": why, "iodinated": why}``: recorded, derived from the eGFR,
    or read in the text); without them, the context's flags and ``gadolinium_egfr_below`` (the rules'
    eGFR policy) decide."""
    modality = protocol.modality if protocol is not None else ""
    if reasons is not None:
        agents = {"gadolinium": ("MR", "gadolinium"), "iodinated": ("CT", "iodinated contrast")}
        return _contrast_findings(protocol, series, context, modality,
                                  [(*agents[k], _why(v)) for k, v in reasons.items() if k in agents])
    if context is None:
        return []
    found: list[tuple[str, str, str]] = []  # (modality, agent, why)
    if context.gadolinium_contraindicated:
        found.append(("MR", "gadolinium", "gadolinium recorded as contraindicated"))
    elif (context.egfr is not None and gadolinium_egfr_below is not None and context.egfr < gadolinium_egfr_below):
        found.append(("MR", "gadolinium", f"eGFR {context.egfr:g} is below {gadolinium_egfr_below:g} mL/min/1.73 m2"))
    if context.iodinated_contrast_contraindicated:
        found.append(("CT", "iodinated contrast", "iodinated contrast recorded as contraindicated"))
    return _contrast_findings(protocol, series, context, modality, [(m, a, _why(w)) for m, a, w in found])


def _why(reason: str) -> str:
    """A reason as the clinical core words it ("eGFR 20 is below 30 mL/min/1.73 m2"), for a sentence."""
    return reason.replace("mL/min/1.73 m2", "mL/min/1.73 m\u00b2")


def _contrast_findings(protocol: Protocol | None, series: Sequence[SeriesClass], context: ClinicalContext | None,
                       modality: str, reasons: Sequence[tuple[str, str, str]]) -> list[Finding]:
    findings = []
    for agent_modality, agent, why in reasons:
        post = [s for s in series if s.post_contrast is True and (s.modality or modality) == agent_modality]
        if not post:
            continue
        cited = _cited(protocol, CONTRAST_FREE_CITATIONS)
        findings.append(Finding(
            code=FindingCode.CONTRAST_CONTRAINDICATED, severity=Severity.ERROR,
            summary=f"{agent.capitalize()} was given although it should be avoided for this patient ({why})",
            requirement="contrast-safety", requirement_name="No contrast agent the patient should not receive",
            expected=f"no {agent}: the exam without contrast is the appropriate one",
            found=tuple(considered(s, [f"acquired after {agent}"]) for s in post),
            action="Tell the radiologist in charge today, and check the patient and the contrast record",
            series=tuple(s.series_instance_uid for s in post),
            citations=cited, guideline=quotes(protocol, cited),
            evidence={"context": context.source if context else "", "agent": agent, "why": why,
                      "post_contrast_series": {s.series_instance_uid: s.evidence.get("post_contrast", [])
                                               for s in post}}))
    return findings


def check_mri_safety(protocol: Protocol | None, facts: StudyFacts, series: Sequence[SeriesClass],
                     context: ClinicalContext | None, devices: Sequence[DeviceMention] = (), *,
                     recorded: bool | None = None) -> list[Finding]:
    """An MRI for a patient whose context records MRI as contraindicated (``recorded``: the clinical
    core's answer, else the context's flag), or whose order, worklist item or context names a device:
    a warning to confirm the device's MR safety status."""
    modalities = {facts.modality} | {s.modality for s in series if s.modality}
    if "MR" not in modalities:
        return []
    if recorded is None:
        recorded = bool(context is not None and context.mri_contraindicated)
    if not recorded and not devices:
        return []
    if devices:
        named = "; ".join(f"{d.label} (named in {d.source}" + (f": \u2018{d.text}\u2019)" if d.text else ")")
                          for d in devices)
        summary = f"This MRI was done for a patient whose clinical information names a device: {named}"
    else:
        summary = f"This MRI was done although {_context(context)} records MRI as contraindicated"
    cited = _cited(protocol, MRI_ALTERNATIVE_CITATIONS)
    return [Finding(
        code=FindingCode.POSSIBLE_MRI_CONTRAINDICATION, severity=Severity.WARNING,
        summary=summary,
        requirement="mri-safety", requirement_name="MRI safety of implants and devices",
        expected="MRI only when every implant is MR Safe or MR Conditional and scanned within its labelled "
                 "conditions; otherwise CT with IV contrast, the alternative the guideline names",
        found_note=f"an MRI of {len({s.series_instance_uid for s in series if s.modality in ('MR', '')})} series",
        action="Confirm with the MR safety officer that the device is MR Conditional and was scanned within its "
               "conditions, and record the result",
        citations=cited, guideline=quotes(protocol, cited),
        evidence={"mri_contraindicated": recorded, "devices": [d.label for d in devices]})]
