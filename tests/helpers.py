"""Helpers shared by test modules (import them: ``from helpers import make_result``); fixtures live in
conftest.py, network peers in peers.py, hand-built DICOM bytes in rawdicom.py."""

from __future__ import annotations

import textwrap

from protocolcheck.clinical.findings import AuditResult, Finding, FindingCode, Severity, Status, status_for


def make_result(uid: str, *, status: Status | None = None, findings: tuple[Finding, ...] = (),
                study_date: str = "20240115", station: str = "MR1", manufacturer: str = "SIEMENS",
                institution: str = "General", protocol: str | None = "ls-plexus-mri",
                timing: dict | None = None, accession: str | None = None,
                description: str = "MR LS PLEXUS") -> AuditResult:
    return AuditResult(
        study_instance_uid=uid, accession_number=accession or f"A{uid[-4:]}", study_date=study_date,
        modality="MR", study_description=description, protocol=protocol,
        status=status or status_for(findings), findings=findings, timing=timing, station_name=station,
        manufacturer=manufacturer, institution=institution, patient_name="Doe^Jane", patient_id="P1",
        series=({"series_instance_uid": uid + ".1", "series_description": "T1 COR", "weighting": "T1"},),
    )


MISSING_STIR = Finding(FindingCode.MISSING_SEQUENCE, Severity.ERROR, "no fat-suppressed T2 or STIR",
                       requirement="t2-fs-coronal", citations=("seed:plexus-sequences",))
TOO_EARLY = Finding(FindingCode.TRAUMA_TOO_EARLY, Severity.WARNING, "10 days after injury; wait ~1 month",
                    evidence={"days": 10})


# A process that writes `count` audits and file-index rows into a results store (argv: repo, db, name, count,
# go-file): two of them at once show that concurrent writers queue rather than fail.
STORE_WRITER = textwrap.dedent("""
    import sys, time, pathlib
    sys.path.insert(0, sys.argv[1])
    from protocolcheck.clinical.findings import AuditResult, Finding, FindingCode, Severity, Status
    from protocolcheck.jobs.store import Store, FileEntry, FileKind
    db, name, count, go = sys.argv[2], sys.argv[3], int(sys.argv[4]), pathlib.Path(sys.argv[5])
    store = Store.open(db)
    while not go.exists():
        time.sleep(0.005)
    run = store.begin_run("writer " + name)
    for i in range(count):
        uid = f"2.25.{name}.{i}"
        f = Finding(FindingCode.MISSING_SEQUENCE, Severity.ERROR, "missing " + name, requirement="r" + str(i % 3))
        result = AuditResult(uid, "ACC" + str(i), "20240101", "MR", "d", "p", Status.FAIL, (f,), station_name=name)
        store.save(result, fingerprint="fp", library_version="L", run_id=run, source=name)
        store.index_files([FileEntry(f"/data/{name}/{i}.dcm", i, i, FileKind.IMAGE, uid, uid + ".1")])
    store.finish_run(run, audited=count, skipped=0)
    print("done", name)
""")
