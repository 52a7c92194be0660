"""Query/retrieve client: find studies in a PACS (C-FIND) and pull them one at a time (C-GET or C-MOVE).

:func:`find_studies` runs a Study Root C-FIND at STUDY level. :func:`pull_studies` retrieves each
match into a private temporary folder, yields it, and deletes it when the caller asks for the next
one (or stops), so never more than one study's files are on disk. A retrieval that fails is yielded
with its error and the loop goes on with the next study; once the PACS has been unreachable or
silent for two studies in a row, the remaining studies are reported as not retrieved without
waiting for each (a hung PACS would otherwise cost a full timeout per study).

Every wait for the peer is bounded by :class:`~.common.Timeouts`: a peer that stops answering is a
:class:`~.common.NetError` of kind ``TIMEOUT`` after that many seconds, never a hang and never
retried (the same peer rarely answers a second time what it did not answer the first).

C-GET needs nothing configured on the PACS besides our AE title; C-MOVE needs the PACS to know our
AE title with this host and ``move_port``, where a temporary storage SCP receives the study (it only
accepts instances of the study being moved).
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

from protocolcheck.net.common import (
    DEFAULT_TIMEOUTS,
    NOT_DEFLATED,
    PENDING,
    STORAGE_SOP_CLASSES,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
    FindEnd,
    NetError,
    NetErrorKind,
    Peer,
    Timeouts,
    TlsOptions,
    associate,
    find,
    new_ae,
    peer_aborted,
    release,
    request_contexts,
    retrieve_contexts,
    server_ssl_context,
    status_text,
    storage_contexts,
    support_contexts,
    validate_date_range,
)
from protocolcheck.net.instances import InstanceKey, InstanceStore
from protocolcheck.net.receiving import Exceeded, receiving_handlers
from protocolcheck.net.scp import Counters, handle_store
from protocolcheck.net.transport import start_guarded_server, stop_server

LOG = logging.getLogger("protocolcheck.net.qr")

_MOVE_DESTINATION_UNKNOWN = 0xA801
_ABORT_HINT = ("the peer aborted the association instead of answering; a PACS does this when our AE "
               "title {aet!r} is not configured on it (add it, with this host, to its known modalities)")


class RetrieveMethod(str, Enum):
    GET = "get"
    MOVE = "move"


@dataclass(frozen=True)
class StudyQuery:
    """Study-level matching keys; empty means "any". ``date`` is a DICOM DA or range."""

    date: str = ""
    modality: str = ""
    accession: str = ""
    description: str = ""
    study_uid: str = ""

    def identifier(self) -> Dataset:
        """The C-FIND identifier: these matching keys plus the return keys we need (no patient data)."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = self.study_uid
        ds.AccessionNumber = self.accession
        ds.StudyDate = validate_date_range(self.date) if self.date else ""
        ds.StudyTime = ""
        ds.StudyDescription = self.description if _has_wildcards(self.description) else ""
        ds.ModalitiesInStudy = self.modality.upper()
        ds.NumberOfStudyRelatedSeries = None
        ds.NumberOfStudyRelatedInstances = None
        return ds

    def accepts(self, match: StudyMatch) -> bool:
        """What the archive may not have filtered: plain description text (anywhere, ignoring case)
        and the modality (some archives ignore ModalitiesInStudy)."""
        text = self.description.strip().lower()
        if text and not _has_wildcards(text) and text not in match.study_description.lower():
            return False
        wanted = self.modality.upper()
        return not (wanted and match.modalities and wanted not in match.modalities)


def _has_wildcards(text: str) -> bool:
    """Text with DICOM wildcards is matched by the PACS as given (case-sensitive, as DICOM says);
    plain text is matched here, anywhere in the description and ignoring case."""
    return "*" in text or "?" in text


@dataclass(frozen=True)
class StudyMatch:
    """One study the PACS reported."""

    study_instance_uid: str
    accession_number: str = ""
    study_date: str = ""
    study_description: str = ""
    modalities: tuple[str, ...] = ()
    instances: int | None = None
    series: int | None = None

    def label(self) -> str:
        return f"accession {self.accession_number or '-'} (study {self.study_instance_uid})"


def match_from(ds: Dataset) -> StudyMatch | None:
    uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    if not uid:
        return None
    modalities = ds.get("ModalitiesInStudy", "") or ""
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split("\\") if m]
    instances = _count(ds, "NumberOfStudyRelatedInstances")
    return StudyMatch(
        study_instance_uid=uid,
        accession_number=str(ds.get("AccessionNumber", "") or "").strip(),
        study_date=str(ds.get("StudyDate", "") or "").strip(),
        study_description=str(ds.get("StudyDescription", "") or "").strip(),
        modalities=tuple(str(m).strip().upper() for m in modalities),
        instances=instances,
        series=_count(ds, "NumberOfStudyRelatedSeries"),
    )


def _count(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(ds.get(keyword, "") or 0) or None
    except (TypeError, ValueError):
        return None


def find_studies(peer: Peer, query: StudyQuery, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> list[StudyMatch]:
    """Study Root C-FIND; NetError when the peer cannot be reached, stops answering or the query fails.

    Matches on another modality are dropped here too, for archives that ignore ModalitiesInStudy.
    """
    too_large: list[Exceeded] = []
    replies, end = find(peer, STUDY_ROOT_FIND, query.identifier(), timeouts,
                        evt_handlers=receiving_handlers(on_exceeded=too_large.append))
    if too_large:
        raise NetError(NetErrorKind.FAILED, f"C-FIND on {peer}: a reply refused, {too_large[0].reason}; "
                       "the association was aborted")
    matches = [match for match in map(match_from, replies) if match is not None]
    if end is FindEnd.ABORTED:
        raise NetError(NetErrorKind.ABORTED, f"C-FIND on {peer}: {_ABORT_HINT.format(aet=peer.calling_aet)}"
                       + (f" ({len(matches)} matches had arrived)" if matches else ""))
    if end is FindEnd.SILENT:
        raise NetError(NetErrorKind.TIMEOUT, f"C-FIND on {peer}: no reply within {timeouts.dimse:g} s "
                       f"(the peer stopped answering after {len(matches)} matches)")
    return select_matches(matches, query)


def select_matches(matches: Iterable[StudyMatch], query: StudyQuery) -> list[StudyMatch]:
    """The matches ``query`` accepts, each study once, in date order (every search path ends here)."""
    unique: dict[str, StudyMatch] = {}
    for match in matches:
        if query.accepts(match):
            unique.setdefault(match.study_instance_uid, match)
    return sorted(unique.values(), key=lambda m: (m.study_date, m.accession_number, m.study_instance_uid))


@dataclass
class PulledStudy:
    """A study retrieved into ``folder`` (deleted when the iteration moves on), or why it was not."""

    match: StudyMatch
    folder: Path | None
    received: int = 0
    refused: int = 0
    error: NetError | None = None
    notes: list[str] = field(default_factory=list)


class _Target:
    """Where the current study's instances go; the C-STORE handler checks each against it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.study_uid = ""
        self.store: InstanceStore | None = None
        self.received = 0

    def set(self, study_uid: str, store: InstanceStore | None) -> None:
        with self.lock:
            self.study_uid, self.store, self.received = study_uid, store, 0

    def accept(self, key: InstanceKey) -> str:
        if key.study != self.study_uid:
            return f"not part of the study being retrieved ({self.study_uid or 'none'})"
        return ""

    def stored(self, key: InstanceKey, path: Path) -> None:
        with self.lock:
            self.received += 1

    def handlers(self, counters: Counters) -> list[Any]:
        """C-STORE into the current study, each received message bounded (:mod:`.receiving`): one past the bound
        aborts the association, counts as refused and is logged in the study's ``.rejected.jsonl``."""
        def oversized(report: Exceeded) -> None:
            counters.add("refused")
            if (store := self.store) is not None:
                store.log_rejection(report.rejection())

        return [(evt.EVT_C_STORE, _store_handler, [self, counters]), *receiving_handlers(on_exceeded=oversized)]


def _store_handler(event: evt.Event, target: _Target, counters: Counters) -> int:
    store = target.store
    if store is None:
        return 0xA900  # nothing is being retrieved: refuse
    return handle_store(event, store, counters, target.stored, target.accept)


class _MoveDestination:
    """A storage SCP on ``bind:port`` under our AE title, receiving C-MOVE sub-operations."""

    def __init__(self, aet: str, bind: str, port: int, timeouts: Timeouts, target: _Target,
                 counters: Counters, tls: TlsOptions | None = None) -> None:
        try:
            ssl_context = server_ssl_context(tls) if tls is not None else None
        except ValueError as exc:
            raise NetError(NetErrorKind.TLS, f"cannot receive C-MOVE over TLS: {exc}") from exc
        ae = new_ae(aet, timeouts)
        ae.require_called_aet = True
        support_contexts(ae, storage_contexts())
        ae.add_supported_context(VERIFICATION)
        try:
            self.server = start_guarded_server(
                ae, (bind, port), ssl_context=ssl_context, pdu_seconds=timeouts.pdu,
                handshake_timeout=timeouts.acse, evt_handlers=target.handlers(counters))
        except OSError as exc:
            raise NetError(NetErrorKind.FAILED,
                           f"cannot listen on {bind}:{port} for C-MOVE: {exc.strerror or exc}") from exc

    def close(self) -> None:
        stop_server(self.server, grace=1.0)


def _final_counts(status: Dataset | None) -> tuple[int, int, int]:
    def n(name: str) -> int:
        try:
            return int(getattr(status, name, 0) or 0)
        except (TypeError, ValueError):
            return 0
    return n("NumberOfCompletedSuboperations"), n("NumberOfFailedSuboperations"), n("NumberOfWarningSuboperations")


def _retrieve_identifier(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def _run_retrieve(assoc: Any, method: RetrieveMethod, study_uid: str, move_aet: str,
                  last_reply: list[float] | None = None) -> Dataset | None:
    """Send C-GET/C-MOVE; return the final status (None when no final reply came).

    ``last_reply[0]`` is set to the time of each reply as it arrives.
    """
    identifier = _retrieve_identifier(study_uid)
    if method is RetrieveMethod.GET:
        responses = assoc.send_c_get(identifier, STUDY_ROOT_GET)
    else:
        responses = assoc.send_c_move(identifier, move_aet, STUDY_ROOT_MOVE)
    final = None
    for status, _identifier in responses:
        code = getattr(status, "Status", None)
        if code is None:
            return None
        if last_reply is not None:
            last_reply[0] = time.monotonic()
        if code not in PENDING:
            final = status
    return final


def retrieve_study(peer: Peer, match: StudyMatch, folder: Path, method: RetrieveMethod, target: _Target,
                   counters: Counters, timeouts: Timeouts) -> PulledStudy:
    """Retrieve one study into ``folder``; the result says how many arrived, or the error."""
    store = InstanceStore(folder, fsync=False)
    target.set(match.study_instance_uid, store)
    refused_before = counters.refused
    pulled = PulledStudy(match, None)
    try:
        ae = new_ae(peer.calling_aet, timeouts)
        ext_neg, handlers = _propose_retrieve(ae, method, target, counters)
        op = f"C-{method.value.upper()}"
        assoc = associate(ae, peer, ext_neg=ext_neg or None, evt_handlers=handlers)
        last_reply = [time.monotonic()]
        try:
            final = _run_retrieve(assoc, method, match.study_instance_uid, peer.calling_aet, last_reply)
            aborted = final is None and peer_aborted(last_reply[0], timeouts)
        finally:
            release(assoc)
        pulled.received = target.received
        pulled.refused = counters.refused - refused_before
        if final is None and pulled.refused:  # we aborted (an instance past the size bound), or the PACS did after
            raise NetError(NetErrorKind.FAILED, f"{op} of {match.label()} from {peer}: {pulled.refused} instance(s) "
                           "could not be stored (see the log) and the association was aborted; not audited")
        if final is None and not aborted:
            raise NetError(NetErrorKind.TIMEOUT,
                           f"{op} of {match.label()} from {peer}: no reply within {timeouts.dimse:g} s (the peer "
                           f"stopped answering; {pulled.received} instances had arrived, none audited)")
        if final is None:
            why = _ABORT_HINT.format(aet=peer.calling_aet) if not target.received else \
                f"the association broke off after {pulled.received} instances (none audited)"
            raise NetError(NetErrorKind.ABORTED, f"{op} of {match.label()} from {peer}: {why}")
        _judge_final_status(final, op, peer, method, pulled)
        if pulled.refused:
            raise NetError(NetErrorKind.FAILED,
                           f"{op} of {match.label()}: {pulled.refused} instance(s) could not be stored "
                           "(see the log); not audited on partial data")
        if pulled.received == 0:
            raise NetError(NetErrorKind.FAILED, f"{op} of {match.label()} from {peer}: no instances received")
        if match.instances and pulled.received < match.instances:
            pulled.notes.append(f"received {pulled.received} of {match.instances} instances the PACS listed")
        pulled.folder = store.study_dir(match.study_instance_uid)
        return pulled
    except NetError as exc:
        pulled.error = exc
        pulled.received = target.received
        return pulled
    finally:
        target.set("", None)


def _propose_retrieve(ae: AE, method: RetrieveMethod, target: _Target,
                      counters: Counters) -> tuple[list[Any], list[Any]]:
    """Add the presentation contexts of a C-GET or C-MOVE to ``ae``; the extended negotiation and event
    handlers the association needs (a C-GET receives the instances on it, as the SCP of each storage class)."""
    ext_neg: list[Any] = []
    handlers: list[Any] = []
    if method is RetrieveMethod.GET:
        ae.add_requested_context(STUDY_ROOT_GET, list(NOT_DEFLATED))
        request_contexts(ae, retrieve_contexts())
        for uid in STORAGE_SOP_CLASSES:
            role = SCP_SCU_RoleSelectionNegotiation()
            role.sop_class_uid = uid
            role.scu_role = False
            role.scp_role = True
            ext_neg.append(role)
        handlers.extend(target.handlers(counters))
    else:
        ae.add_requested_context(STUDY_ROOT_MOVE, list(NOT_DEFLATED))
    return ext_neg, handlers


def _judge_final_status(final: Dataset, op: str, peer: Peer, method: RetrieveMethod, pulled: PulledStudy) -> None:
    """Raise NetError when the final C-GET/C-MOVE status says the retrieve failed; note its warnings."""
    match = pulled.match
    code = int(final.Status)
    completed, failed, warning = _final_counts(final)
    if code == _MOVE_DESTINATION_UNKNOWN:
        raise NetError(NetErrorKind.FAILED,
                       f"{op} of {match.label()}: {peer.called_aet} does not know the move destination "
                       f"{peer.calling_aet!r}; configure it on the PACS (AE title, this host, --move-port)")
    if code not in (0x0000, 0xB000) or failed:
        hint = ""
        nothing_moved = not (completed or failed or pulled.received)
        if method is RetrieveMethod.MOVE and code & 0xF000 == 0xC000 and nothing_moved:
            hint = (f"; the PACS may not know the move destination {peer.calling_aet!r}: configure it there "
                    "(AE title, this host, --move-port), or use --retrieve get")
        raise NetError(NetErrorKind.FAILED,
                       f"{op} of {match.label()} from {peer} failed: status {status_text(final)}; "
                       f"{failed} failed, {completed} completed, {pulled.received} received{hint}")
    if code == 0xB000 or warning:
        pulled.notes.append(f"{op} finished with warnings ({warning} sub-operations)")


def default_move_bind(host: str) -> str:
    """Where our C-MOVE destination listens by default: loopback for a PACS on this machine, else
    every interface (the PACS must be able to connect back)."""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    return "127.0.0.1" if local else "0.0.0.0"


PEER_DOWN_LIMIT = 2  # studies in a row with the PACS unreachable or silent before the rest are skipped
_PEER_DOWN = (NetErrorKind.UNREACHABLE, NetErrorKind.TIMEOUT)


def pull_studies(peer: Peer, matches: Sequence[StudyMatch], *, method: RetrieveMethod = RetrieveMethod.GET,
                 move_port: int | None = None, move_bind: str = "127.0.0.1", workdir: str | None = None,
                 timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 move_tls: TlsOptions | None = None) -> Generator[PulledStudy, None, None]:
    """Retrieve each study in turn; yield it; delete its files before retrieving the next.

    Raises NetError only when the C-MOVE destination cannot be opened; per-study failures are
    yielded (``error`` set) so that the caller reports them and goes on. After
    :data:`PEER_DOWN_LIMIT` studies in a row failed because the PACS was unreachable or silent,
    the remaining ones are yielded as failures without contacting it. ``move_tls`` makes the
    C-MOVE destination a TLS server (the PACS then connects to it over TLS).
    """
    target = _Target()
    counters = Counters()
    destination: _MoveDestination | None = None
    if method is RetrieveMethod.MOVE:
        if not move_port:
            raise NetError(NetErrorKind.FAILED, "C-MOVE needs --move-port: the port the PACS sends the study to")
        destination = _MoveDestination(peer.calling_aet, move_bind, move_port, timeouts, target, counters, move_tls)
    down = 0
    try:
        for match in matches:
            if down >= PEER_DOWN_LIMIT:
                yield PulledStudy(match, None, error=NetError(
                    NetErrorKind.UNREACHABLE, f"{match.label()} not retrieved: {peer} was unreachable or did not "
                    f"answer for the previous {down} studies"))
                continue
            folder = Path(tempfile.mkdtemp(prefix="protocolcheck-query-", dir=workdir))
            try:
                pulled = retrieve_study(peer, match, folder, method, target, counters, timeouts)
                down = down + 1 if pulled.error is not None and pulled.error.kind in _PEER_DOWN else 0
                yield pulled
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if destination is not None:
            destination.close()
