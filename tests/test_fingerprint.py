"""Fingerprints: a study's files, the audit settings, the library and the judging code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from protocolcheck.audit.engine import AuditOptions
from protocolcheck.clinical.context import ClinicalContext, load_context_csv
from protocolcheck.clinical.library import load_library
from protocolcheck.jobs.fingerprint import (
    JUDGING_STAGES,
    fingerprint,
    instance_fingerprint,
    library_version,
    settings_fingerprint,
    source_digest,
)


def test_fingerprints() -> None:
    parts = [("1.2.1", 100, 5), ("1.2.2", 120, 6)]
    assert fingerprint(parts) == fingerprint(list(reversed(parts)))
    assert fingerprint(parts) != fingerprint(parts[:1])
    assert fingerprint(parts) != fingerprint([("1.2.1", 100, 5), ("1.2.2", 120, 7)])
    assert fingerprint(parts, "trauma=2024-01-01") != fingerprint(parts, "trauma=2024-01-02")
    assert instance_fingerprint(["b", "a", "a"]) == instance_fingerprint(["a", "b"])


def test_library_version_follows_file_contents(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.yaml").write_text("id: a\n")
    v1 = library_version(lib)
    assert v1 == library_version(lib)
    (lib / "a.yaml").write_text("id: a\nrequirements: []\n")
    v2 = library_version(lib)
    (lib / "notes.txt").write_text("ignored")
    assert v1 != v2 == library_version(lib)


def test_settings_fingerprint_covers_every_option(tmp_path: Path) -> None:
    library = load_library(None)
    base = AuditOptions(library=library)
    variants = [
        AuditOptions(library=library, protocol_id="mr-lumbosacral-plexus-wwo"),
        AuditOptions(library=library, include_series=False),
        AuditOptions(library=library, default_context=ClinicalContext(trauma_date=dt.date(2025, 1, 1))),
    ]
    csv = tmp_path / "ctx.csv"
    csv.write_text("accession_number,trauma_date\nA1,2025-01-01\n")
    variants.append(AuditOptions(library=library, contexts=load_context_csv(csv)))
    texts = [settings_fingerprint(base)] + [settings_fingerprint(v) for v in variants]
    assert len(set(texts)) == len(texts)
    csv.write_text("accession_number,trauma_date\nA1,2025-01-02\n")
    assert settings_fingerprint(AuditOptions(library=library, contexts=load_context_csv(csv))) != texts[-1]
    assert settings_fingerprint(base) == settings_fingerprint(AuditOptions(library=library))


def test_source_digest_covers_the_stages_asked_for() -> None:
    whole = source_digest()
    judging = source_digest(JUDGING_STAGES)
    assert len(whole) == len(judging) == 64 and whole != judging
    assert source_digest(JUDGING_STAGES) == judging != source_digest(("dicom",))
