"""Requirement matching is bounded for any protocol file: the schema allows at most 100 requirements,
and the augmenting-path search is a loop (1,200 chained requirements gave a RecursionError)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from protocolcheck.clinical.library import load_protocol_file

REPO = Path(__file__).resolve().parent.parent


def test_a_protocol_with_1200_requirements_is_refused_by_the_schema(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "protocols" / "mr-pelvis.yaml").read_text(encoding="utf-8"))
    first = data["requirements"][0]
    data["requirements"] = [{**first, "id": f"req-{i}"} for i in range(1200)]
    path = tmp_path / "mr-pelvis.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = load_protocol_file(path)
    assert result.protocol is None
    assert any("requirements" in p and ("too long" in p or "100" in p) for p in result.problems), result.problems


def test_matching_a_chain_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    """150 requirements each satisfied by any of 150 T2 series: requirement k re-routes k others (a chain
    k deep). The child process lowers the recursion limit to 100, below the chain's depth."""
    code = """
import sys
from dataclasses import replace
from protocolcheck.audit.validate import assign
from protocolcheck.classify import Acquisition, Plane, SeriesClass, Weighting
from protocolcheck.clinical.library import load_library

def sc(number):
    return SeriesClass(study_instance_uid="1.2.3", series_instance_uid=f"1.2.3.{number}", stack=None,
                       series_number=number, series_description="ax T2", modality="MR", manufacturer="ACME",
                       instances=20, weighting=Weighting("T2"), inversion=None, fat_suppressed=False,
                       fat_suppression=None, post_contrast=False, plane=Plane("axial"), obliquity_deg=0.0,
                       normal=(0.0, 0.0, 1.0), acquisition=Acquisition.TWO_D, localizer=False, derived=False,
                       slice_thickness=4.0, field_strength=3.0)
library = load_library()
protocol = library.get("mr-lumbosacral-plexus-wwo")
t2 = next(r for r in protocol.requirements if r.id == "t2")
requirements = [replace(t2, id=f"t2-{i}") for i in range(150)]
series = [sc(i + 1) for i in range(150)]
sys.setrecursionlimit(100)
results = assign(requirements, series)
print(sum(1 for r in results if r.met))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stderr[-800:]
    assert run.stdout.strip() == "150"
