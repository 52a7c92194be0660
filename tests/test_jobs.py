"""Job lock (real processes) and incremental planning over real DICOM files written by synth."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from protocolcheck.clinical.findings import AuditResult, Status
from protocolcheck.jobs.incremental import JobLock, LockHeld, Plan, default_lock_path, plan_run
from protocolcheck.jobs.store import Store
from protocolcheck.testing import synth

ROOT = Path(__file__).resolve().parents[1]
LIB = "L1"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, "JOB-1"), root / "one")
    synth.write_study(synth.pelvis_study(synth.Vendor.GE, "JOB-2"), root / "two")
    (root / "README.txt").write_text("not dicom")
    (root / "broken.dcm").write_bytes(b"\x00" * 50)
    return root


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "jobs.db")
    yield s
    s.close()


def audit_all(plan: Plan, store: Store, version: str = LIB) -> None:
    """Stand-in for the audit engine: store one result per planned study."""
    for work in plan.to_audit:
        first = work.headers[0]
        result = AuditResult(work.study_instance_uid, first.accession_number, first.study_date, first.modality,
                             first.study_description, None, Status.NO_PROTOCOL, ())
        store.save(result, fingerprint=work.fingerprint, library_version=version)


def study_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_first_run_reads_everything_second_run_nothing(corpus: Path, store: Store) -> None:
    files = len(study_files(corpus))
    first = plan_run([corpus], store, library_version=LIB)
    assert first.parsed == files == first.files
    assert first.studies == 2 and len(first.to_audit) == 2 and not first.current
    assert {h.accession_number for w in first.to_audit for h in w.headers} == {"JOB-1", "JOB-2"}
    assert sum(len(w.headers) for w in first.to_audit) >= files - 2
    assert [u.path for u in first.unreadable] == [str(corpus / "broken.dcm")]
    audit_all(first, store)

    second = plan_run([corpus], store, library_version=LIB)
    assert second.parsed == 0  # nothing was opened
    assert second.to_audit == [] and set(second.current) == set(first.fingerprints)
    assert second.fingerprints == first.fingerprints
    # unchanged problem files are still reported, from the index
    assert [u.reason for u in second.unreadable] == [u.reason for u in first.unreadable]
    assert {Path(s.path).name for s in second.skipped} == {"README.txt"}


def test_changed_file_reaudits_only_its_study(corpus: Path, store: Store) -> None:
    audit_all(plan_run([corpus], store, library_version=LIB), store)
    target = study_files(corpus / "one")[0]
    data = target.read_bytes()
    target.write_bytes(data)  # same bytes, new mtime
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 5_000_000_000))
    plan = plan_run([corpus], store, library_version=LIB)
    assert [w.headers[0].accession_number for w in plan.to_audit] == ["JOB-1"]
    assert plan.parsed == len(study_files(corpus / "one"))  # the changed file, then the rest of its study
    assert len(plan.current) == 1
    audit_all(plan, store)
    assert len(store.history(plan.to_audit[0].study_instance_uid)) == 2  # history kept


def test_new_and_deleted_files_change_the_fingerprint(corpus: Path, store: Store) -> None:
    first = plan_run([corpus], store, library_version=LIB)
    audit_all(first, store)
    victim = study_files(corpus / "two")[-1]
    victim.unlink()
    plan = plan_run([corpus], store, library_version=LIB)
    assert [w.headers[0].accession_number for w in plan.to_audit] == ["JOB-2"]
    assert str(victim) not in store.file_index([str(corpus)])
    audit_all(plan, store)
    # a renamed (moved) file is the same instance: nothing to re-audit
    moved = study_files(corpus / "one")[0]
    shutil.move(moved, corpus / "one" / "renamed.dcm")
    plan = plan_run([corpus], store, library_version=LIB)
    assert plan.to_audit == [] and plan.parsed == 1


def test_library_version_settings_and_force(corpus: Path, store: Store) -> None:
    audit_all(plan_run([corpus], store, library_version=LIB), store)
    assert len(plan_run([corpus], store, library_version="L2").to_audit) == 2
    assert len(plan_run([corpus], store, library_version=LIB, settings="trauma=2024-01-01").to_audit) == 2
    forced = plan_run([corpus], store, library_version=LIB, force=True)
    assert len(forced.to_audit) == 2 and all(w.headers for w in forced.to_audit)
    assert len(plan_run([corpus], store, library_version=LIB).to_audit) == 0


def test_subfolder_run_uses_the_same_index(corpus: Path, store: Store) -> None:
    audit_all(plan_run([corpus], store, library_version=LIB), store)
    sub = plan_run([corpus / "one"], store, library_version=LIB)
    assert sub.parsed == 0 and sub.studies == 1 and not sub.to_audit


def test_missing_path_raises(store: Store, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        plan_run([tmp_path / "nope"], store, library_version=LIB)


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from protocolcheck.jobs.incremental import JobLock
    with JobLock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.readline()
""")


def test_lock_excludes_a_second_process(tmp_path: Path) -> None:
    lock_file = tmp_path / "job.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(lock_file)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as info:
            JobLock(lock_file).acquire()
        assert info.value.pid == holder.pid
        assert f"another run holds the lock (pid {holder.pid})" in str(info.value)
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    with JobLock(lock_file):  # released when the holder ended
        assert lock_file.read_text().strip() == str(os.getpid())


def test_lock_released_when_holder_dies(tmp_path: Path) -> None:
    lock_file = tmp_path / "job.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(lock_file)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait(timeout=30)
    with JobLock(lock_file), pytest.raises(LockHeld):
        JobLock(lock_file).acquire()  # a second open in the same process is excluded too
    with JobLock(lock_file):  # released on leaving the block: the next run gets it
        assert lock_file.read_text().strip() == str(os.getpid())


def test_default_lock_path(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    a = default_lock_path(db, [tmp_path / "x", tmp_path / "y"])
    assert a.parent == tmp_path and a.name.startswith("r.db.audit-") and a.suffix == ".lock"
    assert a == default_lock_path(db, [tmp_path / "y", tmp_path / "x"])
    assert a != default_lock_path(db, [tmp_path / "x"])
    assert default_lock_path("postgresql://u@h/db", ["/data"]).name.startswith("protocolcheck-audit-")


# -- the audit command with a results store ------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> object:
    from click.testing import CliRunner

    from protocolcheck.cli import main

    return CliRunner().invoke(main, list(args), env=env)


def test_audit_twice_skips_unchanged_studies(corpus: Path, tmp_path: Path) -> None:
    import json

    db = str(tmp_path / "qa.db")
    first = run_cli("audit", str(corpus), "--db", db, "--format", "json")
    assert first.exit_code in (0, 1), first.output
    assert "2 audited, 0 unchanged (skipped)" in first.output
    second = run_cli("audit", str(corpus), "--db", db, "--format", "json")
    assert second.exit_code == first.exit_code
    assert "0 audited, 2 unchanged (skipped)" in second.output

    def records(result: object) -> list[dict]:
        text = result.stdout  # type: ignore[attr-defined]
        return json.loads(text[text.index("["):])

    assert records(second) == records(first)  # stored results print exactly as fresh ones
    with Store.open(db) as store:
        assert store.count_audits() == 2
        runs = store.runs()
        assert list(runs["audited"]) == [2, 0] and list(runs["skipped"]) == [0, 2]
    forced = run_cli("audit", str(corpus), "--db", db, "--force", "-q", "--format", "json")
    assert forced.exit_code == first.exit_code
    with Store.open(db) as store:
        assert store.count_audits() == 4  # history: both audits of each study remain
        assert len(store.history(records(first)[0]["study_instance_uid"])) == 2


def test_audit_settings_change_reaudits(corpus: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "qa.db")
    assert run_cli("audit", str(corpus), "--db", db, "-q", "--format", "json").exit_code in (0, 1)
    again = run_cli("audit", str(corpus), "--db", db, "--format", "json", "--trauma-date", "2025-02-01")
    assert "2 audited, 0 unchanged" in again.output


def test_audit_lock_held_exits_3(corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "qa.db"
    lock_file = default_lock_path(str(db), [str(corpus)])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(lock_file)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_cli("audit", str(corpus), "--db", str(db), "--format", "json")
        assert result.exit_code == 3
        assert f"another run holds the lock (pid {holder.pid})" in result.output
        explicit = run_cli("audit", str(corpus), "--no-db", "--lock", str(lock_file), "--format", "json")
        assert explicit.exit_code == 3
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    assert run_cli("audit", str(corpus), "--db", str(db), "-q", "--format", "json").exit_code in (0, 1)


def test_audit_unwritable_store_exits_3(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("audit", str(corpus), "--db", str(blocker / "qa.db"), "--format", "json")
    assert result.exit_code == 3 and "cannot create the folder of results store" in result.output


def test_audit_default_store_and_no_db(corpus: Path, tmp_path: Path) -> None:
    env_db = tmp_path / "env" / "results.db"
    env = {"PROTOCOLCHECK_DB": str(env_db)}
    assert run_cli("audit", str(corpus), "-q", "--format", "json", env=env).exit_code in (0, 1)
    with Store.open(env_db) as store:
        assert store.count_audits() == 2
    none = run_cli("audit", str(corpus), "--no-db", "--format", "json",
                   env={"PROTOCOLCHECK_DB": str(tmp_path / "x.db")})
    assert none.exit_code in (0, 1) and "audited" not in none.stderr
    assert not (tmp_path / "x.db").exists()


def test_batch_audit_and_a_listener_write_the_same_store_at_once(corpus: Path, tmp_path: Path) -> None:
    """A nightly `audit` process and a listener-like writer process share one SQLite store."""
    from helpers import STORE_WRITER

    db = tmp_path / "shared.db"
    Store.open(db).close()
    script = tmp_path / "writer.py"
    script.write_text(STORE_WRITER)
    go = tmp_path / "go"
    listener = subprocess.Popen([sys.executable, str(script), str(ROOT), str(db), "listen", "120", str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    batch = subprocess.Popen([sys.executable, "-m", "protocolcheck", "audit", str(corpus), "--db", str(db),
                              "--format", "json", "-o", str(tmp_path / "out.json")],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    go.write_text("go")
    _out, err = listener.communicate(timeout=300)
    assert listener.returncode == 0, err
    _, batch_err = batch.communicate(timeout=300)
    assert batch.returncode in (0, 1), batch_err
    assert "2 audited, 0 unchanged" in batch_err
    with Store.open(db) as store:
        assert store.count_audits() == 122
        assert set(store.runs()["outcome"]) == {"ok"}
    import sqlite3

    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_run_audit_job_streams_and_matches_a_plain_audit(corpus: Path, store: Store) -> None:
    from protocolcheck.audit.engine import AuditOptions, audit_paths
    from protocolcheck.clinical.library import load_library
    from protocolcheck.jobs.incremental import run_audit_job

    options = AuditOptions(library=load_library(None))
    plain = sorted((r.to_dict() for r in audit_paths([corpus], options)), key=lambda d: d["study_instance_uid"])
    first = run_audit_job([corpus], store, options, library_version=LIB, max_in_memory=5)  # spills to disk
    assert first.audited == 2 and first.skipped == 0
    assert sorted((r.to_dict() for r in first.results), key=lambda d: d["study_instance_uid"]) == plain
    moved = study_files(corpus / "two")[0]
    shutil.move(moved, corpus / "two" / "moved.dcm")  # a renamed file: read again, but nothing changed
    second = run_audit_job([corpus], store, options, library_version=LIB)
    assert (second.audited, second.skipped, second.parsed) == (0, 2, 1)
    assert [r.to_dict() for r in second.results] == [r.to_dict() for r in first.results]


def test_folder_auditor_audits_and_stores_a_received_study(tmp_path: Path, store: Store) -> None:
    """listen/query's auditor: a study folder laid out as the SCP writes it (<series>/<instance>.dcm) is
    audited as ``audit`` would, and stored with the fingerprint of its instance UIDs and the settings."""
    import pydicom

    from protocolcheck.audit.engine import AuditOptions, audit_paths
    from protocolcheck.clinical.library import load_library
    from protocolcheck.jobs.fingerprint import instance_fingerprint
    from protocolcheck.jobs.incremental import FolderAuditor

    written = synth.write_study(synth.plexus_study(synth.Vendor.PHILIPS, "RECV-1", slices=2), tmp_path / "flat")
    folder = tmp_path / "received" / "study"
    sops = []
    for path in written:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        (folder / ds.SeriesInstanceUID).mkdir(parents=True, exist_ok=True)
        shutil.move(path, folder / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm")
        sops.append(ds.SOPInstanceUID)
    options = AuditOptions(library=load_library())
    auditor = FolderAuditor(options, store, library_version=LIB, settings="S1", source="listen")
    results = auditor.audit(folder)
    assert [r.to_dict() for r in results] == [r.to_dict() for r in audit_paths([folder], options)]
    assert [r.accession_number for r in results] == ["RECV-1"]
    auditor.save(folder, results)
    fingerprint, version, _audit_id = store.current([results[0].study_instance_uid])[results[0].study_instance_uid]
    assert (fingerprint, version) == (instance_fingerprint(sops, "S1"), LIB)
    assert fingerprint != instance_fingerprint(sops[1:], "S1") != instance_fingerprint(sops, "S2")
    FolderAuditor(options).save(folder, results)  # without a store: nothing to do, no error
    assert store.count_audits() == 1
