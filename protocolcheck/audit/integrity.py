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
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.study import Study

NAMED_FILES = 5  # files named in a finding's message (all of them, up to EVIDENCE_FILES, in its evidence)
EVIDENCE_FILES = 100


def integrity_findings(study: Study) -> list[Finding]:
    """One warning per (series, element, problem) found in the study's headers."""
    first: dict[tuple[str, str], InstanceHeader] = {}
    files: dict[tuple[str, str], dict[str, None]] = {}  # ordered sets (the frame groups of a file share it)
    for stack in study.stacks:
        for header in stack.instances:
            for problem in header.value_problems:
                key = (header.series_instance_uid, problem)
                first.setdefault(key, header)
                files.setdefault(key, {})[header.path] = None
    findings = []
    for (series_uid, problem), header in first.items():
        paths = list(files[(series_uid, problem)])
        element, _sep, detail = problem.partition(":")
        pixel = problem.startswith(PIXEL_PROBLEM_PREFIX)
        code = FindingCode.TRUNCATED_PIXEL_DATA if pixel else FindingCode.VALUE_PROBLEM
        number = header.series_number if header.series_number is not None else "?"
        series = f"#{number} '{header.series_description or header.protocol_name or '-'}'"
        more = f" and {len(paths) - NAMED_FILES} more" if len(paths) > NAMED_FILES else ""
        named = ", ".join(paths[:NAMED_FILES]) + more
        count = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
        if pixel:
            summary = f"Pixel Data incomplete in {count} of series {series}: {detail.strip()} ({named})."
            action = "Send or export the series again from the scanner or the archive"
        else:
            summary = (f"Malformed {element} in {count} of series {series}: {detail.strip()} ({named}); "
                       "the value was ignored.")
            action = f"Check the series' {element} on the scanner and correct the header if it matters"
        evidence = {"element": element, "problem": detail.strip(), "files": paths[:EVIDENCE_FILES],
                    "file_count": len(paths)}
        findings.append(Finding(code=code, severity=Severity.WARNING, summary=summary, action=action,
                                series=(series_uid,), evidence=evidence))
    return findings
