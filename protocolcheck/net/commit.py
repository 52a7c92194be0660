"""Group commit of folder fsyncs, and pynetdicom's reactor pace while instances flow.

:class:`FolderSync` makes new directory entries durable for several writers at once. A writer that has
linked its file into a folder calls :meth:`FolderSync.sync` with that folder (and any folder it created
above it) and returns only once an fsync of each of them has *started after* its call and succeeded:
the entry it linked is on disk. While one fsync of a folder runs, every writer that arrives meanwhile on
the same folder waits for the next round, one fsync for all of them, instead of queueing one
fsync each behind the journal (on ext4 every fsync is a journal commit). Different folders are synced in
parallel (concurrent fsyncs share journal commits; one thread syncing them in turn pays one commit
each). A failed fsync fails every writer of that round (they answer "out of resources"; nothing is
acknowledged).

:func:`brisk_reactors` makes pynetdicom's two polling loops per accepted association (the DUL reader and
the association's reactor, each sleeping 1 ms whenever it finds nothing to do; three such sleeps lie on
the path of every C-STORE and its answer) sleep :data:`BRISK_SLEEP` instead while a C-STORE arrived
within :data:`BRISK_WINDOW` seconds (:func:`busy`); idle associations keep pynetdicom's 1 ms pace, and so
do the associations we request (SR push, retrieve, worklist): pynetdicom's reactor can take a response
meant for a requestor sending requests back to back, and a faster poll made that more likely (measured:
7 of 44 runs of 340 back-to-back C-ECHOs at 0.2 ms, 2 of 64 at pynetdicom's pace). The reactor of an association
whose reader serves its C-STOREs itself (:mod:`.fastpath`: its DUL provider says ``serves_stores``) has nothing
on that path: it polls every :data:`QUIET_SLEEP` seconds, its polls only took the interpreter from the readers.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pynetdicom.association
import pynetdicom.dul

BRISK_SLEEP = 0.0002  # seconds a reactor sleeps while instances flow (pynetdicom: 0.001)
BRISK_WINDOW = 1.0  # seconds after the last C-STORE that the reactors stay brisk
# Seconds the reactor of an association whose reader serves its C-STOREs (net/fastpath.py) sleeps between polls
# (pynetdicom: 0.001). It only answers what the reader hands it (C-ECHO, MPPS ...) and the release; at 1 ms its
# polls took 14% of the interpreter from the readers over 4 associations of 128 KB images.
QUIET_SLEEP = 0.005


def fsync_path(path: Path) -> None:
    """fsync a folder (its entries are durable once this returns) or a file (its data and size)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(target: Path, write: Callable[[BinaryIO], object], *, fsync: bool, prefix: str) -> None:
    """Write ``target`` whole or not at all: ``write`` fills a temporary file beside it (named ``prefix``..., so
    a start can sweep what a crash left), which is flushed (fsync with ``fsync``) and renamed over ``target``;
    on failure the temporary file is removed and the error raised. Making the folder entry durable is the
    caller's (one :func:`fsync_path` of the folder, or a :class:`FolderSync` round)."""
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass
class _Folder:
    asked: int = 0  # tickets handed out
    done: int = 0  # every ticket up to this one has had its round
    running: bool = False
    failed: list[tuple[int, int, OSError]] = field(default_factory=list)  # (first, last ticket, error)


class FolderSync:
    """Durable directory entries for concurrent writers: one fsync round per folder for all who wait on
    it (group commit); different folders are synced in parallel, each by one of its writers."""

    def __init__(self, fsync: Callable[[Path], None] = fsync_path) -> None:
        self._fsync = fsync
        self._cond = threading.Condition()
        self._folders: dict[Path, _Folder] = {}
        self.rounds = 0  # fsync rounds run (for tests and measurements)

    def sync(self, folders: Iterable[Path]) -> None:
        """Return once every folder in ``folders`` was fsynced by a round that started after this call;
        OSError if that round failed."""
        for folder in folders:
            self._sync(folder)

    def _sync(self, folder: Path) -> None:
        with self._cond:
            state = self._folders.setdefault(folder, _Folder())
            state.asked += 1
            ticket = state.asked
            while state.done < ticket:
                if state.running:
                    self._cond.wait()
                else:
                    self._round(folder, state)
            if self._folders.get(folder) is state and not state.running and state.done == state.asked \
                    and not state.failed:
                del self._folders[folder]  # nobody waits on it: forget it
            for first, last, error in state.failed:
                if first <= ticket <= last:
                    raise error

    def _round(self, folder: Path, state: _Folder) -> None:
        """One fsync of ``folder`` for every ticket so far (called with the lock held; released meanwhile)."""
        first, last = state.done + 1, state.asked
        state.running = True
        self._cond.release()
        error: OSError | None = None
        try:
            self._fsync(folder)
        except OSError as exc:
            error = exc
        finally:
            self._cond.acquire()
            state.running = False
            state.done = last
            self.rounds += 1
            if error is not None:
                state.failed = [*state.failed[-15:], (first, last, error)]
            self._cond.notify_all()


_last_store = 0.0


def busy() -> None:
    """Note that a C-STORE arrived (the reactors stay brisk for :data:`BRISK_WINDOW` seconds)."""
    global _last_store
    _last_store = time.monotonic()


def accepted(thread: threading.Thread) -> bool:
    """Whether ``thread`` runs an association we accepted (its reactor, or its DUL reader)."""
    assoc = thread if isinstance(thread, pynetdicom.association.Association) else getattr(thread, "assoc", None)
    return bool(getattr(assoc, "is_acceptor", False))


def _paced_sleep(seconds: float) -> None:
    if seconds <= 0.001:
        thread = threading.current_thread()
        if isinstance(thread, pynetdicom.association.Association) and getattr(thread.dul, "serves_stores", False):
            seconds = QUIET_SLEEP  # the reactor of an association whose reader serves its C-STOREs (fastpath.py)
        elif seconds > BRISK_SLEEP and time.monotonic() - _last_store < BRISK_WINDOW and accepted(thread):
            seconds = BRISK_SLEEP
    time.sleep(seconds)


def brisk_reactors() -> None:
    """Let pynetdicom's reactor loops (``pynetdicom.dul``, ``pynetdicom.association``) sleep through
    :func:`_paced_sleep`; every other use of ``time`` in them is the ``time`` module's. Idempotent."""
    for module in (pynetdicom.dul, pynetdicom.association):
        if not isinstance(module.time, types.SimpleNamespace):
            pace: Any = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time)
                                                 if not name.startswith("__")})
            pace.sleep = _paced_sleep
            module.time = pace  # type: ignore[attr-defined]
