"""Safe YAML parsing for protocol and rules files: libyaml's safe loader where it is safe, else PyYAML's.

libyaml parses about ten times faster than PyYAML's Python parser, which matters at start-up, but it
composes nested collections by recursion on the C stack: a document nested ~25,000 levels deep (100 KB
of ``[`` or ``- ``) overflows it and kills the process. The nesting depth of a document is at most the
number of characters that can open a level (``[ { - : ?``), so a document with more of them than
:data:`MAX_C_NESTING_MARKS` is parsed by PyYAML's Python loader instead, which raises RecursionError.
Only the safe loaders are used either way: plain data, no tags that build objects.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_C_NESTING_MARKS = 10_000  # real protocol files have a few hundred, the rules file a few thousand
_NESTING_MARKS = "[{-:?"
_C_SAFE_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def loader_for(text: str) -> type[yaml.SafeLoader]:
    """The safe loader for ``text``: libyaml's when present and the text cannot nest too deeply for it."""
    if _C_SAFE_LOADER is not None and sum(text.count(mark) for mark in _NESTING_MARKS) <= MAX_C_NESTING_MARKS:
        return _C_SAFE_LOADER
    return yaml.SafeLoader


def compose_and_load(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, from one safe parse."""
    loader = loader_for(text)(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """``yaml.safe_load``, through :func:`loader_for` (PyYAML's get_single_data is these same two steps)."""
    return compose_and_load(text)[1]
