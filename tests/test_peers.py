"""The test peers themselves (`tests/peers.py`): what the other tests rely on to start real servers, among
them starting again on another port when the one free_port() chose was taken before the server bound it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import peers
import pytest

pytestmark = [pytest.mark.network]


def test_orthanc_starts_on_another_port_when_the_one_chosen_was_taken(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A port free_port() picked can be taken before Orthanc binds it (another test's connection gets it as
    its source port): Orthanc then exits, and the peer starts it again on a new port."""
    with socket.socket() as busy:
        busy.bind((peers.HOST, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        real, chosen = peers.free_port, []

        def first_taken() -> int:
            chosen.append(taken if not chosen else real())
            return chosen[-1]

        monkeypatch.setattr(peers, "free_port", first_taken)
        with peers.orthanc(tmp_path, worklist=False) as server:
            assert server.port != taken and chosen == [taken, server.port]
            assert "already in use" in (tmp_path / "orthanc.log").read_text()


@pytest.fixture
def first_port_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[int]]]:
    """free_port() answers a port held open (listening) the first time, then free ones: (that port, every
    port it answered)."""
    with socket.socket() as busy:
        busy.bind((peers.HOST, 0))
        busy.listen()
        taken, real, chosen = busy.getsockname()[1], peers.free_port, []

        def first_taken() -> int:
            chosen.append(taken if not chosen else real())
            return chosen[-1]

        monkeypatch.setattr(peers, "free_port", first_taken)
        yield taken, chosen


def test_listen_starts_on_another_port_when_the_one_chosen_was_taken(
        tmp_path: Path, first_port_taken: tuple[int, list[int]]) -> None:
    taken, chosen = first_port_taken
    listener = peers.Listener(tmp_path, "--no-db")
    try:
        assert listener.port != taken and chosen == [taken, listener.port]
        assert listener.text().count("Address already in use") == 1  # the first start said why it stopped
        assert listener.process.alive() and f"on 127.0.0.1:{listener.port}" in listener.process.output()
    finally:
        listener.terminate()


def test_wlmscpfs_starts_on_another_port_when_the_one_chosen_was_taken(
        tmp_path: Path, first_port_taken: tuple[int, list[int]]) -> None:
    taken, chosen = first_port_taken
    with peers.wlmscpfs(tmp_path) as server:
        assert server.port != taken and chosen == [taken, server.port]
        assert "Initialization of network connection failed" in (tmp_path / "wlmscpfs.log").read_text()


def test_a_server_is_not_started_again_for_another_failure_or_on_a_port_the_test_chose(
        tmp_path: Path, first_port_taken: tuple[int, list[int]]) -> None:
    taken, chosen = first_port_taken
    with pytest.raises(AssertionError, match="--no-such-option"):
        peers.Listener(tmp_path, "--no-db", "--no-such-option", name="bad")
    assert len(chosen) == 1  # a usage error: not a taken port, not retried
    with pytest.raises(AssertionError, match="Address already in use"):
        peers.Listener(tmp_path, "--no-db", port=taken, name="fixed")  # the caller's port: its own business
    assert len(chosen) == 1


def test_postgres_starts_on_another_port_when_the_one_chosen_was_taken(first_port_taken: tuple[int, list[int]]) -> None:
    taken, chosen = first_port_taken
    with peers.postgres() as url:
        assert chosen == [taken, chosen[1]] and url.endswith(f"@{peers.HOST}:{chosen[1]}/postgres")
