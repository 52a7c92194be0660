"""Results store: audit results persisted in SQLite (default) or any SQLAlchemy database.

History is kept: every audit of a study is a new row, never an update, so re-auditing a study leaves
both results. A per-file stat index (``files``) lets a re-run skip unchanged files without parsing
them, and a per-study *fingerprint* plus the protocol-library version decide whether a study must be
audited again (see :mod:`protocolcheck.jobs.incremental` and :mod:`protocolcheck.jobs.fingerprint`).

Concurrency: a ``listen`` service and a nightly batch job may write at once. On SQLite the store uses
WAL journaling, a generous busy timeout and ``BEGIN IMMEDIATE`` transactions that are short (one per
study), so writers queue instead of failing or corrupting the file. Other databases (PostgreSQL) bring
their own concurrency control.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    null,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from protocolcheck.clinical.findings import AuditResult, Finding, Status
from protocolcheck.errors import InputError, RunError
from protocolcheck.jobs.fingerprint import lenient_json_default

if TYPE_CHECKING:  # pandas is imported where a frame is built (reports), not on every audit
    import pandas as pd

SCHEMA_VERSION = "2"  # 2: findings carry action, detail, guideline and deviation columns
# Columns added since version 1, by version: (table, column, SQL type); added in place on open.
MIGRATIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "2": (("findings", "action", "TEXT"), ("findings", "detail", "TEXT"), ("findings", "guideline", "TEXT"),
          ("findings", "deviation", "TEXT")),
}
BUSY_TIMEOUT_S = 60.0

metadata = MetaData()

meta_table = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs_table = Table(
    "audit_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started", DateTime, nullable=False),
    Column("finished", DateTime),
    Column("command", Text, nullable=False, default=""),
    Column("library_version", String(64), nullable=False, default=""),
    Column("host", String(255), nullable=False, default=""),
    Column("pid", Integer),
    Column("audited", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("outcome", String(32), nullable=False, default="running"),
)

audits_table = Table(
    "audits", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("audit_runs.id"), index=True),
    Column("source", String(32), nullable=False, default="audit"),
    Column("study_instance_uid", String(128), nullable=False),
    Column("accession_number", String(64), nullable=False, default=""),
    Column("study_date", String(16), nullable=False, default=""),
    Column("study_day", Date),
    Column("modality", String(16), nullable=False, default=""),
    Column("study_description", Text, nullable=False, default=""),
    Column("manufacturer", String(128), nullable=False, default=""),
    Column("station_name", String(128), nullable=False, default=""),
    Column("institution", String(255), nullable=False, default=""),
    Column("protocol", String(128)),
    Column("status", String(16), nullable=False),
    Column("errors", Integer, nullable=False, default=0),
    Column("warnings", Integer, nullable=False, default=0),
    Column("days_after_trauma", Float),
    Column("fingerprint", String(64), nullable=False, default=""),
    Column("library_version", String(64), nullable=False, default=""),
    Column("audited_at", DateTime, nullable=False),
    Column("patient_name", Text, nullable=False, default=""),
    Column("patient_id", String(64), nullable=False, default=""),
    Column("result_json", Text, nullable=False),
    Index("ix_audits_study_id", "study_instance_uid", "id"),
)

findings_table = Table(
    "findings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("audit_id", Integer, ForeignKey("audits.id"), nullable=False, index=True),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("requirement", String(128)),
    Column("message", Text, nullable=False, default=""),
    Column("action", Text),  # one imperative sentence (version 2)
    Column("detail", Text),  # the message without action and guideline, for tables (version 2)
    Column("guideline", Text),  # the guideline statements cited, quoted with their sources (version 2)
    Column("deviation", Text),  # a recorded clinical reason to deviate (version 2)
)

files_table = Table(
    "files", metadata,
    Column("path", String(4096), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # image | unreadable | skipped
    Column("study_instance_uid", String(128), index=True),
    Column("sop_instance_uid", String(128)),
    Column("reason", Text, nullable=False, default=""),
    Column("seen_at", DateTime, nullable=False),
)


# One row per check of a scheduled procedure step (``worklist --db``): a step is checked again, and a row
# added, only when its worklist fields (``digest``) changed; rows are never updated (history).
scheduled_table = Table(
    "scheduled_checks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step_key", String(160), nullable=False),  # accession number and scheduled procedure step ID
    Column("digest", String(64), nullable=False),
    Column("accession_number", String(64), nullable=False, default=""),
    Column("scheduled_date", String(16), nullable=False, default=""),
    Column("scheduled_day", Date),
    Column("station_aet", String(64), nullable=False, default=""),
    Column("modality", String(16), nullable=False, default=""),
    Column("procedure", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),  # the order check's verdict: pass | warn | fail
    Column("findings_json", Text, nullable=False, default="[]"),  # code, severity, message, action of each
    Column("actions", Text, nullable=False, default=""),  # the findings' actions, one a line
    Column("checked_at", DateTime, nullable=False),
    Column("record_json", Text, nullable=False),  # the whole check-order record, as printed
    Index("ix_scheduled_step_id", "step_key", "id"),
    Index("ix_scheduled_day", "scheduled_day"),
)


class StoreError(RunError, RuntimeError):
    """The store cannot be opened, created or written (the CLI exits 3)."""


class StoreMissing(StoreError, InputError):
    """A read-only open found no store at the path (the CLI exits 2)."""


class FileKind(str, Enum):
    IMAGE = "image"
    UNREADABLE = "unreadable"
    SKIPPED = "skipped"


_FILE_KINDS = {kind.value: kind for kind in FileKind}


@dataclass(frozen=True)
class FileEntry:
    """One file of the stat index: what a re-run needs to skip it without parsing."""

    path: str
    size: int
    mtime_ns: int
    kind: FileKind
    study_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Filters:
    """Report filters; empty fields do not filter. Text filters match case-insensitively."""

    since: dt.date | None = None
    until: dt.date | None = None
    protocols: tuple[str, ...] = ()
    stations: tuple[str, ...] = ()
    scanners: tuple[str, ...] = ()
    institutions: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()

    def describe(self) -> dict[str, str]:
        """The active filters as short text, for the report header."""
        out: dict[str, str] = {}
        if self.since:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        for name in ("protocols", "stations", "scanners", "institutions", "statuses"):
            values = getattr(self, name)
            if values:
                out[name] = ", ".join(values)
        return out


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def is_url(target: str) -> bool:
    """True for a SQLAlchemy URL (``postgresql://...``, ``sqlite:///...``), False for a file path."""
    if "://" not in target:
        return False
    try:
        make_url(target)
    except ArgumentError:
        return False
    return True


def sqlite_path(target: str | os.PathLike[str]) -> Path | None:
    """The database file of a SQLite target (path or sqlite URL), None for other databases/memory."""
    text = os.fspath(target)
    if not is_url(text):
        return Path(text)
    url = make_url(text)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def describe_target(target: str | os.PathLike[str]) -> str:
    """The target for messages, with any password hidden."""
    text = os.fspath(target)
    if is_url(text):
        return make_url(text).render_as_string(hide_password=True)
    return text


def _sqlite_setup(engine: Engine, *, readonly: bool) -> None:
    """WAL, busy timeout, and BEGIN IMMEDIATE so concurrent writers queue instead of deadlocking."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below rule transactions
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not readonly:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class Store:
    """A results store. Open with :meth:`Store.open`; close with :meth:`close` (or ``with``)."""

    def __init__(self, engine: Engine, target: str, *, readonly: bool = False, keep_patient: bool = False) -> None:
        self.engine = engine
        self.target = target
        self.readonly = readonly
        self.keep_patient = keep_patient

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, readonly: bool = False, keep_patient: bool = False) -> Store:
        """Open (and create, unless ``readonly``) the store at a file path or SQLAlchemy URL.

        Patient name and ID are saved only with ``keep_patient`` (``audit --include-patient``):
        by default the store, like the reports, identifies studies by accession number and UIDs.

        Raises :class:`StoreError` with a clear reason when it cannot be created or written, and
        :class:`StoreMissing` when ``readonly`` and there is no store.
        """
        text = os.fspath(target)
        shown = describe_target(text)
        db_file = sqlite_path(text)
        if db_file is not None:
            if readonly and not db_file.exists():
                raise StoreMissing(f"no results store at {db_file} (run 'protocolcheck audit --db {db_file}' first)")
            if not readonly:
                try:
                    db_file.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the folder of results store {db_file}: "
                                     f"{exc.strerror or exc}") from exc
                if db_file.is_dir():
                    raise StoreError(f"results store {db_file} is a folder, not a database file")
            url = f"sqlite:///{db_file}" if not is_url(text) else text
            if readonly:
                url = f"sqlite:///file:{db_file}?mode=ro&uri=true"
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
            _sqlite_setup(engine, readonly=readonly)
        else:
            try:
                engine = create_engine(text, pool_pre_ping=True)
            except (ArgumentError, ImportError, SQLAlchemyError) as exc:
                raise StoreError(f"cannot use results store {shown}: {exc}") from exc
        store = cls(engine, shown, readonly=readonly, keep_patient=keep_patient)
        try:
            if readonly:
                store._check_schema()
            else:
                store._create()
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = getattr(exc, "orig", None) or exc
            verb = "read" if readonly else "write"
            raise StoreError(f"cannot {verb} results store {shown}: {reason}") from exc
        return store

    def _create(self) -> None:
        with self.engine.begin() as conn:
            metadata.create_all(conn, checkfirst=True)
            version = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
            if version is None:
                conn.execute(insert(meta_table).values(key="schema_version", value=SCHEMA_VERSION))
            elif _older(version):
                _migrate(conn, version)
            elif version != SCHEMA_VERSION:
                raise StoreError(f"results store {self.target} has schema version {version}; "
                                 f"this protocolcheck writes version {SCHEMA_VERSION}")

    def _check_schema(self) -> None:
        with self.engine.connect() as conn:
            version = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        if version is None:
            raise StoreError(f"{self.target} is not a protocolcheck results store")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _write(self) -> _WriteTransaction:
        """A short write transaction; database errors become :class:`StoreError`."""
        return _WriteTransaction(self)

    # -- runs ----------------------------------------------------------------------------------

    def begin_run(self, command: str, library_version: str = "") -> int:
        """Record the start of a batch run; returns its id (to pass to :meth:`save`)."""
        with self._write() as conn:
            result = conn.execute(insert(runs_table).values(
                started=_utcnow(), command=command, library_version=library_version,
                host=socket.gethostname(), pid=os.getpid(), audited=0, skipped=0, outcome="running"))
            return _inserted_id(result)

    def finish_run(self, run_id: int, *, audited: int, skipped: int, outcome: str = "ok") -> None:
        with self._write() as conn:
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(
                finished=_utcnow(), audited=audited, skipped=skipped, outcome=outcome))

    def runs(self) -> pd.DataFrame:
        import pandas as pd  # noqa: PLC0415 - loaded when a frame is built, not on every audit

        with self.engine.connect() as conn:
            return pd.read_sql(select(runs_table).order_by(runs_table.c.id), conn)

    # -- audits --------------------------------------------------------------------------------

    def save(self, result: AuditResult, *, fingerprint: str = "", library_version: str = "",
             run_id: int | None = None, source: str = "audit",
             audited_at: dt.datetime | None = None) -> int:
        """Append one study's audit (and its findings) in one short transaction; returns its id."""
        row = audit_row(result)
        if not self.keep_patient:
            row.update(patient_name="", patient_id="")
        row.update(run_id=run_id, source=source, fingerprint=fingerprint, library_version=library_version,
                   audited_at=(audited_at or _utcnow()))
        with self._write() as conn:
            audit_id = _inserted_id(conn.execute(insert(audits_table).values(**row)))
            rows = [{"audit_id": audit_id, "code": _value(f.code), "severity": _value(f.severity),
                     "requirement": f.requirement, "message": f.message, "action": f.action or None,
                     "detail": f.render(action=False, guideline=False),
                     "guideline": " ".join(q.text() for q in f.guideline) or None,
                     "deviation": f.deviation or None} for f in result.findings]
            if rows:
                conn.execute(insert(findings_table), rows)
        return audit_id

    def current(self, study_uids: Iterable[str]) -> dict[str, tuple[str, str, int]]:
        """For each study with an audit: (fingerprint, library_version, audit id) of its latest audit."""
        uids = list(dict.fromkeys(study_uids))
        out: dict[str, tuple[str, str, int]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(uids, 500):
                latest = (select(func.max(audits_table.c.id).label("id"))
                          .where(audits_table.c.study_instance_uid.in_(chunk))
                          .group_by(audits_table.c.study_instance_uid)).subquery()
                query = select(audits_table.c.study_instance_uid, audits_table.c.fingerprint,
                               audits_table.c.library_version, audits_table.c.id).join(
                    latest, audits_table.c.id == latest.c.id)
                for uid, fingerprint, version, audit_id in conn.execute(query):
                    out[uid] = (fingerprint, version, int(audit_id))
        return out

    def is_current(self, study_uid: str, fingerprint: str, library_version: str) -> bool:
        """True when the study's latest audit was made from the same instances and library."""
        latest = self.current([study_uid]).get(study_uid)
        return latest is not None and latest[0] == fingerprint and latest[1] == library_version

    def results(self, audit_ids: Iterable[int]) -> dict[int, AuditResult]:
        """The stored records of these audits, rebuilt as :class:`AuditResult` (patient fields included)."""
        ids = list(dict.fromkeys(int(i) for i in audit_ids))
        out: dict[int, AuditResult] = {}
        cols = (audits_table.c.id, audits_table.c.result_json, audits_table.c.patient_name, audits_table.c.patient_id)
        with self.engine.connect() as conn:
            for chunk in _chunks(ids, 500):
                for audit_id, text, name, pid in conn.execute(select(*cols).where(audits_table.c.id.in_(chunk))):
                    out[int(audit_id)] = result_from_dict(json.loads(text), patient_name=name, patient_id=pid)
        return out

    def history(self, study_uid: str) -> pd.DataFrame:
        """Every audit of one study, oldest first (one row per audit, without the JSON)."""
        import pandas as pd  # noqa: PLC0415 - loaded when a frame is built, not on every audit

        columns = [c for c in audits_table.c if c.name not in ("result_json",)]
        with self.engine.connect() as conn:
            return pd.read_sql(select(*columns).where(audits_table.c.study_instance_uid == study_uid)
                               .order_by(audits_table.c.id), conn)

    def latest(self, filters: Filters | None = None, *, include_patient: bool = False) -> pd.DataFrame:
        """The latest audit of each study, then filtered: one row per study (newest study first).

        The latest audit is chosen before filtering, so a study whose newest audit fails never shows
        up with an older passing one. Columns are those of ``audits`` (no JSON; patient columns only
        with ``include_patient``).
        """
        import pandas as pd  # noqa: PLC0415 - loaded when a frame is built, not on every audit

        skip = {"result_json"} if include_patient else {"result_json", "patient_name", "patient_id"}
        columns = [c for c in audits_table.c if c.name not in skip]
        latest = (select(func.max(audits_table.c.id).label("id"))
                  .group_by(audits_table.c.study_instance_uid)).subquery()
        query = select(*columns).join(latest, audits_table.c.id == latest.c.id)
        with self.engine.connect() as conn:
            df = pd.read_sql(query, conn)
        df = _normalise(df)
        df = apply_filters(df, filters or Filters())
        return df.sort_values(["when", "id"], ascending=False, kind="stable").reset_index(drop=True)

    def findings(self, audit_ids: Iterable[int]) -> pd.DataFrame:
        """The findings of these audits (audit_id, code, severity, requirement, message, action, detail,
        guideline, deviation; the last four are empty for a store of version 1 opened read-only)."""
        import pandas as pd  # noqa: PLC0415 - loaded when a frame is built, not on every audit

        ids = list(dict.fromkeys(int(i) for i in audit_ids))
        frames: list[pd.DataFrame] = []
        with self.engine.connect() as conn:
            present = {c["name"] for c in inspect(conn).get_columns("findings")}
            cols = [c if c.name in present else null().label(c.name) for c in findings_table.c if c.name != "id"]
            frames.extend(pd.read_sql(select(*cols).where(findings_table.c.audit_id.in_(chunk))
                                      .order_by(findings_table.c.audit_id, findings_table.c.id), conn)
                          for chunk in _chunks(ids, 500))
        if not frames:
            return pd.DataFrame(columns=[c.name for c in cols])
        return pd.concat(frames, ignore_index=True)

    def count_audits(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audits_table)).scalar() or 0)

    # -- file index ----------------------------------------------------------------------------

    def file_index(self, roots: Sequence[str]) -> dict[str, FileEntry]:
        """Indexed files under these absolute paths (files or folders), keyed by path."""
        out: dict[str, FileEntry] = {}
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as conn:
            for root in roots:
                root = root.rstrip(os.sep) or os.sep
                prefix = root if root.endswith(os.sep) else root + os.sep
                under: Any
                if sqlite:  # binary collation: an index range scan
                    under = (files_table.c.path >= prefix) & (files_table.c.path < prefix[:-1] + chr(ord(os.sep) + 1))
                else:  # collations vary: LIKE, then the exact test below
                    under = files_table.c.path.startswith(prefix, autoescape=True)
                c = files_table.c
                query = select(c.path, c.size, c.mtime_ns, c.kind, c.study_instance_uid, c.sop_instance_uid, c.reason)
                # (rows unpacked as tuples: a re-run over a large archive reads every row of the index)
                rows = conn.execute(query.where((c.path == root) | under))
                for path, size, mtime_ns, kind, study, sop, reason in rows:
                    if path != root and not path.startswith(prefix):
                        continue
                    entry_kind = _FILE_KINDS.get(kind) or FileKind(kind)  # (an unknown kind: ValueError, as before)
                    out[path] = FileEntry(path, int(size), int(mtime_ns), entry_kind, study, sop, reason or "")
        return out

    def index_files(self, entries: Iterable[FileEntry]) -> None:
        """Insert or replace entries of the file index (one transaction)."""
        rows = [{"path": e.path, "size": e.size, "mtime_ns": e.mtime_ns, "kind": e.kind.value,
                 "study_instance_uid": e.study_instance_uid, "sop_instance_uid": e.sop_instance_uid,
                 "reason": e.reason, "seen_at": _utcnow()} for e in entries]
        if not rows:
            return
        with self._write() as conn:
            for chunk in _chunks(rows, 500):
                conn.execute(delete(files_table).where(files_table.c.path.in_([r["path"] for r in chunk])))
                conn.execute(insert(files_table), chunk)

    def orphan_unreadable(self) -> list[tuple[str, str, dt.datetime]]:
        """Indexed unreadable files that belong to no study (path, reason, when seen): the audit reports
        them as ``error`` records that are never stored as audits, so the report adds them back."""
        c = files_table.c
        query = select(c.path, c.reason, c.seen_at).where((c.kind == FileKind.UNREADABLE.value)
                                                         & c.study_instance_uid.is_(None)).order_by(c.path)
        with self.engine.connect() as conn:
            return [(str(p), str(r or ""), s) for p, r, s in conn.execute(query)]

    def forget_files(self, paths: Iterable[str]) -> None:
        """Drop index entries of files that no longer exist."""
        items = list(paths)
        if not items:
            return
        with self._write() as conn:
            for chunk in _chunks(items, 500):
                conn.execute(delete(files_table).where(files_table.c.path.in_(chunk)))


class _WriteTransaction:
    """``with store._write() as conn``: engine.begin() with database errors turned into StoreError."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cm: Any = None

    def __enter__(self) -> Connection:
        if self.store.readonly:
            raise StoreError(f"results store {self.store.target} is open read-only")
        self._cm = self.store.engine.begin()
        try:
            return self._cm.__enter__()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write results store {self.store.target}: {getattr(exc, 'orig', exc)}") from exc

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._cm.__exit__(exc_type, exc, tb)
        except SQLAlchemyError as err:
            raise StoreError(f"cannot write results store {self.store.target}: {getattr(err, 'orig', err)}") from err
        if isinstance(exc, SQLAlchemyError):
            raise StoreError(f"cannot write results store {self.store.target}: {getattr(exc, 'orig', exc)}") from exc


# -- records <-> rows --------------------------------------------------------------------------


def _value(v: Any) -> Any:
    return v.value if isinstance(v, Enum) else v


def parse_dicom_date(text: str) -> dt.date | None:
    """YYYYMMDD (or ISO YYYY-MM-DD) to a date; None when empty or malformed."""
    text = (text or "").strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text[:10] if "-" in text else text[:8], fmt).date()
        except ValueError:
            continue
    return None


# Keys under which validate.py may record the days between injury and the study.
def days_after_trauma(timing: dict[str, Any] | None) -> float | None:
    """Days from injury to study: ``days_after_trauma`` of an audit's ``timing`` record (the audit sets it
    whenever both dates are known; None otherwise)."""
    value = (timing or {}).get("days_after_trauma")
    return None if value is None else float(value)


def audit_row(result: AuditResult) -> dict[str, Any]:
    """The ``audits`` columns of one result (without run/fingerprint bookkeeping)."""
    data = result.to_dict()
    severities = [_value(f.severity) for f in result.findings]
    return {
        "study_instance_uid": result.study_instance_uid,
        "accession_number": result.accession_number or "",
        "study_date": result.study_date or "",
        "study_day": parse_dicom_date(result.study_date),
        "modality": result.modality or "",
        "study_description": result.study_description or "",
        "manufacturer": result.manufacturer or "",
        "station_name": result.station_name or "",
        "institution": result.institution or "",
        "protocol": result.protocol,
        "status": _value(result.status),
        "errors": severities.count("error"),
        "warnings": severities.count("warning"),
        "days_after_trauma": days_after_trauma(result.timing),
        "patient_name": result.patient_name or "",
        "patient_id": result.patient_id or "",
        "result_json": json.dumps(data, default=lenient_json_default, ensure_ascii=False),
    }


def _inserted_id(result: CursorResult[Any]) -> int:
    """The id the database gave the row just inserted."""
    key = result.inserted_primary_key
    if key is None:
        raise StoreError("the database returned no id for the new row")
    return int(key[0])


E = TypeVar("E", bound=Enum)
F = TypeVar("F")


def _enum(kind: type[E], value: Any, fallback: F) -> E | F:
    """``kind(value)``, or ``fallback`` for a value this version does not know."""
    try:
        return kind(value)
    except ValueError:
        return fallback


def finding_from_dict(data: dict[str, Any]) -> Finding:
    """Rebuild a :class:`Finding` from its ``to_dict`` form (unknown codes keep their text)."""
    return Finding.from_dict(data)


def _older(version: str) -> bool:
    """Whether a store's schema version is older than :data:`SCHEMA_VERSION` (and can be migrated)."""
    return version.isdigit() and int(version) < int(SCHEMA_VERSION)


def _migrate(conn: Any, version: str) -> None:
    """Bring a store written by an older version to :data:`SCHEMA_VERSION`: add the columns each later
    version added (existing rows keep NULL there; their result JSON still holds everything they had)."""
    inspector = inspect(conn)
    existing = {(t, c["name"]) for t in {t for v in MIGRATIONS.values() for t, _, _ in v}
                for c in inspector.get_columns(t)}
    for target in sorted((v for v in MIGRATIONS if int(v) > int(version)), key=int):
        for table, column, sql_type in MIGRATIONS[target]:
            if (table, column) not in existing:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
    conn.execute(update(meta_table).where(meta_table.c.key == "schema_version").values(value=SCHEMA_VERSION))


def result_from_dict(data: dict[str, Any], *, patient_name: str = "", patient_id: str = "") -> AuditResult:
    """Rebuild an :class:`AuditResult` from its ``to_dict`` form (as stored in ``result_json``)."""
    handled = {"study_instance_uid", "accession_number", "study_date", "modality", "study_description", "protocol",
               "status", "findings", "series", "patient_name", "patient_id"}
    extra: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
             if k in AuditResult.__dataclass_fields__ and k not in handled}
    return AuditResult(
        study_instance_uid=str(data.get("study_instance_uid") or ""),
        accession_number=str(data.get("accession_number") or ""),
        study_date=str(data.get("study_date") or ""),
        modality=str(data.get("modality") or ""),
        study_description=str(data.get("study_description") or ""),
        protocol=data.get("protocol"),
        status=_enum(Status, data.get("status"), Status.ERROR),
        findings=tuple(finding_from_dict(f) for f in data.get("findings") or ()),
        series=tuple(data.get("series") or ()),
        patient_name=patient_name or str(data.get("patient_name") or ""),
        patient_id=patient_id or str(data.get("patient_id") or ""),
        **extra,
    )


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Typed columns plus ``when`` (study day, else audit day) and ``scanner`` for grouping."""
    import pandas as pd  # noqa: PLC0415 - loaded when a frame is built, not on every audit

    df = df.copy()
    df["audited_at"] = pd.to_datetime(df["audited_at"])
    study_day = pd.to_datetime(df["study_day"], errors="coerce")
    df["when"] = study_day.fillna(df["audited_at"].dt.normalize())
    df["scanner"] = df["manufacturer"].fillna("").astype(str).str.strip()
    for column in ("station_name", "institution", "protocol", "accession_number", "modality"):
        df[column] = df[column].fillna("").astype(str)
    df["days_after_trauma"] = pd.to_numeric(df["days_after_trauma"], errors="coerce")
    return df


def _matches(series: pd.Series, wanted: tuple[str, ...]) -> pd.Series:
    import pandas as pd  # noqa: PLC0415 - loaded when a frame is built, not on every audit

    lowered = series.fillna("").astype(str).str.lower()
    mask = pd.Series(False, index=series.index)
    for item in wanted:
        mask |= lowered.str.contains(item.lower(), regex=False)
    return mask


def apply_filters(df: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """Keep the rows that match every given filter (text filters: any of the values, substring)."""
    import pandas as pd  # noqa: PLC0415 - loaded when a frame is built, not on every audit

    mask = pd.Series(True, index=df.index)
    if filters.since:
        mask &= df["when"] >= pd.Timestamp(filters.since)
    if filters.until:
        mask &= df["when"] < pd.Timestamp(filters.until) + pd.Timedelta(days=1)
    if filters.protocols:
        mask &= df["protocol"].str.lower().isin([p.lower() for p in filters.protocols])
    if filters.stations:
        mask &= _matches(df["station_name"], filters.stations)
    if filters.scanners:
        mask &= _matches(df["scanner"], filters.scanners)
    if filters.institutions:
        mask &= _matches(df["institution"], filters.institutions)
    if filters.statuses:
        mask &= df["status"].isin(list(filters.statuses))
    return df[mask]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
