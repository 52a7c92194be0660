"""``--log-file`` and ``--log-format``: what a scheduled job leaves behind for IT.

Every line a command writes to stderr (progress aside: summaries, notes, errors) also goes to the log
file, with the time and a level; ``--log-format json`` writes one JSON object a line (``time``,
``level``, ``event``, ``message`` and, where a command has them, ``counts``) for log collectors.
Records identify studies by accession number and UIDs only, as the reports do: no patient names.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from enum import Enum
from typing import Any

LOGGER = "protocolcheck.run"


class LogFormat(str, Enum):
    """How log lines are written."""

    TEXT = "text"
    JSON = "json"


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, event, message, counts."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "message"),
            "message": record.getMessage(),
        }
        counts = getattr(record, "counts", None)
        if counts:
            entry["counts"] = counts
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(path: str | None, form: LogFormat = LogFormat.TEXT) -> None:
    """Send the run log to ``path`` (appended; None: no log file)."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if not path:
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonLines() if form is LogFormat.JSON else
                         logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def log_line(message: str) -> None:
    """A line the command wrote to stderr, in the log too (level from its ``error:``/``warning:`` prefix)."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        return
    level = (logging.ERROR if message.startswith("error") else
             logging.WARNING if message.startswith("warning") else logging.INFO)
    logger.log(level, message.replace("\n", " | "), extra={"event": message.split(":", 1)[0]
                                                           if message.startswith(("error", "warning", "note"))
                                                           else "summary"})


def log_event(event: str, message: str, **counts: Any) -> None:
    """A structured event with counts (``audit.finished``: studies, audited, unchanged, statuses, exit code)."""
    logger = logging.getLogger(LOGGER)
    if logger.handlers:
        logger.info(message, extra={"event": event, "counts": counts})
