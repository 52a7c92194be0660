"""Opening and writing files whose names come from outside: regular files only, written whole or not at all.

- :func:`open_regular` opens for reading without blocking (``O_NONBLOCK``) and checks the opened file
  (``fstat``) before reading a byte: a named pipe called ``context.csv`` or ``notes.txt`` would make a
  plain ``open()`` wait forever for a writer; here it is refused with :class:`NotRegularFile`.
- :func:`write_text_atomic` writes a report beside its target and renames it into place, so a full disk
  or a missing folder leaves the earlier file as it was and raises ``OSError`` naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any

__all__ = ["NotRegularFile", "is_regular", "open_regular", "read_text_regular", "write_text_atomic"]


class NotRegularFile(OSError):
    """The path is a named pipe, socket, device or folder, not a regular file; nothing was read."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind}); not read", os.fspath(path))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a device"


def is_regular(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` (links followed) is a regular file; False for anything else or a missing path."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def open_regular(path: str | os.PathLike[str], mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """``open(path, mode, **kwargs)`` for reading, refused (:class:`NotRegularFile`) unless the file
    opened is a regular file; never blocks on a named pipe."""
    if any(c in mode for c in "wax+"):
        raise ValueError("open_regular opens files for reading only")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFile(path, _kind(status.st_mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_text_regular(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """The text of a regular file (see :func:`open_regular`)."""
    with open_regular(path, "r", encoding=encoding) as fh:
        return str(fh.read())


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` whole or not at all: into a temporary file in the same folder, then
    renamed over ``path``. A target that exists and is not a regular file (``/dev/stdout``, a pipe) is
    written directly. Raises ``OSError`` (with the path) when the folder is missing or read-only or the
    disk is full; the temporary file is removed and an earlier ``path`` is left as it was."""
    target = Path(path)
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with open(target, "w", encoding=encoding) as fh:
            fh.write(text)
        return
    folder = target.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, (existing.st_mode & 0o7777) if existing is not None else 0o666 & ~mask)
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = os.fspath(path)
        raise
