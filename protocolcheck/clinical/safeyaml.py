"""Safe YAML parsing for protocol and rules files: libyaml's safe loader where it is safe, else PyYAML's.

libyaml parses about ten times faster than PyYAML's Python parser, which matters at start-up, but it
composes nested collections by recursion on the C stack: a document nested ~25,000 levels deep (100 KB
of ``[`` or ``- ``) overflows it and kills the process. The nesting depth of a document is at most the
number of characters that can open a level (``[ { - : ?``), so a document with more of them than
:data:`MAX_C_NESTING_MARKS` is parsed by PyYAML's Python loader instead, which raises RecursionError.
Only the safe loaders are used either way: plain data, no tags that build objects.

Aliases are bounded too, for every YAML file read through here: a document whose aliases would expand
to more than :data:`MAX_YAML_VALUES` values (a "billion laughs" of 250 bytes took 75 s to validate) is
refused before anything is built from it (:class:`TooManyValues`).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_VALUES = 100_000  # a protocol has a few hundred values, the rules file a few thousand
MAX_C_NESTING_MARKS = 10_000  # real protocol files have a few hundred, the rules file a few thousand
_NESTING_MARKS = "[{-:?"
_C_SAFE_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def loader_for(text: str) -> type[yaml.SafeLoader]:
    """The safe loader for ``text``: libyaml's when present and the text cannot nest too deeply for it."""
    if _C_SAFE_LOADER is not None and sum(text.count(mark) for mark in _NESTING_MARKS) <= MAX_C_NESTING_MARKS:
        return _C_SAFE_LOADER
    return yaml.SafeLoader


class TooManyValues(yaml.YAMLError):
    """The document's aliases expand to more than :data:`MAX_YAML_VALUES` values (an alias bomb)."""

    def __init__(self) -> None:
        self.problem = (f"expands to more than {MAX_YAML_VALUES} values through YAML aliases "
                        "\u2014 fix: write the values out instead of repeating *aliases")
        super().__init__(self.problem)


def expanded_size(root: yaml.Node, limit: int = MAX_YAML_VALUES) -> int:
    """How many values ``root`` stands for with its aliases expanded, counted without expanding them
    (an alias is a shared node: each node's size is computed once) and without recursion; a node that
    contains itself is infinite. Stops at ``limit + 1``."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        if done:
            on_path.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(child)] for child in children))
            continue
        if key in sizes:
            continue
        if key in on_path:  # met again below itself: a recursive alias
            return limit + 1
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                return limit + 1
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def compose_and_load(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, from one safe parse; raises
    :class:`TooManyValues` for an alias bomb before building anything from it."""
    loader = loader_for(text)(text)
    try:
        node = loader.get_single_node()
        if node is not None and expanded_size(node) > MAX_YAML_VALUES:
            raise TooManyValues()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """``yaml.safe_load``, through :func:`loader_for` (PyYAML's get_single_data is these same two steps)."""
    return compose_and_load(text)[1]
