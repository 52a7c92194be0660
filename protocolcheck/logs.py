"""Log lines that cannot be forged, and the logging of the network commands (``listen``, ``query``, ``worklist``
and ``listen``'s receiver processes, which log to the same stderr).

Text from peers and headers (an accession with a newline, a SOP Instance UID with a terminal escape) is shown
with its control characters escaped (:func:`printable`), so no peer can forge, hide or recolour a log line.
"""

from __future__ import annotations

import logging
import re
import sys

from pynetdicom import _config as pynetdicom_config

# C0 and C1 controls (ESC starts terminal sequences, BEL rings, CR overwrites a line, LF forges a log line),
# DEL, and the Unicode bidi overrides and isolates that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEP_NEWLINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\u202e``), so that text taken from
    a header can neither drive a terminal nor forge a line in a log. ``keep_newlines`` keeps line feeds
    (for whole reports whose lines we wrote)."""
    pattern = _CONTROL_KEEP_NEWLINES if keep_newlines else _CONTROL
    return pattern.sub(_escape, text) if pattern.search(text) else text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class OneLineFormatter(logging.Formatter):
    """Every log record on one line: control characters from peers are shown escaped (:func:`printable`)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def network_logging(level: int, verbose: bool = False) -> None:
    """Our log records at ``level`` and up on stderr, one line each; pynetdicom's own only with ``verbose`` (its
    standard event handlers, which build their lines even for a logger that drops them, bound only then)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    ours = logging.getLogger("protocolcheck")
    ours.handlers[:] = [handler]
    ours.setLevel(level)
    ours.propagate = False
    theirs = logging.getLogger("pynetdicom")
    theirs.handlers[:] = [handler] if verbose else [logging.NullHandler()]
    theirs.setLevel(logging.INFO if verbose else logging.CRITICAL)
    theirs.propagate = False
    pynetdicom_config.LOG_HANDLER_LEVEL = "standard" if verbose else "none"
