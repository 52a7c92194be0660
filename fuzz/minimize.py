"""Shrink a saved finding to a small input that still fails the same way (same signature).

    python -m fuzz.minimize fuzz/findings/headers/<finding> [-o OUT] [--budget SECONDS]

For a study folder (classify target) it first drops whole files, then shrinks each remaining file;
for one file it removes chunks of bytes (halving the chunk size, delta-debugging style) and finally
trims the end. Text inputs shrink line by line first. The result goes to ``OUT`` (default
``<finding>/minimized``), ready to copy into ``tests/data/crashers/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .engine import execute
from .seeds import load_corpus
from .targets import Case, make_target, replay_paths


def _shrink_bytes(data: bytes, fails: Callable[[bytes], bool], deadline: float, lines: bool = False) -> bytes:
    """Remove chunks while ``fails`` stays true (ddmin over bytes, or over lines first for text)."""
    if lines:
        parts = data.split(b"\n")
        chunk = max(1, len(parts) // 2)
        while chunk >= 1 and time.time() < deadline:
            i = 0
            while i < len(parts) and time.time() < deadline:
                trial = parts[:i] + parts[i + chunk:]
                if fails(b"\n".join(trial)):
                    parts = trial
                else:
                    i += chunk
            chunk //= 2
        data = b"\n".join(parts)
    size = max(1, len(data) // 2)
    while size >= 1 and time.time() < deadline:
        i = 0
        while i < len(data) and time.time() < deadline:
            candidate = data[:i] + data[i + size:]
            if fails(candidate):
                data = candidate
            else:
                i += size
        size //= 2
    return data


def minimize(finding: Path, out: Path, budget: float = 120.0) -> dict[str, int]:
    """Write the smallest failing case found within ``budget`` seconds to ``out``; returns sizes."""
    info = json.loads((finding / "info.json").read_text(encoding="utf-8"))
    target_name, signature = info["target"], info["signature"]
    target = make_target(target_name, load_corpus())
    case_dir = finding / "case"
    case = replay_paths(target_name, [case_dir] if target_name != "headers" else
                        [p for p in sorted(case_dir.rglob("*")) if p.is_file()])
    case.extra = info.get("extra", {})
    deadline = time.time() + budget
    work = Path(tempfile.mkdtemp(prefix="fuzz-min-"))

    def fails(files: dict[str, bytes]) -> bool:
        outcome = execute(target, Case(files, "minimize", extra=case.extra), work, timeout=30.0, slow=1e9)
        return outcome.signature == signature

    before = sum(len(d) for d in case.files.values())
    if not fails(case.files):
        shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(f"{finding}: does not fail with {signature} any more (fixed?)")
    files = dict(case.files)
    if len(files) > 1:
        for name in sorted(files):
            if time.time() > deadline:
                break
            trial = {k: v for k, v in files.items() if k != name}
            keeps_mutation = target_name not in ("library", "rules") or name != case.extra.get("mutated")
            if trial and keeps_mutation and fails(trial):
                files = trial
    text = target_name in ("library", "rules", "context")
    for name in sorted(files):
        keep = dict(files)

        def fails_with(data: bytes, name: str = name, keep: dict[str, bytes] = keep) -> bool:
            return fails({**keep, name: data})

        files[name] = _shrink_bytes(files[name], fails_with, deadline, lines=text)
    shutil.rmtree(work, ignore_errors=True)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    return {"before": before, "after": sum(len(d) for d in files.values()), "files": len(files)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.minimize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("findings", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=None, help="output folder (one finding only)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per finding (default 120)")
    args = parser.parse_args(argv)
    for finding in args.findings:
        out = args.out or finding / "minimized"
        sizes = minimize(finding, out, args.budget)
        print(f"{finding}: {sizes['before']} -> {sizes['after']} bytes in {sizes['files']} file(s): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
