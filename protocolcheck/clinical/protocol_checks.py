"""Checks of a protocol file that its JSON schema cannot express: the file name, unique ids, citation
references, min/max order, regular expressions. Each problem is reported with its file:line."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from protocolcheck.clinical.protocol import RANGE_FIELDS
from protocolcheck.clinical.protocol_schema import YamlSource


def semantic_problems(source: YamlSource, file_path: Path) -> None:
    """Checks a schema cannot express: references, uniqueness, regexes, ranges, file name."""
    data = source.data
    if isinstance(data.get("id"), str) and file_path.stem != data["id"]:
        source.report(("id",), f"id {data['id']!r} differs from the file name {file_path.name!r}",
                      f"rename the file to {data['id']}.yaml (ids are contracts; one protocol per file)")
    citation_ids = _citation_ids(source)
    _check_rules(source, citation_ids)
    for index, note in _items(data.get("notes")):
        _check_refs(source, citation_ids, ("notes", index, "citations"), note.get("citations"))
    if isinstance(data.get("wrong_exam"), dict):
        _check_refs(source, citation_ids, ("wrong_exam", "citations"), data["wrong_exam"].get("citations"))
    timing = data.get("timing")
    trauma = timing.get("trauma") if isinstance(timing, dict) else None
    if isinstance(trauma, dict):
        _check_refs(source, citation_ids, ("timing", "trauma", "citations"), trauma.get("citations"))
        _check_refs(source, citation_ids, ("timing", "trauma", "delayed_citations"), trauma.get("delayed_citations"))
    applies = data.get("applies_to")
    for key in ("descriptions", "exclude_descriptions"):
        patterns = applies.get(key) if isinstance(applies, dict) else None
        for i, pattern in enumerate(patterns if isinstance(patterns, list) else []):
            _check_regex(source, ("applies_to", key, i), pattern)


def _citation_ids(source: YamlSource) -> list[object]:
    """The ids of the file's citations, in order (an id given twice is reported)."""
    citation_ids: list[object] = []
    for index, citation in _items(source.data.get("citations")):
        cid = citation.get("id")
        if cid in citation_ids:
            source.report(("citations", index, "id"), f"citation id {cid!r} used twice",
                          "give each citation its own id")
        citation_ids.append(cid)
    return citation_ids


def _check_rules(source: YamlSource, citation_ids: list[object]) -> None:
    """Requirements, plane rules and limits: unique ids, known citations, min <= max."""
    rule_ids: list[object] = []
    for section in ("requirements", "planes", "limits"):
        for index, item in _items(source.data.get(section)):
            path = (section, index)
            rid = item.get("id")
            if rid in rule_ids:
                source.report(path + ("id",), f"rule id {rid!r} used twice",
                              "requirement and plane rule ids must be unique")
            rule_ids.append(rid)
            _check_refs(source, citation_ids, path + ("citations",), item.get("citations"))
            _check_match(source, path + ("match",), item.get("match"))
            _check_match(source, path + ("series",), item.get("series"))
            alternatives = item.get("any_of")
            for j, alt in enumerate(alternatives if isinstance(alternatives, list) else []):
                _check_match(source, path + ("any_of", j), alt)
            _check_match(source, path + ("limits",), item.get("limits"))
            if section == "limits" and isinstance(item.get("parameter"), str):  # the schema reports the rest
                _check_match(source, path, {item["parameter"]: {k: item[k] for k in ("min", "max") if k in item}})


def _check_refs(source: YamlSource, citation_ids: list[object], path: tuple[Any, ...], refs: Any) -> None:
    """Each of ``refs`` names one of the file's citations."""
    for i, ref in enumerate(refs if isinstance(refs, list) else []):
        if ref not in citation_ids:
            known = [str(c) for c in citation_ids]
            close = difflib.get_close_matches(str(ref), known, n=1, cutoff=0.5)
            fix = f"did you mean {close[0]!r}?" if close else \
                f"add a citation with id {ref!r} to 'citations' (known: {', '.join(known)})"
            source.report(path + (i,), f"unknown citation {ref!r}", fix)


def _check_match(source: YamlSource, path: tuple[Any, ...], match: Any) -> None:
    """A match's ranges have min <= max (its ``not`` too)."""
    if not isinstance(match, dict):
        return
    for name in RANGE_FIELDS:
        rng = match.get(name)
        if isinstance(rng, dict) and isinstance(rng.get("min"), (int, float)) \
                and isinstance(rng.get("max"), (int, float)) and rng["min"] > rng["max"]:
            source.report(path + (name,), f"min {rng['min']} is greater than max {rng['max']}", "swap them")
    if "not" in match:
        _check_match(source, path + ("not",), match["not"])


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(index, item) for the mapping items of a list (other shapes are schema errors, reported elsewhere)."""
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _check_regex(source: YamlSource, path: tuple[Any, ...], pattern: Any) -> None:
    if not isinstance(pattern, str):
        return
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        source.report(path, f"invalid regular expression {pattern!r} ({exc})",
                      "escape special characters such as ( ) + ? with a backslash, or quote the value")
