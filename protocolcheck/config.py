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
``PROTOCOLCHECK_MAX_DATASET``  the largest DIMSE message (its data set) an association we accept may send
                               (``listen``, ``query``'s C-MOVE destination and C-GET; ``listen --max-dataset``;
                               a size: ``4GiB``, ``512MiB``, bytes; default :data:`MAX_DATASET_BYTES`)
``PROTOCOLCHECK_MAX_RECEIVING`` the data set bytes all associations of the process may hold at once while
                               receiving (``listen --max-receiving``; default :func:`default_max_receiving`)
=============================  ==========================================================================

The live loop's tunables with their defaults (``listen --exam-timeout`` overrides the first):
:data:`EXAM_TIMEOUT`, :data:`LIVE_HANDOVER_WAIT`, :data:`LIVE_REPLAY_ENDED`, :data:`OUTBOX_MAX_ITEMS`,
:data:`OUTBOX_MAX_BYTES`, :data:`OUTBOX_SENT_KEEP`, :data:`OUTBOX_REPORTED_KEEP`. The bounds on received DIMSE messages:
:data:`MAX_DATASET_BYTES`, :data:`MAX_RECEIVING_BYTES` (:func:`receive_limits`).
"""

from __future__ import annotations

import importlib.resources
import os
import re
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
    MAX_DATASET = "PROTOCOLCHECK_MAX_DATASET"
    MAX_RECEIVING = "PROTOCOLCHECK_MAX_RECEIVING"
    FAST_STORE = "PROTOCOLCHECK_FAST_STORE"


EXAM_TIMEOUT = 4 * 3600.0  # s: an open exam with no instance and no MPPS message for this long ends ("timeout")
LIVE_REPLAY_ENDED = 4 * 3600.0  # s: with --send-sr, exams an MPPS ended this recently are judged again at start
OUTBOX_SENT_KEEP = 7 * 86400.0  # s an acknowledged report's marker is kept (the same report is not sent twice)
OUTBOX_REPORTED_KEEP = 365 * 86400.0  # s the record of a study's last report is kept (a later verdict that says the
#                                       same is not stored again; one that differs supersedes it)
LIVE_HANDOVER_WAIT = 10.0  # s listen's idle hand-over waits for the live verdict (its SR in the outbox)
OUTBOX_MAX_ITEMS = 1000  # reports waiting for the PACS in STORE/.outbox (about a week of a busy scanner's exams)
OUTBOX_MAX_BYTES = 256 * 1024 * 1024  # their bytes (a report of a 500-image exam is about 100 kB)
# Received DIMSE messages (net/receiving.py). One message: 4 GiB is the most one native Pixel Data element can
# hold (a 32-bit length), twice the largest objects departments send (enhanced multi-frame MR/CT, breast
# tomosynthesis: 1-2 GB). All associations at once: 8 GiB (two such objects, or 64 associations of 128 MiB),
# at most a quarter of the machine's memory: pynetdicom and the C-STORE handler hold a received data set about
# twice over while it is stored (a 256 MiB instance: listen from 88 to 601 MB), so a quarter keeps the worst
# case near half the memory.
MAX_DATASET_BYTES = 4 << 30
MAX_RECEIVING_BYTES = 8 << 30
RECEIVING_MEMORY_SHARE = 4  # the in-flight default is at most 1/this of the physical memory

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


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?b)?|(b))?\s*$", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from ``4GiB``, ``4G``, ``512MiB``, ``64k`` or ``1048576`` (K/M/G/T are powers of 1024, with or
    without ``iB``/``B``); ValueError naming ``what`` for anything else or for less than 1 byte."""
    match = _SIZE_RE.match(text or "")
    if not match:
        raise ValueError(f"{what} {text!r} is not a size: use bytes or a number with K, M, G or T (e.g. 4GiB, 512M)")
    unit = (match.group(2) or "").lower()
    value = int(float(match.group(1)) * (1 << (10 * " kmgt".index(unit))) if unit else float(match.group(1)))
    if value < 1:
        raise ValueError(f"{what} {text!r} must be at least 1 byte")
    return value


def physical_memory() -> int | None:
    """The machine's memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def default_max_receiving() -> int:
    """:data:`MAX_RECEIVING_BYTES`, at most 1/:data:`RECEIVING_MEMORY_SHARE` of :func:`physical_memory`."""
    memory = physical_memory()
    return min(MAX_RECEIVING_BYTES, memory // RECEIVING_MEMORY_SHARE) if memory else MAX_RECEIVING_BYTES


def fast_store() -> bool:
    """Whether ``listen`` serves C-STORE requests on its own data path (net/fastpath.py): yes unless
    ``$PROTOCOLCHECK_FAST_STORE`` is ``0``, ``no``, ``false`` or ``off`` (then pynetdicom serves every message)."""
    return (_get(Env.FAST_STORE) or "1").strip().lower() not in ("0", "no", "false", "off")


def receive_limits(max_dataset: str | None = None, max_receiving: str | None = None) -> tuple[int, int]:
    """(bytes of one received DIMSE message, bytes being received by all associations at once): the
    options given (sizes as :func:`parse_size` reads them), else ``$PROTOCOLCHECK_MAX_DATASET`` /
    ``$PROTOCOLCHECK_MAX_RECEIVING``, else :data:`MAX_DATASET_BYTES` / :func:`default_max_receiving`;
    ValueError naming a malformed value."""
    dataset = max_dataset or _get(Env.MAX_DATASET)
    receiving = max_receiving or _get(Env.MAX_RECEIVING)
    where = ("--max-dataset" if max_dataset else f"${Env.MAX_DATASET.value}",
             "--max-receiving" if max_receiving else f"${Env.MAX_RECEIVING.value}")
    return (parse_size(dataset, where[0]) if dataset else MAX_DATASET_BYTES,
            parse_size(receiving, where[1]) if receiving else default_max_receiving())


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
