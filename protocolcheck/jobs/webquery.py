"""Audit the studies of a DICOMweb archive: search, read headers (metadata only), audit, save.

The audit is the engine every path uses (:func:`protocolcheck.audit.engine.audit_records`) on the
reader's own records. With a results store the run is incremental: a study whose series and
instance counts (as QIDO-RS reports them) and audit settings are those of its stored audit, judged
by the same library and code, is not fetched again; its stored audit is reported instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocolcheck.audit.engine import AuditOptions, audit_records
from protocolcheck.clinical.findings import AuditResult
from protocolcheck.jobs.fingerprint import fingerprint
from protocolcheck.jobs.store import Store
from protocolcheck.net.common import NetError
from protocolcheck.net.dicomweb import DicomwebSource
from protocolcheck.net.qr import StudyMatch

Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


def _silent(items: Iterable[Any], _label: str, _length: int) -> Iterable[Any]:
    return items


def study_fingerprint(match: StudyMatch, settings: str) -> str:
    """What says a study is unchanged without fetching it: its UID and counts, and the audit settings."""
    return fingerprint([("study", match.study_instance_uid), ("series", match.series),
                        ("instances", match.instances)], settings)


@dataclass
class WebRun:
    """What a DICOMweb audit did: the audits (fresh and stored), what failed, and the traffic."""

    results: list[AuditResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    audited: int = 0
    unchanged: int = 0
    bytes_received: int = 0


def audit_dicomweb(source: DicomwebSource, matches: Sequence[StudyMatch], options: AuditOptions, *,
                   store: Store | None = None, library_version: str = "", settings: str = "",
                   progress: Progress = _silent) -> WebRun:
    """Audit each study in ``matches``; a study that cannot be fetched is a failure, the rest go on.
    A :class:`~protocolcheck.jobs.store.StoreError` while saving stops the run (the store is broken)."""
    run = WebRun()
    stored = store.current(m.study_instance_uid for m in matches) if store is not None else {}
    for match in progress(matches, "Auditing studies", len(matches)):
        print_ = study_fingerprint(match, settings)
        latest = stored.get(match.study_instance_uid)
        if store is not None and latest is not None and latest[:2] == (print_, library_version):
            run.results.extend(store.results([latest[2]]).values())
            run.unchanged += 1
            continue
        try:
            records = list(source.study_records(match))
        except NetError as exc:
            run.failures.append(f"{match.label()}: {exc}")
            continue
        results = list(audit_records(records, options))
        run.results.extend(results)
        run.audited += len(results)
        if store is not None:
            for result in results:
                store.save(result, fingerprint=print_, library_version=library_version, source="query-dicomweb")
    run.bytes_received = source.bytes_received
    return run
