"""Writing the output: ``-o`` into a missing or read-only folder or onto a full disk, and stdout on a full
device, exit 3 with the path and the reason, never a traceback; an earlier file is left as it was."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_dicom" / "01_siemens_plexus_complete"


def run(*args: str, preexec: object = None, stdout: object = subprocess.PIPE,
        prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([*(prefix or []), sys.executable, "-m", "protocolcheck", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120, cwd=REPO,
                          preexec_fn=preexec)  # type: ignore[arg-type]


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("command", [["audit", "--no-db"], ["classify"]])
def test_output_into_a_missing_folder(tmp_path: Path, command: list[str]) -> None:
    target = tmp_path / "missing" / "out.json"
    result = run(*command, str(SAMPLE), "-o", str(target))
    assert result.returncode == 3, result.stderr
    assert f"cannot write {target}: No such file or directory" in result.stderr
    _no_traceback(result)


# The tests run as root, which ignores permissions: the command runs without the capabilities that let
# root write anywhere (util-linux setpriv), as an operator's account would.
WITHOUT_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                    "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_output_and_junit_into_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    junit = ["-o", str(tmp_path / "ok.json"), "--junit", str(folder / "a.xml")]
    for extra in (["-o", str(folder / "out.json")], junit):
        result = run("audit", "--no-db", str(SAMPLE), *extra, prefix=WITHOUT_OVERRIDE)
        assert result.returncode == 3, result.stderr
        assert "cannot write " + str(folder) in result.stderr and "Permission denied" in result.stderr
        _no_traceback(result)
    assert not list(folder.iterdir())


def test_output_onto_a_full_disk_keeps_the_earlier_file(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write past 2 KB fail as a full disk would (EFBIG); the earlier report stays."""
    target = tmp_path / "out.json"
    target.write_text("earlier report\n")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    result = run("audit", "--no-db", str(SAMPLE), "-o", str(target), "--format", "json", preexec=small_files)
    assert result.returncode == 3, result.stderr
    assert f"cannot write {target}: File too large" in result.stderr
    _no_traceback(result)
    assert target.read_text() == "earlier report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


def test_stdout_on_a_full_device(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        result = run("audit", "--no-db", str(SAMPLE), "--format", "json", stdout=full)
    assert result.returncode == 3
    assert "cannot write to standard output: No space left on device" in result.stderr
    _no_traceback(result)
