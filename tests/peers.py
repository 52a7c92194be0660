"""Real DICOM peers for the network tests: Orthanc (with its worklist plugin) and dcmtk tools.

Every server runs on 127.0.0.1 on a free port, in its own session, with a parent-death signal so
that a killed test run leaves nothing behind, and is always stopped (terminate, wait, kill) by the
context manager that started it. ``TCP_NODELAY=1`` is in the environment of every dcmtk tool and
Orthanc (without it Nagle's algorithm makes each C-STORE wait ~40 ms).

Binaries missing: the tests fail when ``CI`` is set, and skip with the reason otherwise. The
``storescu``/``findscu`` names on PATH may be pynetdicom's Python apps, so only ELF executables
count as dcmtk's.

Orthanc 1.10 has no bind-address option: its DICOM port listens on all interfaces while a test
runs (its HTTP server is disabled).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

HOST = "127.0.0.1"
ORTHANC_WORKLIST_PLUGIN = "/usr/share/orthanc/plugins/libModalityWorklists.so"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def find_binary(name: str) -> str | None:
    """The first native executable ``name`` on PATH (then /usr/bin, /usr/sbin), or None."""
    dirs = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
    for folder in dirs:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK) and _is_elf(os.path.realpath(candidate)):
            return candidate
    return None


def require_binaries(*names: str) -> dict[str, str]:
    """Paths of the named binaries; fail under CI, skip locally (with the reason) when one is missing."""
    found = {name: find_binary(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        reason = (f"missing {', '.join(missing)}: install Debian's 'orthanc' and 'dcmtk' "
                  "(apt-get install -y orthanc dcmtk; .ci/run does)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return {name: path for name, path in found.items() if path}


def tool_env() -> dict[str, str]:
    return dict(os.environ, TCP_NODELAY="1")


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Process:
    """A server process we started; :meth:`stop` ends it by its PID only."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start_process(name: str, argv: Sequence[str], log: Path, cwd: Path | None = None,
                  env: dict[str, str] | None = None) -> Process:
    """Start ``argv`` in its own session, output to ``log``, ended with us (parent-death signal)."""
    handle = open(log, "ab")
    try:
        popen = subprocess.Popen(list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, env={**tool_env(), **(env or {})}, start_new_session=True,
                                 preexec_fn=_child_setup)
    finally:
        handle.close()
    return Process(name, popen, log)


def wait_for_echo(process: Process, port: int, called_aet: str, timeout: float = 20.0) -> None:
    """Wait until the server answers C-ECHO (it is then ready); fail with its log otherwise."""
    ae = AE(ae_title="PROBE")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 5
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.log_text()}")
        with contextlib.suppress(OSError):
            with socket.create_connection((HOST, port), timeout=1):
                pass
            assoc = ae.associate(HOST, port, ae_title=called_aet)
            if assoc.is_established:
                status = assoc.send_c_echo()
                assoc.release()
                if getattr(status, "Status", None) == 0:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer C-ECHO on port {port}:\n{process.log_text()}")


@dataclass
class OrthancPeer:
    """A running Orthanc: its DICOM port and AE title, and its worklist folder."""

    port: int
    aet: str
    worklists: Path
    process: Process
    storage: Path


@contextlib.contextmanager
def orthanc(folder: Path, *, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]] | None = None,
            worklist: bool = True) -> Iterator[OrthancPeer]:
    """Start Orthanc in ``folder`` with its modality worklist plugin; stop it on exit.

    ``modalities`` maps an AE title to (host, port): every AE that queries or retrieves, and every
    C-MOVE destination, must be listed.
    """
    paths = require_binaries("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    worklists = folder / "worklists"
    worklists.mkdir(exist_ok=True)
    port = free_port()
    config: dict[str, object] = {
        "Name": "protocolcheck-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": aet,
        "DicomPort": port,
        "HttpServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomScuTimeout": 10,
        "DicomAssociationCloseDelay": 0,
        "SaveJobs": False,
        "DicomModalities": {name: [name, host, p] for name, (host, p) in (modalities or {}).items()},
        "StorageCompression": False,
    }
    if worklist:
        if not Path(ORTHANC_WORKLIST_PLUGIN).exists():
            reason = f"Orthanc worklist plugin missing: {ORTHANC_WORKLIST_PLUGIN}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        config["Plugins"] = [ORTHANC_WORKLIST_PLUGIN]
        config["Worklists"] = {"Enable": True, "Database": str(worklists)}
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    process = start_process("Orthanc", [paths["Orthanc"], f"--logfile={folder / 'orthanc.log'}", str(config_path)],
                            folder / "orthanc.stdout")
    try:
        wait_for_echo(process, port, aet)
        yield OrthancPeer(port=port, aet=aet, worklists=worklists, process=process, storage=folder / "storage")
    finally:
        process.stop()


@dataclass
class WlmPeer:
    """A running dcmtk ``wlmscpfs``: worklist files go into :attr:`folder` (``DB/<AET>/``)."""

    port: int
    aet: str
    folder: Path
    process: Process


@contextlib.contextmanager
def wlmscpfs(folder: Path, *, aet: str = "WLMSCP") -> Iterator[WlmPeer]:
    """Start dcmtk's file-based worklist SCP serving ``folder/db/<aet>/*.wl``; stop it on exit."""
    paths = require_binaries("wlmscpfs")
    database = folder / "db"
    served = database / aet
    served.mkdir(parents=True, exist_ok=True)
    (served / "lockfile").touch()
    port = free_port()
    process = start_process("wlmscpfs", [paths["wlmscpfs"], "-s", "-dhl", "-dfp", str(database), str(port)],
                            folder / "wlmscpfs.log")
    try:
        wait_for_echo(process, port, aet)
        yield WlmPeer(port=port, aet=aet, folder=served, process=process)
    finally:
        process.stop()


def storescu(port: int, paths: Sequence[Path | str], *, aet: str = "STORESCU", called: str = "PROTOCOLCHECK",
             extra: Sequence[str] = (), timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Send files/folders with dcmtk's storescu (recursing, not halting on a refused instance)."""
    binary = require_binaries("storescu")["storescu"]
    argv = [binary, "-aet", aet, "-aec", called, "-nh", "-to", "10", "-ta", "10", "-td", "30",
            *extra, "+sd", "+r", HOST, str(port), *map(str, paths)]
    return subprocess.run(argv, capture_output=True, text=True, env=tool_env(), timeout=timeout, check=False)


# ----------------------------------------------------------------------------------------------
# Worklist items written with pydicom (studies come from protocolcheck.synth)


def write_worklist_item(path: Path, *, accession: str, station_aet: str, scheduled_date: str,
                        procedure: str, procedure_code: str = "", reason: str = "", comments: str = "",
                        admitting: str = "", modality: str = "MR", patient_id: str = "PID1") -> Path:
    """Write a ``.wl`` worklist file (DICOM file format) that both Orthanc and wlmscpfs serve."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.AccessionNumber = accession
    ds.PatientName = "Test^Patient"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["worklist", accession])  # same item, same UID
    ds.RequestedProcedureID = "RP" + accession
    ds.RequestedProcedureDescription = procedure
    if procedure_code:
        code = Dataset()
        code.CodeValue = procedure_code
        code.CodingSchemeDesignator = "LN"
        code.CodeMeaning = procedure
        ds.RequestedProcedureCodeSequence = [code]
    if reason:
        ds.ReasonForTheRequestedProcedure = reason
    if comments:
        ds.RequestedProcedureComments = comments
    if admitting:
        ds.AdmittingDiagnosesDescription = admitting
    ds.RequestingPhysician = "Ref^Doctor"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.AdmissionID = ""
    ds.RequestedProcedurePriority = "ROUTINE"
    step = Dataset()
    step.ScheduledStationAETitle = station_aet
    step.ScheduledProcedureStepStartDate = scheduled_date
    step.ScheduledProcedureStepStartTime = "090000"
    step.Modality = modality
    step.ScheduledPerformingPhysicianName = ""
    step.ScheduledProcedureStepDescription = procedure
    step.ScheduledProcedureStepID = "SPS" + accession
    step.ScheduledStationName = station_aet
    step.ScheduledProcedureStepLocation = ""
    ds.ScheduledProcedureStepSequence = [step]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def today_dicom(offset_days: int = 0) -> str:
    return (dt.date.today() + dt.timedelta(days=offset_days)).strftime("%Y%m%d")


__all__ = [
    "HOST", "OrthancPeer", "Process", "WlmPeer", "find_binary", "free_port", "orthanc", "require_binaries",
    "storescu", "today_dicom", "tool_env", "wlmscpfs", "write_worklist_item",
]
