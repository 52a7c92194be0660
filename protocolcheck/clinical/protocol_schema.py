"""Reading a protocol YAML file and checking it against the protocol JSON schema.

The file is read with the line of every key path, so that each problem names the file, the line, the key
path and how to fix it (an unknown key such as ``weigthing`` gets a "did you mean 'weighting'?" hint).
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from protocolcheck.clinical import safeyaml
from protocolcheck.dicom.safeio import read_text_regular


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The protocol JSON schema shipped in ``protocolcheck/clinical/schemas``."""
    resource = importlib.resources.files("protocolcheck.clinical").joinpath("schemas/protocol.schema.json")
    text = resource.read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    # the shipped schema itself is checked against its metaschema by the tests, not on every run
    return jsonschema.validators.validator_for(schema())(schema())




@dataclass
class YamlSource:
    """One YAML file's text, data and the line of every key path (for messages)."""

    name: str
    data: Any = None
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self, path: Sequence[Any]) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def report(self, path: Sequence[Any], message: str, fix: str = "") -> None:
        line = self.line(path)
        where = f"{self.name}:{line}" if line else self.name
        key = _key_path(path)
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        if fix:
            text += f" \u2014 fix: {fix}"
        self.problems.append(text)


def _key_path(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _walk_nodes(node: yaml.Node, path: tuple[Any, ...], source: YamlSource) -> None:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                source.report(path + (key,), f"key {key!r} given twice (lines {seen[key]} and {line}); "
                              "YAML keeps only the last one", "remove or merge one of them")
            seen[key] = line
            source.lines[path + (key,)] = line
            _walk_nodes(value_node, path + (key,), source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            source.lines[path + (index,)] = item.start_mark.line + 1
            _walk_nodes(item, path + (index,), source)


def read_yaml(path: Path) -> YamlSource:
    source = YamlSource(name=str(path))
    try:
        text = read_text_regular(path)  # a named pipe: refused, not waited on
    except (OSError, UnicodeDecodeError) as exc:
        source.problems.append(f"{path}: cannot read ({exc})")
        return source
    try:
        node, source.data = safeyaml.compose_and_load(text)
    except safeyaml.TooManyValues as exc:
        source.problems.append(f"{path}: {exc.problem}")
        return source
    except yaml.constructor.ConstructorError as exc:  # a tag safe_load refuses (e.g. !!python/object)
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        tag = (re.search(r"tag '([^']*)'", str(exc.problem or "")) or [None, "?"])[1]
        source.problems.append(f"{where}: YAML tag {tag!r} is not allowed (protocol files are plain data: maps, "
                               "lists, text, numbers; tags that build objects or run code are refused) "
                               "\u2014 fix: remove the tag")
        return source
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        source.problems.append(f"{where}: not valid YAML ({problem}) \u2014 fix: check indentation, "
                               "colons and quotes on this line (quote values containing ': ' or '#')")
        return source
    except RecursionError:
        source.problems.append(f"{path}: nested too deeply to read \u2014 fix: a protocol needs only a few levels")
        source.data = None
        return source
    except ValueError as exc:  # PyYAML builds dates and tagged values with Python types: 2026-02-30 raises
        source.problems.append(f"{path}: a value YAML cannot read ({exc}) \u2014 fix: correct the date or number, "
                               "or quote it to keep it as text")
        source.data = None
        return source
    if node is not None:
        try:
            _walk_nodes(node, (), source)
        except RecursionError:  # libyaml reads deeper documents than these Python walks can follow
            source.problems.append(f"{path}: nested too deeply to read \u2014 fix: a protocol needs only a few levels")
            source.data = None
    return source


def _schema_at(path: Sequence[Any]) -> Mapping[str, Any]:
    """The sub-schema describing the value at ``path`` (following $ref), for hints."""
    root = schema()
    current: Mapping[str, Any] = root
    for part in path:
        current = _deref(current, root)
        if isinstance(part, int):
            current = current.get("items", {})
        else:
            current = current.get("properties", {}).get(part, {})
    return _deref(current, root)


def _deref(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _describe_allowed(sub: Mapping[str, Any]) -> list[Any]:
    root = schema()
    sub = _deref(sub, root)
    if "enum" in sub:
        return list(sub["enum"])
    if "const" in sub:
        return [sub["const"]]
    values: list[Any] = []
    for option in sub.get("anyOf", []) + sub.get("oneOf", []):
        option = _deref(option, root)
        if "enum" in option:
            values.extend(v for v in option["enum"] if v not in values)
    return values


def schema_problems(source: YamlSource) -> None:
    """Report every way ``source`` breaks the protocol schema, in key order."""
    errors = sorted(_validator().iter_errors(source.data),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    for error in errors:
        _explain(error, source)


def _explain(error: jsonschema.ValidationError, source: YamlSource) -> None:
    """Report one schema error in a writer's words: where, what is wrong, and the fix."""
    explain = _EXPLAIN.get(str(error.validator))
    if explain is None or not explain(error, source):
        source.report(tuple(error.absolute_path), error.message,
                      "see protocolcheck/clinical/schemas/protocol.schema.json")


def _schema_of(error: jsonschema.ValidationError) -> Mapping[str, Any]:
    """The sub-schema that failed (jsonschema types it loosely: a boolean schema cannot fail this way)."""
    return error.schema if isinstance(error.schema, Mapping) else {}


def _explain_unknown_keys(error: jsonschema.ValidationError, source: YamlSource) -> bool:
    instance = error.instance
    if not isinstance(instance, dict):
        return False
    path = tuple(error.absolute_path)
    allowed = sorted(_schema_of(error).get("properties", {}))
    for key in instance:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(allowed)}"
        source.report(path + (key,), f"unknown key {key!r}", fix)
    return True


def _explain_missing_keys(error: jsonschema.ValidationError, source: YamlSource) -> bool:
    path = tuple(error.absolute_path)
    instance = error.instance
    found = re.match(r"'([^']+)' is a required property", error.message)
    required = error.validator_value if isinstance(error.validator_value, list) else []
    missing = [found.group(1)] if found else [k for k in required if isinstance(instance, dict) and k not in instance]
    for key in missing:
        hint = _schema_at(path + (key,)).get("description", "")
        source.report(path, f"missing required key {key!r}", f"add '{key}:'" + (f" ({hint})" if hint else ""))
    return True


def _explain_not_allowed(error: jsonschema.ValidationError, source: YamlSource) -> bool:
    value = error.validator_value
    allowed = value if error.validator == "enum" and isinstance(value, list) else [value]
    close = difflib.get_close_matches(str(error.instance), [str(a) for a in allowed], n=1, cutoff=0.5)
    fix = f"did you mean {close[0]!r}?" if close else ""
    fix = (fix + " " if fix else "") + f"allowed: {', '.join(_fmt_value(a) for a in allowed)}"
    source.report(tuple(error.absolute_path), f"{_fmt_value(error.instance)} is not allowed", fix)
    return True


def _explain_choice(error: jsonschema.ValidationError, source: YamlSource) -> bool:
    """anyOf/oneOf: one of several keys, one value of a list of choices, or the best-matching branch."""
    if not error.context:
        return False
    path = tuple(error.absolute_path)
    sub = _schema_of(error)
    if sub.get("anyOf") and all("required" in s for s in sub["anyOf"]):
        keys = " or ".join(repr(s["required"][0]) for s in sub["anyOf"])
        source.report(path, f"needs {keys}", f"add {keys}")
        return True
    allowed = _describe_allowed(sub)
    if allowed:
        instance = error.instance
        bad = instance if not isinstance(instance, list) else [v for v in instance if v not in allowed]
        close = difflib.get_close_matches(str(bad[0] if isinstance(bad, list) and bad else bad),
                                          [str(a) for a in allowed], n=1, cutoff=0.5)
        fix = (f"did you mean {close[0]!r}? " if close else "") + \
            f"allowed: {', '.join(_fmt_value(a) for a in allowed)} (one value or a list)"
        source.report(path, f"{_fmt_value(bad)} is not allowed", fix)
        return True
    _explain(jsonschema.exceptions.best_match(error.context), source)
    return True


def _explain_type(error: jsonschema.ValidationError, source: YamlSource) -> bool:
    value = error.validator_value
    expected = " or ".join(value) if isinstance(value, list) else value
    source.report(tuple(error.absolute_path), f"{_fmt_value(error.instance)} is not of type {expected}",
                  f"write a {expected}")
    return True


def _explain_pattern(error: jsonschema.ValidationError, source: YamlSource) -> bool:
    source.report(tuple(error.absolute_path), f"{_fmt_value(error.instance)} has the wrong form",
                  "use lower-case letters, digits and hyphens, e.g. 'mr-lumbosacral-plexus-wwo'")
    return True


def _explain_empty(error: jsonschema.ValidationError, source: YamlSource) -> bool:
    source.report(tuple(error.absolute_path), "is empty", "give at least one value or remove the key")
    return True


# How each kind of schema error is worded (True: reported; False: reported with jsonschema's message).
_EXPLAIN: dict[str, Callable[[jsonschema.ValidationError, YamlSource], bool]] = {
    "additionalProperties": _explain_unknown_keys,
    "required": _explain_missing_keys,
    "enum": _explain_not_allowed,
    "const": _explain_not_allowed,
    "anyOf": _explain_choice,
    "oneOf": _explain_choice,
    "type": _explain_type,
    "pattern": _explain_pattern,
    "minItems": _explain_empty,
    "minProperties": _explain_empty,
    "minLength": _explain_empty,
}


def _fmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
