"""``protocolcheck doctor`` against real peers and real files: every check passes on a working setup,
and each broken piece fails its own line (and only its line), exit 3."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from peers import free_port, make_pki, orthanc

from protocolcheck.cli import main


def doctor(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["doctor", "--timeout", "5", *args])
    return result.exit_code, result.stdout.splitlines()


def status(lines: list[str], name: str) -> str:
    (line,) = [line for line in lines if line[6:].startswith(name)]
    return line[:4].strip()


@pytest.mark.network
def test_a_working_setup_passes_every_check(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with orthanc(tmp_path / "orthanc", worklist=False, dicomweb=True) as pacs:
        code, lines = doctor("--db", str(tmp_path / "results.db"), "--pacs", "127.0.0.1", str(pacs.port), pacs.aet,
                             "--worklist", "127.0.0.1", str(pacs.port), pacs.aet, "--dicomweb", pacs.dicomweb_url,
                             "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key",
                             str(pki.client_key), "--folder", str(tmp_path))
    assert code == 0, "\n".join(lines)
    assert [line.split()[1] for line in lines] == ["library", "store", "pacs", "worklist", "dicomweb", "tls", "tls",
                                                   "tls", "disk"]
    assert all(line.startswith("OK") for line in lines)


def test_each_broken_piece_fails_its_own_line(tmp_path: Path) -> None:
    bad_library = tmp_path / "library"
    bad_library.mkdir()
    (bad_library / "broken.yaml").write_text("id: [unclosed\n")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    code, lines = doctor("--library", str(bad_library), "--db", str(tmp_path / "no" / "such" / "dir" / "r.db"),
                         "--pacs", "127.0.0.1", str(free_port()), "PACS", "--tls-ca", str(tmp_path / "missing.pem"),
                         "--folder", str(tmp_path))
    assert code == 3
    assert status(lines, "library") == "FAIL" and status(lines, "pacs") == "FAIL" and status(lines, "tls") == "FAIL"
    assert status(lines, "disk") == "OK"
    assert any("fix:" in line for line in lines)


def test_store_password_is_not_printed(tmp_path: Path) -> None:
    code, lines = doctor("--db", "postgresql+psycopg://qa:hunter2@127.0.0.1:1/qa")
    assert code == 3 and "hunter2" not in "\n".join(lines)
