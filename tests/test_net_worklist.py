"""`protocolcheck worklist` against two real worklist servers: Orthanc's plugin and dcmtk's wlmscpfs.

The same worklist files are served by both; the order check must give the same records from each,
and the clinical facts must come from the context CSV when given, else from the worklist item.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from peers import HOST, free_port, orthanc, today_dicom, wlmscpfs, write_worklist_item

from protocolcheck.cli import main
from protocolcheck.clinical.rules import load_rules
from protocolcheck.clinical.scenario import interpret, trauma_date_in
from protocolcheck.net.common import Peer
from protocolcheck.net.mwl import WorklistItem, WorklistQuery, find_worklist, item_context

pytestmark = pytest.mark.network


def _iso(offset: int) -> str:
    return (dt.date.today() + dt.timedelta(days=offset)).isoformat()


ITEMS = [
    # a plexus MRI scheduled 18 days after a fall: too early
    dict(accession="WL-EARLY", station_aet="MR1", scheduled_date=today_dicom(3),
         procedure="MRI LUMBOSACRAL PLEXUS WO+W",
         procedure_code="72197", reason=f"lumbosacral plexopathy after fall {_iso(-15)}"),
    # a standard pelvis MRI for plexopathy: the wrong exam
    dict(accession="WL-PELVIS", station_aet="MR1", scheduled_date=today_dicom(10), procedure="MRI PELVIS WO",
         admitting="lumbosacral plexopathy G54.1"),
    # the right exam, no trauma: fine
    dict(accession="WL-GOOD", station_aet="MR2", scheduled_date=today_dicom(5), procedure="MRI LUMBOSACRAL PLEXUS WO+W",
         procedure_code="72197", comments="non-traumatic lumbosacral plexopathy, G54.1"),
    # a CT on another station
    dict(accession="WL-CT", station_aet="CT1", scheduled_date=today_dicom(1), procedure="CT ABDOMEN PELVIS W",
         modality="CT", reason="lumbosacral plexopathy; MRI contraindicated (pacemaker)"),
]


@dataclass
class Servers:
    orthanc: Peer
    wlm: Peer


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("worklist")
    with orthanc(base / "orthanc", modalities={"PROTOCOLCHECK": (HOST, free_port())}) as o, \
            wlmscpfs(base / "wlm") as w:
        for folder in (o.worklists, w.folder):
            for item in ITEMS:
                write_worklist_item(folder / f"{item['accession']}.wl", **item)  # type: ignore[arg-type]
        yield Servers(Peer(HOST, o.port, o.aet), Peer(HOST, w.port, w.aet))


def run(peer: Peer, *args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, ["worklist", peer.host, str(peer.port), "--called-aet", peer.called_aet,
                                       "--format", "json", *args])
    records = json.loads(result.stdout) if result.stdout.strip() else []
    return result.exit_code, records, result.stderr


def _codes(record: dict) -> set[str]:
    return {f["code"] for f in record["findings"]}


def test_both_worklist_servers_give_the_same_order_checks(servers: Servers) -> None:
    outputs = {}
    for name, peer in (("orthanc", servers.orthanc), ("wlmscpfs", servers.wlm)):
        code, records, err = run(peer, "--modality", "MR")
        assert code == 1, err  # the early and the pelvis orders are errors
        outputs[name] = records
    assert outputs["orthanc"] == outputs["wlmscpfs"]
    by_acc = {r["accession_number"]: r for r in outputs["orthanc"]}
    assert list(by_acc) == ["WL-EARLY", "WL-GOOD", "WL-PELVIS"]  # by scheduled date; CT filtered out

    early = by_acc["WL-EARLY"]
    assert early["scheduled_date"] == _iso(3) and early["trauma_date"] == _iso(-15)
    assert early["status"] == "fail" and "trauma-too-early" in _codes(early)
    assert early["earliest_date"] is not None and early["earliest_date"] > _iso(3)
    assert early["context_source"] == "worklist Reason for the Requested Procedure"
    assert early["recommended"]["protocol"]

    pelvis = by_acc["WL-PELVIS"]
    assert pelvis["status"] == "fail" and "wrong-protocol" in _codes(pelvis)
    assert "plexopathy" in pelvis["indication"]  # from AdmittingDiagnosesDescription

    good = by_acc["WL-GOOD"]
    assert good["status"] == "pass" and good["station_aet"] == "MR2"


def test_station_and_date_filters(servers: Servers) -> None:
    for peer in (servers.orthanc, servers.wlm):
        _code, records, _err = run(peer, "--station-aet", "CT1")
        assert [r["accession_number"] for r in records] == ["WL-CT"]
        _code, records, _err = run(peer, "--date", f"{today_dicom(4)}-{today_dicom(30)}")
        assert [r["accession_number"] for r in records] == ["WL-GOOD", "WL-PELVIS"]


def test_context_csv_overrides_the_worklist(servers: Servers, tmp_path: Path) -> None:
    csv = tmp_path / "ctx.csv"
    csv.write_text("accession_number,trauma_date,indication\n"
                   f"WL-GOOD,{_iso(-10)},traumatic lumbosacral plexopathy after a fall\n"
                   "WL-UNKNOWN,,piriformis syndrome\n")
    code, records, err = run(servers.wlm, "--station-aet", "MR2", "--context", str(csv))
    (good,) = records
    assert good["trauma_date"] == _iso(-10) and "ctx.csv line 2" in good["context_source"]
    assert "trauma-too-early" in _codes(good) and code == 1
    assert "WL-UNKNOWN" in err  # unused rows are reported, not silently ignored


def test_table_output(servers: Servers) -> None:
    result = CliRunner().invoke(main, ["worklist", HOST, str(servers.orthanc.port), "--called-aet", "ORTHANC",
                                       "--format", "table", "--modality", "MR", "--fail-on", "never"])
    assert result.exit_code == 0
    assert "WL-EARLY" in result.stdout and "trauma-too-early" in result.stdout


def test_peer_down_and_wrong_aet_exit_3(servers: Servers) -> None:
    code, records, err = run(Peer(HOST, free_port(), "WLMSCP"))
    assert code == 3 and records == [] and "unreachable" in err and "connection refused" in err
    code, _records, err = run(Peer(HOST, servers.orthanc.port, "NOT_ORTHANC"))
    assert code == 3 and "rejected the association" in err


def test_client_api_returns_items(servers: Servers) -> None:
    items = find_worklist(servers.wlm, WorklistQuery(station_aet="MR1"))
    assert [i.accession_number for i in items] == ["WL-EARLY", "WL-PELVIS"]
    assert items[0].procedure_code == "72197" and items[0].scheduled == dt.date.today() + dt.timedelta(days=3)


def test_worklist_text_is_handed_to_the_clinical_core_unparsed() -> None:
    """net/ reads no clinical meaning: the trauma date in a comment is found by the one interpretation."""
    rules = load_rules()
    assert trauma_date_in("plexopathy after fall 2026-01-10", rules) == dt.date(2026, 1, 10)
    assert trauma_date_in("DOI 20260110, numb leg", rules) == dt.date(2026, 1, 10)
    assert trauma_date_in("2026-01-10 motorcycle accident", rules) == dt.date(2026, 1, 10)
    assert trauma_date_in("seen in clinic 2026-01-10 for leg weakness", rules) is None
    assert trauma_date_in("trauma, date unknown", rules) is None
    context = item_context(WorklistItem("A", "20260301", reason="plexopathy", comments="injury on 2026-02-01"))
    assert context.indication == "plexopathy; injury on 2026-02-01" and context.trauma_date is None
    scenario = interpret(context, rules, dt.date(2026, 3, 1))[0]
    assert scenario.trauma_date == dt.date(2026, 2, 1) and scenario.traumatic
    assert scenario.source("trauma_date") == "worklist Requested Procedure Comments"


def test_worklist_equals_check_order_on_the_same_item(servers: Servers) -> None:
    """Each worklist record is exactly the check-order record of its order (the one clinical judgement)."""
    _code, records, _err = run(servers.wlm)
    assert records
    for record in records:
        args = ["check-order", "--procedure", record["procedure"], "--indication", record["indication"],
                "--format", "json", "--fail-on", "never"]
        if record["procedure_code"]:
            args += ["--procedure-code", record["procedure_code"]]
        if record["scheduled_date"]:
            args += ["--scheduled", record["scheduled_date"]]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        alone = json.loads(result.stdout)
        for key in ("status", "recommended", "variant", "earliest_date", "ordered"):
            assert record[key] == alone[key], (record["accession_number"], key)
        assert [(f["code"], f["severity"], f["requirement"]) for f in record["findings"]] == \
            [(f["code"], f["severity"], f["requirement"]) for f in alone["findings"]], record["accession_number"]
    ct = next(r for r in records if r["accession_number"] == "WL-CT")
    assert ct["scenario"]["mri_contraindicated"] is True  # "MRI contraindicated (pacemaker)" in the reason
    assert ct["status"] == "pass"  # CT with IV contrast is then the first choice
