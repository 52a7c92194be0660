"""Golden outputs: the commands users run, on ``sample_dicom/``, give exactly the recorded output.

A refactoring must leave every byte alone; a deliberate change of behaviour regenerates the files
(``PROTOCOLCHECK_REGEN_GOLDEN=1 pytest tests/test_golden.py``) and the diff is reviewed in the commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "data" / "golden"
SAMPLES = "sample_dicom"
CONTEXT = "sample_dicom/context.csv"

CASES: dict[str, list[str]] = {
    "audit-table": ["audit", SAMPLES, "--no-db", "--format", "table", "--context", CONTEXT],
    "audit-json": ["audit", SAMPLES, "--no-db", "--format", "json", "--context", CONTEXT],
    "audit-csv": ["audit", SAMPLES, "--no-db", "--format", "csv", "--context", CONTEXT],
    "audit-no-context-json": ["audit", SAMPLES, "--no-db", "--format", "json", "--no-series"],
    "audit-pelvis-protocol": ["audit", SAMPLES, "--no-db", "--format", "table", "--protocol",
                              "mr-lumbosacral-plexus-wo"],
    "classify-table": ["classify", SAMPLES, "--format", "table"],
    "classify-json": ["classify", SAMPLES, "--format", "json"],
    "recommend-piriformis": ["recommend", "--indication", "piriformis syndrome G57.01", "--on", "2026-03-01",
                             "--format", "json"],
    "recommend-trauma-early": ["recommend", "--indication", "S34.4XXA plexus injury", "--trauma-date", "2026-02-19",
                               "--on", "2026-03-01", "--format", "table"],
    "recommend-trauma-late": ["recommend", "--indication", "S34.4XXA plexus injury", "--trauma-date", "2025-12-01",
                              "--on", "2026-03-01", "--format", "json"],
    "recommend-mri-ci": ["recommend", "--indication", "lumbosacral plexopathy G54.1", "--mri-contraindicated",
                         "--on", "2026-03-01", "--format", "json"],
    "recommend-malignancy": ["recommend", "--indication", "lumbosacral plexopathy", "--known-malignancy",
                             "--egfr", "25", "--on", "2026-03-01", "--format", "table"],
    "check-order-pelvis": ["check-order", "--procedure", "MRI pelvis w/o", "--indication",
                           "lumbosacral plexopathy G54.1", "--scheduled", "2026-03-01", "--format", "json"],
    "check-order-plexus": ["check-order", "--procedure", "MRI lumbosacral plexus without and with contrast",
                           "--indication", "lumbosacral plexopathy G54.1", "--scheduled", "2026-03-01",
                           "--format", "table"],
    "check-order-ct": ["check-order", "--procedure", "CT abdomen pelvis with contrast", "--indication",
                       "lumbosacral plexopathy G54.1", "--scheduled", "2026-03-01", "--format", "json"],
    "protocols-list": ["protocols", "list"],
}


def run(args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", "NO_COLOR": "1"}
    env.pop("PROTOCOLCHECK_DB", None)
    done = subprocess.run([sys.executable, "-m", "protocolcheck", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    return f"exit {done.returncode}\n{done.stdout}".replace(str(REPO), "<repo>")  # any checkout, one golden


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_output(name: str) -> None:
    output = run(CASES[name])
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("PROTOCOLCHECK_REGEN_GOLDEN"):
        path.write_text(output, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; regenerate with PROTOCOLCHECK_REGEN_GOLDEN=1"
    assert output == path.read_text(encoding="utf-8"), f"{name}: output changed (see the docstring)"
