"""Load and validate the protocol library: one YAML file per protocol, checked against a JSON schema.

Protocols are data, not code. Every file is validated when the library loads, and *all* problems
are reported at once, each naming the file, the line, the key path and how to fix it (an unknown
key such as ``weigthing`` gets a "did you mean 'weighting'?" hint). A library with any problem is
not used at all: a typo must never silently switch a rule off.

Which files are protocols: every ``*.yaml``/``*.yml`` file in the library folder whose top-level
``kind`` is ``protocol``. Files with another ``kind`` (the recommender's ``rules.yaml``) are skipped,
and so is ``rules.yaml`` by name; a file with no ``kind`` at all is reported, not skipped.

The records a file becomes are in :mod:`~protocolcheck.clinical.protocol`; reading a file and its schema
problems in :mod:`~protocolcheck.clinical.protocol_schema`; the checks a schema cannot express in
:mod:`~protocolcheck.clinical.protocol_checks`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocolcheck import config
from protocolcheck.clinical.protocol import (
    MATCH_FIELDS,
    RANGE_FIELDS,
    AppliesTo,
    Citation,
    Level,
    Match,
    Note,
    PlaneRule,
    Protocol,
    QualityLimit,
    Range,
    Requirement,
    TraumaTiming,
)
from protocolcheck.clinical.protocol_checks import semantic_problems
from protocolcheck.clinical.protocol_schema import read_yaml, schema_problems
from protocolcheck.clinical.rules import (
    RulesError,
    load_rules,
    shipped_protocols_dir,
)
from protocolcheck.errors import InputError

NON_PROTOCOL_FILES = frozenset({"rules.yaml", "rules.yml"})


class LibraryError(InputError, ValueError):
    """The library cannot be used; ``problems`` lists every problem (file, line, key, fix)."""

    headline = "the protocol library cannot be used"


@dataclass(frozen=True)
class Library:
    """The validated protocols, by id."""

    protocols: dict[str, Protocol]
    path: str = ""
    skipped: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Protocol]:
        return iter(sorted(self.protocols.values(), key=lambda p: p.id))

    def __len__(self) -> int:
        return len(self.protocols)

    def __contains__(self, protocol_id: object) -> bool:
        return protocol_id in self.protocols

    def get(self, protocol_id: str) -> Protocol:
        """The protocol with this id; KeyError naming close matches otherwise."""
        try:
            return self.protocols[protocol_id]
        except KeyError:
            close = difflib.get_close_matches(protocol_id, list(self.protocols), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"no protocol {protocol_id!r} in the library {self.path}{hint} "
                           f"(known: {', '.join(sorted(self.protocols))})") from None


# --------------------------------------------------------------------------------------------------
# locating files


def default_library_path() -> Path:
    """``protocols/`` of this checkout, or the folder shipped with the package (``protocolcheck.protocols``)."""
    return shipped_protocols_dir()


def library_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Explicit path, else ``$PROTOCOLCHECK_LIBRARY``, else the shipped library."""
    return config.library_dir(path)


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix.lower() in (".yaml", ".yml") and not p.name.startswith("."))



# --------------------------------------------------------------------------------------------------
# loading


def _tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, list):
        return tuple(value)
    return (value,)


def _range(data: dict[str, Any]) -> Range:
    return Range(min=data.get("min"), max=data.get("max"))


def _match(data: dict[str, Any] | None) -> Match:
    data = data or {}
    return Match(
        values=tuple((name, _tuple(data[name])) for name in MATCH_FIELDS if name in data),
        ranges=tuple((name, _range(data[name])) for name in RANGE_FIELDS if name in data),
        negated=_match(data["not"]) if "not" in data else None,
        allow_derived=data.get("allow_derived"),
        allow_localizer=data.get("allow_localizer"),
        label=data.get("label", ""),
    )

def _build(data: dict[str, Any], path: Path) -> Protocol:
    citations = {
        c["id"]: Citation(id=c["id"], source=c["source"], statement=" ".join(c["statement"].split()),
                          url=c.get("url", ""), doi=c.get("doi", ""))
        for c in data["citations"]
    }
    requirements = tuple(
        Requirement(
            id=r["id"], label=r["label"], level=Level(r["level"]), match=_match(r.get("match")),
            alternatives=tuple(_match(a) for a in r.get("any_of") or ()),
            allow_derived=r.get("allow_derived", False), allow_localizer=r.get("allow_localizer", False),
            limits=tuple((name, _range(r["limits"][name])) for name in RANGE_FIELDS if name in (r.get("limits") or {})),
            exclusive=r.get("exclusive", True), defines_exam=r.get("defines_exam", False),
            citations=tuple(r["citations"]), note=r.get("note", ""), action=r.get("action", ""),
        )
        for r in data.get("requirements") or ()
    )
    planes = tuple(
        PlaneRule(
            id=p["id"], label=p["label"], level=Level(p["level"]), rule=p["rule"],
            series=_match(p.get("series")),
            tolerance_deg=float(p.get("tolerance_deg", 10.0)),
            min_obliquity_deg=float(p.get("min_obliquity_deg", 10.0)),
            isotropic_3d_counts=p.get("isotropic_3d_counts", True),
            isotropic_max_mm=float(p.get("isotropic_max_mm", 1.5)),
            reformats_count=p.get("reformats_count", True),
            citations=tuple(p["citations"]), note=p.get("note", ""), action=p.get("action", ""),
        )
        for p in data.get("planes") or ()
    )
    limits = tuple(
        QualityLimit(
            id=q["id"], label=q["label"], level=Level(q["level"]), parameter=q["parameter"], range=_range(q),
            series=_match(q.get("series")), citations=tuple(q.get("citations") or ()),
            site_policy=" ".join(str(q.get("site_policy", "")).split()), action=q.get("action", ""),
        )
        for q in data.get("limits") or ()
    )
    trauma = None
    trauma_data = (data.get("timing") or {}).get("trauma")
    if trauma_data is not None:
        rules = load_rules(config.rules_for(path.parent))
        trauma = TraumaTiming(
            min_days=rules.min_days_after_trauma, max_days=rules.max_days_after_trauma,
            citations=tuple(trauma_data.get("citations") or ()),
            delayed_citations=tuple(trauma_data.get("delayed_citations") or trauma_data.get("citations") or ()),
        )
    applies = data.get("applies_to") or {}
    return Protocol(
        id=data["id"], title=data["title"], modality=data["modality"], version=str(data["version"]),
        status=data["status"], citations=citations, requirements=requirements, planes=planes, trauma=trauma,
        applies_to=AppliesTo(
            descriptions=tuple(applies.get("descriptions") or ()),
            exclude_descriptions=tuple(applies.get("exclude_descriptions") or ()),
            procedure_codes=tuple(str(c) for c in applies.get("procedure_codes") or ()),
            body_parts=tuple(b.upper() for b in applies.get("body_parts") or ()),
            priority=applies.get("priority", 0),
        ),
        family=data.get("family", ""), description=" ".join(str(data.get("description", "")).split()),
        notes=tuple(Note(" ".join(n["text"].split()), tuple(n.get("citations") or ()))
                    for n in data.get("notes") or ()),
        wrong_exam=(Note(" ".join(data["wrong_exam"]["text"].split()), tuple(data["wrong_exam"]["citations"]))
                    if data.get("wrong_exam") else None),
        path=str(path), limits=limits,
    )


@dataclass
class FileResult:
    """What loading one file gave: a protocol, a reason it was skipped, or problems."""

    path: str
    protocol: Protocol | None = None
    skipped: str = ""
    problems: list[str] = field(default_factory=list)


def load_protocol_file(path: str | os.PathLike[str]) -> FileResult:
    """Parse and validate one file; never raises for bad content (problems are listed)."""
    file_path = Path(path)
    result = FileResult(path=str(file_path))
    if file_path.name.lower() in NON_PROTOCOL_FILES:
        result.skipped = "recommender rules (not a protocol)"
        return result
    source = read_yaml(file_path)
    if source.problems and source.data is None:
        result.problems = source.problems
        return result
    data = source.data
    if data is None:
        result.problems = source.problems + [f"{file_path}: empty file \u2014 fix: start with 'kind: protocol' and "
                                             "'id:', or delete the file"]
        return result
    if not isinstance(data, dict):
        result.problems = source.problems + [f"{file_path}:1: the top level must be a mapping (key: value), "
                                             f"not a {type(data).__name__} \u2014 fix: start with 'kind: protocol'"]
        return result
    kind = data.get("kind")
    if kind is not None and kind != "protocol":
        result.skipped = f"kind {kind!r} (not a protocol)"
        return result
    schema_problems(source)
    semantic_problems(source, file_path)
    result.problems = source.problems
    if not result.problems:
        try:
            result.protocol = _build(data, file_path)
        except RulesError as exc:  # the trauma window comes from rules.yaml
            result.problems = [f"{file_path}: timing.trauma needs the decision rules, which cannot be used: {p}"
                               for p in exc.problems]
    return result


def lint(paths: Iterable[str | os.PathLike[str]]) -> list[FileResult]:
    """Check protocol files or library folders; one result per file (problems, skip reason or protocol)."""
    results: list[FileResult] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = _yaml_files(p)
            if not files:
                results.append(FileResult(path=str(p), problems=[f"{p}: no *.yaml files in this folder"]))
            results.extend(load_protocol_file(f) for f in files)
        elif p.is_file():
            results.append(load_protocol_file(p))
        else:
            results.append(FileResult(path=str(p), problems=[f"{p}: no such file or folder"]))
    _duplicate_ids(results)
    return results


def _duplicate_ids(results: list[FileResult]) -> None:
    seen: dict[str, str] = {}
    for result in results:
        if result.protocol is None:
            continue
        pid = result.protocol.id
        if pid in seen:
            result.problems.append(f"{result.path}: id {pid!r} is already used by {seen[pid]} \u2014 fix: "
                                   "give each protocol its own id (one protocol per file)")
            result.protocol = None
        else:
            seen[pid] = result.path


def load_library(path: str | Path | None = None) -> Library:
    """Load every protocol in the library folder; raise :class:`LibraryError` listing all problems.

    ``path`` defaults to ``$PROTOCOLCHECK_LIBRARY``, then to the library shipped with the package.
    """
    directory = library_path(path)
    if not directory.exists():
        raise LibraryError([f"{directory}: protocol library not found \u2014 fix: pass --library DIR "
                            f"(a folder of protocol *.yaml files) or set {config.Env.LIBRARY.value}"])
    if not directory.is_dir():
        raise LibraryError([f"{directory}: the protocol library must be a folder of *.yaml files"])
    results = lint([directory])
    problems = [p for r in results for p in r.problems]
    if problems:
        raise LibraryError(problems)
    protocols = {r.protocol.id: r.protocol for r in results if r.protocol is not None}
    if not protocols:
        raise LibraryError([f"{directory}: no protocol files (*.yaml with 'kind: protocol')"])
    skipped = tuple(f"{r.path}: {r.skipped}" for r in results if r.skipped)
    return Library(protocols=protocols, path=str(directory), skipped=skipped)
