"""``audit --scheduler``: the audit on a real local Dask cluster equals the local audit, byte for byte.

A module-scoped fixture starts a real ``dask scheduler`` and two single-threaded ``dask worker``
processes on 127.0.0.1 (free port chosen by the scheduler, read from its scheduler file), each in
its own session with a parent-death signal, in a folder other than the tests' (so relative paths
must be handled), and always stops them (terminate, wait, kill). Without dask.distributed these
tests fail when ``CI`` is set and skip otherwise (install ``.[test,dask]``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from protocolcheck.audit.engine import AuditOptions, audit_paths, unmatched_context
from protocolcheck.cli import main
from protocolcheck.clinical.context import load_context_csv
from protocolcheck.clinical.library import load_library
from protocolcheck.jobs import cluster
from protocolcheck.testing import synth

pytestmark = pytest.mark.slow  # starting the cluster takes several seconds on a small machine

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def _require_dask() -> None:
    try:
        import distributed  # noqa: F401 - only whether it imports
    except ImportError:
        reason = "dask.distributed is not installed (pip install '.[test,dask]')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _child_setup() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(args: list[str], cwd: Path, log: Path, first_path: Path = REPO_ROOT) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(first_path), os.environ.get("PYTHONPATH")])))
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_child_setup)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def local_cluster(home: Path, workers: int, scheduler_path: Path = REPO_ROOT
                  ) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler on 127.0.0.1 with ``workers`` single-threaded worker processes (all stopped on exit);
    ``scheduler_path`` comes first on the scheduler's Python path."""
    from distributed import Client

    info = home / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_start(["distributed.cli.dask_scheduler", "--host", HOST, "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(info), "--idle-timeout", "600"], home, home / "scheduler.log",
                            scheduler_path))
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip().endswith("}"):
            if procs[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail("the dask scheduler did not start:\n" + (home / "scheduler.log").read_text())
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        procs.extend(_start(["distributed.cli.dask_worker", "--scheduler-file", str(info), "--nworkers", "1",
                             "--nthreads", "1", "--no-dashboard", "--host", HOST, "--death-timeout", "60",
                             "--local-directory", str(home / f"w{i}")], home, home / f"worker{i}.log")
                     for i in range(workers))
        if workers:
            with Client(address, timeout=30, set_as_default=False) as client:
                try:
                    client.wait_for_workers(workers, timeout=60)
                except TimeoutError:
                    logs = "\n".join((home / f"worker{i}.log").read_text() for i in range(workers))
                    pytest.fail("the dask workers did not join:\n" + logs)
        yield address, procs
    finally:
        _stop(procs[1:])
        _stop(procs[:1])


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a scheduler on 127.0.0.1 with two single-threaded worker processes."""
    _require_dask()
    with local_cluster(tmp_path_factory.mktemp("dask_cluster"), 2) as (address, _procs):
        yield address


def _audit(*args: str) -> Result:
    return CliRunner().invoke(main, ["audit", "--format", "json", *args])


class Runs:
    """Local and cluster runs of ``audit`` in one store mode: ``--no-db``, or each run a fresh store."""

    def __init__(self, mode: str, folder: Path) -> None:
        self.mode = mode
        self.folder = folder
        self.count = 0

    def store_args(self) -> list[str]:
        if self.mode == "no-db":
            return ["--no-db"]
        self.count += 1
        return ["--db", str(self.folder / f"store{self.count}.db")]

    def pair(self, *args: str, scheduler: str) -> tuple[Result, Result]:
        return _audit(*args, *self.store_args()), _audit(*args, *self.store_args(), "--scheduler", scheduler)


@pytest.fixture(params=["no-db", "store"])
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Both ways a local audit runs: plain (pipeline) and through the results store (jobs)."""
    return Runs(request.param, tmp_path_factory.mktemp("stores"))


def _same(local: Result, remote: Result) -> None:
    """Same exit code, byte-identical JSON on stdout, the same warnings."""
    assert remote.exit_code == local.exit_code, remote.output
    assert remote.stdout == local.stdout
    assert json.loads(remote.stdout)  # there is something to compare

    def warnings(r: Result) -> list[str]:
        return [line for line in r.stderr.splitlines() if line.startswith(("warning", "error"))]

    assert warnings(remote) == warnings(local)


def test_sample_studies_identical(scheduler: str, sample_dir: Path, runs: Runs,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (the workers run elsewhere): same JSON, exit code and context warnings."""
    monkeypatch.chdir(sample_dir.parent)
    name = sample_dir.name
    local, remote = runs.pair(name, "--context", f"{name}/context.csv", scheduler=scheduler)
    _same(local, remote)
    assert local.exit_code == 1  # the samples include failing studies
    assert f"cluster {scheduler}: 2 workers" in remote.stderr
    records = json.loads(remote.stdout)
    assert any(r["status"] == "error" for r in records)  # the unreadable sample files
    assert all(not r["study_instance_uid"] or r["series"] for r in records)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A larger synth corpus with the hard cases of the planning step.

    Each scenario twice (other accession numbers and UIDs), one study split over two folders far
    apart, a truncated file beside a study (attached to it), a garbage file in a folder of its own
    (a record of its own), a text file (skipped) and an enhanced MR object.
    """
    from tests.conftest import corpus_specs

    root = tmp_path_factory.mktemp("cluster_corpus")
    for copy in ("a", "b"):
        for name, spec in corpus_specs().items():
            spec = dataclasses.replace(spec, accession=f"{spec.accession}-{copy}", uid_seed=f"cluster-{copy}-{name}")
            synth.write_study(spec, root / copy / name)
    split = root / "a" / "siemens_complete"
    moved = root / "zz_split_part"
    moved.mkdir()
    for path in sorted(split.rglob("*.dcm"))[::2]:
        shutil.move(str(path), moved / path.name)
    victim = sorted((root / "b" / "ge_complete").rglob("*.dcm"))[0]
    (victim.parent / "cut_short.dcm").write_bytes(victim.read_bytes()[:700])
    (root / "junk").mkdir()
    (root / "junk" / "garbage.dcm").write_bytes(b"\x00not dicom at all" * 20)
    (root / "notes.txt").write_text("not DICOM\n")
    from pydicom.data import get_testdata_file

    enhanced = get_testdata_file("emri_small.dcm", download=False)
    if enhanced:
        (root / "enhanced").mkdir()
        shutil.copy(enhanced, root / "enhanced" / "emri_small.dcm")
    return root


def test_synth_corpus_identical(scheduler: str, corpus: Path, tmp_path: Path, runs: Runs) -> None:
    """A bigger corpus, a default clinical context and a context CSV with an unmatched row."""
    context = tmp_path / "context.csv"
    context.write_text("accession_number,trauma_date,indication\n"
                       "SYN-GE-01-a,2025-02-01,lumbosacral plexus injury S34.4XXA\n"
                       "SYN-PH-02-b,,lumbosacral plexopathy G54.1\n"
                       "NO-SUCH-STUDY,,lumbosacral plexopathy G54.1\n")
    args = [str(corpus), "--context", str(context), "--indication", "lumbosacral plexopathy", "--fail-on", "warning"]
    local, remote = runs.pair(*args, scheduler=scheduler)
    _same(local, remote)
    records = json.loads(local.stdout)
    assert len([r for r in records if r["study_instance_uid"]]) >= 28
    assert "NO-SUCH-STUDY" in local.stderr
    split = next(r for r in records if r["accession_number"] == "SYN-SIE-01-a")
    files = [*(corpus / "a" / "siemens_complete").rglob("*.dcm"), *(corpus / "zz_split_part").glob("*.dcm")]
    assert sum(s["instances"] for s in split["series"]) == len(files)
    assert any("cut_short.dcm" in f["message"] for r in records for f in r["findings"] if r["study_instance_uid"])
    assert any("garbage.dcm" in f["message"] for r in records for f in r["findings"] if not r["study_instance_uid"])


def test_library_call_small_chunks(scheduler: str, corpus: Path) -> None:
    """Chunks far smaller than a study (studies spread over many tasks): same results, same used context rows."""
    library = load_library()

    def options() -> AuditOptions:
        return AuditOptions(library, contexts=load_context_csv(REPO_ROOT / "sample_dicom" / "context.csv"))

    here, there = options(), options()
    paths = [corpus / "b", REPO_ROOT / "sample_dicom", corpus / "zz_split_part", corpus / "a"]
    local = list(audit_paths(paths, here))
    stats: list[cluster.ClusterStats] = []
    remote = list(cluster.audit_on_cluster(paths, there, scheduler, chunk_size=5, stats=stats))
    assert remote == local
    assert unmatched_context(there) == unmatched_context(here)
    assert stats[0].workers == 2 and stats[0].files > 5 * 20 and stats[0].unreadable >= 3


def test_relative_library_with_its_own_rules(scheduler: str, sample_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``--library DIR`` (relative) whose rules.yaml picks another protocol: the workers use it too."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for path in (REPO_ROOT / "protocols").glob("*.yaml"):
        shutil.copy(path, lib / path.name)
    rules = (lib / "rules.yaml").read_text()
    anchor = "name: \"MRI lumbosacral plexus without and with IV contrast\"\n    protocol: mr-lumbosacral-plexus-wwo"
    assert anchor in rules
    (lib / "rules.yaml").write_text(rules.replace(anchor, anchor.replace("plexus-wwo", "plexus-wo")))
    monkeypatch.chdir(tmp_path)
    args = [str(sample_dir), "--context", str(sample_dir / "context.csv"), "--library", "lib"]
    local = _audit(*args)
    remote = _audit(*args, "--scheduler", scheduler)
    _same(local, remote)
    shipped = _audit(str(sample_dir), "--context", str(sample_dir / "context.csv"))
    assert local.stdout != shipped.stdout  # the custom rules matter, so equality above is meaningful
    assert "mr-lumbosacral-plexus-wo" in {r["protocol"] for r in json.loads(remote.stdout)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def test_unreachable_scheduler_exits_3(sample_dir: Path) -> None:
    _require_dask()
    result = _audit(str(sample_dir), "--scheduler", f"tcp://{HOST}:{_free_port()}")
    assert result.exit_code == 3
    assert "cannot reach the Dask scheduler" in result.stderr
    assert result.stdout == ""


def test_bad_address_is_a_usage_error(sample_dir: Path, tmp_path: Path) -> None:
    _require_dask()
    result = _audit(str(sample_dir), "--scheduler", "no-port-here")
    assert result.exit_code == 2
    assert "bad Dask scheduler address 'no-port-here'" in result.stderr
    not_json = tmp_path / "scheduler.json"
    not_json.write_text("hello")
    result = _audit(str(sample_dir), "--scheduler", str(not_json))
    assert result.exit_code == 2
    assert "not a Dask scheduler file" in result.stderr


def test_scheduler_file_is_accepted(scheduler: str, sample_dir: Path, tmp_path: Path) -> None:
    info = tmp_path / "scheduler.json"
    info.write_text(json.dumps({"type": "Scheduler", "address": scheduler}))
    _same(_audit(str(sample_dir)), _audit(str(sample_dir), "--scheduler", str(info)))


def test_workers_with_other_code_are_refused(scheduler: str, sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose protocolcheck differs from the workers' (here: another version) does not run."""
    monkeypatch.setattr(cluster, "_FINGERPRINT", "0.0.0-other+0123456789ab")
    result = _audit(str(sample_dir), "--scheduler", scheduler)
    assert result.exit_code == 3
    assert "runs other protocolcheck code" in result.stderr
    assert "than this client (0.0.0-other+0123456789ab)" in result.stderr


def test_without_dask_exits_2(sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    result = _audit(str(sample_dir), "--scheduler", f"tcp://{HOST}:8786")
    assert result.exit_code == 2
    assert "pip install 'protocolcheck[dask]'" in result.stderr


def test_no_worker_and_lost_scheduler_are_cluster_errors(tmp_path: Path, corpus: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """No worker joins: ClusterError. The scheduler dies mid-run: ClusterError, not a hang."""
    _require_dask()
    monkeypatch.setattr(cluster, "GATHER_BATCH", 1)  # fetch results one by one: later ones need the scheduler
    with local_cluster(tmp_path, 0) as (address, procs):
        with pytest.raises(cluster.ClusterError, match="no Dask worker joined"):
            cluster.connect(address, worker_timeout=1)
        procs.append(_start(["distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
                             "--host", HOST, "--death-timeout", "30"], tmp_path, tmp_path / "late_worker.log"))
        results = cluster.audit_on_cluster([corpus], AuditOptions(load_library()), address)
        assert next(results).study_instance_uid  # connected, files read, first batch audited
        _stop(procs[:1])  # the scheduler goes away
        with pytest.raises(cluster.ClusterError, match="went away during the audit"):
            list(results)


def test_store_rerun_on_cluster_is_incremental(scheduler: str, corpus: Path, tmp_path: Path) -> None:
    """Through the results store, a cluster re-run skips unchanged studies and re-audits a changed one,
    with the same output as the local run that does the same."""
    work = tmp_path / "corpus"
    shutil.copytree(corpus / "b", work)
    stores = [str(tmp_path / "local.db"), str(tmp_path / "cluster.db")]

    def both() -> tuple[Result, Result]:
        return (_audit(str(work), "--db", stores[0]),
                _audit(str(work), "--db", stores[1], "--scheduler", scheduler))

    _same(*both())
    local, remote = both()
    _same(local, remote)
    assert "0 audited" in remote.stderr
    changed = next((work / "philips_no_post").rglob("*.dcm"))
    changed.unlink()  # the study changed: one instance fewer
    local, remote = both()
    _same(local, remote)
    assert "1 audited" in remote.stderr


def test_scheduler_without_protocolcheck_is_refused(tmp_path: Path, sample_dir: Path) -> None:
    """The scheduler unpickles the tasks: one that cannot import protocolcheck is a clear error (exit 3)."""
    _require_dask()
    shadow = tmp_path / "shadow" / "protocolcheck"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("protocolcheck is not installed here")\n')
    with local_cluster(tmp_path, 0, scheduler_path=shadow.parent) as (address, _procs):
        result = _audit(str(sample_dir), "--no-db", "--scheduler", address)
    assert result.exit_code == 3
    assert "scheduler at" in result.stderr and "cannot load protocolcheck" in result.stderr
