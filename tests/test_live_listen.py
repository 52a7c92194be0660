"""`protocolcheck listen` as a real process running the live loop, against real peers on 127.0.0.1.

dcmtk's storescu sends a plexus study series by series, a pynetdicom modality simulator sends MPPS,
the page is driven in headless Chromium (Selenium), the SR lands in a real Orthanc (read back over
its REST API), the worklist comes from dcmtk's wlmscpfs, alerts go to a real HTTP server, and a
`kill -9` in the middle of an exam loses nothing.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pydicom
import pytest
from peers import (
    Listener,
    Modality,
    chromium,
    free_port,
    orthanc,
    require_binaries,
    storescu,
    today_dicom,
    wlmscpfs,
    write_worklist_item,
)

from protocolcheck.testing import synth

pytestmark = [pytest.mark.network, pytest.mark.filterwarnings("ignore:Invalid value for VR UI")]

FAST = ("--series-idle", "0.5", "--no-db")


@pytest.fixture(scope="module", autouse=True)
def _dcmtk() -> None:
    require_binaries("storescu")


def _no_stir(folder: Path, accession: str = "LIVEWEB") -> Path:
    synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, accession, fluid_fat_suppressed=False), folder)
    return folder


def _exams(port: int, token: str = "") -> list[dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/exams",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _wait(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_page_shows_the_banner_while_the_exam_runs(tmp_path: Path) -> None:
    """A study without STIR: the banner appears on the page (no reload) once contrast was given, within 2 s
    of that series' last instance; MPPS COMPLETED turns it into the final verdict."""
    web = free_port()
    listener = Listener(tmp_path, *FAST, "--web", f"127.0.0.1:{web}")
    try:
        modality = Modality(listener.port, _no_stir(tmp_path / "src"))
        with chromium() as browser:
            browser.get(f"http://127.0.0.1:{web}/")

            def text(css: str) -> str:  # read at once: the page re-renders its cards on every event
                return str(browser.execute_script(f"const e = document.querySelector('{css}');"
                                                  "return e ? e.innerText : '';"))

            def banner_shown() -> bool:
                return bool(browser.execute_script(
                    "return getComputedStyle(document.getElementById('banner')).display !== 'none';"))

            assert modality.mpps_create() == 0
            card = _wait(lambda: text(".card"), what="the exam's card")
            assert "MR-ROOM-1" in card and "MRI LUMBOSACRAL PLEXUS WO+W CONTRAST" in card
            for index in range(3):  # localizer, T1, T2: STIR still possible, no banner
                modality.send_series(index)
            _wait(lambda: "3 series received" in text(".card") and "arriving" not in text(".card"),
                  what="3 series judged")
            assert not banner_shown()
            assert "still missing" in text(".card")
            modality.send_series(3)  # the first post-contrast series
            sent = time.monotonic()
            _wait(banner_shown, what="the banner")
            latency = time.monotonic() - sent
            banner = text("#banner")
            assert "STIR" in banner and "accession LIVEWEB" in banner and "MR-ROOM-1" in banner, banner
            assert latency <= 2.0, latency
            page = browser.page_source
            assert "SAMPLE^SIEMENS" not in page and "Test^Patient" not in page  # no patient names
            modality.send_series(4)
            assert modality.mpps_set("COMPLETED") == 0
            _wait(lambda: not banner_shown(), what="the banner to go")
            verdict = browser.execute_script("return document.querySelector('.card').dataset.verdict;")
            assert verdict == "fail" and "completed (final)" in text(".card")
            assert "LIVEWEB" in text("#recent")
        (exam,) = _exams(web)
        assert (exam["state"], exam["provisional"], exam["accession_number"]) == ("completed", False, "LIVEWEB")
        assert {"study_instance_uid", "station", "protocol", "series", "requirements", "findings",
                "updated"} <= set(exam)
        assert [f["requirement"] for f in exam["findings"]] == ["fluid-fat-suppressed"]
    finally:
        listener.terminate()
    print(f"banner latency {latency:.2f} s")


def test_page_token(tmp_path: Path) -> None:
    web = free_port()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    listener = Listener(tmp_path, *FAST, "--web", str(web), "--web-token-file", str(token))
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            _exams(web)
        assert refused.value.code == 401
        assert _exams(web, "s3cret") == []
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/?token=s3cret", timeout=5) as response:
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert b"<script" in response.read() and b"http" not in response.read()  # no external assets
    finally:
        listener.terminate()


def test_kill9_mid_exam_loses_nothing(tmp_path: Path) -> None:
    web = free_port()
    store = tmp_path / "store"
    listener = Listener(tmp_path, *FAST, "--web", str(web), store=store, name="first")
    modality = Modality(listener.port, _no_stir(tmp_path / "src", "LIVEKILL"))
    assert modality.mpps_create() == 0
    for index in range(2):
        modality.send_series(index)
    listener.kill()
    sent = sorted(path.name for files in modality.series[:2] for path in files)
    on_disk = sorted(f"{int(pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber):04d}_"
                     f"{int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber):03d}.dcm"
                     for p in store.glob("*/*/*.dcm"))
    assert on_disk == sent  # every acknowledged instance
    again = Listener(tmp_path, *FAST, "--web", str(web), store=store, port=listener.port, name="second")
    try:
        exam = _wait(lambda: [x for x in _exams(web) if x["series_received"] == 2 and x["series_open"] == 0],
                     what="the recovered exam")[0]
        assert exam["state"] == "in-progress" and exam["station"] == "MR-ROOM-1"  # the MPPS survived too
        for index in range(2, len(modality.series)):
            modality.send_series(index)
        assert modality.mpps_set("COMPLETED") == 0
        final = _wait(lambda: [x for x in _exams(web) if x["state"] == "completed" and x["series_open"] == 0],
                      what="the final verdict")[0]
        assert final["series_received"] == len(modality.series)
        assert [f["code"] for f in final["findings"]] == ["missing-sequence"]  # no series-not-received
    finally:
        again.terminate()


def _content(ds: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    """Every SR content item, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _content(item)


def _orthanc_sr(rest: int, study_uid: str) -> list[dict[str, Any]]:
    body = json.dumps({"Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"},
                       "Expand": True}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{rest}/tools/find", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_sr_lands_in_orthanc_even_when_it_starts_late(tmp_path: Path) -> None:
    """The PACS is down when the exam ends: the SR is retried and lands once Orthanc is up; then a second
    exam's SR lands within 5 s of MPPS COMPLETED."""
    pacs_port, rest = free_port(), free_port()
    listener = Listener(tmp_path, *FAST, "--send-sr", f"ORTHANC@127.0.0.1:{pacs_port}")
    try:
        first = Modality(listener.port, _no_stir(tmp_path / "src1", "LIVESR1"))
        assert first.mpps_create() == 0
        for index in range(len(first.series)):
            first.send_series(index)
        assert first.mpps_set("COMPLETED") == 0
        _wait(lambda: "retrying" in listener.text(), what="a retry")
        with orthanc(tmp_path / "orthanc", port=pacs_port, worklist=False,
                     extra={"HttpServerEnabled": True, "HttpPort": rest}) as pacs:
            assert pacs.port == pacs_port
            (sr,) = _wait(lambda: _orthanc_sr(rest, first.study_uid), timeout=40, what="the first SR")
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/instances/{sr['ID']}/file", timeout=5) as r:
                path = tmp_path / "sr.dcm"
                path.write_bytes(r.read())
            ds = pydicom.dcmread(path)
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and ds.StudyInstanceUID == first.study_uid
            assert ds.AccessionNumber == "LIVESR1" and ds.CompletionFlag == "COMPLETE"
            items = list(_content(ds))
            texts = [str(item.TextValue) for item in items if "TextValue" in item]
            assert "mr-lumbosacral-plexus-wwo" in texts and "fail" in texts and "fluid-fat-suppressed" in texts
            assert "missing-sequence" in texts and "error" in texts  # the finding's code and severity
            judged = {str(item.UID) for item in items if "UID" in item}
            assert set(first.series_uids) <= judged  # every series it judged is named
            evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
            assert {s.SeriesInstanceUID for s in evidence} == set(first.series_uids)

            second = Modality(listener.port, _no_stir(tmp_path / "src2", "LIVESR2"))
            assert second.mpps_create() == 0
            for index in range(len(second.series)):
                second.send_series(index)
            assert second.mpps_set("COMPLETED") == 0
            completed = time.monotonic()
            _wait(lambda: _orthanc_sr(rest, second.study_uid), timeout=10, what="the second SR")
            latency = time.monotonic() - completed
            assert latency <= 5.0, latency
    finally:
        listener.terminate()
    print(f"SR in Orthanc {latency:.2f} s after MPPS COMPLETED")


def _exam_done_while_the_pacs_is_down(tmp_path: Path, send: tuple[str, ...],
                                      accession: str) -> tuple[Listener, Modality, Path]:
    """A listen sending SRs to a PACS that is down; an exam without STIR, series by series, MPPS COMPLETED:
    (the listen, the modality, the SR waiting in the outbox) once the study's idle audit is done."""
    store = tmp_path / "store"
    listener = Listener(tmp_path, *FAST, *send, store=store, name="first")
    modality = Modality(listener.port, _no_stir(tmp_path / "src", accession))
    assert modality.mpps_create() == 0
    for index in range(len(modality.series)):
        modality.send_series(index)
    assert modality.mpps_set("COMPLETED") == 0
    (queued,) = _wait(lambda: list((store / ".outbox").glob("*.dcm")), what="the SR in the outbox")
    _wait(lambda: listener.records() and not (store / modality.study_uid / ".pending").exists(),
          what="the idle audit done")
    return listener, modality, queued


def test_sr_queued_while_the_pacs_is_down_survives_kill9(tmp_path: Path) -> None:
    """The PACS is down when the exam ends: the SR waits in STORE/.outbox; listen is killed (-9) after the
    study was audited; the next listen sends that file once Orthanc is up, and the outbox is empty after."""
    pacs_port, rest = free_port(), free_port()
    store = tmp_path / "store"
    outbox = store / ".outbox"
    send = ("--send-sr", f"ORTHANC@127.0.0.1:{pacs_port}", "--idle", "3")
    listener, modality, queued = _exam_done_while_the_pacs_is_down(tmp_path, send, "LIVEDUR")
    _wait(lambda: "retrying" in listener.text(), what="a retry")
    listener.kill()
    assert [p.name for p in outbox.glob("*.dcm")] == [queued.name]
    assert pydicom.dcmread(queued).StudyInstanceUID == modality.study_uid
    with orthanc(tmp_path / "orthanc", port=pacs_port, worklist=False,
                 extra={"HttpServerEnabled": True, "HttpPort": rest}):
        again = Listener(tmp_path, *FAST, *send, store=store, port=listener.port, name="second")
        try:
            (sr,) = _wait(lambda: _orthanc_sr(rest, modality.study_uid), timeout=30, what="the SR in Orthanc")
            assert sr["MainDicomTags"]["SOPInstanceUID"] == queued.stem
            _wait(lambda: not list(outbox.glob("*.dcm")), what="the outbox emptied")
        finally:
            again.terminate()
        # sent from the outbox (labelled by its file; a study judged again at start would be "audit report of ...")
        assert f"stored {queued.name} (left by an earlier run) in" in again.text()
        assert not list((outbox / "failed").iterdir())
        assert len(_orthanc_sr(rest, modality.study_uid)) == 1


def test_an_sr_not_yet_in_the_outbox_at_a_kill_is_made_at_restart_and_sent_once(tmp_path: Path) -> None:
    """A kill -9 between MPPS COMPLETED (on disk) and the SR reaching the outbox, after the study was
    audited (here: the outbox file removed after the kill stands for that moment): the next listen judges
    the recently ended exam again and sends its SR; the one after knows the PACS has it and sends nothing
    (and without that knowledge, its replay of the ended exam would have sent it)."""
    pacs_port, rest = free_port(), free_port()
    store = tmp_path / "store"
    outbox = store / ".outbox"
    send = ("--send-sr", f"ORTHANC@127.0.0.1:{pacs_port}", "--idle", "3")
    listener, modality, queued = _exam_done_while_the_pacs_is_down(tmp_path, send, "LIVEWIN")
    listener.kill()
    reported = outbox / "reported" / f"{modality.study_uid}.json"
    queued.unlink()  # the report and the record of it (written after it) were not there yet at the kill
    reported.unlink()
    with orthanc(tmp_path / "orthanc", port=pacs_port, worklist=False,
                 extra={"HttpServerEnabled": True, "HttpPort": rest}):
        second = Listener(tmp_path, *FAST, *send, store=store, port=listener.port, name="second")
        try:
            (sr,) = _wait(lambda: _orthanc_sr(rest, modality.study_uid), timeout=30, what="the SR in Orthanc")
            assert sr["MainDicomTags"]["SOPInstanceUID"] == queued.stem  # the same verdict, the same instance
            _wait(lambda: not list(outbox.glob("*.dcm")), what="the outbox emptied")
        finally:
            second.terminate()
        assert reported.exists()
        third = Listener(tmp_path, *FAST, *send, store=store, port=listener.port, name="third")
        try:
            _wait(lambda: "no new version stored" in third.text(), what="the exam judged again")
        finally:
            third.terminate()
        assert "INFO stored" not in third.text() and "0 study audits" in third.text()
        reported.unlink()  # a kill after the report was queued and before it was recorded: the outbox knows it
        fourth = Listener(tmp_path, *FAST, *send, store=store, port=listener.port, name="fourth")
        try:
            _wait(lambda: "(sent by an earlier run)" in fourth.text(), what="the exam judged again")
        finally:
            fourth.terminate()
        assert "INFO stored" not in fourth.text() and reported.exists()
        reported.unlink()  # without the record and the marker, the exam judged again at start is sent
        (outbox / "sent" / queued.stem).unlink()
        fifth = Listener(tmp_path, *FAST, *send, store=store, port=listener.port, name="fifth")
        try:
            _wait(lambda: "stored audit report of accession LIVEWIN" in fifth.text(), what="the SR sent again")
        finally:
            fifth.terminate()
        assert len(_orthanc_sr(rest, modality.study_uid)) == 1  # the same instance


def _sr_file(rest: int, sr: dict[str, Any], path: Path) -> pydicom.Dataset:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest}/instances/{sr['ID']}/file", timeout=5) as response:
        path.write_bytes(response.read())
    return pydicom.dcmread(path)


def _texts(ds: pydicom.Dataset) -> list[str]:
    return [str(item.TextValue) for item in _content(ds) if "TextValue" in item]


def _judged(ds: pydicom.Dataset) -> set[str]:
    return {str(item.UID) for item in _content(ds) if "UID" in item}


def _two_exams_idle(port: int, tmp_path: Path, prefix: str) -> tuple[Modality, Modality]:
    """Two exams from two scanners, each with its MPPS IN PROGRESS: one sends all 5 series, the other 3."""
    whole = Modality(port, _no_stir(tmp_path / "src1", f"{prefix}1"))
    part = Modality(port, _no_stir(tmp_path / "src2", f"{prefix}2"), aet="MR2", station_name="MR-ROOM-2")
    assert whole.mpps_create() == 0 and part.mpps_create() == 0
    for index in range(len(whole.series)):
        whole.send_series(index)
    for index in range(3):
        part.send_series(index)
    return whole, part


def _check_supersedes(rest: int, tmp_path: Path, part: Modality, early: pydicom.Dataset) -> None:
    """The second SR of ``part`` (all 5 series, MPPS COMPLETED) supersedes ``early`` (3 series, idle)."""
    srs = _wait(lambda: len(found := _orthanc_sr(rest, part.study_uid)) == 2 and found, timeout=30,
                what="the second version")
    (late,) = [_sr_file(rest, sr, tmp_path / "late.dcm") for sr in srs
               if sr["MainDicomTags"]["SOPInstanceUID"] != early.SOPInstanceUID]
    (before,) = late.PredecessorDocumentsSequence  # (0040,A360)
    assert before.StudyInstanceUID == part.study_uid
    (series,) = before.ReferencedSeriesSequence
    (instance,) = series.ReferencedSOPSequence
    assert (series.SeriesInstanceUID, instance.ReferencedSOPInstanceUID, instance.ReferencedSOPClassUID) == (
        early.SeriesInstanceUID, early.SOPInstanceUID, early.SOPClassUID)
    assert (late.StudyInstanceUID, late.SeriesInstanceUID) == (early.StudyInstanceUID, early.SeriesInstanceUID)
    assert (int(early.InstanceNumber), int(late.InstanceNumber)) == (1, 2)
    assert _judged(early) >= set(part.series_uids[:3]) and not _judged(early) & set(part.series_uids[3:])
    assert _judged(late) >= set(part.series_uids)
    (why,) = [t for t in _texts(late) if t.startswith("the report of ")]
    assert early.SOPInstanceUID in why and "ended by MPPS COMPLETED" in why and "2 more series" in why, why
    assert "completed" in _texts(late) and "idle" in _texts(early)
    assert not any(t.startswith("the report of ") for t in _texts(early))


def _complete_both(listener: Listener, rest: int, tmp_path: Path, exams: tuple[Modality, Modality],
                   early: pydicom.Dataset, accession: str) -> None:
    """Exam 1 completed with nothing new: the same verdict, logged, no second SR; exam 2 completed with its last
    series: a new version naming its first SR (``early``); then the outbox empties."""
    whole, part = exams
    assert whole.mpps_set("COMPLETED") == 0
    _wait(lambda: f"accession {accession}1 (completed, ended by mpps): the same verdict as the report of "
          in listener.text(), what="the same verdict logged")
    for index in range(3, len(part.series)):
        part.send_series(index)
    assert part.mpps_set("COMPLETED") == 0
    _check_supersedes(rest, tmp_path, part, early)
    _wait(lambda: not list((listener.store / ".outbox").glob("*.dcm")), what="the outbox emptied")


def test_an_sr_is_stored_again_only_when_the_verdict_changed(tmp_path: Path) -> None:
    """Exam 1 goes idle (final verdict, SR 1), then MPPS COMPLETED with nothing new: no second SR, the log
    says it was reported. Exam 2 goes idle after 3 series (SR 1), then 2 more series and COMPLETED: SR 2,
    in the same series, naming SR 1 in its Predecessor Documents Sequence and saying why."""
    pacs_port, rest = free_port(), free_port()
    with orthanc(tmp_path / "orthanc", port=pacs_port, worklist=False,
                 extra={"HttpServerEnabled": True, "HttpPort": rest}):
        listener = Listener(tmp_path, *FAST, "--idle", "2", "--send-sr", f"ORTHANC@127.0.0.1:{pacs_port}")
        try:
            whole, part = _two_exams_idle(listener.port, tmp_path, "LIVEVER")
            (first,) = _wait(lambda: _orthanc_sr(rest, whole.study_uid), timeout=30, what="exam 1's SR")
            (early,) = _wait(lambda: _orthanc_sr(rest, part.study_uid), timeout=30, what="exam 2's first SR")
            early_ds = _sr_file(rest, early, tmp_path / "early.dcm")
            assert "idle" in _texts(_sr_file(rest, first, tmp_path / "first.dcm"))
            _complete_both(listener, rest, tmp_path, (whole, part), early_ds, "LIVEVER")
            assert [sr["ID"] for sr in _orthanc_sr(rest, whole.study_uid)] == [first["ID"]]
        finally:
            listener.terminate()


def test_sr_versions_hold_across_a_kill(tmp_path: Path) -> None:
    """As above with a kill -9 after both exams' first SRs: the next listen knows what was reported (no
    second SR of the same verdict) and judges the reopened exam whole (its new version names the first)."""
    pacs_port, rest = free_port(), free_port()
    store = tmp_path / "store"
    send = ("--idle", "2", "--send-sr", f"ORTHANC@127.0.0.1:{pacs_port}")
    with orthanc(tmp_path / "orthanc", port=pacs_port, worklist=False,
                 extra={"HttpServerEnabled": True, "HttpPort": rest}):
        first = Listener(tmp_path, *FAST, *send, store=store, name="first")
        whole, part = _two_exams_idle(first.port, tmp_path, "LIVEKV")
        (one,) = _wait(lambda: _orthanc_sr(rest, whole.study_uid), timeout=30, what="exam 1's SR")
        (early,) = _wait(lambda: _orthanc_sr(rest, part.study_uid), timeout=30, what="exam 2's first SR")
        _wait(lambda: not list(store.glob("*/.pending")), what="both idle hand-overs done")
        first.kill()
        early_ds = _sr_file(rest, early, tmp_path / "early.dcm")
        second = Listener(tmp_path, *FAST, *send, store=store, port=first.port, name="second")
        try:
            _complete_both(second, rest, tmp_path, (whole, part), early_ds, "LIVEKV")
        finally:
            second.terminate()
        assert [sr["ID"] for sr in _orthanc_sr(rest, whole.study_uid)] == [one["ID"]]


def test_an_exam_that_never_ends_times_out(tmp_path: Path) -> None:
    """--exam-timeout 2: an MPPS left IN PROGRESS with no images becomes final (state idle, ended_by
    timeout) 2 s after its last message; an exam whose MPPS never completes does too, and its final
    verdict goes the way of every final verdict (its SR lands in Orthanc); a late MPPS COMPLETED then
    ends the first one by MPPS."""
    pacs_port, rest, web = free_port(), free_port(), free_port()

    def exam(accession: str) -> dict[str, Any] | None:
        return next((x for x in _exams(web) if x["accession_number"] == accession), None)

    with orthanc(tmp_path / "orthanc", port=pacs_port, worklist=False,
                 extra={"HttpServerEnabled": True, "HttpPort": rest}):
        listener = Listener(tmp_path, *FAST, "--exam-timeout", "2", "--idle", "120", "--web", str(web),
                            "--send-sr", f"ORTHANC@127.0.0.1:{pacs_port}")
        try:
            empty = Modality(listener.port, _no_stir(tmp_path / "src1", "LIVETO1"), aet="MR2",
                             station_name="MR-ROOM-2")
            assert empty.mpps_create() == 0
            created = time.monotonic()
            first = _wait(lambda: exam("LIVETO1"), what="the exam's card")
            assert (first["state"], first["provisional"], first["ended_by"]) == ("in-progress", True, None)
            ended = _wait(lambda: (x := exam("LIVETO1")) and not x["provisional"] and x, what="the timeout")
            waited = time.monotonic() - created
            assert (ended["state"], ended["ended_by"], ended["verdict"]) == ("idle", "timeout", "no-images")
            assert 1.9 <= waited <= 5.0, waited

            scanner = Modality(listener.port, _no_stir(tmp_path / "src2", "LIVETO2"))
            assert scanner.mpps_create() == 0
            sent = storescu(listener.port, [p for files in scanner.series[:3] for p in files], aet=scanner.aet)
            assert sent.returncode == 0, sent.stderr
            final = _wait(lambda: (x := exam("LIVETO2")) and x["ended_by"] == "timeout" and x, what="timeout 2")
            assert (final["state"], final["provisional"], final["series_received"]) == ("idle", False, 3)
            assert final["verdict"] == "fail" and not final["alerts"]  # final: no banner
            (sr,) = _wait(lambda: _orthanc_sr(rest, scanner.study_uid), timeout=15, what="the SR")
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/instances/{sr['ID']}/file", timeout=5) as r:
                (tmp_path / "sr.dcm").write_bytes(r.read())
            texts = [str(i.TextValue) for i in _content(pydicom.dcmread(tmp_path / "sr.dcm")) if "TextValue" in i]
            assert "idle" in texts and any(t.startswith("timeout: ") for t in texts), texts

            assert empty.mpps_set("COMPLETED", performed=[]) == 0
            done = _wait(lambda: (x := exam("LIVETO1")) and x["state"] == "completed" and x, what="COMPLETED")
            assert (done["ended_by"], done["provisional"]) == ("mpps", False)
        finally:
            listener.terminate()
    assert "ending it (no MPPS COMPLETED or DISCONTINUED arrived)" in listener.text()


class _Hook(http.server.BaseHTTPRequestHandler):
    """Records POSTed JSON; answers 503 to the first one (to be retried)."""

    received: ClassVar[list[dict[str, Any]]] = []
    attempts = 0

    def do_POST(self) -> None:
        type(self).attempts += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).attempts == 1:
            self.send_response(503)
            self.end_headers()
            return
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "attempts": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def test_notify_posts_an_alert_once(tmp_path: Path, hook: tuple[str, type[_Hook]]) -> None:
    url, handler = hook
    listener = Listener(tmp_path, *FAST, "--notify", url)
    try:
        modality = Modality(listener.port, _no_stir(tmp_path / "src", "LIVENOTE"))
        assert modality.mpps_create() == 0
        for index in range(len(modality.series)):
            modality.send_series(index)
        _wait(lambda: handler.received, timeout=15, what="the alert")
        assert modality.mpps_set("COMPLETED") == 0
        time.sleep(1.0)
    finally:
        listener.terminate()
    (event,) = handler.received  # retried after the 503, and sent once although later series re-judged it
    assert handler.attempts == 2
    assert event["accession_number"] == "LIVENOTE" and event["codes"] == ["missing-sequence"]
    assert event["state"] == "in-progress" and event["station"] == "MR-ROOM-1"
    assert [f["requirement"] for f in event["findings"]] == ["fluid-fat-suppressed"]
    assert "STIR" in event["text"] and event["actions"] and all(event["actions"])


def test_worklist_flags_the_wrong_exam_at_its_first_series(tmp_path: Path) -> None:
    """The worklist orders a plexus MRI for plexopathy; the scanner runs a standard pelvis: wrong-protocol
    after the first series."""
    with wlmscpfs(tmp_path / "wlm") as wl:
        study = tmp_path / "src"
        synth.write_study(synth.pelvis_study(synth.Vendor.SIEMENS, "LIVEWL"), study)
        write_worklist_item(wl.folder / "item.wl", accession="LIVEWL", station_aet="MR1",
                            scheduled_date=today_dicom(), procedure="MRI LUMBOSACRAL PLEXUS WO+W CONTRAST",
                            reason="Lumbosacral plexopathy, left leg weakness")
        web = free_port()
        listener = Listener(tmp_path, *FAST, "--web", str(web), "--worklist", "127.0.0.1", str(wl.port),
                            "--worklist-aet", wl.aet)
        try:
            modality = Modality(listener.port, study)
            modality.send_series(0)
            exam = _wait(lambda: [x for x in _exams(web) if x["series_received"] == 1 and x["series_open"] == 0
                                  and x["expectation_source"]], what="the first series judged")[0]
            assert exam["scheduled_procedure"] == "MRI LUMBOSACRAL PLEXUS WO+W CONTRAST"
            assert exam["expectation_source"].startswith("worklist WLMSCP@127.0.0.1")
            wrong = [f for f in exam["alerts"] if f["code"] == "wrong-protocol"]
            assert wrong and wrong[0]["live"] == "wrong" and exam["verdict"] == "alert", exam["findings"]
        finally:
            listener.terminate()
