"""``duplicate-instance``: one SOP Instance UID held by files with different content.

A SOP Instance UID names one instance (PS3.3 C.12.1.1.1); two files under it that differ mean a
sender reused a UID or a corrected image was resent. The storage SCP keeps both (it never overwrites
an acknowledged instance), and the audit names both here so that someone decides which is right.
Identical copies (a resend, an export made twice) are not reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from protocolcheck.clinical.findings import Finding, FindingCode, Severity
from protocolcheck.dicom.records import InstanceHeader


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return sha.hexdigest()


def duplicate_findings(instances: Iterable[InstanceHeader]) -> list[Finding]:
    """One warning per SOP Instance UID held by two or more files whose bytes differ, naming the files."""
    paths: dict[str, list[str]] = {}
    series: dict[str, str] = {}
    for header in instances:
        if header.sop_instance_uid:
            paths.setdefault(header.sop_instance_uid, []).append(header.path)
            series[header.sop_instance_uid] = header.series_instance_uid
    findings = []
    for uid, files in sorted(paths.items()):
        files = sorted(set(files))
        if len(files) < 2 or len({_digest(f) for f in files}) < 2:
            continue
        findings.append(Finding(
            code=FindingCode.DUPLICATE_INSTANCE, severity=Severity.WARNING,
            summary=(f"SOP Instance UID {uid} is held by {len(files)} files with different content "
                     f"({', '.join(files)}); all were kept and counted"),
            action="Check which image is right and remove the other from the PACS, then audit the study again",
            series=(series[uid],) if series.get(uid) else (),
            evidence={"sop_instance_uid": uid, "paths": files}))
    return findings
