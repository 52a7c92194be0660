"""DICOMweb: QIDO-RS search and WADO-RS metadata against a real Orthanc with its DICOMweb plugin, and
against small hostile HTTP servers on 127.0.0.1 (slow, huge, deeply nested, wrong VRs, flaky)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from peers import free_port, orthanc, storescu

from protocolcheck.audit.engine import AuditOptions, audit_paths, audit_records
from protocolcheck.clinical.library import load_library
from protocolcheck.dicom.records import InstanceHeader, Unreadable
from protocolcheck.net.common import NetError, NetErrorKind
from protocolcheck.net.dicomweb import DicomwebSource, WebPeer
from protocolcheck.net.qr import StudyQuery

pytestmark = pytest.mark.network

CORPUS_DATES = "20250101-20251231"
USERS = {"alice": "s3cret-pw"}


@dataclass
class Archive:
    url: str
    expected: dict[str, dict]  # study UID -> audit record from the folder


@pytest.fixture(scope="module")
def archive(synth_corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    base = tmp_path_factory.mktemp("dicomweb")
    options = AuditOptions(library=load_library())
    expected = {r.study_instance_uid: r.to_dict() for r in audit_paths([synth_corpus.root], options)}
    with orthanc(base / "orthanc", worklist=False, dicomweb=True, users=USERS) as server:
        sent = storescu(server.port, [synth_corpus.root], called=server.aet)
        assert sent.returncode == 0, sent.stderr
        yield Archive(server.dicomweb_url, expected)


def peer(url: str, **kwargs: object) -> WebPeer:
    return WebPeer(url, **{"username": "alice", "password": USERS["alice"], "timeout": 10.0, **kwargs})  # type: ignore[arg-type]


def test_the_same_audits_as_the_folders(archive: Archive) -> None:
    source = DicomwebSource(peer(archive.url))
    matches = source.find_studies(StudyQuery(date=CORPUS_DATES))
    assert {m.study_instance_uid for m in matches} == set(archive.expected)
    options = AuditOptions(library=load_library())
    for match in matches:
        records = list(source.study_records(match))
        assert records and all(isinstance(r, InstanceHeader) for r in records)
        (result,) = audit_records(records, options)
        assert result.to_dict() == archive.expected[match.study_instance_uid], match.label()
    assert source.bytes_received > 0


def test_paging_finds_every_study(archive: Archive) -> None:
    everything = DicomwebSource(peer(archive.url)).find_studies(StudyQuery(date=CORPUS_DATES))
    paged = DicomwebSource(peer(archive.url, page_size=2)).find_studies(StudyQuery(date=CORPUS_DATES))
    assert [m.study_instance_uid for m in paged] == [m.study_instance_uid for m in everything]
    assert len(everything) > 2


def test_filters_as_the_dimse_query(archive: Archive) -> None:
    source = DicomwebSource(peer(archive.url))
    everything = source.find_studies(StudyQuery())
    one = everything[0]
    assert [m.study_instance_uid for m in source.find_studies(StudyQuery(accession=one.accession_number))] == [
        one.study_instance_uid]
    assert source.find_studies(StudyQuery(modality="US")) == []
    word = one.study_description.split()[-1].lower()
    assert one in source.find_studies(StudyQuery(description=word))


def test_authentication_required_and_refused(archive: Archive) -> None:
    for bad in (peer(archive.url, username=None, password=None), peer(archive.url, password="wrong")):
        with pytest.raises(NetError) as caught:
            DicomwebSource(bad).find_studies(StudyQuery())
        assert caught.value.kind is NetErrorKind.REJECTED
        assert "HTTP 401" in str(caught.value)


def test_server_down_is_unreachable() -> None:
    with pytest.raises(NetError) as caught:
        DicomwebSource(peer(f"http://127.0.0.1:{free_port()}/dicom-web", retries=0)).find_studies(StudyQuery())
    assert caught.value.kind is NetErrorKind.UNREACHABLE


def test_secrets_are_not_in_repr() -> None:
    text = repr(WebPeer("https://pacs.example.org/dicom-web", username="alice", password="hunter2"))
    assert "hunter2" not in text and "alice" in text
    assert "tok123" not in repr(WebPeer("https://pacs.example.org/dicom-web", token="tok123"))


def test_bad_peer_settings_fail_fast() -> None:
    with pytest.raises(ValueError, match="http"):
        WebPeer("ftp://pacs")
    with pytest.raises(ValueError, match="not both"):
        WebPeer("https://pacs", username="a", token="t")
    with pytest.raises(ValueError, match="both"):
        WebPeer("https://pacs", client_cert="c.pem")


# -- hostile servers --------------------------------------------------------------------------------

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], str]]:
    """A throw-away HTTP server on 127.0.0.1 whose every GET is answered by the given function."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(answer: Handler) -> str:
        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server dispatches to
                answer(self)

            def log_message(self, *_args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/dicom-web"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _reply(handler: http.server.BaseHTTPRequestHandler, body: bytes, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/dicom+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _study(uid: str = "1.2.3") -> dict:
    return {"0020000D": {"vr": "UI", "Value": [uid]}, "00080050": {"vr": "SH", "Value": ["ACC1"]},
            "00080020": {"vr": "DA", "Value": ["20250101"]}}


def test_a_slow_server_meets_the_deadline(hostile: Callable[[Handler], str]) -> None:
    def drip(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.end_headers()
        try:
            for _ in range(60):  # a byte a second: each read is quick, the whole never ends in time
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass

    url = hostile(drip)
    started = time.monotonic()
    with pytest.raises(NetError) as caught:
        DicomwebSource(WebPeer(url, timeout=2.0, deadline=3.0, retries=0)).find_studies(StudyQuery())
    assert time.monotonic() - started < 8
    assert caught.value.kind is NetErrorKind.TIMEOUT


def test_a_huge_reply_is_refused_while_read(hostile: Callable[[Handler], str]) -> None:
    def huge(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.end_headers()
        chunk = b"[" + b'{"00080050": {"vr": "SH", "Value": ["x"]}},' * 20000
        try:
            for _ in range(200):  # ~170 MB if read to the end
                handler.wfile.write(chunk)
        except OSError:
            pass

    with pytest.raises(NetError) as caught:
        DicomwebSource(WebPeer(hostile(huge), max_reply_bytes=4 << 20, retries=0)).find_studies(StudyQuery())
    assert caught.value.kind is NetErrorKind.FAILED and "larger than 4 MB" in str(caught.value)


def test_deeply_nested_json_is_a_clear_error(hostile: Callable[[Handler], str]) -> None:
    url = hostile(lambda h: _reply(h, b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(NetError) as caught:
        DicomwebSource(WebPeer(url, retries=0)).find_studies(StudyQuery())
    assert "not DICOM JSON" in str(caught.value)


def test_not_a_list_of_datasets_is_a_clear_error(hostile: Callable[[Handler], str]) -> None:
    url = hostile(lambda h: _reply(h, b'[1, 2, "three"]'))
    with pytest.raises(NetError, match="not a list of datasets"):
        DicomwebSource(WebPeer(url, retries=0)).find_studies(StudyQuery())


def test_wrong_vrs_make_unreadable_records_naming_the_instance(hostile: Callable[[Handler], str]) -> None:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        if handler.path.endswith("/metadata"):
            bad = {"00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]}, "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
                   "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
                   "00180080": {"vr": "DS", "Value": [{"nested": "object where a number belongs"}]},
                   "00280010": {"vr": "US", "Value": ["not a number"]}}
            _reply(handler, json.dumps([bad]).encode())
        elif "/series" in handler.path:
            _reply(handler, json.dumps([{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}]).encode())
        else:
            _reply(handler, json.dumps([_study()]).encode())

    source = DicomwebSource(WebPeer(hostile(answer), retries=0))
    (match,) = source.find_studies(StudyQuery())
    records = list(source.study_records(match))
    assert len(records) == 1
    record = records[0]
    assert isinstance(record, (Unreadable, InstanceHeader))
    if isinstance(record, Unreadable):
        assert "1.2.3.4.5" in record.path
    else:  # pydicom kept the instance: the bad values are value problems, not crashes
        assert record.value_problems


def test_busy_server_is_retried_with_back_off(hostile: Callable[[Handler], str]) -> None:
    calls: list[float] = []

    def flaky(handler: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            _reply(handler, b"busy", status=503)
        else:
            _reply(handler, json.dumps([_study()]).encode())

    (match,) = DicomwebSource(WebPeer(hostile(flaky), retries=3, backoff_ms=50)).find_studies(StudyQuery())
    assert match.accession_number == "ACC1"
    assert len(calls) == 3


def test_bearer_token_is_sent(hostile: Callable[[Handler], str]) -> None:
    seen: list[str] = []

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization", ""))
        _reply(handler, b"[]")

    DicomwebSource(WebPeer(hostile(answer), token="tok-123")).find_studies(StudyQuery())
    assert seen == ["Bearer tok-123"]


def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    from peers import make_pki

    pki = make_pki(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = pki.server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/dicom-web"
        with pytest.raises(NetError) as caught:  # our test CA is not among the system's
            DicomwebSource(WebPeer(url, retries=0)).find_studies(StudyQuery())
        assert caught.value.kind is NetErrorKind.TLS
        with pytest.raises(NetError) as caught:  # trusted with --ca-file: TLS works (the handler answers 501)
            DicomwebSource(WebPeer(url, retries=0, ca_file=str(pki.ca))).find_studies(StudyQuery())
        assert caught.value.kind is NetErrorKind.FAILED and "HTTP 501" in str(caught.value)
    finally:
        server.shutdown()
        server.server_close()


# -- the command -------------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    from click.testing import CliRunner

    from protocolcheck.cli import main

    result = CliRunner().invoke(main, ["query", "--format", "json", "--timeout", "20", *args],
                                env={"PROTOCOLCHECK_DICOMWEB_PASSWORD": USERS["alice"], **(env or {})})
    records = json.loads(result.stdout) if result.stdout.strip() else []
    return result.exit_code, records, result.stderr


def test_query_dicomweb_gives_the_folder_audits_and_exit_code(archive: Archive) -> None:
    code, records, err = cli("--dicomweb", archive.url, "--user", "alice", "--date", CORPUS_DATES, "--no-db")
    assert {r["study_instance_uid"]: r for r in records} == archive.expected, err
    assert code == (1 if any(r["status"] in ("fail", "error") for r in records) else 0)
    assert "MB received" in err


def test_query_dicomweb_is_incremental_with_a_store(archive: Archive, tmp_path: Path) -> None:
    db = str(tmp_path / "results.db")
    args = ("--dicomweb", archive.url, "--user", "alice", "--date", CORPUS_DATES, "--db", db)
    code1, first, _err1 = cli(*args)
    code2, second, err2 = cli(*args)
    assert code1 == code2 and first == second
    assert f"0 audited, {len(archive.expected)} unchanged" in err2, err2
    assert "0.0 MB received" in err2  # only the search: no metadata fetched again


def test_query_dicomweb_server_down_exits_3() -> None:
    code, _records, err = cli("--dicomweb", f"http://127.0.0.1:{free_port()}/dicom-web", "--no-db", "--deadline", "20")
    assert code == 3 and "cannot reach" in err


def test_query_dicomweb_refused_credentials_exit_3(archive: Archive) -> None:
    code, _records, err = cli("--dicomweb", archive.url, "--user", "alice", "--no-db",
                              env={"PROTOCOLCHECK_DICOMWEB_PASSWORD": "wrong"})
    assert code == 3 and "refused the credentials" in err


def test_query_dicomweb_secrets_never_on_the_command_line(archive: Archive, tmp_path: Path) -> None:
    code, _records, err = cli("--dicomweb", archive.url, "--user", "alice", "--password", "s3cret-pw", "--no-db")
    assert code == 2 and "not accepted on the command line" in err
    secret = tmp_path / "pw"
    secret.write_text(USERS["alice"] + "\n")
    code, records, err = cli("--dicomweb", archive.url, "--user", "alice", "--password-file", str(secret), "--no-db",
                             "--date", CORPUS_DATES, env={"PROTOCOLCHECK_DICOMWEB_PASSWORD": ""})
    assert code in (0, 1) and len(records) == len(archive.expected), err


def test_query_needs_one_peer() -> None:
    code, _records, err = cli("--no-db")
    assert code == 2 and "--dicomweb URL" in err
    code, _records, err = cli("127.0.0.1", "4242", "--called-aet", "X", "--dicomweb", "http://127.0.0.1:1/x")
    assert code == 2 and "not both" in err


# -- the verdict back over STOW-RS ---------------------------------------------------------------------


def test_listen_stores_its_sr_over_stow_rs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``listen --send-sr https://alice@…/dicom-web``: the final verdict's SR lands in the archive through
    STOW-RS (basic authentication, the password from the environment) and is found again with QIDO-RS."""
    from peers import Listener, Modality

    from protocolcheck.testing import synth

    synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, "STOWSR1", fluid_fat_suppressed=False), tmp_path / "src")
    monkeypatch.setenv("PROTOCOLCHECK_DICOMWEB_PASSWORD", USERS["alice"])
    with orthanc(tmp_path / "orthanc", worklist=False, dicomweb=True, users=USERS) as server:
        url = server.dicomweb_url.replace("http://", "http://alice@")
        listener = Listener(tmp_path, "--series-idle", "0.5", "--no-db", "--send-sr", url)
        try:
            modality = Modality(listener.port, tmp_path / "src")
            assert modality.mpps_create() == 0
            for index in range(len(modality.series)):
                modality.send_series(index)
            assert modality.mpps_set("COMPLETED") == 0
            source = DicomwebSource(peer(server.dicomweb_url))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = source.client.search_for_instances(modality.study_uid, search_filters={"Modality": "SR"})
                if found:
                    break
                time.sleep(0.3)
            else:
                raise AssertionError(f"no SR in the archive:\n{listener.text()}")
            assert found[0]["00080060"]["Value"] == ["SR"]
            assert "stored" in listener.text()
        finally:
            listener.terminate()
