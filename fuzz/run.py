"""Run the fuzzer for N minutes; findings (smallest input per distinct failure) go to ``--out``.

    python -m fuzz.run --minutes 10 --target all          # share the time across every target
    python -m fuzz.run --minutes 5 --target headers --seed 7
    python -m fuzz.run --replay fuzz/findings/headers/<finding> --target headers   # re-run one finding
    python -m fuzz.run --minutes 5 --target headers --engine atheris               # coverage-guided (optional)

Each target runs in one worker process at a time (the machine is shared), with an address-space limit
(``--memory-mb``, default 1536) so a hostile declared length fails loudly instead of allocating
gigabytes, a per-input alarm (``--timeout``, default 10 s) and a hard kill after ``--hard-timeout``
seconds without progress. A worker that dies (segfault, kill) is restarted after the input it was
running, and that input is saved as a finding. Exit status: 0 no findings, 1 findings, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from .engine import _env_workdir, replay, save_finding, work
from .targets import TARGETS, replay_paths

SHARES = {"headers": 0.4, "classify": 0.3, "library": 0.1, "rules": 0.1, "context": 0.1}
DEFAULT_OUT = Path(__file__).resolve().parent / "findings"


def _limits(memory_mb: int) -> None:
    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _drive(target: str, seconds: float, args: argparse.Namespace, out: Path) -> dict:
    """Run workers for ``target`` for ``seconds``; restart after a dead or hung worker."""
    until = time.time() + seconds
    index = args.start_index
    executed = 0
    findings: dict[str, int] = {}
    workdir = _env_workdir(args.workdir) / f"protocolcheck-fuzz-{os.getpid()}-{target}"
    workdir.mkdir(parents=True, exist_ok=True)
    deaths = 0
    while time.time() < until - 1:
        command = [sys.executable, "-m", "fuzz.run", "--worker", "--target", target, "--seed", str(args.seed),
                   "--start-index", str(index), "--until", str(until), "--out", str(out), "--workdir", str(workdir),
                   "--timeout", str(args.timeout), "--slow", str(args.slow)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
                                preexec_fn=lambda: _limits(args.memory_mb))
        current = workdir / "current"
        done = None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc, lines), daemon=True)
        reader.start()
        last_index, last_change = None, time.time()
        while proc.poll() is None:
            time.sleep(0.5)
            done = _drain(lines, target, args.quiet) or done
            try:
                state = current.read_text(encoding="utf-8")
            except OSError:
                state = None
            if state != last_index:
                last_index, last_change = state, time.time()
            elif time.time() - last_change > args.hard_timeout or time.time() > until + args.hard_timeout:
                proc.kill()
                proc.wait()
                break
        reader.join(timeout=5)
        done = _drain(lines, target, args.quiet) or done
        if done is not None:
            executed += done["executed"]
            for sig, n in done["findings"].items():
                findings[sig] = findings.get(sig, 0) + n
            break
        # the worker died or hung: save the input it was running and carry on after it
        deaths += 1
        state_info = json.loads(last_index) if last_index else {"index": index}
        signature = (f"{target}:hang" if proc.returncode in (-9, -signal_kill()) else
                     f"{target}:worker-died:rc{proc.returncode}")
        info = dict(state_info, target=target, seed=args.seed, kind="worker", signature=signature,
                    detail=f"worker exit status {proc.returncode}")
        save_finding(out, target, signature, workdir / "case", info)
        findings[signature] = findings.get(signature, 0) + 1
        executed += state_info["index"] - index + 1
        index = state_info["index"] + 1
        if not args.quiet:
            print(f"[{target}] worker ended ({signature}) at input {state_info['index']}; restarting", file=sys.stderr)
        if deaths > 50:
            break
    shutil.rmtree(workdir, ignore_errors=True)
    return {"target": target, "executed": executed, "findings": findings, "seconds": round(seconds)}


def _pump(proc: subprocess.Popen, lines: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)


def _drain(lines: queue.Queue[str], target: str, quiet: bool) -> dict | None:
    done = None
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return done
        done = _event(line, target, quiet) or done


def signal_kill() -> int:
    import signal

    return int(signal.SIGKILL)


def _event(line: str, target: str, quiet: bool) -> dict | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        if not quiet:
            print(f"[{target}] {line}", file=sys.stderr)
        return None
    if event.get("event") == "done":
        return event
    if not quiet:
        if event.get("event") == "finding":
            print(f"[{target}] NEW {event['signature']} (input {event['index']})", file=sys.stderr)
        elif event.get("event") == "progress":
            print(f"[{target}] {event['executed']} inputs, {event['findings']} distinct findings", file=sys.stderr)
    return None


def _atheris(args: argparse.Namespace, out: Path) -> int:
    from .atheris_headers import run_atheris

    return run_atheris(args.minutes * 60, out, args.memory_mb, args.timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0, help="total time (default 1)")
    parser.add_argument("--target", default="all", choices=[*TARGETS, "all"])
    parser.add_argument("--seed", type=int, default=1, help="input i of a target is a function of (seed, target, i)")
    parser.add_argument("--start-index", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="findings folder (default fuzz/findings)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default /dev/shm or $TMPDIR)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-input alarm, seconds")
    parser.add_argument("--hard-timeout", type=float, default=60.0, help="kill a worker stuck this long, seconds")
    parser.add_argument("--slow", type=float, default=0.0,
                        help="record inputs slower than this, seconds "
                             "(default per target: 1 s headers/context, 5 s others)")
    parser.add_argument("--memory-mb", type=int, default=1536, help="address-space limit of a worker")
    parser.add_argument("--engine", choices=("builtin", "atheris"), default="builtin")
    parser.add_argument("--replay", nargs="+", default=None, help="run saved finding folder(s)/file(s) once")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.worker:
        work(args.target, args.seed, args.start_index, args.until, out, Path(args.workdir), args.timeout, args.slow)
        return 0
    if args.replay:
        return _replay(args)
    if args.engine == "atheris":
        return _atheris(args, out)
    targets = list(SHARES) if args.target == "all" else [args.target]
    total = sum(SHARES[t] for t in targets)
    summaries = []
    for target in targets:
        seconds = args.minutes * 60 * SHARES[target] / total
        summaries.append(_drive(target, seconds, args, out))
    report = {"seed": args.seed, "minutes": args.minutes, "targets": summaries,
              "executed": sum(s["executed"] for s in summaries),
              "distinct_findings": sum(len(s["findings"]) for s in summaries)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    for s in summaries:
        print(f"{s['target']:9} {s['executed']:8d} inputs in {s['seconds']:5d} s, "
              f"{len(s['findings'])} distinct findings")
        for sig, n in sorted(s["findings"].items()):
            print(f"    {n:6d} x {sig}")
    print(f"total {report['executed']} inputs, {report['distinct_findings']} distinct findings; details in {out}")
    return 1 if report["distinct_findings"] else 0


def _replay(args: argparse.Namespace) -> int:
    failures = 0
    for item in args.replay:
        path = Path(item)
        target = args.target
        info_path = path / "info.json"
        extra = {}
        if info_path.is_file():
            info = json.loads(info_path.read_text(encoding="utf-8"))
            target = info.get("target", target)
            extra = info.get("extra", {})
            path = path / "case"
        if target == "all":
            print(f"{item}: say --target", file=sys.stderr)
            return 2
        case = replay_paths(target, [path] if path.is_dir() and target != "headers" else
                            ([p for p in sorted(path.iterdir()) if p.is_file()] if path.is_dir() else [path]))
        case.extra = extra
        outcome = replay(target, case, args.timeout)
        print(f"{item}: {outcome.kind} {outcome.signature} ({outcome.seconds:.3f} s)")
        if outcome.kind != "ok":
            failures += 1
            if not args.quiet:
                print(outcome.detail)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
