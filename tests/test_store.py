"""Results store: real SQLite files in tmp_path, history kept, filters, file index, concurrent writers."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MISSING_STIR, STORE_WRITER, TOO_EARLY, make_result

from protocolcheck.clinical.findings import (
    Considered,
    Finding,
    FindingCode,
    Quote,
    Severity,
    Status,
)
from protocolcheck.jobs.store import (
    SCHEMA_VERSION,
    FileEntry,
    FileKind,
    Filters,
    Store,
    StoreError,
    StoreMissing,
    days_after_trauma,
    result_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]


STRUCTURED = Finding(
    FindingCode.MISSING_SEQUENCE, Severity.INFO, "Required series missing: STIR", requirement="fluid-fat-suppressed",
    requirement_name="Fluid-sensitive fat-suppressed", expected="STIR or fat-saturated T2, before contrast",
    found=(Considered("1.2.3.5", "#5 'COR STIR'", "oblique coronal T2 FLAIR 2D", ("inversion FLAIR, TI 2500 ms",),
                      None, 5),),
    action="Add an oblique coronal STIR (or fat-saturated T2) before contrast", note="A STIR belongs before contrast.",
    citations=("seed-plexus-sequences",),
    guideline=(Quote("seed-plexus-sequences", "MRI should include ...", "Summary"),),
    deviation="suspected hematoma, imaging needed now", deviated_from=Severity.ERROR, series=("1.2.3.5",))


def test_structured_findings_round_trip_with_their_columns(store: Store) -> None:
    audit_id = store.save(make_result("1.2.3.99", findings=(STRUCTURED, MISSING_STIR)))
    assert store.results([audit_id])[audit_id].findings == (STRUCTURED, MISSING_STIR)
    frame = store.findings([audit_id])
    row = frame.iloc[0]
    assert row["action"] == STRUCTURED.action and row["deviation"] == STRUCTURED.deviation
    assert row["detail"] == STRUCTURED.render(action=False, guideline=False) and "Action:" not in row["detail"]
    assert row["guideline"].startswith("\u201cMRI should include") and row["message"] == STRUCTURED.message
    assert frame.iloc[1]["action"] is None or frame.iloc[1]["action"] != frame.iloc[1]["action"]  # NULL / NaN


def _make_version_1(url: str) -> None:
    """Turn a store into what version 1 wrote: no action/detail/guideline/deviation columns."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        for column in ("action", "detail", "guideline", "deviation"):
            conn.execute(text(f"ALTER TABLE findings DROP COLUMN {column}"))
        conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()


def _version_1_store_is_migrated(url: str, uid: str) -> None:
    with Store.open(url) as store:
        old = store.save(make_result(uid, findings=(MISSING_STIR,)))
    _make_version_1(url)
    with Store.open(url, readonly=True) as store:  # read-only: read as it is, the new columns empty
        frame = store.findings([old])
        assert list(frame["message"]) == [MISSING_STIR.message] and frame["action"].isna().all()
    with Store.open(url) as store:  # writable: migrated in place, old rows kept
        new = store.save(make_result(uid, findings=(STRUCTURED,)))
        assert store.results([old, new]) == {old: store.results([old])[old], new: store.results([new])[new]}
        assert store.results([new])[new].findings == (STRUCTURED,)
        assert store.findings([new]).iloc[0]["action"] == STRUCTURED.action
        assert store.results([old])[old].findings == (MISSING_STIR,)
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar() == SCHEMA_VERSION
    engine.dispose()


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    _version_1_store_is_migrated(f"sqlite:///{tmp_path / 'v1.db'}", "1.2.3.77")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "results.db", keep_patient=True)
    yield s
    s.close()


def test_save_keeps_history_and_latest_is_newest(store: Store) -> None:
    first = store.save(make_result("1.2.3.1001", findings=(MISSING_STIR,)), fingerprint="f1", library_version="L1")
    second = store.save(make_result("1.2.3.1001"), fingerprint="f2", library_version="L1")
    store.save(make_result("1.2.3.1002", findings=(TOO_EARLY,)), fingerprint="g1", library_version="L1")

    history = store.history("1.2.3.1001")
    assert list(history["id"]) == [first, second]
    assert list(history["status"]) == ["fail", "pass"]
    latest = store.latest()
    assert len(latest) == 2
    row = latest.set_index("study_instance_uid").loc["1.2.3.1001"]
    assert row["status"] == "pass" and row["fingerprint"] == "f2"
    assert store.count_audits() == 3
    # findings of the first audit are still there
    findings = store.findings([first])
    assert list(findings["code"]) == ["missing-sequence"]
    assert list(findings["requirement"]) == ["t2-fs-coronal"]


def test_is_current_depends_on_fingerprint_and_library(store: Store) -> None:
    store.save(make_result("1.2.3.2001"), fingerprint="abc", library_version="L1")
    assert store.is_current("1.2.3.2001", "abc", "L1")
    assert not store.is_current("1.2.3.2001", "abc", "L2")
    assert not store.is_current("1.2.3.2001", "abd", "L1")
    assert not store.is_current("9.9.9", "abc", "L1")
    store.save(make_result("1.2.3.2001"), fingerprint="xyz", library_version="L2")
    assert store.is_current("1.2.3.2001", "xyz", "L2")
    assert not store.is_current("1.2.3.2001", "abc", "L1")  # only the latest audit counts


def test_stored_result_round_trips(store: Store) -> None:
    original = make_result("1.2.3.3001", findings=(MISSING_STIR, TOO_EARLY),
                           timing={"trauma_date": "2024-01-05", "days_after_trauma": 10})
    audit_id = store.save(original, fingerprint="f", library_version="L")
    rebuilt = store.results([audit_id])[audit_id]
    assert rebuilt.to_dict(include_patient=True) == original.to_dict(include_patient=True)
    assert result_from_dict(original.to_dict()).findings == original.findings


def test_patient_identifiers_are_not_stored_unless_asked(tmp_path: Path) -> None:
    """By default the store, like the reports, keeps no patient name or ID (audit --include-patient)."""
    with Store.open(tmp_path / "plain.db") as plain:
        audit_id = plain.save(make_result("1.2.3.3401"))
        assert plain.latest(include_patient=True)["patient_name"].tolist() == [""]
        assert plain.results([audit_id])[audit_id].patient_name == ""
    raw = (tmp_path / "plain.db").read_bytes()
    assert b"Doe^Jane" not in raw


def test_patient_columns_only_on_request(store: Store) -> None:
    store.save(make_result("1.2.3.3501"))
    assert "patient_name" not in store.latest().columns
    assert store.latest(include_patient=True)["patient_name"].tolist() == ["Doe^Jane"]


def test_latest_filters(store: Store) -> None:
    store.save(make_result("1.1", study_date="20240105", station="MR1", manufacturer="SIEMENS",
                           findings=(MISSING_STIR,)))
    store.save(make_result("1.2", study_date="20240220", station="MR2", manufacturer="GE MEDICAL SYSTEMS"))
    store.save(make_result("1.3", study_date="20240310", station="MR2", manufacturer="Philips",
                           protocol="ct-abdomen-pelvis", institution="North Clinic"))
    store.save(make_result("1.4", study_date="", station="MR1", status=Status.NO_PROTOCOL, protocol=None))

    def uids(**kw: object) -> set[str]:
        return set(store.latest(Filters(**kw))["study_instance_uid"])

    assert uids() == {"1.1", "1.2", "1.3", "1.4"}
    assert uids(since=dt.date(2024, 2, 1), until=dt.date(2024, 2, 29)) == {"1.2"}
    assert uids(until=dt.date(2024, 1, 5)) == {"1.1"}  # until is inclusive
    assert uids(protocols=("CT-ABDOMEN-PELVIS",)) == {"1.3"}
    assert uids(stations=("mr1",)) == {"1.1", "1.4"}
    assert uids(scanners=("ge", "philips")) == {"1.2", "1.3"}
    assert uids(institutions=("north",)) == {"1.3"}
    assert uids(statuses=("fail", "no-protocol")) == {"1.1", "1.4"}
    # a study without a date falls back to its audit day for date filters
    today = dt.datetime.now(dt.timezone.utc).date()
    assert "1.4" in uids(since=today - dt.timedelta(days=1))


def test_latest_is_chosen_before_filtering(store: Store) -> None:
    store.save(make_result("5.1", findings=(MISSING_STIR,)))
    store.save(make_result("5.1"))  # re-audited: now passes
    assert store.latest(Filters(statuses=("fail",))).empty


def test_days_after_trauma_is_a_column(store: Store) -> None:
    store.save(make_result("6.1", timing={"days_after_trauma": 12}))
    store.save(make_result("6.2", timing={"trauma_date": "2024-01-01", "study_date": None}))  # no study date
    store.save(make_result("6.3"))
    days = store.latest().set_index("study_instance_uid")["days_after_trauma"]
    assert days["6.1"] == 12
    assert days.isna()["6.2"] and days.isna()["6.3"]
    assert days_after_trauma({"days_after_trauma": 3}) == 3.0
    assert days_after_trauma(None) is None


def test_runs_are_recorded(store: Store) -> None:
    run = store.begin_run("audit /data", library_version="L1")
    store.save(make_result("7.1"), run_id=run)
    store.finish_run(run, audited=1, skipped=4)
    runs = store.runs()
    assert runs.loc[0, "audited"] == 1 and runs.loc[0, "skipped"] == 4
    assert runs.loc[0, "outcome"] == "ok" and runs.loc[0, "finished"] is not None


def test_file_index_round_trip_and_prefix(store: Store, tmp_path: Path) -> None:
    a = FileEntry(str(tmp_path / "d" / "x.dcm"), 10, 111, FileKind.IMAGE, "1.2", "1.2.1")
    b = FileEntry(str(tmp_path / "d" / "sub" / "y.dcm"), 20, 222, FileKind.UNREADABLE, reason="truncated")
    c = FileEntry(str(tmp_path / "dd" / "z.dcm"), 30, 333, FileKind.IMAGE, "1.3", "1.3.1")
    store.index_files([a, b, c])
    found = store.file_index([str(tmp_path / "d")])
    assert set(found) == {a.path, b.path}  # "dd" is not under "d"
    assert found[b.path] == b
    assert set(store.file_index([c.path])) == {c.path}
    store.index_files([FileEntry(a.path, 11, 112, FileKind.IMAGE, "1.2", "1.2.1")])
    assert store.file_index([a.path])[a.path].size == 11
    store.forget_files([a.path])
    assert store.file_index([str(tmp_path / "d")]).keys() == {b.path}


def test_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(blocker / "results.db")
    with pytest.raises(StoreError, match="is a folder"):
        Store.open(tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot write results store"):
        Store.open(garbage)


def test_readonly_open(tmp_path: Path) -> None:
    with pytest.raises(StoreMissing):
        Store.open(tmp_path / "none.db", readonly=True)
    assert not (tmp_path / "none.db").exists()
    with Store.open(tmp_path / "r.db") as s:
        s.save(make_result("8.1"))
    with Store.open(tmp_path / "r.db", readonly=True) as s:
        assert s.count_audits() == 1
        with pytest.raises(StoreError, match="read-only"):
            s.save(make_result("8.2"))


def test_sqlalchemy_url_is_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'by-url.db'}"
    with Store.open(url) as s:
        s.save(make_result("9.1"))
    with Store.open(tmp_path / "by-url.db") as s:
        assert s.count_audits() == 1
    with pytest.raises(StoreError):
        Store.open("nosuchdialect://user:secret@host/db")


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    Store.open(db).close()
    script = tmp_path / "writer.py"
    script.write_text(STORE_WRITER)
    go = tmp_path / "go"
    count = 150
    procs = [subprocess.Popen([sys.executable, str(script), str(ROOT), str(db), name, str(count), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("listen", "nightly")]
    go.write_text("go")
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.startswith("done")
    with Store.open(db) as s:
        assert s.count_audits() == 2 * count
        latest = s.latest()
        assert sorted(latest["station_name"].value_counts().tolist()) == [count, count]
        assert len(s.findings(latest["id"])) == 2 * count
        assert len(s.file_index(["/data"])) == 2 * count
        assert set(s.runs()["outcome"]) == {"ok"}
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


def test_result_json_is_the_audit_record(store: Store, tmp_path: Path) -> None:
    store.save(make_result("10.1", findings=(MISSING_STIR,)))
    con = sqlite3.connect(tmp_path / "results.db")
    try:
        text = con.execute("select result_json from audits").fetchone()[0]
    finally:
        con.close()
    data = json.loads(text)
    assert data["study_instance_uid"] == "10.1"
    assert data["findings"][0]["code"] == "missing-sequence"
    assert "patient_name" not in data  # patient fields live in their own columns only


PG_URL = os.environ.get("PROTOCOLCHECK_TEST_PG_URL", "")  # an existing server instead of a throw-away one


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A real PostgreSQL: a throw-away server on 127.0.0.1 (tests/peers.py), or $PROTOCOLCHECK_TEST_PG_URL."""
    if PG_URL:
        yield PG_URL
        return
    from peers import postgres

    with postgres() as url:
        yield url


def test_postgresql_store(pg_url: str) -> None:
    import uuid

    uid = "2.25." + str(uuid.uuid4().int)
    with Store.open(pg_url) as store:
        first = store.save(make_result(uid, findings=(MISSING_STIR,)), fingerprint="f1", library_version="L")
        store.save(make_result(uid), fingerprint="f2", library_version="L")
        assert store.is_current(uid, "f2", "L") and not store.is_current(uid, "f1", "L")
        assert list(store.history(uid)["status"]) == ["fail", "pass"]
        assert store.results([first])[first].findings == (MISSING_STIR,)
        structured = store.save(make_result(uid, findings=(STRUCTURED,)))
        assert store.results([structured])[structured].findings == (STRUCTURED,)
        assert store.findings([structured]).iloc[0]["action"] == STRUCTURED.action
        root = f"/pg-test/{uid}"
        store.index_files([FileEntry(f"{root}/a.dcm", 1, 2, FileKind.IMAGE, uid, uid + ".1"),
                           FileEntry(f"{root}_x/b.dcm", 1, 2, FileKind.IMAGE, uid, uid + ".2")])
        assert list(store.file_index([root])) == [f"{root}/a.dcm"]
        store.forget_files([f"{root}/a.dcm", f"{root}_x/b.dcm"])


def test_a_version_1_postgresql_store_is_migrated(pg_url: str) -> None:
    import uuid

    _version_1_store_is_migrated(pg_url, "2.25." + str(uuid.uuid4().int))


def test_audit_twice_on_postgresql_gives_what_sqlite_gives(pg_url: str, tmp_path: Path) -> None:
    """The CLI against a PostgreSQL store: the second run skips every study and prints the same records."""
    import json

    from click.testing import CliRunner

    from protocolcheck.cli import main
    from protocolcheck.testing import synth

    corpus = tmp_path / "corpus"
    synth.write_study(synth.plexus_study(synth.Vendor.PHILIPS, "PG-1"), corpus / "one")
    synth.write_study(synth.pelvis_study(synth.Vendor.CANON, "PG-2"), corpus / "two")

    def audit(db: str) -> tuple[int, list[dict], str]:
        done = CliRunner().invoke(main, ["audit", str(corpus), "--db", db, "--format", "json"])
        text = done.stdout
        return done.exit_code, json.loads(text[text.index("["):]), done.output

    first_code, first, first_out = audit(pg_url)
    assert first_code in (0, 1), first_out
    assert "2 audited, 0 unchanged (skipped)" in first_out
    second_code, second, second_out = audit(pg_url)
    assert "0 audited, 2 unchanged (skipped)" in second_out
    assert (second_code, second) == (first_code, first)
    _code, on_sqlite, _out = audit(str(tmp_path / "qa.db"))
    assert on_sqlite == first
    with Store.open(pg_url) as store:
        runs = store.runs()
        assert list(runs["audited"])[-2:] == [2, 0]
