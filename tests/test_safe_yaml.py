"""Protocol and rule files are read with safe YAML: a tag that would build a Python object or run a
command is refused with a message naming the file and the tag, and nothing is executed.

The commands run as real processes (``python -m protocolcheck``) on a copy of the shipped library
with one hostile file; the payload would create a marker file, which must never appear.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAYLOADS = (
    "!!python/object/apply:os.system [\"touch {marker}\"]",
    "!!python/object/apply:subprocess.check_output [[\"touch\", \"{marker}\"]]",
    "!!python/name:os.system",
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "protocolcheck", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=REPO)


def library_copy(tmp_path: Path) -> Path:
    library = tmp_path / "library"
    shutil.copytree(REPO / "protocols", library, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return library


@pytest.mark.parametrize("payload", PAYLOADS)
def test_protocol_file_with_python_tag_is_refused_not_executed(tmp_path: Path, payload: str) -> None:
    library = library_copy(tmp_path)
    marker = tmp_path / "pwned"
    evil = library / "evil.yaml"
    original = (library / "mr-pelvis.yaml").read_text(encoding="utf-8")
    evil.write_text(original.replace("id: mr-pelvis", "id: evil-pelvis").replace(
        "title: MRI pelvis", "title: " + payload.format(marker=marker) + "\nsubtitle: MRI pelvis", 1),
        encoding="utf-8")
    whole = library / "evil2.yaml"
    whole.write_text(payload.format(marker=marker) + "\n", encoding="utf-8")

    lint = run("protocols", "lint", str(library))
    assert lint.returncode != 0
    out = lint.stdout + lint.stderr
    for path in (evil, whole):
        assert f"{path}:" in out and "is not allowed" in out, out
    assert "tag:yaml.org,2002:python/" in out and "Traceback" not in out

    audit = run("audit", "--library", str(library), "--no-db", str(REPO / "sample_dicom"))
    assert audit.returncode == 2, audit.stderr
    assert "protocol library cannot be used" in audit.stderr and str(evil) in audit.stderr
    assert "is not allowed" in audit.stderr and "Traceback" not in audit.stderr
    assert not marker.exists(), "the YAML payload was executed"


def test_rules_file_with_python_tag_is_refused_not_executed(tmp_path: Path) -> None:
    library = library_copy(tmp_path)
    marker = tmp_path / "pwned"
    rules = library / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8") + f"\nx: !!python/object/apply:os.system [\"touch {marker}\"]\n",
                     encoding="utf-8")
    result = run("recommend", "--library", str(library), "--indication", "lumbosacral plexopathy")
    assert result.returncode == 2
    assert str(rules) in result.stderr and "YAML tag not allowed" in result.stderr
    assert "python/object/apply:os.system" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists(), "the YAML payload was executed"


UNSAFE_CALLS = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all",
                "add_constructor", "add_multi_constructor"}
UNSAFE_NAMES = {"Loader", "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}


def test_the_code_uses_only_safe_yaml() -> None:
    """No yaml.load/full_load/unsafe_load, no unsafe Loader class, anywhere in the package or tools."""
    offenders = []
    files = [p for folder in ("protocolcheck", "tools", "benchmarks", "fuzz") for p in (REPO / folder).rglob("*.py")]
    assert files
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml" \
                    and (node.attr in UNSAFE_CALLS or node.attr in UNSAFE_NAMES):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: yaml.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("yaml"):
                offenders.extend(f"{path.relative_to(REPO)}:{node.lineno}: from yaml import {alias.name}"
                                 for alias in node.names if alias.name in UNSAFE_CALLS or alias.name in UNSAFE_NAMES)
    assert offenders == []


def test_libyaml_is_used_only_where_nesting_cannot_overflow_its_stack() -> None:
    """libyaml composes by C recursion (a document ~25,000 levels deep kills the process): deeper
    documents go to PyYAML's Python loader, which raises RecursionError instead. Same data either way."""
    import yaml

    from protocolcheck.clinical import safeyaml

    for path in sorted((REPO / "protocols").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if safeyaml._C_SAFE_LOADER is not None:
            assert safeyaml.loader_for(text) is safeyaml._C_SAFE_LOADER, path.name
        assert safeyaml.load(text) == yaml.safe_load(text)
        node, data = safeyaml.compose_and_load(text)
        assert data == yaml.safe_load(text) and node is not None
    deep = "a: " + "[" * 30000 + "]" * 30000
    assert safeyaml.loader_for(deep) is yaml.SafeLoader
    assert safeyaml.loader_for("- " * 30000 + "x") is yaml.SafeLoader


def _alias_bomb(levels: int = 6) -> str:
    """About 250 bytes that stand for 10**levels values through aliases ("billion laughs")."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        ref = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([ref] * 10)}]")
    return "\n".join(lines) + "\n"


def test_rules_file_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """rules.yaml had no alias guard: 250 bytes kept `recommend` busy for 75 s (six levels)."""
    library = library_copy(tmp_path)
    rules = library / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8") + "\n" + _alias_bomb(), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "protocolcheck", "recommend", "--library", str(library),
                             "--indication", "lumbosacral plexopathy"], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert str(rules) in result.stderr and "aliases" in result.stderr and "Traceback" not in result.stderr


def test_every_yaml_load_counts_aliases_without_expanding_them() -> None:
    from protocolcheck.clinical import safeyaml

    with pytest.raises(safeyaml.TooManyValues):
        safeyaml.load(_alias_bomb(levels=9))  # 10**9 values: refused from the node graph, at once
    with pytest.raises(safeyaml.TooManyValues):
        safeyaml.load("a: &a [x, *a]\n")  # an alias inside itself stands for infinitely many
    assert safeyaml.load(_alias_bomb(levels=3))["a3"][0][0][0] == ["x"] * 10  # 1,111 values: fine
    # The count is iterative: 900 levels (libyaml refuses 1,000 since PyYAML 6.0.4) counted with fewer than
    # 200 stack frames to spare.
    deep = "x: " + "[" * 900 + "]" * 900 + "\n"
    node = _compose(deep)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 200)
    try:
        assert safeyaml.expanded_size(node) == 902  # type: ignore[arg-type]
    finally:
        sys.setrecursionlimit(limit)


def _compose(text: str) -> object:
    import yaml

    return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
