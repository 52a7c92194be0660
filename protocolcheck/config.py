"""Settings: every ``PROTOCOLCHECK_*`` environment variable and every default location, read here only.

Each function reads the environment when it is called (a test, or a Dask worker taking the client's
environment, may change it at run time). Command-line options win over these; these win over the
defaults.

=============================  ==========================================================================
``PROTOCOLCHECK_LIBRARY``      protocol library folder (default: the one shipped with the package)
``PROTOCOLCHECK_RULES``        the recommender's decision rules file (default: ``rules.yaml`` of the library)
``PROTOCOLCHECK_DB``           results store: SQLite file or SQLAlchemy URL
                               (default: ``$XDG_DATA_HOME/protocolcheck/results.db``)
``PROTOCOLCHECK_READER``       ``pydicom`` forces the reference header reader (differential tests, debugging)
``PROTOCOLCHECK_PURE_PYTHON``  any value: the lean reader does not use its compiled skimmer
``PROTOCOLCHECK_DICOMWEB_*``   ``PASSWORD``, ``TOKEN``: credentials of ``query --dicomweb`` (read by its
                               click options, never typed on the command line)
``PROTOCOLCHECK_WEB_TOKEN``    the access token of ``listen --web`` (unless ``--web-token-file``)
``PROTOCOLCHECK_OUTBOX_*``     ``MAX_ITEMS``, ``MAX_BYTES``: how many reports (and bytes) ``listen --send-sr``
                               may hold in ``STORE/.outbox`` for a PACS that is down (default 1000, 256 MiB)
=============================  ==========================================================================

The live loop's tunables with their defaults (``listen --exam-timeout`` overrides the first):
:data:`EXAM_TIMEOUT`, :data:`LIVE_HANDOVER_WAIT`, :data:`LIVE_REPLAY_ENDED`, :data:`OUTBOX_MAX_ITEMS`,
:data:`OUTBOX_MAX_BYTES`, :data:`OUTBOX_SENT_KEEP`.
"""

from __future__ import annotations

import importlib.resources
import os
from enum import Enum
from pathlib import Path

ENV_PREFIX = "PROTOCOLCHECK_"
RULES_FILENAME = "rules.yaml"


class Env(str, Enum):
    """The environment variables protocolcheck reads."""

    LIBRARY = "PROTOCOLCHECK_LIBRARY"
    RULES = "PROTOCOLCHECK_RULES"
    DB = "PROTOCOLCHECK_DB"
    READER = "PROTOCOLCHECK_READER"
    PURE_PYTHON = "PROTOCOLCHECK_PURE_PYTHON"
    DICOMWEB_PASSWORD = "PROTOCOLCHECK_DICOMWEB_PASSWORD"
    DICOMWEB_TOKEN = "PROTOCOLCHECK_DICOMWEB_TOKEN"
    WEB_TOKEN = "PROTOCOLCHECK_WEB_TOKEN"
    OUTBOX_MAX_ITEMS = "PROTOCOLCHECK_OUTBOX_MAX_ITEMS"
    OUTBOX_MAX_BYTES = "PROTOCOLCHECK_OUTBOX_MAX_BYTES"


EXAM_TIMEOUT = 4 * 3600.0  # s: an open exam with no instance and no MPPS message for this long ends ("timeout")
LIVE_REPLAY_ENDED = 4 * 3600.0  # s: with --send-sr, exams an MPPS ended this recently are judged again at start
OUTBOX_SENT_KEEP = 7 * 86400.0  # s an acknowledged report's marker is kept (the same report is not sent twice)
LIVE_HANDOVER_WAIT = 10.0  # s listen's idle hand-over waits for the live verdict (its SR in the outbox)
OUTBOX_MAX_ITEMS = 1000  # reports waiting for the PACS in STORE/.outbox (about a week of a busy scanner's exams)
OUTBOX_MAX_BYTES = 256 * 1024 * 1024  # their bytes (a report of a 500-image exam is about 100 kB)

PATH_VARIABLES = (Env.LIBRARY, Env.RULES)  # paths: made absolute before they are sent to other machines


def _get(name: Env) -> str:
    return os.environ.get(name.value, "").strip()


def shipped_protocols_dir() -> Path:
    """``protocols/`` of the checkout this code runs from, else the copy installed as ``protocolcheck.protocols``.

    The checkout comes first so that a worktree (or an editable install run with ``PYTHONPATH``) reads the
    rules and protocols that belong to its own code."""
    checkout = Path(__file__).resolve().parent.parent / "protocols"
    if (checkout / RULES_FILENAME).is_file():
        return checkout
    try:
        packaged = Path(str(importlib.resources.files("protocolcheck.protocols")))
        if packaged.is_dir():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return checkout


def library_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The protocol library folder: ``explicit``, else ``$PROTOCOLCHECK_LIBRARY``, else the shipped one."""
    if explicit:
        return Path(explicit)
    env = _get(Env.LIBRARY)
    return Path(env) if env else shipped_protocols_dir()


def rules_file(library: str | os.PathLike[str] | None = None) -> Path:
    """The decision rules: ``rules.yaml`` of ``library``, else ``$PROTOCOLCHECK_RULES``, else ``rules.yaml``
    of ``$PROTOCOLCHECK_LIBRARY`` when it has one, else the shipped rules."""
    if library is not None:
        return Path(library) / RULES_FILENAME
    env = _get(Env.RULES)
    if env:
        return Path(env)
    env_library = _get(Env.LIBRARY)
    if env_library and (Path(env_library) / RULES_FILENAME).is_file():
        return Path(env_library) / RULES_FILENAME
    return shipped_protocols_dir() / RULES_FILENAME


def rules_for(library: str | os.PathLike[str] | None) -> Path:
    """The decision rules that go with a protocol library folder: its own ``rules.yaml`` when it has one,
    else :func:`rules_file` (so the audit, the recommender and the library read the same file)."""
    beside = Path(library) / RULES_FILENAME if library else None
    return beside if beside is not None and beside.is_file() else rules_file()


def store_chosen(explicit: str | None = None) -> bool:
    """Whether the user chose a results store: ``explicit`` (``--db``) or ``$PROTOCOLCHECK_DB``."""
    return bool(explicit or _get(Env.DB))


def store_target(explicit: str | None = None) -> str:
    """The results store, a file path or a SQLAlchemy URL as given: ``explicit`` (``--db``), else
    ``$PROTOCOLCHECK_DB``, else ``$XDG_DATA_HOME/protocolcheck/results.db`` (``~/.local/share`` by default)."""
    chosen = explicit or _get(Env.DB)
    if chosen:
        return chosen
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return str(Path(base) / "protocolcheck" / "results.db")


def pydicom_reader_forced() -> bool:
    """``PROTOCOLCHECK_READER=pydicom``: every header is read with pydicom (the reference reader)."""
    return _get(Env.READER) == "pydicom"


def skimmer_disabled() -> bool:
    """``PROTOCOLCHECK_PURE_PYTHON`` set: the lean reader walks headers in Python only."""
    return bool(os.environ.get(Env.PURE_PYTHON.value))


def dicomweb_password() -> str:
    """``$PROTOCOLCHECK_DICOMWEB_PASSWORD`` ("" = none)."""
    return _get(Env.DICOMWEB_PASSWORD)


def dicomweb_token() -> str:
    """``$PROTOCOLCHECK_DICOMWEB_TOKEN`` ("" = none)."""
    return _get(Env.DICOMWEB_TOKEN)


def web_token() -> str:
    """``$PROTOCOLCHECK_WEB_TOKEN``: the token the live page asks for ("" = none)."""
    return _get(Env.WEB_TOKEN)


def _positive_int(name: Env, default: int) -> int:
    text = _get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"${name.value} must be a whole number, not {text!r}") from None
    if value < 1:
        raise ValueError(f"${name.value} must be at least 1, not {value}")
    return value


def outbox_limits() -> tuple[int, int]:
    """(reports, bytes) the SR outbox may hold: ``$PROTOCOLCHECK_OUTBOX_MAX_ITEMS`` / ``_BYTES``, else
    :data:`OUTBOX_MAX_ITEMS` / :data:`OUTBOX_MAX_BYTES`; ValueError naming a malformed variable."""
    return _positive_int(Env.OUTBOX_MAX_ITEMS, OUTBOX_MAX_ITEMS), _positive_int(Env.OUTBOX_MAX_BYTES, OUTBOX_MAX_BYTES)


def protocolcheck_environment() -> dict[str, str]:
    """Every ``PROTOCOLCHECK_*`` variable as set now, the paths among them made absolute (for a Dask
    worker, which runs in another folder)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for key in PATH_VARIABLES:
        value = env.get(key.value, "").strip()
        if value and not os.path.isabs(value):
            env[key.value] = os.path.abspath(value)
    return env


def apply_environment(env: dict[str, str]) -> None:
    """Make this process's ``PROTOCOLCHECK_*`` variables exactly ``env`` (no-op when they match)."""
    current = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    if current == env:
        return
    for key in current.keys() - env.keys():
        del os.environ[key]
    os.environ.update(env)
