"""``listen``'s own C-STORE data path (`protocolcheck.net.fastpath`) against pynetdicom's.

The fast path must answer what pynetdicom would, byte for byte, and hand pynetdicom everything else. So: the
response and request encodings are compared with pynetdicom's own; raw peers send the PDU layouts the standard
allows (command and data set in one PDU, several messages per PDU, fragments of a few bytes, C-ECHO between
C-STOREs) and the malformed ones it does not, to a storage SCP with the fast path and to one without it, and
what comes back, what is stored and what is logged must be the same; dcmtk's storescu sends a multi-vendor
corpus in small PDUs and over TLS, and the fast path must be the one that served it.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from peers import MR_IMAGE, RawPeer, explicit_le, make_pki, mr_header, require_binaries, storescu
from pydicom.uid import generate_uid
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RSP
from pynetdicom.dimse_messages import C_STORE_RQ as C_STORE_RQ_MESSAGE
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import decode
from pynetdicom.pdu import P_DATA_TF

from protocolcheck.net.common import TlsOptions
from protocolcheck.net.fastpath import FastStoreDUL, command_elements, store_request, store_response
from protocolcheck.net.instances import InstanceKey
from protocolcheck.net.scp import ListenConfig, StorageSCP
from protocolcheck.testing import synth

pytestmark = [pytest.mark.network]

ECHO = "1.2.840.10008.1.1"


# -- encodings ----------------------------------------------------------------------------------------------------


def _pynetdicom_response(sop_class: str, sop_instance: str, message_id: int, status: int, context_id: int) -> bytes:
    """The P-DATA-TF PDU pynetdicom's StorageServiceClass sends for this answer."""
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    [primitive] = list(message.encode_msg(context_id, 16382))
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xA900, 0xC210, 0xC211, 0x0110])
@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.3.45", "1.2.826.0.1.3680043.8.498." + "9" * 36])
def test_the_response_is_pynetdicoms_byte_for_byte(status: int, sop_instance: str) -> None:
    for message_id, context_id, sop_class in ((1, 1, MR_IMAGE), (65535, 255, "1.2.840.10008.5.1.4.1.1.7")):
        request = store_request(context_id, {0x0002: sop_class.encode(), 0x0100: b"\x01\x00",
                                             0x0110: struct.pack("<H", message_id), 0x0800: b"\x02\x01",
                                             0x1000: sop_instance.encode()})
        assert request is not None
        assert store_response(request, status) == _pynetdicom_response(sop_class, sop_instance, message_id, status,
                                                                       context_id)


def _command_set(message: Any, primitive: Any) -> bytes:
    message.primitive_to_message(primitive)
    return bytes(next(message.encode_msg(1, 1 << 20)).presentation_data_value_list[0][1][1:])


def _store_rq(sop: str, message_id: int = 1, sop_class: str = MR_IMAGE, move_originator: str | None = None) -> bytes:
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = sop
    request.Priority = 2
    if move_originator:
        request.MoveOriginatorApplicationEntityTitle = move_originator
        request.MoveOriginatorMessageID = 7
    request.DataSet = BytesIO(b"\x00")
    return _command_set(C_STORE_RQ_MESSAGE(), request)


def _echo_rq(message_id: int) -> bytes:
    request = C_ECHO()
    request.MessageID = message_id
    request.AffectedSOPClassUID = ECHO
    return _command_set(C_ECHO_RQ(), request)


def test_requests_are_read_as_pynetdicom_encodes_them() -> None:
    sop = generate_uid()
    elements = command_elements(_store_rq(sop, 513, move_originator="ARCHIVE"))
    assert elements is not None
    assert store_request(3, elements) == store_request(3, command_elements(_store_rq(sop, 513)) or {})
    request = store_request(3, elements)
    assert request is not None and (request.context_id, request.message_id) == (3, 513)
    assert (request.sop_class, request.sop_instance) == (MR_IMAGE, sop)
    assert store_request(1, command_elements(_echo_rq(5)) or {}) is None  # not a C-STORE: pynetdicom's
    whole = _store_rq(sop)
    assert command_elements(whole[:-3]) is None  # cut inside an element
    assert command_elements(b"\x08\x00" + whole[2:]) is None  # not group 0000
    no_data = command_elements(whole) or {}
    assert store_request(1, {**no_data, 0x0800: b"\x01\x01"}) is None  # "no data set": pynetdicom's
    assert store_request(1, {**no_data, 0x1000: b"\xff\xfe"}) is None  # a UID that is not text


# -- raw peers: the same answers with and without the fast path --------------------------------------------------


def _pdv(data: bytes, control: int, context_id: int = 1) -> bytes:
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


def _pdu(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBL", 0x04, 0, len(body)) + body


def _dataset(sop: str, study: str, rows: int = 8) -> bytes:
    ds = mr_header(study, study + ".1", sop, rows, rows)
    ds.PixelData = bytes(range(256)) * (rows * rows * 2 // 256) + bytes(rows * rows * 2 % 256)
    return explicit_le(ds)


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[at:at + size] for at in range(0, len(data), size)]


Scenario = Callable[[str], list[bytes]]  # study UID -> the PDUs a raw peer sends


def _one_pdu(study: str) -> list[bytes]:
    sop = f"{study}.1.1"
    return [_pdu(_pdv(_store_rq(sop), 0x03), _pdv(_dataset(sop, study), 0x02))]


def _tiny_fragments(study: str) -> list[bytes]:
    """The command in fragments of 5 bytes, the data set in fragments of 7, three PDVs per PDU."""
    sop = f"{study}.1.2"
    command, data = _pieces(_store_rq(sop), 5), _pieces(_dataset(sop, study), 7)
    pdvs = [_pdv(p, 0x01 | (0x02 if n == len(command) - 1 else 0)) for n, p in enumerate(command)]
    pdvs += [_pdv(p, 0x02 if n == len(data) - 1 else 0x00) for n, p in enumerate(data)]
    return [_pdu(*pdvs[at:at + 3]) for at in range(0, len(pdvs), 3)]


def _two_per_pdu(study: str) -> list[bytes]:
    one, two = f"{study}.1.3", f"{study}.1.4"
    return [_pdu(_pdv(_store_rq(one, 1), 0x03), _pdv(_dataset(one, study), 0x02),
                 _pdv(_store_rq(two, 2), 0x03), _pdv(_dataset(two, study), 0x02))]


def _echo_between(study: str) -> list[bytes]:
    """C-STORE, C-ECHO and C-STORE, the C-ECHO sharing each of its neighbours' PDUs."""
    one, two = f"{study}.1.5", f"{study}.1.6"
    data_one, data_two = _dataset(one, study), _dataset(two, study)
    return [_pdu(_pdv(_store_rq(one, 1), 0x03), _pdv(data_one[:50], 0x00)),
            _pdu(_pdv(data_one[50:], 0x02), _pdv(_echo_rq(2), 0x03)),
            _pdu(_pdv(_store_rq(two, 3), 0x03), _pdv(data_two, 0x02))]


def _truncated(study: str) -> list[bytes]:
    sop = f"{study}.1.7"
    return [_pdu(_pdv(_store_rq(sop), 0x03), _pdv(_dataset(sop, study)[:-40], 0x02))]


def _no_uids(study: str) -> list[bytes]:
    sop = f"{study}.1.8"
    data = _dataset(sop, "")
    return [_pdu(_pdv(_store_rq(sop), 0x03), _pdv(data, 0x02))]


def _unknown_sop_class(study: str) -> list[bytes]:
    sop = f"{study}.1.9"
    return [_pdu(_pdv(_store_rq(sop, sop_class="1.2.3.4.5"), 0x03), _pdv(_dataset(sop, study), 0x02))]


def _context_not_accepted(study: str) -> list[bytes]:
    sop = f"{study}.1.10"
    return [_pdu(_pdv(_store_rq(sop), 0x03, context_id=3), _pdv(_dataset(sop, study), 0x02, context_id=3))]


def _data_before_command(study: str) -> list[bytes]:
    return [_pdu(_pdv(_dataset(f"{study}.1.11", study), 0x02))]


def _pdv_past_its_pdu(study: str) -> list[bytes]:
    sop = f"{study}.1.12"
    good = _pdu(_pdv(_store_rq(sop), 0x03))
    return [good[:6] + struct.pack(">L", 4000) + good[10:]]


def _command_without_data_set(study: str) -> list[bytes]:
    sop = f"{study}.1.13"
    elements = command_elements(_store_rq(sop)) or {}
    body = b"".join(struct.pack("<HHL", 0, e, len(v)) + v for e, v in sorted(
        {**elements, 0x0800: b"\x01\x01"}.items()) if e)
    command = struct.pack("<HHLL", 0, 0, 4, len(body)) + body
    return [_pdu(_pdv(command, 0x03)), *_one_pdu(study)]


SCENARIOS: dict[str, Scenario] = {
    "command and data set in one PDU": _one_pdu,
    "fragments of a few bytes": _tiny_fragments,
    "two instances in one PDU": _two_per_pdu,
    "a C-ECHO sharing PDUs with C-STOREs": _echo_between,
    "a data set cut short": _truncated,
    "a data set without its UIDs": _no_uids,
    "an unknown SOP class": _unknown_sop_class,
    "a presentation context not accepted": _context_not_accepted,
    "data set fragments before any command": _data_before_command,
    "a PDV longer than its PDU": _pdv_past_its_pdu,
    "a C-STORE command without data set": _command_without_data_set,
}
# pynetdicom reads one message per P-DATA PDU: the PDVs after the end of the first are dropped unanswered (its
# DIMSEMessage.decode_msg returns at the end of a message). The fast path answers each (handing pynetdicom one
# message per PDU); pynetdicom's own replies are then a part of those, in the same order.
PYNETDICOM_DROPS = {"two instances in one PDU": [0x8001, 0x8001],
                    "a C-ECHO sharing PDUs with C-STOREs": [0x8001, 0x8030, 0x8001]}
# Answers go out in the order of the requests: a C-STORE arriving while pynetdicom has yet to answer what it was
# handed is handed to it too.
PYNETDICOM_SERVES = {"a C-ECHO sharing PDUs with C-STOREs": [True, False],
                     "a C-STORE command without data set": [False]}


def _replies(peer: RawPeer) -> list[tuple[int, int | None, int | None]]:
    """(PDU type, command field, status) of everything the SCP sends until it aborts, closes or falls silent."""
    out: list[tuple[int, int | None, int | None]] = []
    peer.sock.settimeout(1.5)
    while True:
        try:
            kind, body = peer.read_pdu()
        except (OSError, ConnectionError):
            return out
        if kind != 0x04:
            out.append((kind, None, None))
            if kind == 0x07:
                return out
            continue
        command = decode(BytesIO(body[6:]), True, True)
        out.append((kind, int(command.CommandField), int(command.Status)))


def _scp(root: Path, fast: bool, on_instance: Callable[[InstanceKey, Path], None] | None = None,
         **options: Any) -> StorageSCP:
    scp = StorageSCP(ListenConfig(store=root, port=0, idle=60.0, fast_store=fast, **options), lambda _: None,
                     on_instance=on_instance)
    scp.start()
    return scp


def _recording(where: list[bool]) -> Callable[[InstanceKey, Path], None]:
    """An ``on_instance`` hook noting for each instance whether the reader thread (the fast path) stored it."""

    def hook(key: InstanceKey, path: Path) -> None:
        where.append(isinstance(threading.current_thread(), FastStoreDUL))

    return hook


def _stored(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*/*.dcm"))}


def _rejections(scp: StorageSCP) -> list[tuple[str, str, str]]:
    return [(r["sop_instance_uid"], r["status"], r["reason"]) for r in scp.store.rejections()]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_raw_peers_get_the_same_answers_with_and_without_the_fast_path(tmp_path: Path, name: str) -> None:
    study = generate_uid(prefix=None)  # 2.25.<UUID>: room for the scenarios' suffixes within 64 characters
    outcome = {}
    for fast in (True, False):
        where: list[bool] = []
        scp = _scp(tmp_path / f"store-{fast}", fast, _recording(where))
        try:
            peer = RawPeer(scp.address[1])
            for pdu in SCENARIOS[name](study):
                peer.sock.sendall(pdu)
            replies = _replies(peer)
            if replies[-1:] != [(0x07, None, None)]:
                peer.release()
        finally:
            scp.stop(grace=2)
        stored = _stored(scp.store.root)
        # every instance stored by the path under test (pynetdicom's while it has an answer to give first)
        assert where == (PYNETDICOM_SERVES.get(name, [True] * len(stored)) if fast else [False] * len(stored))
        outcome[fast] = (replies, stored, _rejections(scp))
    if name in PYNETDICOM_DROPS:
        fast_replies, slow_replies = outcome[True][0], outcome[False][0]
        assert [r[1] for r in fast_replies if r[0] == 0x04] == PYNETDICOM_DROPS[name]
        assert all(r[2] == 0 for r in fast_replies if r[0] == 0x04)
        assert len(slow_replies) < len(fast_replies)
        rest = iter(fast_replies)
        assert all(reply in rest for reply in slow_replies)  # in the same order
        assert outcome[True][1].items() >= outcome[False][1].items() and outcome[True][2] == outcome[False][2] == []
    else:
        assert outcome[True] == outcome[False]
    print(f"\n{name}: {outcome[True][0]}")


# -- dcmtk: the corpus in small PDUs, and over TLS ----------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_binaries("storescu")
    src = tmp_path_factory.mktemp("fastpath-corpus")
    synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, "F-SIE"), src / "a")
    synth.write_study(replace(synth.plexus_study(synth.Vendor.GE, "F-GE"), syntax=synth.Syntax.IMPLICIT_LE), src / "b")
    synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS_XA, "F-XA"), src / "c")  # enhanced MR
    synth.write_study(replace(synth.plexus_study(synth.Vendor.PHILIPS, "F-PH"), syntax=synth.Syntax.DEFLATED),
                      src / "d")
    return src


@pytest.mark.parametrize("extra", [["-R"], ["-R", "--max-send-pdu", "4096"]], ids=["own PDUs", "4 KB PDUs"])
def test_storescu_corpus_is_stored_alike_and_by_the_fast_path(tmp_path: Path, corpus: Path, extra: list[str]) -> None:
    stores = {}
    for fast in (True, False):
        where: list[bool] = []
        scp = _scp(tmp_path / f"store-{fast}", fast, _recording(where))
        try:
            result = storescu(scp.address[1], [corpus], extra=extra)
            assert result.returncode == 0, result.stderr
        finally:
            scp.stop(grace=2)
        stores[fast] = _stored(scp.store.root)
        assert where and where == [fast] * len(where)
    files = sum(1 for p in corpus.rglob("*") if p.is_file())
    assert len(stores[True]) == files
    assert stores[True] == stores[False]


def test_tls_associations_are_served_by_the_fast_path(tmp_path: Path, corpus: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    where: list[bool] = []
    tls = TlsOptions(cert=str(pki.server_cert), key=str(pki.server_key), ca=str(pki.ca))
    scp = _scp(tmp_path / "store", True, _recording(where), tls=tls)
    try:
        result = storescu(scp.address[1], [corpus / "a"], tls=pki)
        assert result.returncode == 0, result.stderr
    finally:
        scp.stop(grace=2)
    sent = sum(1 for p in (corpus / "a").rglob("*") if p.is_file())
    assert len(_stored(scp.store.root)) == sent and where == [True] * sent
