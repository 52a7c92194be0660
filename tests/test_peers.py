"""The test peers themselves (`tests/peers.py`): what the other tests rely on to start real servers."""

from __future__ import annotations

import socket
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
