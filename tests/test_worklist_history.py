"""`worklist --db`: scheduled-exam checks kept as history in the results store (SQLite and PostgreSQL),
against a real worklist server (dcmtk's wlmscpfs) holding a wrong order for tomorrow; relative dates."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from peers import HOST, WlmPeer, postgres, today_dicom, wlmscpfs, write_worklist_item

from protocolcheck.cli import main
from protocolcheck.jobs.scheduled import history, resolve_dates, upcoming
from protocolcheck.jobs.store import Store

TODAY = dt.date(2026, 12, 7)


@pytest.mark.parametrize(("value", "expected"), [
    ("today", "20261207"), ("tomorrow", "20261208"), ("yesterday", "20261206"), ("+2d", "20261209"),
    ("-1d", "20261206"), ("20261224", "20261224"), ("20261201-20261207", "20261201-20261207"),
    ("today..+7d", "20261207-20261214"), ("tomorrow-+2d", "20261208-20261209"), ("-1d..today", "20261206-20261207"),
    ("today-", "20261207-"), ("-20261231", "-20261231"), ("TOMORROW", "20261208"),
])
def test_relative_dates(value: str, expected: str) -> None:
    assert resolve_dates(value, TODAY) == expected


@pytest.mark.parametrize("value", ["next week", "+2", "2d", "+1d..-1d", "20261301", "tomorrow-today", ".."])
def test_relative_dates_refused_with_what_is_accepted(value: str) -> None:
    with pytest.raises(ValueError) as err:
        resolve_dates(value, TODAY)
    assert "today" in str(err.value) or "backwards" in str(err.value) or "not a date" in str(err.value)


WRONG = dict(accession="WL-TOMORROW", station_aet="MR1", scheduled_date=today_dicom(1), procedure="MRI PELVIS WO",
             admitting="lumbosacral plexopathy G54.1")  # the wrong exam for a plexopathy, booked for tomorrow
RIGHT = dict(accession="WL-LATER", station_aet="MR1", scheduled_date=today_dicom(6),
             procedure="MRI LUMBOSACRAL PLEXUS WO+W", procedure_code="72197",
             comments="non-traumatic lumbosacral plexopathy, G54.1")


@pytest.fixture
def wlm(tmp_path: Path) -> Iterator[WlmPeer]:
    with wlmscpfs(tmp_path / "wlm") as peer:
        for item in (WRONG, RIGHT):
            write_worklist_item(peer.folder / f"{item['accession']}.wl", **item)  # type: ignore[arg-type]
        yield peer


def run(peer: WlmPeer, *args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, ["worklist", HOST, str(peer.port), "--called-aet", peer.aet,
                                       "--format", "json", *args])
    written = Path(args[args.index("-o") + 1]) if "-o" in args else None
    out = (written.read_text() if written.exists() else "") if written else result.stdout
    return result.exit_code, (json.loads(out) if out.strip() else []), result.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "qa.db")
        return
    with postgres() as url:
        yield url


def test_history_of_scheduled_checks(wlm: WlmPeer, target: str) -> None:
    # tomorrow only: the wrong order is caught, stored with its action
    code, records, err = run(wlm, "--date", "tomorrow", "--db", target)
    assert code == 1, err
    assert [r["accession_number"] for r in records] == ["WL-TOMORROW"]
    assert "worklist history: 1 new, 0 changed, 0 unchanged" in err
    with Store.open(target) as store:
        rows = history(store, "WL-TOMORROW")
    assert len(rows) == 1 and rows[0]["status"] == "fail"
    assert rows[0]["scheduled_day"] == dt.date.today() + dt.timedelta(days=1)
    findings = json.loads(rows[0]["findings_json"])
    assert "wrong-protocol" in {f["code"] for f in findings}
    assert all(f["action"] for f in findings if f["severity"] == "error")
    assert rows[0]["actions"] and "instead" in rows[0]["actions"]

    # the week: the later, right order is new; tomorrow's is unchanged (no row added)
    code, records, err = run(wlm, "--date", "today..+7d", "--db", target)
    assert code == 1 and len(records) == 2, err
    assert "worklist history: 1 new, 0 changed, 1 unchanged" in err

    # the scheduler fixes tomorrow's order: re-checked, a second row, the first one kept
    fixed = {**WRONG, "procedure": "MRI LUMBOSACRAL PLEXUS WO+W", "procedure_code": "72197"}
    write_worklist_item(wlm.folder / "WL-TOMORROW.wl", **fixed)  # type: ignore[arg-type]
    code, records, err = run(wlm, "--date", "today..+7d", "--db", target)
    assert code == 0, err
    assert "worklist history: 0 new, 1 changed, 1 unchanged" in err
    with Store.open(target, readonly=True) as store:
        rows = history(store, "WL-TOMORROW")
        ahead = upcoming(store)
    assert [r["status"] for r in rows] == ["fail", "pass"]
    assert rows[0]["procedure"] == "MRI PELVIS WO" and rows[1]["procedure"] == "MRI LUMBOSACRAL PLEXUS WO+W"
    assert list(ahead["accession_number"]) == ["WL-TOMORROW", "WL-LATER"]  # both pass now: by date
    assert set(ahead["status"]) == {"pass"}


def test_upcoming_lists_problems_first(wlm: WlmPeer, tmp_path: Path) -> None:
    db = str(tmp_path / "qa.db")
    code, _, err = run(wlm, "--date", "today..+7d", "--db", db)
    assert code == 1, err
    with Store.open(db, readonly=True) as store:
        ahead = upcoming(store)
    assert list(ahead["accession_number"]) == ["WL-TOMORROW", "WL-LATER"]
    assert list(ahead["status"]) == ["fail", "pass"]
    # a day past both: nothing upcoming
    with Store.open(db, readonly=True) as store:
        assert upcoming(store, dt.date.today() + dt.timedelta(days=30)).empty


def test_worklist_output_file_is_replaced_whole_and_said(wlm: WlmPeer, tmp_path: Path) -> None:
    out = tmp_path / "checks.json"
    out.write_text("earlier\n")
    code, records, err = run(wlm, "--date", "tomorrow", "-o", str(out))
    assert code == 1 and records[0]["accession_number"] == "WL-TOMORROW", err
    assert f"replaced the earlier {out}" in err
    # a folder that does not exist: exit 3, nothing half-written
    code, _, err = run(wlm, "--date", "tomorrow", "-o", str(tmp_path / "missing" / "x.json"))
    assert code == 3 and "cannot write" in err


def test_worklist_date_refused_and_store_errors(wlm: WlmPeer, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["worklist", HOST, str(wlm.port), "--called-aet", wlm.aet, "--date", "soon"])
    assert result.exit_code == 2 and "today" in result.stderr
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    code, _, err = run(wlm, "--date", "tomorrow", "--db", str(folder))
    assert code == 3 and "folder" in err


def test_db_without_a_value_uses_the_default_store(wlm: WlmPeer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "default.db"
    monkeypatch.setenv("PROTOCOLCHECK_DB", str(db))
    code, _, err = run(wlm, "--db", "--date", "tomorrow")
    assert code == 1, err
    with sqlite3.connect(db) as conn:
        assert conn.execute("select accession_number, status from scheduled_checks").fetchall() == [
            ("WL-TOMORROW", "fail")]


def test_the_site_configuration_names_the_store(wlm: WlmPeer, tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    conf = tmp_path / "config.toml"
    conf.write_text(f'[defaults]\ndb = "{db}"\n')
    result = CliRunner().invoke(main, ["--config", str(conf), "worklist", HOST, str(wlm.port), "--called-aet", wlm.aet,
                                       "--format", "json", "--date", "tomorrow"])
    assert result.exit_code == 1, result.output  # configured: kept without typing --db
    assert f"worklist history: 1 new, 0 changed, 0 unchanged -> {db}" in result.stderr
    again = CliRunner().invoke(main, ["--config", str(conf), "worklist", HOST, str(wlm.port), "--called-aet", wlm.aet,
                                      "--format", "json", "--date", "tomorrow", "--db"])
    assert f"worklist history: 0 new, 0 changed, 1 unchanged -> {db}" in again.stderr, again.output
