"""Integrity findings: what the header readers noted as damaged becomes a finding a technologist can act on.

The readers keep a file whose header is usable but whose values are not (``RepetitionTime = "abc"``) or
whose pixels are incomplete (cut short, shorter than rows x columns x bits x frames, encapsulated
fragments missing) and note the problem in :attr:`InstanceHeader.value_problems`. Here each problem
becomes a warning naming the element, the series and the files:

- ``truncated-pixel-data`` for Pixel Data problems (:mod:`protocolcheck.dicom.pixels`);
- ``malformed-value`` for any other element.

Files with the same problem in the same series make one finding (the first files named, all counted).
"""

from __future__ import annotations

from protocolcheck.clinical.findings import Finding, FindingCode, Severity
from protocolcheck.dicom.pixels import PIXEL_PROBLEM_PREFIX
from protocolcheck.dicom.study import Study

NAMED_FILES = 5  # files named in a finding's message (all of them, up to EVIDENCE_FILES, in its evidence)
EVIDENCE_FILES = 100


def integrity_findings(study: Study) -> list[Finding]:
    """One warning per (series, element, problem) found in the study's headers."""
    groups: dict[tuple[str, str], dict[str, object]] = {}
    for stack in study.stacks:
        for header in stack.instances:
            for problem in header.value_problems:
                key = (header.series_instance_uid, problem)
                group = groups.setdefault(key, {"header": header, "paths": {}})
                group["paths"][header.path] = None  # type: ignore[index] - ordered set (frames share a file)
    findings = []
    for (series_uid, problem), group in groups.items():
        header = group["header"]
        paths = list(group["paths"])  # type: ignore[call-overload]
        element, _sep, detail = problem.partition(":")
        pixel = problem.startswith(PIXEL_PROBLEM_PREFIX)
        code = FindingCode.TRUNCATED_PIXEL_DATA if pixel else FindingCode.VALUE_PROBLEM
        series = f"#{header.series_number if header.series_number is not None else '?'} " \
                 f"'{header.series_description or header.protocol_name or '-'}'"  # type: ignore[attr-defined]
        files = ", ".join(paths[:NAMED_FILES]) + (f" and {len(paths) - NAMED_FILES} more" if len(paths) > NAMED_FILES
                                                  else "")
        count = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
        if pixel:
            summary = (f"Pixel Data incomplete in {count} of series {series}: {detail.strip()} ({files}). "
                       "The images are damaged")
            action = "Send or export the series again from the scanner or PACS"
        else:
            summary = (f"Malformed {element} in {count} of series {series}: {detail.strip()} ({files}). "
                       "The value was ignored")
            action = f"Check the series' {element} on the scanner and correct the header if it matters for this protocol"
        findings.append(Finding(code=code, severity=Severity.WARNING, summary=summary, action=action,
                                series=(series_uid,),
                                evidence={"element": element, "problem": detail.strip(), "files": paths[:EVIDENCE_FILES],
                                          "file_count": len(paths)}))
    return findings
