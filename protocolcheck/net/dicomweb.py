"""DICOMweb client: find studies with QIDO-RS and read their headers with WADO-RS metadata (no pixels).

The archive is spoken to through ``dicomweb-client`` on a ``requests`` session that this module
bounds: every request has a timeout no longer than what is left of the run's overall deadline; a
reply body larger than :attr:`WebPeer.max_reply_bytes` is refused while it is read (a hostile or
broken server cannot fill memory); 429/408/5xx replies are retried with exponential back-off
(``dicomweb-client``'s own retry). TLS certificates are verified unless the user asks otherwise.

Metadata come back as the DICOM JSON model (PS3.18 F.2); pydicom turns each instance into a
dataset and the reference reader (:func:`protocolcheck.dicom.reader.records_from_dataset`) into the
same :class:`~protocolcheck.dicom.records.InstanceHeader` records the file reader produces, so the
audit that follows is the one every other path uses. An instance whose JSON pydicom cannot use
becomes an :class:`~protocolcheck.dicom.records.Unreadable` record naming it, never an exception.
"""

from __future__ import annotations

import contextlib
import http
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests.adapters import HTTPAdapter

from protocolcheck.dicom.lean_tables import read_tags
from protocolcheck.dicom.reader import records_from_dataset
from protocolcheck.dicom.records import ScanRecord, Skipped, Unreadable, problem_text, uid_for_message
from protocolcheck.net.common import NetError, NetErrorKind
from protocolcheck.net.qr import StudyMatch, StudyQuery, match_from, select_matches

log = logging.getLogger(__name__)

RETRIED_STATUSES = (
    http.HTTPStatus.TOO_MANY_REQUESTS,
    http.HTTPStatus.REQUEST_TIMEOUT,
    http.HTTPStatus.INTERNAL_SERVER_ERROR,
    http.HTTPStatus.BAD_GATEWAY,
    http.HTTPStatus.SERVICE_UNAVAILABLE,
    http.HTTPStatus.GATEWAY_TIMEOUT,
)
_READ_CHUNK = 1 << 16

# QIDO-RS study attributes asked for (PS3.18 10.6.1.2.1): what a study match and the
# incremental fingerprint need, beyond the attributes every origin server returns.
STUDY_FIELDS = ("StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances")


@dataclass(frozen=True)
class WebPeer:
    """A DICOMweb origin server and how to talk to it.

    ``url`` is the service root (``https://pacs.example.org/dicom-web``). Authentication: HTTP basic
    (``username``/``password``), a bearer ``token``, or a client certificate (``client_cert`` and
    ``client_key``, PEM); secrets are kept out of ``repr``. ``timeout`` bounds each request,
    ``deadline`` the whole run; ``page_size`` is the QIDO-RS ``limit`` per page and
    ``max_studies`` the most studies one search may return.
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float = 30.0
    deadline: float = 3600.0
    page_size: int = 100
    max_studies: int = 10_000
    max_reply_bytes: int = 32 << 20
    retries: int = 4
    backoff_ms: int = 500

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"DICOMweb URL must start with http:// or https://, not {self.url[:40]!r}")
        if self.token and self.username:
            raise ValueError("give either a bearer token or a user name for basic authentication, not both")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("a client certificate needs both its certificate and its key file")
        for name in ("timeout", "deadline"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 1 <= self.page_size <= 10_000:
            raise ValueError(f"page size must be 1-10000, not {self.page_size}")

    def __str__(self) -> str:
        return self.url


class _Bounded(HTTPAdapter):
    """Sends each request with what is left of the deadline as its timeout and reads the reply body
    itself, in chunks, refusing it past ``max_bytes`` or past the deadline (a server that drips
    bytes cannot hold the run longer than the deadline either)."""

    def __init__(self, peer: WebPeer, ends_at: float) -> None:
        super().__init__(max_retries=0)
        self.peer = peer
        self.ends_at = ends_at
        self.received = 0  # reply bytes read, for the benchmark's bytes-moved figure

    def left(self) -> float:
        left = self.ends_at - time.monotonic()
        if left <= 0:
            raise requests.exceptions.Timeout(f"the overall deadline of {self.peer.deadline:g} s has passed")
        return left

    def send(self, request: requests.PreparedRequest, stream: bool = False,  # type: ignore[override]
             timeout: Any = None, **kwargs: Any) -> requests.Response:
        # verification as the peer says, whatever the environment (REQUESTS_CA_BUNDLE would override a CA file)
        kwargs["verify"] = False if self.peer.insecure else (self.peer.ca_file or True)
        response = super().send(request, stream=True, timeout=min(self.peer.timeout, self.left()), **kwargs)
        body = bytearray()
        try:
            while chunk := response.raw.read1(_READ_CHUNK, decode_content=True):  # what one receive brought
                body += chunk
                if len(body) > self.peer.max_reply_bytes:
                    raise requests.exceptions.ContentDecodingError(
                        f"reply larger than {self.peer.max_reply_bytes >> 20} MB; not read")
                self.left()
        finally:
            response.close()
        self.received += len(body)
        response._content = bytes(body)
        response._content_consumed = True
        return response


class DicomwebSource:
    """Studies and their header records from one DICOMweb server (one run: one overall deadline)."""

    def __init__(self, peer: WebPeer) -> None:
        self.peer = peer
        self._adapter = _Bounded(peer, time.monotonic() + peer.deadline)
        session = requests.Session()
        session.mount("http://", self._adapter)
        session.mount("https://", self._adapter)
        if peer.client_cert and peer.client_key:
            session.cert = (peer.client_cert, peer.client_key)
        if peer.username is not None:
            session.auth = (peer.username, peer.password or "")
        headers = {"Authorization": f"Bearer {peer.token}"} if peer.token else None
        self.client = DICOMwebClient(peer.url.rstrip("/"), session=session, headers=headers, timeout=peer.timeout)
        self.client.set_http_retry_params(retry=peer.retries > 0, max_attempts=peer.retries + 1,
                                          wait_exponential_multiplier=peer.backoff_ms,
                                          retriable_error_codes=RETRIED_STATUSES)

    @property
    def bytes_received(self) -> int:
        return self._adapter.received

    @contextlib.contextmanager
    def _request(self, what: str) -> Iterator[None]:
        """Every failure of the request made inside as a :class:`NetError` naming ``what`` and the peer."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # InsecureRequestWarning with --insecure: asked for
                yield
        except requests.exceptions.SSLError as exc:
            raise NetError(NetErrorKind.TLS, f"{what}: TLS failed with {self.peer}: {_short(exc)}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise NetError(NetErrorKind.UNREACHABLE, f"{what}: cannot reach {self.peer}: {_short(exc)}") from exc
        except requests.exceptions.Timeout as exc:
            raise NetError(NetErrorKind.TIMEOUT, f"{what}: {self.peer} did not answer in time: {_short(exc)}") from exc
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise NetError(NetErrorKind.REJECTED, f"{what}: {self.peer} refused the credentials "
                                                      f"(HTTP {status})") from exc
            raise NetError(NetErrorKind.FAILED, f"{what}: {self.peer} answered HTTP {status}") from exc
        except requests.exceptions.RequestException as exc:
            raise NetError(NetErrorKind.FAILED, f"{what}: {self.peer}: {_short(exc)}") from exc
        except (ValueError, RecursionError) as exc:  # not JSON, or nested deeper than the parser goes
            raise NetError(NetErrorKind.FAILED, f"{what}: {self.peer} sent a reply that is not DICOM JSON "
                                                f"({type(exc).__name__})") from exc

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """One DICOMweb request as a list of JSON datasets; every failure a :class:`NetError`."""
        with self._request(what):
            reply = call(*args, **kwargs)
        if not isinstance(reply, list) or not all(isinstance(item, dict) for item in reply):
            raise NetError(NetErrorKind.FAILED, f"{what}: {self.peer} sent a reply that is not a list of datasets")
        return reply

    def store(self, datasets: list[Dataset]) -> None:
        """STOW-RS: store ``datasets`` (e.g. an audit's Structured Report) in the archive; NetError
        unless every instance was accepted (the response's Failed SOP Sequence says which were not)."""
        with self._request("STOW-RS"):
            reply = self.client.store_instances(datasets)
        failed = reply.get("FailedSOPSequence") if reply is not None else None
        if failed:
            raise NetError(NetErrorKind.FAILED, f"STOW-RS: {self.peer} refused {len(failed)} of {len(datasets)} "
                                                "instances")

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]:
        """QIDO-RS search for studies, page by page (``limit``/``offset``) up to ``max_studies``."""
        filters: dict[str, Any] = {}
        if query.date:
            filters["StudyDate"] = query.date
        if query.modality:
            filters["ModalitiesInStudy"] = query.modality
        if query.accession:
            filters["AccessionNumber"] = query.accession
        if query.description and ("*" in query.description or "?" in query.description):
            filters["StudyDescription"] = query.description
        found: list[StudyMatch] = []
        offset = 0
        while True:
            page = self._call("QIDO-RS search", self.client.search_for_studies, search_filters=filters,
                              fields=STUDY_FIELDS, limit=self.peer.page_size, offset=offset)
            found.extend(match for match in map(match_from, map(_dataset, page)) if match is not None)
            if len(found) > self.peer.max_studies:
                raise NetError(NetErrorKind.FAILED, f"QIDO-RS search: more than {self.peer.max_studies} studies "
                                                    "match; narrow the date range")
            if len(page) < self.peer.page_size:
                return select_matches(found, query)
            offset += len(page)

    def study_records(self, match: StudyMatch) -> Iterator[ScanRecord]:
        """The header records of every instance of ``match``: WADO-RS metadata, series by series."""
        study = match.study_instance_uid
        series_list = self._call("QIDO-RS series search", self.client.search_for_series, study)
        for item in series_list:
            series = _text(item, "0020000E")
            if not series:
                continue
            metadata = self._call("WADO-RS metadata", self.client.retrieve_series_metadata, study, series)
            base = f"{self.peer.url.rstrip('/')}/studies/{study}/series/{series}"
            for instance in metadata:
                yield from _records(base, instance)


def _records(base: str, instance: Mapping[str, Any]) -> list[ScanRecord]:
    """One instance's JSON as the reader's records (several for an enhanced multi-frame object),
    or one Unreadable naming it."""
    sop = _text(instance, "00080018")
    name = f"{base}/instances/{uid_for_message(sop)}" if sop else f"{base} (an instance without SOP Instance UID)"
    try:
        records = records_from_dataset(name, _dataset({k: v for k, v in instance.items() if _read(k)}))
    except ValueError as exc:
        return [Unreadable(name, str(exc))]
    except Exception as exc:  # noqa: BLE001 - one bad instance must not stop the study
        return [Unreadable(name, f"metadata not usable: {problem_text(exc)}")]
    return [records] if isinstance(records, Skipped) else list(records)


def _dataset(item: Mapping[str, Any]) -> Dataset:
    """A dataset from the DICOM JSON model; bulk data (pixels, long binary values) are left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Dataset.from_json(dict(item), bulk_data_uri_handler=lambda *_args: b"")


_READ_TAGS, _READ_PRIVATE_GROUPS = read_tags()


def _read(key: str) -> bool:
    """Whether the reader looks at this element (a JSON key: 8 hex digits); parsing only those
    makes pydicom's JSON conversion several times faster on real metadata."""
    try:
        tag = int(key, 16)
    except ValueError:
        return False
    return tag in _READ_TAGS or (tag >> 16 & 1 == 1 and tag >> 16 in _READ_PRIVATE_GROUPS)


def _text(item: Mapping[str, Any], tag: str) -> str:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return str(values[0]).strip() if isinstance(values, list) and values and isinstance(values[0], str) else ""


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
