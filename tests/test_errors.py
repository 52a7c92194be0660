"""One error hierarchy: every error carries its problems, and the CLI maps it to one exit code."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from protocolcheck.cli import main
from protocolcheck.cli.options import Exit, exit_code_for
from protocolcheck.clinical.context import ContextError
from protocolcheck.clinical.library import LibraryError
from protocolcheck.clinical.recommend import RulesError, ScenarioError
from protocolcheck.errors import InputError, ProtocolcheckError, RunError
from protocolcheck.jobs.cluster import BadAddress, ClusterError, DaskMissing
from protocolcheck.jobs.incremental import LockHeld
from protocolcheck.jobs.store import StoreError, StoreMissing
from protocolcheck.net.common import NetError, NetErrorKind


def test_every_error_has_problems_and_an_exit_code() -> None:
    inputs = [LibraryError(["a.yaml: x"]), RulesError(["r.yaml: y"]), ScenarioError(["bad date"]),
              ContextError(["c.csv line 2: z"]), BadAddress("no port"), DaskMissing("pip install"),
              StoreMissing("no store at x.db")]
    runs = [StoreError("disk full"), LockHeld(Path("/l"), 12), ClusterError("gone"),
            NetError(NetErrorKind.UNREACHABLE, "cannot reach PACS")]
    for error in inputs + runs:
        assert isinstance(error, ProtocolcheckError) and error.problems and str(error) == "\n".join(error.problems)
    assert {exit_code_for(e) for e in inputs} == {Exit.USAGE}
    assert {exit_code_for(e) for e in runs} == {Exit.CANNOT_RUN}
    # callers that catch the built-in kinds still do
    assert isinstance(LibraryError(["x"]), ValueError) and isinstance(StoreError("x"), RuntimeError)
    assert isinstance(DaskMissing("x"), ImportError)


def test_describe_lists_every_problem_under_the_headline() -> None:
    assert LibraryError(["a", "b"]).describe() == "the protocol library cannot be used (2 problems):\n  a\n  b"
    assert RulesError(["a"]).describe() == "the decision rules cannot be used (1 problem):\n  a"
    assert ScenarioError(["a", "b"]).describe() == "a\n  b"
    assert issubclass(InputError, ProtocolcheckError) and issubclass(RunError, ProtocolcheckError)


def test_the_cli_reports_an_error_once_with_its_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "context.csv"
    bad.write_text("accession_number,trauma_date\nA1,not-a-date\n")
    result = CliRunner().invoke(main, ["audit", "sample_dicom", "--no-db", "--context", str(bad)])
    assert result.exit_code == Exit.USAGE
    assert result.stderr.startswith("error: the context file cannot be used (1 problem):\n  ")
    missing = CliRunner().invoke(main, ["report", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == Exit.USAGE and missing.stderr.startswith("error: ")
