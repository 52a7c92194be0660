"""Load on ``protocolcheck listen``: several dcmtk ``storescu`` senders at once on loopback.

    python -m benchmarks.listen_load                         # 4 senders x 8 studies, ~3,000 instances
    python -m benchmarks.listen_load --senders 8 --studies 10 --slices 30

Starts ``listen`` (fsync on, as in production) on a free port with a fresh store, has each sender
push its own studies over one association, and measures:

- throughput: instances stored per second, from the first sender's start to the last one's end;
- audits: every study audited exactly once after its last instance (JSON lines per study), and how
  long after the last instance the last audit came;
- memory: the resident set size of the ``listen`` process (``VmRSS`` from ``/proc``), sampled every
  50 ms: once warm (a quarter of the instances stored and a first study audited), at the end, and
  the peak; flat means the peak stays near the warm value however many instances follow.

The studies are clones of a few :mod:`protocolcheck.synth` plexus studies with small images (16 x 16
pixels): new study/series/instance UIDs and accession numbers of the same lengths are written into
the template bytes, so thousands of instances are ready in about a second.

:func:`run_load` is also what ``tests/test_net_load.py`` runs (with assertions instead of a table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # also runnable as ``python benchmarks/listen_load.py`` from a checkout
    sys.path.insert(0, str(REPO))


@dataclasses.dataclass
class LoadResult:
    """What one load run measured."""

    senders: int
    studies: int
    instances: int  # files sent
    stored: int  # files in the store at the end
    send_seconds: float  # first sender start -> last sender done (every instance acknowledged)
    audit_lag_seconds: float  # last sender done -> last study audited
    audits_per_study: dict[str, int]  # study UID -> JSON lines
    audited_instances: dict[str, int]  # study UID -> instances (frames of multi-frame objects) in its last audit
    expected_instances: dict[str, int]  # study UID -> the same count in the audit of its folder
    sender_codes: list[int]
    rss_kb: list[tuple[float, int]]  # (seconds since start, VmRSS kB) of the listen process
    rss_warm_kb: int  # RSS once a quarter of the instances were stored and a first study audited
    rss_end_kb: int  # RSS after every study was audited
    listen_log: str

    @property
    def throughput(self) -> float:
        return self.instances / self.send_seconds if self.send_seconds > 0 else float("nan")

    @property
    def rss_peak_kb(self) -> int:
        return max((kb for _t, kb in self.rss_kb), default=0)

    def table(self) -> str:
        once = sum(1 for n in self.audits_per_study.values() if n == 1)
        complete = sum(1 for uid, n in self.expected_instances.items() if self.audited_instances.get(uid) == n)
        rows = [
            ("senders (concurrent storescu)", f"{self.senders}"),
            ("studies / instances sent", f"{self.studies} / {self.instances}"),
            ("instances stored", f"{self.stored}"),
            ("send time", f"{self.send_seconds:.1f} s"),
            ("throughput", f"{self.throughput:.0f} instances/s"),
            ("studies audited exactly once", f"{once} of {self.studies}"),
            ("audits covering the whole study", f"{complete} of {self.studies}"),
            ("last audit after the last instance", f"{self.audit_lag_seconds:.1f} s"),
            ("listen RSS warm (1/4 stored, 1 audit)", f"{self.rss_warm_kb / 1024:.1f} MB"),
            ("listen RSS at the end", f"{self.rss_end_kb / 1024:.1f} MB"),
            ("listen RSS peak", f"{self.rss_peak_kb / 1024:.1f} MB"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# ------------------------------------------------------------------------------------ corpus

_UID = re.compile(rb"2\.25\.\d{20,}")


def _templates(count: int, slices: int, matrix: int = 16) -> list[list[tuple[str, bytes]]]:
    """``count`` synth plexus studies with ``matrix`` x ``matrix`` images, as (file name, bytes) lists."""
    from protocolcheck.testing import synth

    out = []
    with tempfile.TemporaryDirectory(prefix="listen-load-template-") as tmp:
        for i, spec in enumerate(synth.varied_studies(count, seed=7, slices=slices)):
            spec = dataclasses.replace(spec, series=tuple(dataclasses.replace(s, matrix=matrix) for s in spec.series))
            folder = Path(tmp) / str(i)
            paths = synth.write_study(spec, folder)
            out.append([(p.name, p.read_bytes()) for p in paths])
    return out


def _clone(template: list[tuple[str, bytes]], number: int, folder: Path) -> tuple[str, int]:
    """Write a copy of ``template`` with new UIDs and accession (same lengths); (study UID, instances)."""
    folder.mkdir(parents=True, exist_ok=True)
    shift = 1 + number * 104729  # coprime with 10**6: clones never share a UID

    def new_uid(match: re.Match[bytes]) -> bytes:
        uid = match.group(0)
        return uid[:-6] + b"%06d" % ((int(uid[-6:]) + shift) % 1_000_000)

    study = ""
    for name, data in template:
        accession = re.search(rb"SYN\d{8}", data)
        cloned = _UID.sub(new_uid, data)
        if accession:
            cloned = cloned.replace(accession.group(0), b"L%010d" % number)
        assert len(cloned) == len(data)
        (folder / name).write_bytes(cloned)
        if not study:
            import pydicom

            study = str(pydicom.dcmread(folder / name, stop_before_pixels=True).StudyInstanceUID)
    return study, len(template)


def _audited_instances(folder: Path) -> int:
    """Instances (frames of multi-frame objects count one each) in the audit of a study folder."""
    from protocolcheck.audit.engine import AuditOptions, audit_paths
    from protocolcheck.clinical.library import load_library

    (result,) = audit_paths([folder], AuditOptions(library=load_library()))
    return sum(int(s["instances"]) for s in result.to_dict()["series"])


def make_corpus(root: Path, senders: int, studies_per_sender: int, slices: int,
                matrix: int = 16) -> tuple[list[Path], dict[str, int], dict[str, int]]:
    """One folder per sender holding its studies; study UID -> files, and -> instances its audit counts."""
    templates = _templates(min(4, senders * studies_per_sender), slices, matrix)
    folders = []
    files: dict[str, int] = {}
    audited: dict[str, int] = {}
    per_template: dict[int, int] = {}
    number = 0
    for s in range(senders):
        folder = root / f"sender{s}"
        for k in range(studies_per_sender):
            which = number % len(templates)
            uid, n = _clone(templates[which], number, folder / f"study{k}")
            if which not in per_template:  # clones audit like their template
                per_template[which] = _audited_instances(folder / f"study{k}")
            files[uid], audited[uid] = n, per_template[which]
            number += 1
        folders.append(folder)
    return folders, files, audited


# ------------------------------------------------------------------------------------ the run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed_binary(name: str, package: str) -> str:
    """The path of the executable ``name`` (a real ELF binary, not a wrapper script) on PATH or in
    /usr/bin, /usr/sbin; RuntimeError naming the Debian ``package`` to install otherwise."""
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/sbin"]:
        path = os.path.join(folder, name)
        try:
            with open(os.path.realpath(path), "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    return path
        except OSError:
            continue
    raise RuntimeError(f"{name} is not installed (apt-get install {package})")


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_load(workdir: Path, *, senders: int = 4, studies_per_sender: int = 8, slices: int = 30,
             idle: float = 2.0, timeout: float = 300.0) -> LoadResult:
    """Run ``listen`` under load in ``workdir``; always stops what it started."""
    workdir.mkdir(parents=True, exist_ok=True)
    folders, files, expected = make_corpus(workdir / "corpus", senders, studies_per_sender, slices)
    total = sum(files.values())
    store, out, log = workdir / "store", workdir / "audits.jsonl", workdir / "listen.log"
    shutil.rmtree(store, ignore_errors=True)
    out.unlink(missing_ok=True)
    port = free_port()
    env = dict(os.environ, TCP_NODELAY="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    with open(log, "wb") as fh:
        listen = subprocess.Popen([sys.executable, "-m", "protocolcheck", "listen", "--port", str(port), "--store",
                                   str(store), "--output", str(out), "--no-db", "--idle", str(idle)],
                                  stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            kb = _rss_kb(listen.pid)
            if kb:
                samples.append((time.monotonic() - t0, kb))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while b"listening as" not in log.read_bytes():
            if listen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("listen did not start:\n" + log.read_text(errors="replace"))
            time.sleep(0.05)
        binary = installed_binary("storescu", "dcmtk")
        warm_kb = 0
        started = time.monotonic()
        procs = [subprocess.Popen([binary, "-aet", f"LOAD{i}", "-aec", "PROTOCOLCHECK", "-to", "30", "-ta", "30",
                                   "-td", "60", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for i, folder in enumerate(folders)]
        while any(p.poll() is None for p in procs):
            if not warm_kb and out.exists() and out.stat().st_size and \
                    sum(1 for _ in store.glob("*/*/*.dcm")) >= total // 4:
                warm_kb = _rss_kb(listen.pid)
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"senders still running after {timeout:g} s")
            time.sleep(0.05)
        sent = time.monotonic()
        codes = [p.wait() for p in procs]
        warm_kb = warm_kb or _rss_kb(listen.pid)
        while len({r["study_instance_uid"] for r in _records(out)}) < len(expected):
            if listen.poll() is not None or time.monotonic() - sent > timeout:
                break
            time.sleep(0.05)
        audited = time.monotonic()
        time.sleep(min(idle, 1.0))  # a duplicate audit would come within the idle time
        end_kb = _rss_kb(listen.pid)
        records = _records(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if listen.poll() is None:
            listen.send_signal(signal.SIGTERM)
            try:
                listen.wait(60)
            except subprocess.TimeoutExpired:
                listen.kill()
                listen.wait()
        stop.set()
        sampler.join(5)
    per_study = Counter(r["study_instance_uid"] for r in records)
    instances = {r["study_instance_uid"]: sum(int(s["instances"]) for s in r["series"]) for r in records}
    return LoadResult(
        senders=senders, studies=len(expected), instances=total, stored=sum(1 for _ in store.glob("*/*/*.dcm")),
        send_seconds=sent - started, audit_lag_seconds=audited - sent, audits_per_study=dict(per_study),
        audited_instances=instances, expected_instances=expected, sender_codes=codes, rss_kb=samples,
        rss_warm_kb=warm_kb, rss_end_kb=end_kb, listen_log=log.read_text(errors="replace"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=4, help="concurrent storescu processes (default 4)")
    parser.add_argument("--studies", type=int, default=8, help="studies per sender (default 8)")
    parser.add_argument("--slices", type=int, default=30, help="slices per series (default 30)")
    parser.add_argument("--idle", type=float, default=2.0, help="listen --idle seconds (default 2)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="listen-load-") as tmp:
        work = args.keep or Path(tmp)
        result = run_load(work, senders=args.senders, studies_per_sender=args.studies, slices=args.slices,
                          idle=args.idle)
    print(result.table())
    ok = (result.stored == result.instances and set(result.sender_codes) == {0}
          and all(n == 1 for n in result.audits_per_study.values())
          and result.audited_instances == result.expected_instances)
    if not ok:
        print("FAILED: not every instance stored and every study audited once", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
