"""The benchmark command stays runnable: a small corpus, every measurement, the JSON numbers.

Speed itself is measured by ``python -m benchmarks.run``, never asserted here (timings in unit tests
would only measure the machine the tests ran on).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocolcheck.dicom import lean as fastheaders

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_a_small_corpus(tmp_path: Path) -> None:
    out = tmp_path / "numbers.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--files", "300", "--studies", "2", "--matrix",
                           "32", "--scale", "0", "--repeat", "1", "--out", str(tmp_path / "bench"), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    numbers = json.loads(out.read_text())
    kinds = [(run["kind"], run["workers"]) for run in numbers["runs"]]
    assert kinds == [("read8k", 1), ("pydicom", 1), ("scan", 1), ("scan", 2), ("audit", 1), ("audit", 2)]
    files = {run["files"] for run in numbers["runs"]}
    assert len(files) == 1 and files.pop() >= 250  # every measurement read the same corpus
    audits = [run for run in numbers["runs"] if run["kind"] == "audit"]
    assert all(run["studies"] == 2 for run in audits)
    assert all(run["skimmer"] == (fastheaders._SKIM_EXPLICIT is not None) for run in numbers["runs"])
    assert "the pydicom baseline in files/s" in done.stdout and "vs pyd" in done.stdout


@pytest.mark.slow
@pytest.mark.network
def test_dicomweb_benchmark_runs_and_both_paths_agree() -> None:
    """C-GET and WADO-RS metadata against one Orthanc: the benchmark itself checks the audits agree."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.dicomweb", "--studies", "2", "--matrix", "64",
                           "--repeat", "1", "--json"], cwd=REPO, capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    numbers = json.loads(done.stdout)
    assert numbers["wado-rs"]["bytes_per_study"] < numbers["c-get"]["bytes_per_study"]
    assert {"headers_per_second", "seconds", "bytes_per_study"} <= set(numbers["c-get"])
