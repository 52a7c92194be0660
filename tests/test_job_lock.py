"""One job lock, always taken (the default store too), keyed on the real paths of the store and inputs:
``qa.db`` and ``$PWD/qa.db``, or a folder and a link to it, are the same job and never run together."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from protocolcheck.cli import main
from protocolcheck.jobs.incremental import JobLock, default_lock_path

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "sample_dicom" / "01_siemens_plexus_complete"


def _audit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "--format", "json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def test_the_same_store_and_inputs_however_spelled_share_one_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(STUDY)
    relative = default_lock_path("qa.db", [STUDY])
    assert relative == default_lock_path(str(tmp_path / "qa.db"), [STUDY])
    assert relative == default_lock_path(f"sqlite:///{tmp_path}/qa.db", [str(tmp_path / "link")])
    assert relative == default_lock_path("./sub/../qa.db", [STUDY / "."])
    assert relative != default_lock_path("other.db", [STUDY])
    assert relative.parent == tmp_path


def test_a_run_waits_for_nobody_the_second_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the lock key was the --db text, so qa.db and $PWD/qa.db both ran."""
    monkeypatch.chdir(tmp_path)
    with JobLock(default_lock_path(str(tmp_path / "qa.db"), [STUDY])):
        code, err = _audit(str(STUDY), "--db", "qa.db")
    assert code == 3 and "another run holds the lock" in err and f"pid {os.getpid()}" in err
    code, err = _audit(str(STUDY), "--db", "qa.db")  # released: runs
    assert code in (0, 1), err


def test_the_default_store_is_locked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: without --db (or $PROTOCOLCHECK_DB) there was no lock at all; two runs overlapped fully."""
    monkeypatch.delenv("PROTOCOLCHECK_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = tmp_path / "data" / "protocolcheck" / "results.db"
    store.parent.mkdir(parents=True)
    with JobLock(default_lock_path(str(store), [STUDY])):
        code, err = _audit(str(STUDY))
    assert code == 3 and "another run holds the lock" in err
    code, err = _audit(str(STUDY))
    assert code in (0, 1), err
