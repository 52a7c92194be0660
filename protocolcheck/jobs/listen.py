"""``listen``'s work on each completed study: audit it, write one JSON line per audit, then save it.

The storage SCP (:class:`~protocolcheck.net.scp.StorageSCP`) calls :meth:`ListenJob.on_study` on its
tracker thread, one study at a time. The lines are written (and, to a file, flushed to disk) before
the audit is saved in the results store, so a store failure loses no record.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from protocolcheck.clinical.findings import AuditResult
from protocolcheck.jobs.incremental import FolderAuditor
from protocolcheck.net.common import LineLog


class JsonLines:
    """Where the audit lines go: a file appended to in whole lines only (:class:`~protocolcheck.net.common.LineLog`:
    each line synced to disk; a line that cannot be written completely, disk full, is cut off again, so
    it never merges with the next), or standard output when no path is given. Opening raises OSError."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = path
        self._file: LineLog | None = LineLog(path) if path else None

    def write(self, line: str) -> None:
        """Append one line (durably, to a file)."""
        if self._file is None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            return
        self._file.append(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ListenJob:
    """Audits each study folder the SCP completes, writes ``line(result)`` for each audit, then saves them.

    ``before(folder)`` runs first (the live loop closes the exam); ``announce(result)`` after each line
    is written (the CLI logs a one-line summary)."""

    def __init__(self, auditor: FolderAuditor, output: JsonLines, line: Callable[[AuditResult], str], *,
                 announce: Callable[[AuditResult], None] = lambda _result: None,
                 before: Callable[[Path], None] = lambda _folder: None) -> None:
        self.auditor = auditor
        self.output = output
        self.line = line
        self.announce = announce
        self.before = before
        self.audited = 0
        self._lock = threading.Lock()

    def on_study(self, folder: Path) -> None:
        self.before(folder)
        results = self.auditor.audit(folder)
        with self._lock:
            for result in results:
                self.output.write(self.line(result))
                self.audited += 1
                self.announce(result)
        self.auditor.save(folder, results)  # after the output, so a store failure loses no record

    def close(self) -> None:
        """Close the results store and the output file."""
        self.auditor.close()
        self.output.close()
