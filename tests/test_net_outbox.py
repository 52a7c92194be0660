"""The durable SR outbox (`protocolcheck.net.outbox`) and its sender (`protocolcheck.net.push.StoreQueue`).

Real peers on 127.0.0.1: a pynetdicom storage SCP that answers each C-STORE with the next status of a
script (Out of Resources for a while, then success; or Cannot Understand), a port where nothing
listens (the PACS down), and Orthanc answering Out of Resources (0xA700, what Orthanc 1.10 answers to
any failure while storing; here its Lua filter fails) until it is allowed to store. Orthanc 1.10 cannot
be made to refuse *for good* with a status (a Lua filter returning false drops the instance and answers
success; a modality without AllowStore gets its association aborted, no status), so the PACS that
refuses for good is pynetdicom's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from peers import free_port, orthanc
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage  # type: ignore[attr-defined]

from protocolcheck.net.common import Peer
from protocolcheck.net.outbox import Outbox, OutboxFull
from protocolcheck.net.push import StoreQueue, permanent_status
from protocolcheck.testing import synth

pytestmark = [pytest.mark.network, pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]

OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


class ScriptedPacs:
    """A pynetdicom storage SCP answering C-STOREs with ``script`` in turn (its last status from then on)."""

    def __init__(self, script: Sequence[int]) -> None:
        self.script = list(script)
        self.received: list[tuple[int, str]] = []  # (status answered, SOP Instance UID)
        self.choke: set[str] = set()  # SOP Instance UIDs answered Out of Resources every time
        self.lock = threading.Lock()
        ae = AE(ae_title="PACS")
        ae.add_supported_context(ComprehensiveSRStorage)
        self.server = ae.start_server(("127.0.0.1", 0), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = int(self.server.server_address[1])

    def _store(self, event: evt.Event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        with self.lock:
            status = self.script[min(len(self.received), len(self.script) - 1)]
            status = OUT_OF_RESOURCES if uid in self.choke else status
            self.received.append((status, uid))
        return status

    def wait(self, n: int, timeout: float = 15.0) -> list[tuple[int, str]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            assert time.monotonic() < deadline, self.received
            time.sleep(0.02)
        return list(self.received)

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def pacs() -> Iterator[Callable[[Sequence[int]], ScriptedPacs]]:
    started: list[ScriptedPacs] = []

    def start(script: Sequence[int]) -> ScriptedPacs:
        started.append(ScriptedPacs(script))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def push_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog seeing the sender's records even when an in-process CLI test stopped `protocolcheck` propagating."""
    logger = logging.getLogger("protocolcheck.net.push")
    caplog.set_level(logging.INFO, logger=logger.name)
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    folder = tmp_path_factory.mktemp("study")
    synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, "OUTBOX1"), folder)
    return pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)


def _report(image: Dataset) -> Dataset:
    """A Comprehensive SR in the study of ``image`` (as listen --send-sr makes them)."""
    root = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept("AUDIT", "99PCHECK", "Imaging protocol compliance audit"))
    root.ContentSequence = [hd.sr.TextContentItem(name=hd.sr.CodedConcept("121106", "DCM", "Comment"),
                                                  value="No findings.", relationship_type="CONTAINS")]
    return hd.sr.ComprehensiveSR(evidence=[image], content=root, series_instance_uid=generate_uid(), series_number=9901,
                                 sop_instance_uid=generate_uid(), instance_number=1, manufacturer="protocolcheck")


def _queue(store: Path, port: int, *, max_items: int = 10, max_bytes: int = 10_000_000) -> StoreQueue:
    queue = StoreQueue(Peer("127.0.0.1", port, "PACS", "PROTOCOLCHECK"),
                       Outbox(store, max_items=max_items, max_bytes=max_bytes), first_delay=0.2, max_delay=0.4)
    queue.prepare()
    return queue


def _waiting(store: Path) -> list[str]:
    return sorted(p.name for p in (store / ".outbox").glob("*.dcm"))


def _wait(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_on_disk_before_put_returns_and_kept_until_acknowledged(tmp_path: Path, image: Dataset, pacs) -> None:
    """Out of Resources is the PACS full for now: the report stays in the outbox and is tried again
    until the PACS says success; only then is the file gone."""
    server = pacs([OUT_OF_RESOURCES, OUT_OF_RESOURCES, 0x0000])
    queue = _queue(tmp_path, server.port)
    report = _report(image)
    assert queue.put(report, "the report")
    on_disk = pydicom.dcmread(tmp_path / ".outbox" / f"{report.SOPInstanceUID}.dcm")  # before the sender started
    assert on_disk.SOPInstanceUID == report.SOPInstanceUID and on_disk.file_meta.TransferSyntaxUID
    queue.start()
    try:
        answers = server.wait(3)
        _wait(lambda: not _waiting(tmp_path))
    finally:
        queue.stop()
    assert answers == [(OUT_OF_RESOURCES, report.SOPInstanceUID), (OUT_OF_RESOURCES, report.SOPInstanceUID),
                       (0x0000, report.SOPInstanceUID)]
    assert (queue.counters.sent, queue.counters.retried, queue.counters.refused) == (1, 2, 0)
    assert not list((tmp_path / ".outbox" / "failed").iterdir())
    assert queue.outbox.known(report.SOPInstanceUID) == "sent"  # its marker: not sent twice after a restart
    assert [p.name for p in (tmp_path / ".outbox" / "sent").iterdir()] == [report.SOPInstanceUID]


def test_refused_for_good_goes_to_failed_and_is_not_retried(tmp_path: Path, image: Dataset, pacs,
                                                            push_log: pytest.LogCaptureFixture) -> None:
    """Cannot Understand (0xC000) will not change by sending the same bytes again: moved to failed/ with
    the reason, logged, counted, not tried again; the next report is still sent."""
    server = pacs([CANNOT_UNDERSTAND, 0x0000])
    queue = _queue(tmp_path, server.port)
    bad, good = _report(image), _report(image)
    queue.put(bad, "the bad report")
    queue.start()
    try:
        server.wait(1)
        _wait(lambda: not _waiting(tmp_path))
        queue.put(good, "the good report")
        server.wait(2)
        _wait(lambda: not _waiting(tmp_path))
        time.sleep(1.0)  # more than two back-off rounds: nothing is tried again
    finally:
        queue.stop()
    assert server.received == [(CANNOT_UNDERSTAND, bad.SOPInstanceUID), (0x0000, good.SOPInstanceUID)]
    failed = tmp_path / ".outbox" / "failed"
    assert sorted(p.name for p in failed.iterdir()) == [f"{bad.SOPInstanceUID}.dcm", f"{bad.SOPInstanceUID}.reason.txt"]
    assert "0xC000" in (failed / f"{bad.SOPInstanceUID}.reason.txt").read_text()
    assert (queue.counters.sent, queue.counters.refused, queue.counters.retried) == (1, 1, 0)
    assert any("refused the bad report for good" in r.getMessage() and r.levelname == "ERROR" for r in push_log.records)
    assert queue.outbox.known(bad.SOPInstanceUID) == "refused"
    assert permanent_status(0xA900) and permanent_status(0x0122) and not permanent_status(0xA7FF)


def test_a_report_the_pacs_keeps_failing_does_not_hold_the_others_back(tmp_path: Path, image: Dataset,
                                                                       pacs) -> None:
    """The oldest report is answered Out of Resources every time (the PACS chokes on it), the others are
    taken: they are stored while it waits for its next turn, still in the outbox."""
    server = pacs([0x0000])
    stuck = _report(image)
    server.choke.add(str(stuck.SOPInstanceUID))
    queue = _queue(tmp_path, server.port)
    others = [_report(image), _report(image)]
    assert queue.put(stuck, "the stuck report")
    time.sleep(0.05)  # oldest first: the stuck one heads the queue
    assert all(queue.put(r) for r in others)
    queue.start()
    try:
        _wait(lambda: {uid for status, uid in server.received if status == 0} ==
              {str(r.SOPInstanceUID) for r in others})
    finally:
        queue.stop(drain=0)
    assert _waiting(tmp_path) == [f"{stuck.SOPInstanceUID}.dcm"]
    assert queue.counters.sent == 2 and queue.counters.refused == 0


def test_a_later_run_sends_what_an_earlier_one_left(tmp_path: Path, image: Dataset, pacs) -> None:
    """The PACS is down (nothing listens): the report waits on disk across a restart of the sender and
    is sent, once, when a PACS answers."""
    down = free_port()
    first = _queue(tmp_path, down)
    report = _report(image)
    first.put(report)
    first.start()
    _wait(lambda: first.counters.retried >= 1)
    first.stop(drain=0.5)
    assert _waiting(tmp_path) == [f"{report.SOPInstanceUID}.dcm"]
    server = pacs([0x0000])
    second = _queue(tmp_path, server.port)
    assert second.outbox.usage()[0] == 1
    assert second.outbox.known(report.SOPInstanceUID) == "waiting"
    assert second.put(report)  # the same verdict made again at restart: the same file, not a second one
    assert _waiting(tmp_path) == [f"{report.SOPInstanceUID}.dcm"]
    second.start()
    try:
        server.wait(1)
        _wait(lambda: not _waiting(tmp_path))
    finally:
        second.stop()
    assert server.received == [(0x0000, report.SOPInstanceUID)]


def test_a_full_outbox_refuses_at_once_and_counts(tmp_path: Path, image: Dataset,
                                                  push_log: pytest.LogCaptureFixture) -> None:
    queue = _queue(tmp_path, free_port(), max_items=2)
    reports = [_report(image) for _ in range(3)]
    started = time.monotonic()
    assert [queue.put(r) for r in reports] == [True, True, False]
    assert time.monotonic() - started < 2.0  # never waits on the PACS
    assert queue.counters.full == 1 and len(_waiting(tmp_path)) == 2
    assert any("outbox full" in r.getMessage() and r.levelname == "ERROR" for r in push_log.records)
    size = (tmp_path / ".outbox" / _waiting(tmp_path)[0]).stat().st_size
    small = Outbox(tmp_path / "other", max_items=10, max_bytes=size + size // 2)
    small.prepare()
    small.add(reports[0])
    with pytest.raises(OutboxFull, match="bytes"):
        small.add(reports[1])
    assert small.usage() == (1, size)


def test_orthanc_out_of_resources_is_retried_until_it_stores(tmp_path: Path, image: Dataset,
                                                              push_log: pytest.LogCaptureFixture) -> None:
    """A real Orthanc answers 0xA700 while its storage filter fails; the report stays in the outbox and
    lands once Orthanc stores again."""
    flag = tmp_path / "refusing"
    flag.touch()
    lua = tmp_path / "filter.lua"
    lua.write_text("function ReceivedInstanceFilter(dicom, origin, info)\n"
                   f"  local f = io.open({json.dumps(str(flag))}, 'r')\n"
                   "  if f ~= nil then f:close(); error('storage unavailable') end\n"
                   "  return true\nend\n")
    rest = free_port()
    with orthanc(tmp_path / "orthanc", aet="PACS", worklist=False,
                 extra={"LuaScripts": [str(lua)], "HttpServerEnabled": True, "HttpPort": rest}) as pacs:
        queue = _queue(tmp_path / "store", pacs.port)
        report = _report(image)
        queue.put(report)
        queue.start()
        try:
            _wait(lambda: queue.counters.retried >= 2)
            assert _waiting(tmp_path / "store") == [f"{report.SOPInstanceUID}.dcm"]
            assert any("0xA700" in r.getMessage() and "retrying" in r.getMessage() for r in push_log.records)
            flag.unlink()
            _wait(lambda: not _waiting(tmp_path / "store"))
        finally:
            queue.stop()
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/instances?expand", timeout=5) as response:
            stored = json.load(response)
    assert [i["MainDicomTags"]["SOPInstanceUID"] for i in stored] == [report.SOPInstanceUID]
    assert (queue.counters.sent, queue.counters.refused) == (1, 0)
