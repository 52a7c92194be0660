"""The site configuration file, ``config show``, ``--log-file``/``--log-format json`` and ``--allow-empty``:
what a scheduled job relies on, run through the real command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from protocolcheck.cli import main

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_dicom" / "01_siemens_plexus_complete"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"PROTOCOLCHECK_CONFIG": "", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_supplies_defaults_and_the_command_line_wins(tmp_path: Path) -> None:
    config = write(tmp_path / "site.toml", f'''
[defaults]
fail-on = "never"
db = "{tmp_path / 'results.db'}"

[audit]
format = "csv"
''')
    code, out, _err = run("--config", str(config), "audit", str(SAMPLE))
    assert code == 0 and out.startswith("accession_number,")  # csv from the file; never fails
    assert (tmp_path / "results.db").exists()  # the store from [defaults]
    code, out, _err = run("--config", str(config), "audit", str(SAMPLE), "--format", "json", "--fail-on", "warning")
    assert out.lstrip().startswith("[")  # the command line wins


def test_config_from_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "site.toml", '[audit]\nformat = "json"\nno-db = true\n')
    code, out, _err = run("audit", str(SAMPLE), env={"PROTOCOLCHECK_CONFIG": str(config)})
    assert code in (0, 1) and json.loads(out)


@pytest.mark.parametrize(("text", "expected"), [
    ('[audit]\nfail-onn = "never"\n', ["site.toml:2", "fail-onn", "did you mean 'fail-on'"]),
    ('[audit]\nfail-on = "sometimes"\n', ["site.toml:2", "fail-on", "'sometimes' is not usable", "never"]),
    ('[adit]\nformat = "json"\n', ["site.toml:1", "[adit] is no command", "did you mean [audit]"]),
    ('[audit\nformat = "json"\n', ["site.toml", "not valid TOML", "line 1"]),
    ('[worklist]\nport = "one-oh-four"\n', ["site.toml:2", "port", "not usable"]),
])
def test_a_bad_file_is_exit_2_with_file_line_key_and_fix(tmp_path: Path, text: str, expected: list[str]) -> None:
    config = write(tmp_path / "site.toml", text)
    code, _out, err = run("--config", str(config), "audit", str(SAMPLE), "--no-db")
    assert code == 2, err
    for part in expected:
        assert part in err, err
    assert "Traceback" not in err


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    code, _out, err = run("--config", str(tmp_path / "nope.toml"), "audit", str(SAMPLE))
    assert code == 2 and "no such configuration file" in err


def test_config_show_names_each_source(tmp_path: Path) -> None:
    config = write(tmp_path / "site.toml", '[defaults]\nfail-on = "never"\n\n[audit]\nformat = "csv"\n')
    code, out, _err = run("--config", str(config), "config", "show", env={"PROTOCOLCHECK_DICOMWEB_TOKEN": "t0k"})
    assert code == 0
    assert f"{config}:2" in out and f"{config}:5" in out and "PROTOCOLCHECK_DICOMWEB_TOKEN=(set)" in out
    assert "t0k" not in out
    code, out, _err = run("--config", str(config), "config", "show", "audit", "--json")
    rows = json.loads(out)
    assert rows["fail-on"] == {"value": "never", "from": f"{config}:2 [defaults]"}
    assert rows["format"]["from"] == f"{config}:5 [audit]"
    assert rows["workers"]["from"] == "default"


def test_log_file_json_lines_without_patient_names(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    code, _out, _err = run("--log-file", str(log), "--log-format", "json", "audit", str(SAMPLE), "--no-db",
                           "--format", "json", "-q")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    finished = [entry for entry in lines if entry["event"] == "audit.finished"]
    assert finished and finished[0]["counts"]["studies"] == 1 and finished[0]["counts"]["exit_code"] == code
    assert {"time", "level", "event", "message"} <= set(lines[0])
    assert "SAMPLE^" not in log.read_text()  # the sample patients are SAMPLE^<VENDOR>


def test_allow_empty_makes_an_empty_night_a_success(tmp_path: Path) -> None:
    empty = tmp_path / "incoming"
    empty.mkdir()
    code, _out, err = run("audit", str(empty), "--no-db")
    assert code == 2 and "--allow-empty" in err
    code, _out, err = run("audit", str(empty), "--no-db", "--allow-empty")
    assert code == 0 and "nothing to audit" in err
    (empty / "broken.dcm").write_bytes(b"DICM" * 10)
    code, _out, _err = run("audit", str(empty), "--no-db", "--allow-empty")
    assert code == 2  # an unreadable file is not an empty night


def test_documented_cron_line_runs(tmp_path: Path) -> None:
    """The README's cron line, with its paths moved into a temporary folder, runs and exits 0."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (cron,) = [line for line in readme.splitlines() if line.startswith("15 2 * * * ")]
    command = cron.split(None, 5)[5]
    config = write(tmp_path / "config.toml", (REPO / "docs" / "config.example.toml").read_text()
                   .replace("/var/lib/protocolcheck", str(tmp_path / "var"))
                   .replace("/var/log/protocolcheck", str(tmp_path / "log"))
                   .replace("/srv/dicom/incoming", str(tmp_path / "incoming")))
    (tmp_path / "var").mkdir()
    (tmp_path / "log").mkdir()
    shutil.copytree(SAMPLE, tmp_path / "incoming" / "study1")
    argv = command.replace("/etc/protocolcheck/config.toml", str(config)) \
                  .replace("/srv/dicom/incoming", str(tmp_path / "incoming")).split()
    assert argv[0] == "protocolcheck"
    code, _out, err = run(*argv[1:])
    assert code == 0, err
    assert (tmp_path / "log" / "protocolcheck.log").read_text().strip()
    shutil.rmtree(tmp_path / "incoming" / "study1")
    code, _out, err = run(*argv[1:])  # an empty night
    assert code == 0, err


def _unit(readme: str, name: str) -> dict[str, dict[str, str]]:
    import configparser

    block = readme.split(f"# /etc/systemd/system/{name}\n", 1)[1].split("```", 1)[0]
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(block)
    return {section: dict(parser[section]) for section in parser.sections()}


def test_documented_systemd_units(tmp_path: Path) -> None:
    """The README's units parse; the audit service's ExecStart runs; the timer names the service's schedule;
    the listen service's ExecStart listens and stops on SIGTERM within TimeoutStopSec."""
    import signal
    import subprocess
    import sys
    import time

    from peers import free_port, repo_env

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    service = _unit(readme, "protocolcheck-audit.service")
    timer = _unit(readme, "protocolcheck-audit.timer")
    listen = _unit(readme, "protocolcheck-listen.service")
    assert service["Service"]["Type"] == "oneshot" and timer["Timer"]["OnCalendar"]
    config = write(tmp_path / "config.toml", (REPO / "docs" / "config.example.toml").read_text()
                   .replace("/var/lib/protocolcheck", str(tmp_path / "var"))
                   .replace("/var/log/protocolcheck", str(tmp_path / "var")))
    (tmp_path / "var").mkdir()
    (tmp_path / "incoming").mkdir()
    assert service["Service"]["Environment"] == "PROTOCOLCHECK_CONFIG=/etc/protocolcheck/config.toml"
    argv = service["Service"]["ExecStart"].replace("/srv/dicom/incoming", str(tmp_path / "incoming")).split()
    assert argv[0] == "/usr/local/bin/protocolcheck"
    code, _out, err = run(*argv[1:], env={"PROTOCOLCHECK_CONFIG": str(config)})
    assert code == 0, err  # an empty night under the documented configuration

    port = free_port()
    argv = (listen["Service"]["ExecStart"].replace("/var/lib/protocolcheck", str(tmp_path / "var"))
            .replace("--port 11112", f"--port {port}").split())
    env = {**__import__("os").environ, **repo_env(), "PROTOCOLCHECK_CONFIG": str(config)}
    process = subprocess.Popen([sys.executable, "-m", "protocolcheck", *argv[1:]], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            lines.append(line)
            if "listening as" in line or not line:
                break
        assert any("listening as" in line for line in lines), "".join(lines)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.wait(timeout=float(listen["Service"]["TimeoutStopSec"]))
        assert time.monotonic() - started < float(listen["Service"]["TimeoutStopSec"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_summary_accounts_for_every_file_in_json(tmp_path: Path) -> None:
    """``audit --summary``: studies by status, files seen, every skipped (non-DICOM) file named, the exit code."""
    folder = tmp_path / "drop"
    shutil.copytree(SAMPLE, folder / "study")
    (folder / "notes.txt").write_text("not DICOM\n")
    (folder / "export.csv").write_text("a,b\n")
    summary = tmp_path / "summary.json"
    code, _out, _err = run("audit", str(folder), "--no-db", "-q", "--format", "json", "--summary", str(summary))
    data = json.loads(summary.read_text())
    assert data["exit_code"] == code and data["studies"] == 1
    assert data["files_seen"] == len(list(folder.rglob("*.*")))
    assert sorted(Path(p).name for p in data["skipped_files"]) == ["export.csv", "notes.txt"]
    assert data["files_skipped"] == 2
