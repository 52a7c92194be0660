"""The in-process fuzz loop: generate, execute under a watchdog, classify the outcome, save findings.

A worker process runs :func:`work`; the driver in :mod:`fuzz.run` starts it with an address-space limit
(``RLIMIT_AS``) and kills it if an input runs past the hard time limit (a hang inside C code that
the in-process alarm cannot interrupt). Before each input the worker writes the input's index to
``workdir/current`` and the input itself to ``workdir/case``, so a dead or killed worker still
leaves the input behind for the driver to save.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .seeds import load_corpus
from .targets import Case, Target, Violation, make_target


class InputTimeout(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` in the code under test cannot
    swallow it and turn a hang into a plausible-looking result."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise InputTimeout()


@dataclass
class Outcome:
    """What one execution gave: ``kind`` is "ok", "crash", "violation", "timeout" or "slow"."""

    kind: str
    signature: str = ""
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Stats:
    executed: int = 0
    findings: dict[str, int] = field(default_factory=dict)  # signature -> count this run
    slowest: float = 0.0


def rng_for(seed: int, target: str, index: int) -> random.Random:
    """The RNG of input ``index``: any input can be regenerated from (seed, target, index)."""
    return random.Random(f"{seed}-{target}-{index}")


def _location(tb: BaseException) -> str:
    """Innermost frame inside protocolcheck (else the innermost frame): "module.py:function"."""
    frames = traceback.extract_tb(tb.__traceback__)
    ours = [f for f in frames if "protocolcheck" in f.filename and "/fuzz/" not in f.filename]
    chosen = ours or list(frames)
    if not chosen:
        return "?"
    return f"{Path(chosen[-1].filename).name}:{chosen[-1].name}"


def _normalise(text: str) -> str:
    text = re.sub(r"/\S+", "PATH", text)
    text = re.sub(r"0x[0-9a-fA-F]+|\d+(\.\d+)?", "N", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "S", text)
    return text[:80]


def execute(target: Target, case: Case, workdir: Path, timeout: float, slow: float) -> Outcome:
    """Run one case with the alarm armed; never raises (except KeyboardInterrupt)."""
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        target.execute(case, workdir)
    except InputTimeout:
        return Outcome("timeout", f"{target.name}:timeout", f"no result within {timeout:g} s", timeout)
    except Violation as exc:
        sig = f"{target.name}:violation:{exc.kind}:{exc.key or _normalise(str(exc))}"
        return Outcome("violation", sig, "".join(traceback.format_exception(exc)), time.perf_counter() - start)
    except RecursionError as exc:
        return Outcome("crash", f"{target.name}:crash:RecursionError:{_location(exc)}",
                       "".join(traceback.format_exception(exc))[-4000:], time.perf_counter() - start)
    except Exception as exc:  # every escaping exception is the finding
        sig = f"{target.name}:crash:{type(exc).__name__}:{_location(exc)}"
        return Outcome("crash", sig, "".join(traceback.format_exception(exc)), time.perf_counter() - start)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - start
    if seconds > slow:
        return Outcome("slow", f"{target.name}:slow", f"{seconds:.2f} s for one input", seconds)
    return Outcome("ok", seconds=seconds)


def slug(signature: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", signature)[:120].strip("_")


def save_finding(out: Path, target: str, signature: str, case_dir: Path, info: dict[str, Any]) -> bool:
    """Keep the smallest input per signature under ``out/<target>/<signature>/``; True if new."""
    folder = out / target / slug(signature)
    size = sum(p.stat().st_size for p in case_dir.rglob("*") if p.is_file()) if case_dir.exists() else 0
    info_path = folder / "info.json"
    new = not info_path.exists()
    old: dict[str, Any] = {} if new else json.loads(info_path.read_text(encoding="utf-8"))
    count = old.get("count", 0) + 1
    if new or size < old.get("bytes", 1 << 62):
        if (folder / "case").exists():
            shutil.rmtree(folder / "case")
        folder.mkdir(parents=True, exist_ok=True)
        if case_dir.exists():
            shutil.copytree(case_dir, folder / "case")
        old = dict(info, bytes=size)
    old["count"] = count
    info_path.write_text(json.dumps(old, indent=2, default=str), encoding="utf-8")
    return new


def work(target_name: str, seed: int, start_index: int, until: float, out: Path, workdir: Path, timeout: float,
         slow: float, progress_every: float = 5.0) -> Stats:
    """Fuzz ``target_name`` from input ``start_index`` until the clock reaches ``until``."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    corpus = load_corpus()
    target = make_target(target_name, corpus)
    stats = Stats()
    index = start_index
    current = workdir / "current"
    last = time.time()
    while time.time() < until:
        rng = rng_for(seed, target_name, index)
        case = target.generate(rng)
        current.write_text(json.dumps({"index": index, "seed_name": case.seed_name, "mutators": case.mutators,
                                       "extra": case.extra}), encoding="utf-8")
        outcome = execute(target, case, workdir, timeout, slow or target.slow)
        stats.executed += 1
        stats.slowest = max(stats.slowest, outcome.seconds)
        if outcome.kind != "ok":
            info = {"target": target_name, "seed": seed, "index": index, "seed_name": case.seed_name,
                    "mutators": case.mutators, "extra": case.extra, "kind": outcome.kind,
                    "signature": outcome.signature, "detail": outcome.detail[-6000:], "seconds": outcome.seconds}
            new = save_finding(out, target_name, outcome.signature, workdir / "case", info)
            stats.findings[outcome.signature] = stats.findings.get(outcome.signature, 0) + 1
            if new:
                print(json.dumps({"event": "finding", "signature": outcome.signature, "index": index}), flush=True)
        index += 1
        if time.time() - last > progress_every:
            last = time.time()
            print(json.dumps({"event": "progress", "executed": stats.executed, "index": index,
                              "findings": len(stats.findings)}), flush=True)
    print(json.dumps({"event": "done", "executed": stats.executed, "index": index, "findings": stats.findings,
                      "slowest": round(stats.slowest, 3)}), flush=True)
    return stats


def replay(target_name: str, case: Case, timeout: float = 60.0) -> Outcome:
    """Execute one saved case (for checking a fix); returns the outcome."""
    import tempfile

    target = make_target(target_name, load_corpus())
    with tempfile.TemporaryDirectory(prefix="fuzz-replay-") as tmp:
        return execute(target, case, Path(tmp), timeout, slow=timeout)


def _env_workdir(base: str | None = None) -> Path:
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    root = Path(base) if base else scratch
    return root
