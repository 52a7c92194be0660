"""Coverage-guided fuzzing of the header readers with atheris (libFuzzer), when it is installed.

    pip install atheris          # wheels exist for Linux x86-64; otherwise it needs clang
    python -m fuzz.run --engine atheris --minutes 5

The same oracle as the ``headers`` target (:func:`fuzz.targets.check_records` and the lean-reader /
pydicom differential), on bytes that libFuzzer evolves from the seed corpus with coverage feedback from
``protocolcheck.headers`` and ``protocolcheck.fastheaders``. libFuzzer stops at the first failure
and writes ``crash-<sha1>`` into the findings folder; replay it with
``python -m fuzz.run --replay FILE --target headers``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def run_atheris(seconds: float, out: Path, memory_mb: int, timeout: float) -> int:
    try:
        import atheris  # type: ignore[import-untyped]
    except ImportError:
        print("atheris is not installed (pip install atheris); use the builtin engine", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["protocolcheck"]):
        import protocolcheck.dicom.lean  # noqa: F401 - instrumented for coverage
        from protocolcheck.dicom.scan import scan_file

    from .seeds import load_corpus
    from .targets import _differential, check_records

    corpus_dir = out / "atheris-corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    if not any(corpus_dir.iterdir()):
        for i, (_name, data) in enumerate(load_corpus().dicom_files):
            (corpus_dir / f"seed-{i:04d}.dcm").write_bytes(data)
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-atheris-"))
    path = str(scratch / "input.dcm")

    def test_one_input(data: bytes) -> None:
        with open(path, "wb") as fh:
            fh.write(data)
        check_records(scan_file(path), path)
        _differential(path)

    artifacts = str(out / "atheris") + os.sep
    os.makedirs(artifacts, exist_ok=True)
    argv = [sys.argv[0], str(corpus_dir), f"-max_total_time={int(seconds)}", f"-rss_limit_mb={memory_mb}",
            f"-timeout={int(timeout)}", f"-artifact_prefix={artifacts}", "-print_final_stats=1"]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
    return 0
