"""Ingest and live-loop latency: ``protocolcheck listen`` against dcmtk ``storescp`` and Orthanc, same send.

    python -m benchmarks.live_ingest                       # 8 studies, ~390 instances each of 16 x 16 and 256 x 256
    python -m benchmarks.live_ingest --studies 16 --slices 30 --repeat 3 --matrix 512

Ingest: the same corpus (clones of synth plexus studies, from :mod:`benchmarks.listen_load`), once with
16 x 16 images (2 KB instances: the per-instance cost) and once with 256 x 256 x 16-bit images (128 KB, a
real MR image), is pushed by dcmtk ``storescu`` over 1 association (one sender with every study) and over 4
associations (4 concurrent senders, a quarter each) into each receiver in turn, in the same run:

- ``protocolcheck listen`` as in production: every instance durable before success (its write-ahead log
  record flushed), the live loop on (every header read again, each exam re-audited as its series complete);
  ``protocolcheck-r2`` the same with ``--receivers 2`` (storage associations served in 2 more processes);
- dcmtk ``storescp --fork -od DIR`` (one process per association; no fsync);
- Orthanc (its default storage: it flushes each new file's data, not its folder, before answering, and its
  SQLite index now and then);
- for reference, pynetdicom's bare SCP answering success without decoding or storing anything, at
  ``listen``'s reactor pace and maximum PDU (the ceiling of any pynetdicom receiver on this machine;
  ``--null-scp PORT`` runs it).

Each (receiver, associations) pair is run ``--repeat`` times with a fresh store; the fastest run counts
(the least disturbed, as ``timeit``). The table gives instances/s and protocolcheck's ratio to the others.

Latency (``listen --series-idle 2 --web --send-sr`` into Orthanc, a pynetdicom MPPS modality, series sent
one by one with storescu): the time from a series' last instance acknowledged to its verdict on
``/api/exams``, i.e. the series classified in the exam's verdict (the page gets the same state within
``POLL_SECONDS``), and from MPPS COMPLETED
answered to the SR being in Orthanc (REST ``/tools/find``). Targets: <= 2 s and <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from benchmarks.listen_load import free_port, installed_binary, make_corpus  # noqa: E402

ENV = dict(os.environ, TCP_NODELAY="1",
           PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))


def _binary(name: str) -> str:
    return installed_binary(name, "dcmtk orthanc")


def _echo_ready(port: int, aet: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    from pynetdicom import AE

    ae = AE(ae_title="PROBE")
    ae.add_requested_context("1.2.840.10008.1.1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        assoc = ae.associate("127.0.0.1", port, ae_title=aet)
        if assoc.is_established:
            assoc.send_c_echo()
            assoc.release()
            return
        time.sleep(0.05)
    raise RuntimeError(f"receiver on {port} did not answer C-ECHO")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def receiver(kind: str, work: Path) -> Iterator[tuple[int, str, Path]]:
    """Start a receiver with a fresh store; (port, AE title, store folder)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    store = work / "store"
    store.mkdir()
    log = open(work / "log", "wb")  # noqa: SIM115 - closed below
    if kind.startswith("protocolcheck"):  # protocolcheck-rN: with --receivers N
        aet = "PROTOCOLCHECK"
        argv = [sys.executable, "-m", "protocolcheck", "listen", "--port", str(port), "--store", str(store),
                "--no-db", "--idle", "5", "--output", str(work / "audits.jsonl"), "-q",
                *(["--receivers", kind.rsplit("-r", 1)[1]] if "-r" in kind else [])]
    elif kind == "pynetdicom-null":
        aet = "NULLSCP"
        argv = [sys.executable, "-m", "benchmarks.live_ingest", "--null-scp", str(port)]
    elif kind == "storescp":
        aet = "STORESCP"
        argv = [_binary("storescp"), "--fork", "-aet", aet, "-od", str(store), str(port)]
    else:
        aet = "ORTHANC"
        config = {"Name": "bench", "StorageDirectory": str(store), "IndexDirectory": str(work / "index"),
                  "DicomAet": aet, "DicomPort": port, "HttpServerEnabled": False, "RemoteAccessAllowed": False,
                  "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
                  "DicomAssociationCloseDelay": 0, "SaveJobs": False, "StorageCompression": False}
        (work / "orthanc.json").write_text(json.dumps(config))
        argv = [_binary("Orthanc"), f"--logfile={work / 'orthanc.log'}", str(work / "orthanc.json")]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        _echo_ready(port, aet, proc)
        yield port, aet, store
    finally:
        _stop(proc)
        log.close()


def send(port: int, aet: str, folders: list[Path]) -> float:
    """storescu, one association per folder list entry, all at once; seconds until every one is done."""
    binary = _binary("storescu")
    started = time.monotonic()
    procs = [subprocess.Popen([binary, "-aet", f"SEND{i}", "-aec", aet, "-to", "30", "-ta", "30", "-td", "60",
                               "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
             for i, folder in enumerate(folders)]
    codes = [p.wait() for p in procs]
    elapsed = time.monotonic() - started
    if set(codes) != {0}:
        raise RuntimeError(f"storescu failed: {codes}")
    return elapsed


def null_scp(port: int) -> None:
    """pynetdicom storage SCP that answers success at once (no decoding, no storage), its reactors at
    ``listen``'s pace (:func:`~protocolcheck.net.commit.brisk_reactors`) and with its maximum PDU: the
    ceiling of any pynetdicom receiver here. Runs until killed."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from protocolcheck.net.commit import brisk_reactors, busy
    from protocolcheck.net.scp import RECEIVE_PDU

    def answer(event: evt.Event) -> int:
        busy()
        return 0x0000

    brisk_reactors()
    ae = AE("NULLSCP")
    ae.maximum_pdu_size = RECEIVE_PDU
    ae.add_supported_context("1.2.840.10008.1.1")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax)
    ae.maximum_associations = 64
    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, answer)])


def _stored(kind: str, store: Path) -> int:
    return sum(1 for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")
               and (not kind.startswith("protocolcheck") or p.suffix == ".dcm"))


@dataclass
class IngestRow:
    receiver: str
    associations: int
    instances: int
    seconds: list[float]
    megabytes: float = 0.0

    @property
    def rate(self) -> float:
        return self.instances / min(self.seconds)

    @property
    def megabytes_per_second(self) -> float:
        return self.megabytes / min(self.seconds)


def ingest(work: Path, studies: int, slices: int, repeat: int,
           receivers: tuple[str, ...] = ("protocolcheck", "protocolcheck-r2", "storescp", "orthanc",
                                         "pynetdicom-null"),
           matrix: int = 16) -> list[IngestRow]:
    corpus = work / f"corpus-{matrix}"
    folders, files, _ = make_corpus(corpus, 4, max(1, studies // 4), slices, matrix)
    total = sum(files.values())
    size = sum(p.stat().st_size for p in corpus.rglob("*.dcm"))
    rows = []
    for associations in (1, 4):
        senders = [corpus] if associations == 1 else folders
        for kind in receivers:
            times = []
            for _ in range(repeat):
                with receiver(kind, work / f"rx-{kind}") as (port, aet, store):
                    times.append(send(port, aet, senders))
                    stored = _stored(kind, store)
                    # Orthanc's storage holds more files, the null SCP none
                    if (kind.startswith("protocolcheck") or kind == "storescp") and stored != total:
                        raise RuntimeError(f"{kind}: {stored} files stored of {total}")
            rows.append(IngestRow(kind, associations, total, times, size / 1e6))
    return rows


# ------------------------------------------------------------------------------------ latency


def _get_json(url: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data else "GET"),
                                timeout=5) as response:
        return json.load(response)


def _until(check: Callable[[], object], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError("timed out")
        time.sleep(0.02)
    return time.monotonic()


def latency(work: Path, exams: int = 2, series_idle: float = 2.0) -> tuple[list[float], list[float]]:
    """(series verdict latencies, SR latencies) in seconds over ``exams`` plexus exams."""
    from peers import Modality  # the tests' modality simulator (pynetdicom MPPS + storescu)

    from protocolcheck.testing import synth

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    series_lat: list[float] = []
    sr_lat: list[float] = []
    pacs_dir, rest = work / "pacs2", free_port()
    pacs_dir.mkdir()
    pacs_port = free_port()
    (pacs_dir / "orthanc.json").write_text(json.dumps({
        "Name": "bench-pacs", "StorageDirectory": str(pacs_dir / "s"), "IndexDirectory": str(pacs_dir / "i"),
        "DicomAet": "PACS", "DicomPort": pacs_port, "HttpPort": rest, "RemoteAccessAllowed": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
        "DicomAssociationCloseDelay": 0, "SaveJobs": False}))
    pacs = subprocess.Popen([_binary("Orthanc"), f"--logfile={pacs_dir / 'log'}", str(pacs_dir / "orthanc.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    web, port = free_port(), free_port()
    log = open(work / "listen.log", "wb")  # noqa: SIM115 - closed below
    listen = subprocess.Popen([sys.executable, "-m", "protocolcheck", "listen", "--port", str(port), "--store",
                               str(work / "store"), "--no-db", "--output", str(work / "audits.jsonl"),
                               "--series-idle", str(series_idle), "--web", str(web),
                               "--send-sr", f"PACS@127.0.0.1:{pacs_port}"],
                              stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        _echo_ready(pacs_port, "PACS", pacs)
        _echo_ready(port, "PROTOCOLCHECK", listen)
        for n in range(exams):
            folder = work / f"exam{n}"
            synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, f"LAT{n:04d}", slices=20), folder)
            modality = Modality(port, folder)
            modality.mpps_create()
            for index in range(len(modality.series)):
                modality.send_series(index)
                acked = time.monotonic()

                def judged(k: int = index + 1, uid: str = modality.study_uid) -> bool:
                    exams_now = _get_json(f"http://127.0.0.1:{web}/api/exams")
                    return any(x["study_instance_uid"] == uid and x["series_received"] == k
                               and len({s["series_instance_uid"] for s in x["series"]}) == k
                               for x in exams_now)  # type: ignore[union-attr]

                series_lat.append(_until(judged, 30) - acked)
            modality.mpps_set("COMPLETED")
            completed = time.monotonic()

            def in_pacs(uid: str = modality.study_uid) -> bool:
                return bool(_get_json(f"http://127.0.0.1:{rest}/tools/find",
                                      {"Level": "Instance", "Query": {"StudyInstanceUID": uid, "Modality": "SR"}}))

            sr_lat.append(_until(in_pacs, 30) - completed)
    finally:
        _stop(listen)
        _stop(pacs)
        log.close()
    return series_lat, sr_lat


def _table(rows: list[IngestRow], title: str) -> None:
    print(title)
    print(f"{'receiver':<16}{'assoc':>6}{'inst/s':>10}{'MB/s':>8}{'vs storescp':>13}{'vs Orthanc':>12}"
          f"{'vs null SCP':>13}")
    for associations in (1, 4):
        group = {r.receiver: r for r in rows if r.associations == associations}
        for row in group.values():
            ours = row.receiver.startswith("protocolcheck")
            print(f"{row.receiver:<16}{associations:>6}{row.rate:>10.0f}{row.megabytes_per_second:>8.1f}"
                  f"{(row.rate / group['storescp'].rate) if ours else float('nan'):>13.2f}"
                  f"{(row.rate / group['orthanc'].rate) if ours else float('nan'):>12.2f}"
                  f"{(row.rate / group['pynetdicom-null'].rate) if ours else float('nan'):>13.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=8, help="studies in the corpus (default 8)")
    parser.add_argument("--slices", type=int, default=15, help="slices per series (default 15)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per receiver and association count")
    parser.add_argument("--exams", type=int, default=2, help="exams for the latency measurement")
    parser.add_argument("--matrix", type=int, nargs="+", default=[16, 256], metavar="N",
                        help="image sizes (N x N, 16 bit; default 16 for the per-instance cost and 256, an MR "
                             "image of 128 KB)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--null-scp", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.null_scp:
        null_scp(args.null_scp)
        return 0
    with tempfile.TemporaryDirectory(prefix="live-ingest-") as tmp:
        for matrix in args.matrix:
            rows = ingest(Path(tmp), args.studies, args.slices, args.repeat, matrix=matrix)
            _table(rows, f"ingest: {rows[0].instances} instances ({matrix} x {matrix} images), fastest of "
                         f"{args.repeat} runs, same send")
        if not args.skip_latency:
            series_lat, sr_lat = latency(Path(tmp) / "latency", args.exams)
            print(f"series verdict after its last instance: median {statistics.median(series_lat):.2f} s, "
                  f"max {max(series_lat):.2f} s over {len(series_lat)} series (series idle 2 s; target <= 2 s)")
            print(f"SR in Orthanc after MPPS COMPLETED: median {statistics.median(sr_lat):.2f} s, "
                  f"max {max(sr_lat):.2f} s over {len(sr_lat)} exams (target <= 5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
