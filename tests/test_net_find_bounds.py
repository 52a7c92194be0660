"""A hostile C-FIND peer (a pynetdicom SCP on 127.0.0.1) cannot hold ``query`` or ``worklist`` without
bound (net/common.find): replies dripped just inside the reply timeout end at the overall deadline
(5 x --timeout), and a flood of matches ends at the reply limit, the association aborted either way."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from peers import HOST
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from protocolcheck.cli import main
from protocolcheck.net.common import NetError, NetErrorKind, Peer, Timeouts, find

pytestmark = [pytest.mark.network]


def hostile_pacs(replies: int, every: float) -> Iterator[int]:
    def handler(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        for i in range(replies):
            if every:
                time.sleep(every)
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.3811.{i + 1}"
            ds.AccessionNumber = f"H{i}"
            yield 0xFF00, ds
        yield 0x0000, None

    ae = AE("HOSTILE")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_FIND, handler)])
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()


@pytest.fixture
def dripping() -> Iterator[int]:
    yield from hostile_pacs(60, 1.5)


@pytest.fixture
def flooding() -> Iterator[int]:
    yield from hostile_pacs(2000, 0.0)


def test_dripped_replies_end_at_the_overall_deadline(dripping: int) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(main, ["query", HOST, str(dripping), "--called-aet", "HOSTILE", "--timeout", "2",
                                       "--no-db", "--quiet"])
    took = time.monotonic() - started
    assert result.exit_code == 3, result.output
    assert "no complete answer within 10 s" in result.output
    assert took < 15, took  # 5 x --timeout, not 60 replies x 1.5 s


def test_a_flood_of_matches_ends_at_the_reply_limit(flooding: int) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    with pytest.raises(NetError) as err:
        find(Peer(HOST, flooding, "HOSTILE"), StudyRootQueryRetrieveInformationModelFind, identifier,
             Timeouts.from_option(30), max_replies=300)
    assert err.value.kind is NetErrorKind.FAILED and "more than 300 matches" in str(err.value)
