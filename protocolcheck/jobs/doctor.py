"""``protocolcheck doctor``: what IT runs after installing or changing anything.

Each check is a plain function returning a :class:`Check` (name, passed, what was seen, what to do
when it failed). Checks never raise: whatever goes wrong is the check's failure, so one broken
piece never hides the others. :func:`run_checks` runs those the settings call for, in a fixed order.
"""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from protocolcheck import config
from protocolcheck.clinical.library import LibraryError, library_path, load_library
from protocolcheck.clinical.rules import RulesError, default_rules_path, load_rules
from protocolcheck.jobs.store import SCHEMA_VERSION, Store, StoreError
from protocolcheck.net.common import NetError, Peer, Timeouts, echo
from protocolcheck.net.dicomweb import DicomwebSource, WebPeer

MIN_FREE_BYTES = 2 << 30  # below 2 GB free the listen store or results store may stop a night's run


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    passed: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'OK  ' if self.passed else 'FAIL'}  {self.name:<10} {self.detail}"
        return text if self.passed or not self.fix else f"{text}\n{'':16}fix: {self.fix}"


@dataclass(frozen=True)
class DoctorSettings:
    """What to check (None: not configured, not checked)."""

    library: str | None = None
    store: str | None = None  # SQLite path or SQLAlchemy URL
    folders: tuple[str, ...] = ()  # where data is written: listen store, outputs
    pacs: Peer | None = None
    worklist: Peer | None = None
    dicomweb: WebPeer | None = None
    tls_files: dict[str, str] = field(default_factory=dict)  # role -> PEM path
    timeout: float = 10.0
    min_free_bytes: int = MIN_FREE_BYTES


def check_library(folder: str | None) -> Check:
    path = library_path(folder)
    try:
        library = load_library(path)
        load_rules(default_rules_path(path))
    except (LibraryError, RulesError, OSError) as exc:
        return Check("library", False, f"{path}: {str(exc).splitlines()[0]}",
                     f"run `protocolcheck protocols lint {path}` and correct what it names")
    return Check("library", True, f"{len(library.protocols)} protocols and the decision rules load ({path})")


def check_store(target: str | None) -> Check:
    target = config.store_target(target)
    try:
        store = Store.open(target)
    except StoreError as exc:
        return Check("store", False, str(exc), "check the path or URL, its folder's permissions and the database")
    try:
        run_id = store.begin_run("doctor")  # a real write: proves the store is writable
        store.finish_run(run_id, audited=0, skipped=0, outcome="doctor")
    except StoreError as exc:
        return Check("store", False, f"{target}: not writable ({exc})", "give the job's user write access")
    finally:
        store.close()
    shown = store.engine.url.render_as_string(hide_password=True)  # a PostgreSQL URL may hold a password
    return Check("store", True, f"writable, schema version {SCHEMA_VERSION} ({shown})")


def check_peer(name: str, peer: Peer, timeout: float) -> Check:
    try:
        echo(peer, Timeouts(connect=timeout, acse=timeout, dimse=timeout, network=timeout))
    except NetError as exc:
        return Check(name, False, str(exc), f"check host, port and AE titles; the peer must know our AE title "
                                            f"{peer.calling_aet!r} and this host")
    return Check(name, True, f"C-ECHO to {peer} answered")


def check_dicomweb(peer: WebPeer) -> Check:
    try:
        DicomwebSource(peer).client.search_for_studies(limit=1)
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return Check("dicomweb", False, f"{peer}: {text}", "check the URL, credentials and CA file")
    return Check("dicomweb", True, f"QIDO-RS search at {peer} answered")


def check_tls(role: str, path: str) -> Check:
    """A PEM file: ``ca`` must load as trusted certificates, ``cert``/``key`` must be readable PEM."""
    try:
        if role == "ca":
            ssl.create_default_context(cafile=path)
        elif b"-----BEGIN " not in Path(path).read_bytes():
            raise ValueError("not a PEM file")
    except (OSError, ValueError, ssl.SSLError) as exc:
        return Check("tls", False, f"{role} {path}: {exc}", "point the option at a readable PEM file")
    return Check("tls", True, f"{role} {path} readable")


def check_space(folder: str, minimum: int) -> Check:
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return Check("disk", False, f"{folder}: {exc}", "create the folder or fix its path")
    writable = os.access(probe, os.W_OK)
    detail = f"{folder}: {usage.free / 2**30:.1f} GB free" + ("" if writable else ", not writable")
    if usage.free < minimum or not writable:
        return Check("disk", False, detail, f"free space (at least {minimum / 2**30:.0f} GB) or fix permissions; "
                                            "`protocolcheck store prune` removes old received instances")
    return Check("disk", True, detail)


def run_checks(settings: DoctorSettings) -> Iterator[Check]:
    """Every configured check, in a fixed order (library, store, peers, TLS files, disk space)."""
    steps: list[Callable[[], Check]] = [partial(check_library, settings.library), partial(check_store, settings.store)]
    for name, peer in (("pacs", settings.pacs), ("worklist", settings.worklist)):
        if peer is not None:
            steps.append(partial(check_peer, name, peer, settings.timeout))
    if settings.dicomweb is not None:
        steps.append(partial(check_dicomweb, settings.dicomweb))
    steps.extend(partial(check_tls, role, path) for role, path in settings.tls_files.items())
    steps.extend(partial(check_space, folder, settings.min_free_bytes) for folder in settings.folders)
    for step in steps:
        try:
            yield step()
        except Exception as exc:  # noqa: BLE001 - a check that crashes is a failed check, not a traceback
            yield Check("check", False, f"{type(exc).__name__}: {exc}")

