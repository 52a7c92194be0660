"""Load on ``protocolcheck listen``: four concurrent dcmtk ``storescu`` senders, a few thousand instances.

Runs :func:`benchmarks.listen_load.run_load` (the benchmark's own harness) with a bounded corpus:
every instance is stored, every study is audited exactly once after its last instance with all of
its instances, and the listen process's resident memory stays flat (bounded growth after warm-up,
generous for a shared machine). Throughput is printed (``-s``), not asserted: speed lives in
``benchmarks/`` (``python -m benchmarks.listen_load``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from peers import REPO, require_binaries

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.listen_load import run_load

pytestmark = [pytest.mark.network, pytest.mark.slow]

RSS_GROWTH_LIMIT_KB = 32 * 1024  # after warm-up; the run holds ~2,000 instances of ~2 KB each


def test_concurrent_senders_thousands_of_instances(tmp_path: Path) -> None:
    require_binaries("storescu")
    result = run_load(tmp_path, senders=4, studies_per_sender=6, slices=30, idle=2.0, timeout=240)
    print("\n" + result.table())
    assert result.sender_codes == [0, 0, 0, 0], result.listen_log[-3000:]
    assert result.instances >= 2000
    assert result.stored == result.instances  # every instance stored
    assert "refused" not in result.listen_log.split("listen:")[0].lower()
    assert result.audits_per_study == {uid: 1 for uid in result.expected_instances}  # each study audited once
    assert result.audited_instances == result.expected_instances  # ... after it was complete
    assert result.rss_warm_kb > 0 and len(result.rss_kb) > 20
    assert result.rss_peak_kb - result.rss_warm_kb < RSS_GROWTH_LIMIT_KB, result.table()
    assert result.rss_end_kb - result.rss_warm_kb < RSS_GROWTH_LIMIT_KB, result.table()
    assert f"{result.instances} instances stored, 0 refused" in result.listen_log
