"""What decides whether a stored audit is still current: the study's fingerprint, the audit settings,
the protocol library and the code that judged it — one function for each.

* :func:`fingerprint` / :func:`instance_fingerprint`: a study's files (or instances) plus the settings.
* :func:`settings_fingerprint`: every audit option that can change a result, as text.
* :func:`source_digest`: the package's own source code (the whole package, or some of its stages).
* :func:`library_version`: the protocol files and the judging code, stored with each audit.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocolcheck.clinical.findings import json_default
from protocolcheck.dicom.safeio import open_regular

if TYPE_CHECKING:
    from protocolcheck.audit.engine import AuditOptions

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
JUDGING_STAGES = ("dicom", "classify", "clinical", "audit")  # the code whose change changes a verdict


def lenient_json_default(value: Any) -> Any:
    """As :func:`~protocolcheck.clinical.findings.json_default`, and anything else as its text: a stored
    record or a settings text never fails."""
    try:
        return json_default(value)
    except TypeError:
        return str(value)


def fingerprint(parts: Iterable[Sequence[Any]], settings: str = "") -> str:
    """A stable digest of (instance, size, mtime)-like tuples plus a settings text (order-free)."""
    digest = hashlib.sha256()
    for line in sorted("\t".join(str(p) for p in part) for part in parts):
        digest.update(line.encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
    digest.update(b"\x00settings\x00")
    digest.update(settings.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def instance_fingerprint(sop_instance_uids: Iterable[str], settings: str = "") -> str:
    """Fingerprint of a study known only by its instances (network roles: ``listen``, ``query``)."""
    return fingerprint(((uid,) for uid in set(sop_instance_uids)), settings)


def file_digest(path: str | os.PathLike[str] | None) -> str:
    """sha256 of a file's contents ('' for None) — e.g. the context CSV in the settings."""
    if not path:
        return ""
    digest = hashlib.sha256()
    with open_regular(path, "rb") as fh:  # a named pipe: refused, not waited on
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_fingerprint(options: AuditOptions, context_file: str | os.PathLike[str] | None = None) -> str:
    """Every audit option that can change a result, as text for the study fingerprint.

    All fields of :class:`~protocolcheck.audit.engine.AuditOptions` count (so options added later
    count too) except the library, which :func:`library_version` covers. Context rows count by
    content: editing a trauma date in the CSV re-audits (every study: cheap, and always right).
    """
    values: dict[str, Any] = {}
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        if item.name == "library":
            continue
        if item.name == "contexts" and value is not None:
            value = {"by_accession": {k: dataclasses.asdict(v) for k, v in sorted(value.by_accession.items())},
                     "by_study_uid": {k: dataclasses.asdict(v) for k, v in sorted(value.by_study_uid.items())}}
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        values[item.name] = value
    if context_file:
        values["context_file"] = file_digest(context_file)
    return json.dumps(values, sort_keys=True, default=lenient_json_default)


@functools.cache
def source_digest(stages: tuple[str, ...] = ()) -> str:
    """sha256 of the package's Python sources (names and contents): of these stage folders, else of all.

    Taken once per process (the code that was loaded)."""
    folders = [PACKAGE_ROOT / stage for stage in stages] if stages else [PACKAGE_ROOT]
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\x00")
            digest.update(path.read_bytes() + b"\x00")
    return digest.hexdigest()


def library_version(folder: str | os.PathLike[str]) -> str:
    """Digest of every protocol file (name and contents) under the library folder, and of the judging code.

    Stored with each audit: a study is re-audited when the protocols or the code that judged it change.
    """
    root = Path(folder)
    digest = hashlib.sha256(source_digest(JUDGING_STAGES).encode())
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".yaml", ".yml", ".json"))
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\x00")
        digest.update(path.read_bytes())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
