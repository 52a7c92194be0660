"""Privacy: patient names and birth dates never reach ``classify``/``audit`` output or logs by default.

Studies are identified by accession number and UIDs. ``audit --include-patient`` adds the patient
name and ID to the JSON records for local use; nothing else ever does, and the birth date is never
read at all. The study below is written with distinctive names so that any leak is found, in every
output format, in the files written with ``-o`` and ``--junit``, and on stderr (progress, warnings,
unreadable-file messages, including a file cut inside the patient name).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from protocolcheck.cli import main
from protocolcheck.testing import synth
from protocolcheck.testing.synth import Vendor

FAMILY, GIVEN = "Zyxwicz", "Quirinella"
PATIENT_NAME = f"{FAMILY}^{GIVEN}"
BIRTH_DATE = "19510203"
BIRTH_FORMS = (BIRTH_DATE, "1951-02-03", "03.02.1951", "02/03/1951")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("privacy")
    spec = dataclasses.replace(synth.plexus_study(Vendor.GE, "PRIV0001", slices=2), patient_name=PATIENT_NAME,
                               patient_birth_date=BIRTH_DATE)
    paths = synth.write_study(spec, root / "study")
    data = paths[0].read_bytes()
    at = data.index(FAMILY.encode())
    (root / "study" / "cut_in_patient_name.dcm").write_bytes(data[:at + 3])  # unreadable, cut inside the name
    return root


def _leaks(text: str, *, name: bool = True) -> list[str]:
    found = [form for form in BIRTH_FORMS if form in text]
    if name:
        found += [part for part in (FAMILY, GIVEN) if part.lower() in text.lower()]
    return found


@pytest.fixture(autouse=True)
def _own_results_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """audit keeps a results store by default: a fresh one per test, never the user's."""
    monkeypatch.setenv("PROTOCOLCHECK_DB", str(tmp_path / "results.db"))


def _run(args: list[str]) -> Result:
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1), result.output
    return result


def test_the_study_really_carries_the_name_and_birth_date(study: Path) -> None:
    data = b"".join(p.read_bytes() for p in (study / "study").glob("*.dcm"))
    assert FAMILY.encode() in data and BIRTH_DATE.encode() in data


@pytest.mark.parametrize("command", ["classify", "audit"])
@pytest.mark.parametrize("fmt", ["json", "table", "csv"])
def test_no_patient_name_or_birth_date_by_default(study: Path, command: str, fmt: str) -> None:
    result = _run([command, str(study), "--format", fmt])
    assert result.stdout.strip()
    assert "cut_in_patient_name.dcm" in result.stdout + result.stderr  # the bad file is named ...
    assert _leaks(result.stdout) == [] and _leaks(result.stderr) == []  # ... without its contents


def test_no_patient_data_in_output_and_junit_files(study: Path, tmp_path: Path) -> None:
    out, junit = tmp_path / "audit.json", tmp_path / "audit.xml"
    result = _run(["audit", str(study), "--format", "json", "-o", str(out), "--junit", str(junit)])
    for text in (out.read_text(encoding="utf-8"), junit.read_text(encoding="utf-8"), result.stdout, result.stderr):
        assert _leaks(text) == []


def test_include_patient_adds_the_name_for_local_use_only_when_asked(study: Path) -> None:
    records = json.loads(_run(["audit", str(study), "--format", "json", "--include-patient"]).stdout)
    named = [r for r in records if r.get("patient_name")]
    assert named and all(FAMILY in r["patient_name"] for r in named)
    assert all("patient_name" not in r for r in json.loads(_run(["audit", str(study), "--format", "json"]).stdout))
    # the birth date is not read at all, so not even the opt-in shows it
    assert _leaks(json.dumps(records), name=False) == []


def test_results_store_keeps_no_patient_name_unless_asked(study: Path, tmp_path: Path) -> None:
    plain, named = tmp_path / "plain.db", tmp_path / "named.db"
    _run(["audit", str(study), "--format", "json", "--db", str(plain)])
    _run(["audit", str(study), "--format", "json", "--db", str(named), "--include-patient"])
    assert FAMILY.encode() not in plain.read_bytes()
    assert FAMILY.encode() in named.read_bytes()  # the opt-in really stores it (the check above can fail)
