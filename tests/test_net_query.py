"""`protocolcheck query` against a real Orthanc: the same audits as from the folders, by C-GET and C-MOVE.

Orthanc is loaded with the synthetic multi-vendor corpus (sent by dcmtk's storescu) and one study
that cannot be retrieved completely (it holds an RT Plan, a class we do not accept): that study is
reported (exit 3) while every other study is still audited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from peers import HOST, free_port, orthanc, storescu
from pydicom.data import get_testdata_file

from protocolcheck.audit.engine import AuditOptions, audit_paths
from protocolcheck.cli import main
from protocolcheck.clinical.library import load_library
from protocolcheck.net.common import Peer
from protocolcheck.net.qr import RetrieveMethod, StudyQuery, find_studies, pull_studies
from protocolcheck.testing import synth

pytestmark = pytest.mark.network

CORPUS_DATES = "20250101-20251231"
BROKEN_ACCESSION = "Q-BROKEN"


@dataclass
class Pacs:
    peer: Peer
    move_port: int
    expected: dict[str, dict]  # study UID -> audit record from the folder
    broken_uid: str


def _broken_study(folder: Path) -> str:
    """A small study plus an RT Plan in the same study: C-GET/C-MOVE of it cannot complete."""
    spec = synth.pelvis_study(synth.Vendor.SIEMENS, BROKEN_ACCESSION, study_date="20240105")
    paths = synth.write_study(spec, folder)
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    plan = pydicom.dcmread(get_testdata_file("rtplan.dcm", download=False))
    plan.StudyInstanceUID = first.StudyInstanceUID
    plan.AccessionNumber = BROKEN_ACCESSION
    plan.save_as(folder / "rtplan.dcm")
    return str(first.StudyInstanceUID)


@pytest.fixture(scope="module")
def pacs(synth_corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    base = tmp_path_factory.mktemp("pacs")
    broken_uid = _broken_study(base / "broken")
    move_port = free_port()
    modalities = {"PROTOCOLCHECK": (HOST, move_port), "NOLISTENER": (HOST, free_port())}
    options = AuditOptions(library=load_library())
    expected = {r.study_instance_uid: r.to_dict() for r in audit_paths([synth_corpus.root], options)}
    with orthanc(base / "orthanc", modalities=modalities, worklist=False) as server:
        sent = storescu(server.port, [synth_corpus.root, base / "broken"], called=server.aet)
        assert sent.returncode == 0, sent.stderr
        yield Pacs(Peer(HOST, server.port, server.aet), move_port, expected, broken_uid)


def query(pacs: Pacs, *args: str, peer: Peer | None = None) -> tuple[int, list[dict], str]:
    peer = peer or pacs.peer
    result = CliRunner().invoke(main, ["query", peer.host, str(peer.port), "--called-aet", peer.called_aet,
                                       "--calling-aet", peer.calling_aet, "--format", "json", "--no-db",
                                       "--timeout", "20", *args])
    records = json.loads(result.stdout) if result.stdout.strip() else []
    return result.exit_code, records, result.stderr


@pytest.mark.parametrize("method", ["get", "move"])
def test_query_gives_the_same_audits_as_the_folders(pacs: Pacs, method: str, tmp_path: Path) -> None:
    extra = ["--move-port", str(pacs.move_port)] if method == "move" else []
    code, records, err = query(pacs, "--date", CORPUS_DATES, "--retrieve", method, "--workdir", str(tmp_path), *extra)
    assert code in (0, 1), err
    got = {r["study_instance_uid"]: r for r in records}
    assert set(got) == set(pacs.expected)
    for uid, record in pacs.expected.items():
        if got[uid] != record:
            import difflib
            a = json.dumps(record, indent=1, sort_keys=True).splitlines()
            b = json.dumps(got[uid], indent=1, sort_keys=True).splitlines()
            print("\n".join(difflib.unified_diff(a, b, lineterm="", n=6)))
        assert got[uid] == record, f"study {record['accession_number']} differs"
    assert code == (1 if any(r["status"] in ("fail", "error") for r in records) else 0)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_filters(pacs: Pacs) -> None:
    code, records, err = query(pacs, "--date", CORPUS_DATES, "--modality", "CT")
    assert {r["modality"] for r in records} == {"CT"} and len(records) == 2, err
    code, records, err = query(pacs, "--accession", "SYN-GE-01")
    assert [r["accession_number"] for r in records] == ["SYN-GE-01"]
    code, records, err = query(pacs, "--description", "mr pelvis", "--date", CORPUS_DATES)
    assert [r["accession_number"] for r in records] == ["SYN-PEL-01"]
    code, records, err = query(pacs, "--description", "MR PELVIS*", "--date", CORPUS_DATES)
    assert [r["accession_number"] for r in records] == ["SYN-PEL-01"]
    code, records, err = query(pacs, "--date", "19900101-19901231")
    assert code == 0 and records == [] and "0 studies match" in err


def test_one_study_at_a_time(pacs: Pacs, tmp_path: Path) -> None:
    matches = find_studies(pacs.peer, StudyQuery(date=CORPUS_DATES, modality="MR"))
    assert len(matches) >= 10
    seen = []
    for pulled in pull_studies(pacs.peer, matches[:4], method=RetrieveMethod.GET, workdir=str(tmp_path)):
        assert pulled.error is None
        assert len(list(tmp_path.iterdir())) == 1  # only this study's folder exists
        seen.append(len(list(pulled.folder.glob("*/*.dcm"))))
    assert list(tmp_path.iterdir()) == []
    assert seen == [m.instances for m in matches[:4]]


def test_failed_retrieval_is_reported_and_the_others_are_audited(pacs: Pacs) -> None:
    code, records, err = query(pacs, "--date", "20240101-20251231")
    assert code == 3
    assert BROKEN_ACCESSION in err and "failed" in err
    assert pacs.broken_uid not in {r["study_instance_uid"] for r in records}
    assert {r["study_instance_uid"] for r in records} == set(pacs.expected)


def test_move_destination_down_is_a_failed_retrieval(pacs: Pacs) -> None:
    """C-MOVE to an AE the PACS knows but where nothing listens: every retrieval fails, exit 3."""
    peer = Peer(HOST, pacs.peer.port, pacs.peer.called_aet, calling_aet="NOLISTENER")
    code, records, err = query(pacs, "--accession", "SYN-SIE-01", "--retrieve", "move",
                               "--move-port", str(free_port()), peer=peer)
    assert code == 3 and records == [] and "C-MOVE of accession SYN-SIE-01" in err


def test_unreachable_rejected_and_unknown_peers_exit_3(pacs: Pacs) -> None:
    code, records, err = query(pacs, peer=Peer(HOST, free_port(), "ORTHANC"))
    assert code == 3 and records == [] and "unreachable: connection refused" in err
    code, records, err = query(pacs, peer=Peer(HOST, pacs.peer.port, "NOT_ORTHANC"))
    assert code == 3 and "rejected the association" in err and "Called AE title not recognised" in err
    code, records, err = query(pacs, peer=Peer(HOST, pacs.peer.port, "ORTHANC", calling_aet="STRANGER"))
    assert code == 3 and "'STRANGER' is not configured" in err


def test_results_are_saved_in_the_store(pacs: Pacs, tmp_path: Path) -> None:
    from protocolcheck.jobs.store import Store

    db = tmp_path / "results.db"
    result = CliRunner().invoke(main, ["query", HOST, str(pacs.peer.port), "--called-aet", "ORTHANC",
                                       "--accession", "SYN-PH-01", "--db", str(db), "--format", "json"])
    assert result.exit_code in (0, 1), result.stderr
    with Store.open(db, readonly=True) as store:
        latest = store.latest()
    assert list(latest["accession_number"]) == ["SYN-PH-01"]


def test_move_needs_a_port(pacs: Pacs) -> None:
    code, _records, err = query(pacs, "--retrieve", "move")
    assert code == 2 and "--move-port" in err


