"""Retention of the listen store folder: `store prune` on the folder a real `listen` wrote, and
`listen --retain-days` pruning while it runs. Audited and old studies go, their results stay in the
results store; pending, recent and unaudited studies stay."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from peers import Listener, storescu

from protocolcheck.cli import main
from protocolcheck.net.instances import PENDING_MARKER

pytestmark = pytest.mark.network

DAY = 86400


def _age(folder: Path, days: float) -> None:
    """Make every file of a study folder look received ``days`` ago."""
    when = time.time() - days * DAY
    for path in folder.rglob("*"):
        os.utime(path, (when, when))


def _audits(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("select study_instance_uid, count(*) from audits group by study_instance_uid"))


def _received(tmp: Path, corpus: Any, names: list[str]) -> tuple[Path, Path, list[Path]]:
    """Send these corpus studies to a real listen (results store qa.db), stop it; the store folder, the
    database and the study folders (in the order sent)."""
    db = tmp / "qa.db"
    listener = Listener(tmp, "--idle", "0.5", "--db", str(db))
    try:
        for name in names:
            sent = storescu(listener.port, [corpus.studies[name]])
            assert sent.returncode == 0, sent.stderr
        listener.wait_records(len(names))
    finally:
        assert listener.terminate() == 0, listener.text()
    folders = [p for p in listener.store.iterdir() if p.is_dir() and not p.name.startswith(".")]
    by_uid = {r["study_instance_uid"]: r for r in listener.records()}
    assert sorted(f.name for f in folders) == sorted(by_uid)
    order = [next(uid for uid, r in by_uid.items() if r["accession_number"] == corpus.specs[n].accession)
             for n in names]
    return listener.store, db, [listener.store / uid for uid in order]


def prune(*args: str) -> Any:
    return CliRunner().invoke(main, ["store", "prune", *args])


def test_store_prune_keeps_pending_recent_and_unaudited(synth_corpus: Any, tmp_path: Path) -> None:
    store, db, (old, recent, crashed) = _received(tmp_path, synth_corpus,
                                                  ["siemens_complete", "ge_complete", "philips_complete"])
    before = _audits(db)
    _age(old, 40)
    _age(recent, 3)
    (crashed / PENDING_MARKER).write_text("2026-01-01T00:00:00\n")  # received, audit not finished (a crash)
    _age(crashed, 40)
    stray = store / "1.2.3.4.5.6.7.8.9"  # old files nobody audited (copied in by hand)
    shutil.copytree(old, stray)
    _age(stray, 40)
    n_old = sum(1 for p in old.rglob("*.dcm"))

    dry = prune("--store", str(store), "--older-than", "30", "--db", str(db), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would remove {old.name}" in dry.stderr and old.is_dir()
    assert f"dry run: prune {store} (older than 30 days): 1 studies removed ({n_old} files" in dry.stderr

    done = prune("--store", str(store), "--older-than", "30", "--db", str(db))
    assert done.exit_code == 0, done.output
    assert f"removed {old.name}" in done.stderr
    assert "kept: 1 not in the results store, 1 pending, 1 recent" in done.stderr
    assert not old.exists() and recent.is_dir() and crashed.is_dir() and stray.is_dir()
    assert not list(store.glob(".pruning-*"))
    assert _audits(db) == before  # the results stay
    # the file index forgot the removed files
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from files where path like ?", (f"{old}%",)).fetchone()[0] == 0

    # without a results store (listen --no-db) the marker alone decides: the stray folder goes too
    again = prune("--store", str(store), "--older-than", "30", "--no-db")
    assert again.exit_code == 0 and not stray.exists() and crashed.is_dir() and recent.is_dir(), again.output


def test_store_prune_errors(tmp_path: Path) -> None:
    missing = prune("--store", str(tmp_path / "nothing"), "--older-than", "30", "--no-db")
    assert missing.exit_code == 2 and "no store folder" in missing.stderr
    (tmp_path / "s").mkdir()
    nodb = prune("--store", str(tmp_path / "s"), "--older-than", "30", "--db", str(tmp_path / "no.db"), "--dry-run")
    assert nodb.exit_code == 2 and "no results store" in nodb.stderr
    bad = prune("--store", str(tmp_path / "s"), "--older-than", "-1", "--no-db")
    assert bad.exit_code == 2


def test_listen_retain_days_prunes_while_running(synth_corpus: Any, tmp_path: Path) -> None:
    db = tmp_path / "qa.db"
    listener = Listener(tmp_path, "--idle", "0.5", "--db", str(db), "--retain-days", "0", "--prune-every", "1")
    try:
        sent = storescu(listener.port, [synth_corpus.studies["siemens_complete"]])
        assert sent.returncode == 0, sent.stderr
        uid = listener.wait_records(1)[0]["study_instance_uid"]
        deadline = time.monotonic() + 30
        while (listener.store / uid).exists() or "1 studies removed" not in listener.text():  # logged just after
            assert time.monotonic() < deadline, listener.text()
            time.sleep(0.2)
        assert _audits(db) == {uid: 1}  # the audit stays in the results store
        # a study arriving now is pending (then audited, then pruned): never removed before its audit
        sent = storescu(listener.port, [synth_corpus.studies["ge_complete"]])
        assert sent.returncode == 0, sent.stderr
        records = listener.wait_records(2)
        assert len({r["study_instance_uid"] for r in records}) == 2
        deadline = time.monotonic() + 30  # the record is written first, then saved (a store failure loses no record)
        while len(_audits(db)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_audits(db)) == 2
    finally:
        assert listener.terminate() == 0, listener.text()
    assert "prune (" in listener.text()


def test_store_prune_reads_the_store_of_the_site_configuration(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    conf = tmp_path / "config.toml"
    conf.write_text(f'[defaults]\ndb = "{tmp_path / "site.db"}"\n')
    result = CliRunner().invoke(main, ["--config", str(conf), "store", "prune", "--store", str(tmp_path / "s"),
                                       "--older-than", "30", "--dry-run"])
    assert result.exit_code == 2 and f"no results store at {tmp_path / 'site.db'}" in result.stderr, result.output
