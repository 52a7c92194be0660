"""Real DICOM peers for the network tests: Orthanc (with its worklist plugin) and dcmtk tools.

Every server runs on 127.0.0.1 on a free port, in its own session, with a parent-death signal so
that a killed test run leaves nothing behind, and is always stopped (terminate, wait, kill) by the
context manager that started it. ``TCP_NODELAY=1`` is in the environment of every dcmtk tool and
Orthanc (without it Nagle's algorithm makes each C-STORE wait ~40 ms).

Binaries missing: the tests fail when ``CI`` is set, and skip with the reason otherwise. The
``storescu``/``findscu`` names on PATH may be pynetdicom's Python apps, so only ELF executables
count as dcmtk's.

A server started on a port :func:`free_port` chose is started again on another one when that port was
taken before the server bound it (:func:`start_server`: listen, wlmscpfs, PostgreSQL; Orthanc, with its
two ports, has its own loop).

Orthanc 1.10 has no bind-address option: its DICOM port listens on all interfaces while a test
runs (its HTTP server is disabled).

Also here: ``protocolcheck listen`` as a real process (:class:`Listener`), a TCP peer that accepts
and never answers (:func:`silent_server`), a throw-away PKI for DICOM TLS (:func:`make_pki`), and
the instances dcmtk's ``storescu -v`` saw acknowledged (:func:`acknowledged`).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode

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
    offset: int = 0  # where its output starts in ``log`` (a log can hold earlier runs' output)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Its own output (not an earlier run's in the same log)."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self.offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        """The end of its own output (for error messages)."""
        return self.output()[-4000:]

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start_process(name: str, argv: Sequence[str], log: Path, cwd: Path | None = None,
                  env: dict[str, str] | None = None, user: tuple[int, int] | None = None) -> Process:
    """Start ``argv`` in its own session, output to ``log``, ended with us (parent-death signal);
    as ``user`` (uid, gid) when given (PostgreSQL refuses to run as root)."""

    def setup() -> None:  # pragma: no cover - runs in the child between fork and exec
        if user is not None:
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
        _child_setup()  # after the uid change, which clears the parent-death signal

    with open(log, "ab") as handle:  # the child has its own copy
        offset = handle.seek(0, os.SEEK_END)
        popen = subprocess.Popen(list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, env={**tool_env(), **(env or {})}, start_new_session=True,
                                 preexec_fn=setup)
    return Process(name, popen, log, offset)


# What a server says when the port it was given is taken: EADDRINUSE's message (listen, Orthanc, PostgreSQL),
# or dcmtk's servers' only words for a listening socket they could not open (wlmscpfs gives no reason).
PORT_TAKEN = ("already in use", "Initialization of network connection failed")


def start_server(start: Callable[[int], Process], ready: Callable[[Process, int], None], *,
                 port: int | None = None, attempts: int = 3) -> tuple[Process, int]:
    """Start a server with ``start(port)`` and wait until ``ready(process, port)`` returns (it raises
    RuntimeError or AssertionError when the server is not ready); (the process, its port).

    On ``port`` when given; else on one :func:`free_port` chooses, and on another one when the server
    says that one was taken (:data:`PORT_TAKEN` in its own output): a port free a moment ago can be
    given to another test's outgoing connection as its source port before the server binds it. A
    failure for any other reason, or on a port the caller chose, is raised at once.
    """
    for attempt in range(1, attempts + 1):
        chosen = port or free_port()
        process = start(chosen)
        try:
            ready(process, chosen)
            return process, chosen
        except (RuntimeError, AssertionError):
            process.stop()
            said = process.output()
            if port is None and attempt < attempts and any(words in said for words in PORT_TAKEN):
                continue
            raise
    raise AssertionError("not reached")  # the last attempt returns or raises


def wait_for_echo(process: Process, port: int, called_aet: str, timeout: float = 20.0,
                  tls: ssl.SSLContext | None = None) -> None:
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
            assoc = ae.associate(HOST, port, ae_title=called_aet, tls_args=(tls, HOST) if tls else None)
            if assoc.is_established:
                status = assoc.send_c_echo()
                assoc.release()
                if getattr(status, "Status", None) == 0:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer C-ECHO on port {port}:\n{process.log_text()}")


def wait_for_http(process: Process, port: int, timeout: float = 30.0) -> None:
    """Wait until ``port`` on 127.0.0.1 accepts connections (Orthanc's HTTP server starts after DICOM)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not open HTTP port {port}:\n{process.log_text()}")


@dataclass
class OrthancPeer:
    """A running Orthanc: its DICOM port and AE title, and its worklist folder."""

    port: int
    aet: str
    worklists: Path
    process: Process
    storage: Path
    http_port: int | None = None  # with dicomweb=True: the REST/DICOMweb port on 127.0.0.1

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"


ORTHANC_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@contextlib.contextmanager
def orthanc(folder: Path, *, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]] | None = None,
            worklist: bool = True, tls: Pki | None = None, extra: dict[str, object] | None = None,
            dicomweb: bool = False, users: dict[str, str] | None = None, port: int | None = None,
            ) -> Iterator[OrthancPeer]:
    """Start Orthanc in ``folder`` with its modality worklist plugin; stop it on exit.

    ``modalities`` maps an AE title to (host, port): every AE that queries or retrieves, and every
    C-MOVE destination, must be listed. ``tls``: serve DICOM TLS only, with the PKI's server
    certificate, requiring client certificates signed by its CA, and using TLS towards every
    modality. ``extra``: more configuration keys. ``dicomweb``: also serve HTTP on 127.0.0.1 with the
    DICOMweb plugin (Debian's orthanc-dicomweb), with basic authentication when ``users`` are given.
    ``port``: its DICOM port (default: a free one).
    """
    paths = require_binaries("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    worklists = folder / "worklists"
    worklists.mkdir(exist_ok=True)
    config: dict[str, object] = {
        "Name": "protocolcheck-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": aet,
        "HttpServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomScuTimeout": 10,
        "DicomAssociationCloseDelay": 0,
        "SaveJobs": False,
        "DicomModalities": {name: {"AET": name, "Host": host, "Port": p, **({"UseDicomTls": True} if tls else {})}
                            for name, (host, p) in (modalities or {}).items()},
        "StorageCompression": False,
    }
    if tls is not None:
        config.update({"DicomTlsEnabled": True, "DicomTlsCertificate": str(tls.server_cert),
                       "DicomTlsPrivateKey": str(tls.server_key), "DicomTlsTrustedCertificates": str(tls.ca),
                       "DicomTlsRemoteCertificateRequired": True})
    config.update(extra or {})
    plugins: list[str] = []
    for wanted, plugin in ((worklist, ORTHANC_WORKLIST_PLUGIN), (dicomweb, ORTHANC_DICOMWEB_PLUGIN)):
        if wanted and not Path(plugin).exists():
            reason = f"Orthanc plugin missing: {plugin} (apt-get install orthanc orthanc-dicomweb; .ci/run does)"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        if wanted:
            plugins.append(plugin)
    if plugins:
        config["Plugins"] = plugins
    if worklist:
        config["Worklists"] = {"Enable": True, "Database": str(worklists)}
    if dicomweb:
        config.update({"HttpServerEnabled": True, "RemoteAccessAllowed": False,
                       "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}})
        if users:
            config.update({"AuthenticationEnabled": True, "RegisteredUsers": users})
    for attempt in range(1, 4):
        dicom_port, http_port = port or free_port(), free_port() if dicomweb else None
        process = _start_orthanc(paths["Orthanc"], folder, {**config, "DicomPort": dicom_port,
                                                             **({"HttpPort": http_port} if http_port else {})})
        try:
            wait_for_echo(process, dicom_port, aet, tls=tls.client_context() if tls else None)
            if http_port is not None:
                wait_for_http(process, http_port)
            break
        except RuntimeError as exc:
            process.stop()
            log = (folder / "orthanc.log").read_text(errors="replace") if (folder / "orthanc.log").exists() else ""
            # a port free_port() chose was taken meanwhile (another test's connection got it as its source port)
            if attempt < 3 and "already in use" in log and (port is None or dicomweb):
                continue
            raise RuntimeError(f"{exc}\northanc.log:\n{log[-2000:]}") from exc
    try:
        yield OrthancPeer(port=dicom_port, aet=aet, worklists=worklists, process=process,
                          storage=folder / "storage", http_port=http_port)
    finally:
        process.stop()


def _start_orthanc(binary: str, folder: Path, config: dict[str, object]) -> Process:
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    return start_process("Orthanc", [binary, f"--logfile={folder / 'orthanc.log'}", str(config_path)],
                         folder / "orthanc.stdout")


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
    process, port = start_server(
        lambda port: start_process("wlmscpfs", [paths["wlmscpfs"], "-s", "-dhl", "-dfp", str(database), str(port)],
                                   folder / "wlmscpfs.log"),
        lambda process, port: wait_for_echo(process, port, aet))
    try:
        yield WlmPeer(port=port, aet=aet, folder=served, process=process)
    finally:
        process.stop()


def storescu(port: int, paths: Sequence[Path | str], *, aet: str = "STORESCU", called: str = "PROTOCOLCHECK",
             extra: Sequence[str] = (), timeout: float = 60.0, tls: Pki | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """Send files/folders with dcmtk's storescu (recursing, not halting on a refused instance).

    ``tls``: over TLS with the PKI's client certificate, trusting its CA.
    """
    binary = require_binaries("storescu")["storescu"]
    argv = [binary, "-aet", aet, "-aec", called, "-nh", "-to", "10", "-ta", "10", "-td", "30",
            *(tls.storescu_args() if tls else ()), *extra, "+sd", "+r", HOST, str(port), *map(str, paths)]
    return subprocess.run(argv, capture_output=True, text=True, env=tool_env(), timeout=timeout, check=False)


_SENDING = re.compile(r"Sending file: (.+?)\s*$")
_RESPONSE = re.compile(r"Received Store Response(?: \(([^)]*)\))?")


def acknowledged(output: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """From ``storescu -v`` output: the files answered with success, and the others with their status."""
    ok: list[Path] = []
    failed: list[tuple[Path, str]] = []
    current: Path | None = None
    for line in output.splitlines():
        sending = _SENDING.search(line)
        if sending:
            current = Path(sending.group(1))
            continue
        response = _RESPONSE.search(line)
        if response and current is not None:
            status = response.group(1) or ""
            if status.startswith("Success"):
                ok.append(current)
            else:
                failed.append((current, status))
            current = None
    return ok, failed


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (newest version), else one on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth, its own data and socket folder in a
    temporary folder, removed afterwards); yields a SQLAlchemy URL of its ``postgres`` database.
    Missing binaries or driver: fail under CI, skip locally."""
    bindir = postgres_bin()
    try:
        import psycopg  # the driver the URL names
    except ImportError:
        psycopg = None
    if bindir is None or psycopg is None:
        reason = ("missing PostgreSQL server binaries or the psycopg driver: apt-get install -y postgresql; "
                  "pip install 'psycopg[binary]' (.ci/run does both)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    user = None
    if os.geteuid() == 0:  # initdb and postgres refuse root: run them as Debian's postgres user
        import pwd

        entry = pwd.getpwnam("postgres")
        user = (entry.pw_uid, entry.pw_gid)
    # not under pytest's tmp_path: its parent folders are private to root, and postgres must reach its data
    home = Path(tempfile.mkdtemp(prefix="protocolcheck-pg-"))
    if user is not None:
        os.chown(home, *user)
    data, log = home / "data", home / "server.log"
    init = start_process("initdb", [str(bindir / "initdb"), "-D", str(data), "-U", "protocolcheck", "--auth=trust",
                                    "-E", "UTF8", "--no-sync"], home / "initdb.log", cwd=home, user=user)
    if init.popen.wait(120) != 0:
        text = init.log_text()
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{text}")

    def ready(server: Process, port: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            if not server.alive():
                raise RuntimeError(f"PostgreSQL stopped at start:\n{server.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                if "ready to accept connections" in server.log_text():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start within 60 s:\n{server.log_text()}")
            time.sleep(0.1)

    try:
        server, port = start_server(
            lambda port: start_process("postgres", [str(bindir / "postgres"), "-D", str(data), "-h", HOST, "-p",
                                                    str(port), "-k", str(home), "-F"], log, cwd=home, user=user),
            ready)
    except RuntimeError as exc:
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(str(exc))
    try:
        yield f"postgresql+psycopg://protocolcheck@{HOST}:{port}/postgres"
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


class Handovers:
    """The hand-over callback of a :class:`StorageSCP` in tests: each completed study's folder name and
    instance count, in order, and waits for them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.event = threading.Condition()

    def __call__(self, folder: Path) -> None:
        with self.event:
            self.calls.append((folder.name, len(list(folder.glob("*/*.dcm")))))
            self.event.notify_all()

    def wait(self, n: int, timeout: float = 20.0) -> list[tuple[str, int]]:
        with self.event:
            assert self.event.wait_for(lambda: len(self.calls) >= n, timeout), f"only {self.calls} after {timeout}s"
            return list(self.calls)

    def wait_for(self, call: tuple[str, int], timeout: float = 20.0) -> list[tuple[str, int]]:
        """Wait until ``call`` (study, instance count) has been handed over."""
        with self.event:
            assert self.event.wait_for(lambda: call in self.calls, timeout), f"{self.calls}, not {call}"
            return list(self.calls)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte (a hung peer); its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(32)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, name="silent-peer", daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def association_rq(called: str = "PROTOCOLCHECK", calling: str = "RAWPEER",
                   abstract: str = "1.2.840.10008.1.1") -> bytes:
    """The bytes of an A-ASSOCIATE-RQ PDU proposing ``abstract`` (default: verification) in Explicit
    VR Little Endian, for raw-socket peers that then misbehave."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, ImplementationClassUIDNotification, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    context = build_context(abstract, ExplicitVRLittleEndian)
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16382
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.1"
    primitive.user_information = [length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed ``sock`` (EOF or reset), reading and dropping what it sends; None
    when it was still open after ``seconds``."""
    started = time.monotonic()
    while (left := started + seconds - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            return None
        except OSError:
            return time.monotonic() - started
    return None


# ----------------------------------------------------------------------------------------------
# A throw-away PKI for DICOM TLS


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by it, and a
    self-signed "rogue" certificate nobody trusts (all PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context with the server certificate (no client certificate asked for)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.server_cert), str(self.server_key))
        return context

    def client_context(self, cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        if cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def storescu_args(self) -> list[str]:
        return ["+tls", str(self.client_key), str(self.client_cert), "-pw", "+cf", str(self.ca)]


def make_pki(folder: Path) -> Pki:
    """Generate the certificates with ``cryptography`` (RSA 2048, valid for a day)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "protocolcheck tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, cert: x509.Certificate, private: rsa.RSAPrivateKey) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        return cert_path, key_path

    def issue(common: str, private: rsa.RSAPrivateKey, issuer: x509.Name, signer: rsa.RSAPrivateKey, *,
              ca: bool = False, usage: Sequence[x509.ObjectIdentifier] = (),
              sans: Sequence[x509.GeneralName] = ()) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(issuer)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False,
                decipher_only=False), critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()),
                                            critical=False)
        else:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                                            critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = key()
    ca_cert = issue("protocolcheck test CA", ca_key, name("protocolcheck test CA"), ca_key, ca=True)
    ca_path, _ = write("ca", ca_cert, ca_key)
    server_key = key()
    server = issue("localhost", server_key, ca_cert.subject, ca_key,
                   usage=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                   sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))])
    server_paths = write("server", server, server_key)
    client_key = key()
    client = issue("PROTOCOLCHECK", client_key, ca_cert.subject, ca_key,
                   usage=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
                   sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))])
    client_paths = write("client", client, client_key)
    rogue_key = key()
    rogue = issue("rogue", rogue_key, name("rogue"), rogue_key, ca=True)
    rogue_paths = write("rogue", rogue, rogue_key)
    return Pki(ca_path, *server_paths, *client_paths, *rogue_paths)


# ----------------------------------------------------------------------------------------------
# protocolcheck listen as a real process

REPO = Path(__file__).resolve().parent.parent


def repo_env() -> dict[str, str]:
    """The environment for ``python -m protocolcheck`` from this source tree."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}


def peak_rss_mb(pid: int) -> float:
    """The peak memory (VmHWM) of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


_PEAK_PROBE = ("import runpy, sys; sys.argv = ['protocolcheck', *sys.argv[1:]]\n"
               "try:\n    runpy.run_module('protocolcheck', run_name='__main__')\n"
               "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
               "    print('peak', hwm.split()[1], file=sys.stderr)\n")


def run_measured(args: Sequence[str], env: dict[str, str] | None = None,
                 timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], float]:
    """``protocolcheck ARGS`` as a child that reports its own peak memory when it ends (VmHWM, not ru_maxrss:
    Linux carries the forking parent's high-water mark, pytest's, across exec); (the run, peak MB)."""
    run = subprocess.run([sys.executable, "-c", _PEAK_PROBE, *args], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **repo_env(), **(env or {})})
    return run, int(run.stderr.rsplit("peak", 1)[1].split()[0]) / 1024


class Listener:
    """``protocolcheck listen`` as a real process (own session, parent-death signal, always stopped)."""

    def __init__(self, tmp: Path, *args: str, name: str = "listen", store: Path | None = None,
                 port: int | None = None, wait: bool = True, env: dict[str, str] | None = None) -> None:
        self.store = store or tmp / "store"
        self.out = tmp / "audits.jsonl"
        self.log = tmp / f"{name}.log"

        def start(port: int) -> Process:
            argv = [sys.executable, "-m", "protocolcheck", "listen", "--port", str(port), "--store", str(self.store),
                    "--output", str(self.out), *args]
            return start_process(name, argv, self.log, env={**repo_env(), **(env or {})})

        if wait:  # on another port if the one chosen was taken before listen bound it (see start_server)
            self.process, self.port = start_server(start, lambda process, _port: _started(process), port=port)
        else:
            self.port = port or free_port()
            self.process = start(self.port)

    def wait_started(self, timeout: float = 60) -> None:
        _started(self.process, timeout)

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self) -> list[dict]:
        if not self.out.exists():
            return []
        whole = self.out.read_text().split("\n")[:-1]  # a last line without its newline is still being written
        return [json.loads(line) for line in whole if line.strip()]

    def latest(self) -> dict[str, dict]:
        """The last audit record of each study (a study is audited again when more of it arrives)."""
        return {r["study_instance_uid"]: r for r in self.records()}

    def wait_latest(self, expected: dict[str, dict], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.latest() != expected:
            assert self.process.alive(), self.text()
            if time.monotonic() > deadline:
                latest = self.latest()
                differ = {uid: sorted(k for k in set(latest.get(uid, {})) | set(record)
                                      if latest.get(uid, {}).get(k) != record.get(k))
                          for uid, record in expected.items() if latest.get(uid) != record}
                raise AssertionError(f"{sorted(latest)} vs {sorted(expected)}; differing keys {differ}:\n{self.text()}")
            time.sleep(0.1)

    def wait_records(self, n: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.records()) < n:
            assert self.process.alive(), self.text()
            assert time.monotonic() < deadline, f"{len(self.records())} of {n} records:\n{self.text()}"
            time.sleep(0.1)
        return self.records()

    def terminate(self, timeout: float = 60, sig: int = signal.SIGTERM) -> int:
        self.process.popen.send_signal(sig)
        return self.process.popen.wait(timeout)

    def kill(self) -> None:
        self.process.popen.kill()
        self.process.popen.wait(10)


def _started(process: Process, timeout: float = 60) -> None:
    """Wait for listen's "listening as" line; AssertionError with its output when it exits or is late."""
    deadline = time.monotonic() + timeout
    while "listening as" not in process.output():
        assert process.alive(), process.log_text()
        assert time.monotonic() < deadline, process.log_text()
        time.sleep(0.05)


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
    "CHROMIUM_FLAGS", "HOST", "MPPS_SOP_CLASS", "REPO", "Listener", "Modality", "OrthancPeer", "Pki", "Process",
    "WlmPeer", "acknowledged", "chromium", "find_binary", "free_port", "make_pki", "orthanc", "repo_env",
    "require_binaries",
    "series_files", "silent_server", "storescu",
    "today_dicom", "tool_env", "wlmscpfs", "write_worklist_item",
]


# ----------------------------------------------------------------------------------------------
# A modality: sends a study series by series (dcmtk storescu) and reports its exam by MPPS (pynetdicom SCU)

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"


def series_files(folder: Path) -> list[list[Path]]:
    """The files of a :func:`protocolcheck.testing.synth.write_study` folder, grouped by series, in order
    (file names are ``<series number>_<instance>.dcm``)."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.dcm")):
        groups.setdefault(path.name.split("_")[0], []).append(path)
    return [groups[k] for k in sorted(groups)]


class Modality:
    """A scanner as the live loop sees it: MPPS N-CREATE/N-SET by pynetdicom, images by dcmtk storescu.

    ``study`` is a folder written by synth; the MPPS names its Study Instance UID and accession.
    """

    def __init__(self, port: int, study: Path, *, aet: str = "MR1", called: str = "PROTOCOLCHECK",
                 station_name: str = "MR-ROOM-1") -> None:
        import pydicom

        self.port = port
        self.aet = aet
        self.called = called
        self.station_name = station_name
        self.series = series_files(study)
        first = pydicom.dcmread(self.series[0][0], stop_before_pixels=True)
        self.study_uid = str(first.StudyInstanceUID)
        self.accession = str(first.AccessionNumber)
        self.procedure = str(first.get("RequestedProcedureDescription", "") or first.get("StudyDescription", ""))
        self.series_uids = [str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
                            for files in self.series]
        self.mpps_uid = generate_uid()

    def send_series(self, index: int) -> subprocess.CompletedProcess[str]:
        result = storescu(self.port, self.series[index], aet=self.aet, called=self.called)
        assert result.returncode == 0, result.stderr
        return result

    def _ae(self) -> AE:
        ae = AE(ae_title=self.aet)
        ae.add_requested_context(MPPS_SOP_CLASS)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        return ae

    def _send(self, send: Callable[[Any], tuple[Any, Any]]) -> int:
        for _attempt in range(2):  # an empty status is a failure; retry once (see the testing notes)
            assoc = self._ae().associate(HOST, self.port, ae_title=self.called)
            assert assoc.is_established, "MPPS association refused"
            try:
                status, _ = send(assoc)
            finally:
                assoc.release()
            if status is not None and "Status" in status:
                return int(status.Status)
        raise AssertionError("no MPPS response")

    def mpps_create(self) -> int:
        ds = Dataset()
        ds.PerformedProcedureStepStatus = "IN PROGRESS"
        ds.PerformedStationAETitle = self.aet
        ds.PerformedStationName = self.station_name
        ds.PerformedProcedureStepID = "PPS-" + self.accession
        ds.PerformedProcedureStepStartDate = today_dicom()
        ds.PerformedProcedureStepStartTime = "090000"
        ds.PerformedProcedureStepDescription = self.procedure
        ds.Modality = "MR"
        ds.PatientName = "Test^Patient"
        ds.PatientID = "PID-" + self.accession
        step = Dataset()
        step.StudyInstanceUID = self.study_uid
        step.AccessionNumber = self.accession
        step.RequestedProcedureDescription = self.procedure
        step.ScheduledProcedureStepID = "SPS-" + self.accession
        ds.ScheduledStepAttributesSequence = [step]
        ds.PerformedSeriesSequence = []
        return self._send(lambda assoc: assoc.send_n_create(ds, MPPS_SOP_CLASS, self.mpps_uid))

    def mpps_set(self, status: str, performed: Sequence[int] | None = None) -> int:
        """N-SET the step's status with the Performed Series Sequence of ``performed`` (series indexes;
        default all)."""
        ds = Dataset()
        ds.PerformedProcedureStepStatus = status
        ds.PerformedProcedureStepEndDate = today_dicom()
        ds.PerformedProcedureStepEndTime = "093000"
        items = []
        for index in (range(len(self.series)) if performed is None else performed):
            item = Dataset()
            item.SeriesInstanceUID = self.series_uids[index]
            item.SeriesDescription = ""
            item.PerformingPhysicianName = ""
            item.ProtocolName = ""
            item.RetrieveAETitle = ""
            item.ReferencedImageSequence = []
            item.ReferencedNonImageCompositeSOPInstanceSequence = []
            items.append(item)
        ds.PerformedSeriesSequence = items
        return self._send(lambda assoc: assoc.send_n_set(ds, MPPS_SOP_CLASS, self.mpps_uid))


# ----------------------------------------------------------------------------------------------
# Headless Chromium driven by Selenium (Debian's chromium + chromium-driver)

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1600")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Selenium WebDriver on headless Chromium with a fresh profile; always quit. Missing browser or
    driver: fail under CI, skip locally."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian's is a shell wrapper
    driver_path = find_binary("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if browser is None or driver_path is None or webdriver is None:
        reason = "headless Chromium needs Debian's chromium and chromium-driver and the selenium package"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="protocolcheck-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CHUNK = 256 * 1024  # data set bytes per P-DATA PDU RawPeer sends (listen accepts PDUs up to 1 MiB)


def mr_header(study: str, series: str, sop: str, rows: int = 64, columns: int = 64,
              accession: str = "INTEG1") -> Dataset:
    """A minimal MR Image data set without pixels (16 bits allocated, 12 stored) for the storage tests to send."""
    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.AccessionNumber = accession
    ds.Modality = "MR"
    ds.StudyDate = "20250314"
    ds.SeriesDescription = "t2_tse_cor"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def explicit_le(ds: Dataset) -> bytes:
    """``ds`` as a C-STORE carries it: Explicit VR Little Endian, without File Meta Information."""
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = False, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


class RawPeer:
    """A storage SCU on a raw socket: associates (MR Image, Explicit VR Little Endian, context 1), then sends
    exactly the P-DATA PDUs a test asks for."""

    def __init__(self, port: int, calling: str = "RAWPEER") -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.sendall(association_rq(calling=calling, abstract=MR_IMAGE))
        kind, _ = self.read_pdu()
        assert kind == 0x02, f"association not accepted (PDU type {kind:#x})"
        self.sent = 0

    def read_pdu(self) -> tuple[int, bytes]:
        head = self._read(6)
        kind, _, length = struct.unpack(">BBI", head)
        return kind, self._read(length)

    def _read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} of {n} bytes")
            data.extend(chunk)
        return bytes(data)

    def pdv(self, data: bytes | memoryview, control: int) -> None:
        """One P-DATA-TF PDU with one PDV of context 1 (control: bit 0 command, bit 1 last fragment)."""
        self.sock.sendall(struct.pack(">BBIIBB", 0x04, 0, 6 + len(data), 2 + len(data), 1, control))
        self.sock.sendall(data)
        self.sent += len(data)

    def command(self, sop_uid: str, message_id: int = 1) -> None:
        request = C_STORE()
        request.MessageID = message_id
        request.AffectedSOPClassUID = MR_IMAGE
        request.AffectedSOPInstanceUID = sop_uid
        request.Priority = 2
        request.DataSet = BytesIO(b"\x00")
        message = C_STORE_RQ()
        message.primitive_to_message(request)
        self.pdv(message.encode_msg(1, 1 << 20).__next__().presentation_data_value_list[0][1][1:], 0x03)

    def data(self, payload: bytes, last: bool = True) -> None:
        view = memoryview(payload)
        for at in range(0, len(view), CHUNK):
            piece = view[at:at + CHUNK]
            self.pdv(piece, 0x02 if last and at + CHUNK >= len(view) else 0x00)

    def status(self) -> int:
        """The Status of the next C-STORE-RSP."""
        while True:
            kind, body = self.read_pdu()
            assert kind == 0x04, f"PDU type {kind:#x} instead of a reply"
            if body[5] & 0x01:  # command fragment (one PDV: length 4, context 1, control 1)
                return int(decode(BytesIO(body[6:]), True, True).Status)

    def release(self) -> None:
        self.sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
        assert self.read_pdu()[0] == 0x06
        self.sock.close()

    def aborted(self, seconds: float = 10) -> bool:
        """Whether listen sends A-ABORT or closes the connection within ``seconds`` (what it sends before is read)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                kind, _ = self.read_pdu()
            except TimeoutError:
                continue
            except OSError:  # closed or reset (ConnectionError included)
                return True
            if kind == 0x07:
                return True
        return False

    def stream(self, sop_uid: str, total: int, *, heed_abort: bool = True) -> int:
        """C-STORE-RQ then up to ``total`` data set bytes of zeros, stopping when listen aborts (unless told
        not to heed it) or closes the connection; the data set bytes sent."""
        self.command(sop_uid)
        zeros = bytes(CHUNK)
        self.sock.setblocking(False)
        sent = 0
        try:
            while sent < total:
                try:
                    self.sock.settimeout(5)
                    self.pdv(zeros, 0x00)
                except OSError:
                    break
                sent += CHUNK
                if heed_abort and self._abort_waiting():
                    break
        finally:
            self.sock.settimeout(30)
        return sent

    def _abort_waiting(self) -> bool:
        self.sock.setblocking(False)
        try:
            head = self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(5)
        return not head or head == b"\x07"
