"""Listing the input: every file seen is accounted for, every folder that cannot be listed is named
(``unreadable-folder``), any depth is walked, and a named pipe never blocks the run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from protocolcheck.cli import main
from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable
from protocolcheck.dicom.scan import iter_files, scan, scan_file

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "sample_dicom" / "01_siemens_plexus_complete"
WITHOUT_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                    "--bounding-set=-dac_override,-dac_read_search"]


def _audit_json(*args: str, prefix: list[str] | None = None, timeout: int = 60,
                store: tuple[str, ...] = ("--no-db",)) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([*(prefix or []), sys.executable, "-m", "protocolcheck", "audit", *store,
                           "--format", "json", *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=REPO)


def test_a_folder_deeper_than_the_recursion_limit_is_walked(tmp_path: Path) -> None:
    """os.walk recursed (Python 3.11): a folder ~1000 levels deep gave a RecursionError. Here the
    limit is lowered to 200 in a child process and the folder is 300 levels deep (a tree the test's
    own clean-up, which recurses too, can still remove)."""
    deep = str(tmp_path)
    for _ in range(300):
        deep += "/d"
        os.mkdir(deep)
    shutil.copy(STUDY / "0001_001.dcm", Path(deep) / "image.dcm")
    code = ("import sys\nfrom protocolcheck.dicom.scan import iter_files\nsys.setrecursionlimit(200)\n"
            f"print(list(iter_files([{str(tmp_path)!r}])))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.strip() == repr([deep + "/image.dcm"])


def test_walk_order_is_sorted_top_down_and_skips_hidden_files(tmp_path: Path) -> None:
    for name in ("b/2.dcm", "b/1.dcm", "a/z/9.dcm", "a/0.dcm", "top.dcm", ".hidden", "a/.x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "a")  # a link to a folder is not followed (as os.walk)
    names = [os.path.relpath(p, tmp_path) for p in iter_files([tmp_path])]
    assert names == ["top.dcm", "a/0.dcm", "a/z/9.dcm", "b/1.dcm", "b/2.dcm"]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_a_folder_without_permission_is_an_unreadable_folder_finding(tmp_path: Path) -> None:
    """Tests run as root, which lists anything: the audit runs without root's permission override."""
    good = tmp_path / "study"
    shutil.copytree(STUDY, good)
    locked = good / "series9"
    locked.mkdir()
    shutil.copy(STUDY / "0001_001.dcm", locked / "x.dcm")
    locked.chmod(0o000)
    try:
        result = _audit_json(str(tmp_path), prefix=WITHOUT_OVERRIDE)
    finally:
        locked.chmod(0o755)
    assert "Traceback" not in result.stderr
    findings = [f for r in json.loads(result.stdout) for f in r["findings"] if f["code"] == "unreadable-folder"]
    assert len(findings) == 1 and str(locked) in findings[0]["message"]
    assert "Permission denied" in findings[0]["message"]
    assert result.returncode == 0 or result.returncode == 1
    lone = tmp_path / "x" / "y" / "other" / "alone"  # a folder of no study: an error record (exit 1), not silence
    lone.mkdir(parents=True)
    lone.chmod(0o000)
    try:
        result = _audit_json(str(good), str(tmp_path / "x"), prefix=WITHOUT_OVERRIDE)
    finally:
        lone.chmod(0o755)
    assert result.returncode == 1, result.stderr
    records = json.loads(result.stdout)
    assert any(r["status"] == "error" and r["findings"][0]["code"] == "unreadable-folder" for r in records)


def _long_tree(root: Path, levels: int = 24) -> tuple[str, str]:
    """A folder whose path is longer than PATH_MAX (4096) holding a DICOM file, built relative to open
    folders (a path that long cannot be passed to mkdir whole). Returns (the last listable folder, the file)."""
    name = "x" * 200
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    path = str(root)
    listable = path
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            path = path + "/" + name
            if len(path) < 4000:
                listable = path
        out = os.open("image.dcm", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, (STUDY / "0001_001.dcm").read_bytes())
        os.close(out)
    finally:
        os.close(fd)
    return listable, path + "/image.dcm"


def test_a_folder_past_path_max_is_named(tmp_path: Path) -> None:
    listable, _hidden = _long_tree(tmp_path)
    records = list(scan([tmp_path]))
    folders = [r for r in records if isinstance(r, Unreadable) and r.is_folder]
    assert len(folders) == 1 and "longer than the system allows" in folders[0].reason
    assert folders[0].path.startswith(listable) and len(folders[0].path) > 4000
    result = CliRunner().invoke(main, ["audit", str(tmp_path), "--no-db", "--format", "json"])
    assert "unreadable-folder" in result.stdout and result.exit_code != 0


def test_named_pipes_never_block(tmp_path: Path) -> None:
    """A FIFO called notes.txt (or given as --context) hung the audit in a blocking open()."""
    study = tmp_path / "study"
    shutil.copytree(STUDY, study)
    os.mkfifo(study / "notes.txt")
    os.mkfifo(study / "export.csv")
    os.mkfifo(study / "image.dcm")
    os.mkfifo(tmp_path / "context.csv")
    records = {r.path: r for r in scan([study])}
    assert isinstance(records[str(study / "notes.txt")], Skipped)
    assert isinstance(records[str(study / "image.dcm")], Unreadable)
    result = _audit_json(str(study), timeout=60)
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr
    result = _audit_json(str(study), "--context", str(tmp_path / "context.csv"), timeout=60)
    assert result.returncode == 2 and "not a regular file (a named pipe)" in result.stderr, result.stderr
    [record] = scan_file(str(STUDY / "0001_001.dcm"))
    assert isinstance(record, InstanceHeader)


@pytest.mark.parametrize("store", [["--no-db"], ["--db", "STORE"]])
def test_files_skipped_are_counted_and_named(tmp_path: Path, store: list[str]) -> None:
    """A folder of notes and exports beside a study was skipped without a word."""
    shutil.copytree(STUDY, tmp_path / "study")
    exports = tmp_path / "exports"
    exports.mkdir()
    for name in ("notes.txt", "export.csv", "summary.json"):
        (exports / name).write_text("not an image\n")
    args = tuple(a.replace("STORE", str(tmp_path / "qa.db")) for a in store)
    for _run in range(2):  # the second run of a store reads nothing again: still counted
        result = _audit_json(str(tmp_path), store=args)
        assert "3 files skipped (not DICOM or not an image): " in result.stderr, result.stderr
        assert str(exports / "export.csv") in result.stderr
