"""``query``'s loop: retrieve each matched study from the PACS, audit it, save the audit, delete the files.

One study at a time is on disk (:func:`~protocolcheck.net.qr.pull_studies` deletes it when the loop
moves on). A study that cannot be retrieved, or whose audit cannot be saved, is reported in its step;
the other studies are still audited.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

from protocolcheck.clinical.findings import AuditResult
from protocolcheck.jobs.incremental import FolderAuditor
from protocolcheck.jobs.store import StoreError
from protocolcheck.net.common import NetError, Peer, Timeouts, TlsOptions
from protocolcheck.net.qr import RetrieveMethod, StudyMatch, pull_studies


@dataclass(frozen=True)
class QueryStep:
    """One matched study: its audits, the retrieval's notes, and the error that stopped it (if any)."""

    match: StudyMatch | None  # None: the retrieval as a whole failed
    results: tuple[AuditResult, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None


def audit_matches(peer: Peer, matches: Sequence[StudyMatch], auditor: FolderAuditor, *, timeouts: Timeouts,
                  method: RetrieveMethod = RetrieveMethod.GET, move_port: int | None = None,
                  move_bind: str = "127.0.0.1", workdir: str | None = None,
                  move_tls: TlsOptions | None = None) -> Generator[QueryStep, None, None]:
    """Retrieve, audit and save each matched study in turn; one step per study.

    The retrieved files are deleted even when the caller stops early."""
    pulled_studies = pull_studies(peer, matches, method=method, move_port=move_port, move_bind=move_bind,
                                  workdir=workdir, timeouts=timeouts, move_tls=move_tls)
    try:
        for pulled in pulled_studies:
            if pulled.error is not None or pulled.folder is None:
                yield QueryStep(pulled.match, error=str(pulled.error))
                continue
            audits = auditor.audit(pulled.folder)
            error = None
            try:
                auditor.save(pulled.folder, audits)
            except StoreError as exc:
                error = str(exc)
            yield QueryStep(pulled.match, tuple(audits), tuple(pulled.notes), error)
    except NetError as exc:
        yield QueryStep(None, error=str(exc))
    finally:
        pulled_studies.close()
