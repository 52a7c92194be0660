"""DIMSE C-GET vs DICOMweb WADO-RS metadata: the same Orthanc, the same studies, the same audit.

    python -m benchmarks.dicomweb                    # 6 studies, 512 x 512 images
    python -m benchmarks.dicomweb --studies 12 --matrix 256 --repeat 3

Writes vendor-realistic plexus studies (:mod:`protocolcheck.testing.synth`, with real-sized images),
stores them in a throw-away Orthanc with its DICOMweb plugin on 127.0.0.1 (Debian ``orthanc`` and
``orthanc-dicomweb``), then audits every study both ways in this process:

- ``c-get``: C-FIND, then C-GET of each study into a temporary folder, audit, delete (``query``);
- ``wado-rs``: QIDO-RS search, then WADO-RS metadata of each series (``query --dicomweb``).

Reported per path: instances (headers) audited per second, and bytes moved per study (C-GET: the
files received; WADO-RS: the reply bodies after decompression). The ratio is WADO-RS over C-GET,
measured in the same run; both audits are checked to agree study by study.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "tests"):  # the test suite's Orthanc launcher (tests/peers.py)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _corpus(folder: Path, studies: int, matrix: int) -> int:
    from protocolcheck.testing import synth

    vendors = [synth.Vendor.SIEMENS, synth.Vendor.GE, synth.Vendor.PHILIPS, synth.Vendor.SIEMENS_XA]
    files = 0
    for n in range(studies):
        spec = synth.plexus_study(vendors[n % len(vendors)], f"BENCH{n:04d}", study_date="20250601")
        spec = dataclasses.replace(spec, series=tuple(dataclasses.replace(s, matrix=matrix) for s in spec.series))
        files += len(synth.write_study(spec, folder / f"study{n:04d}"))
    return files


def _c_get(peer: object, options: object) -> tuple[float, int, dict[str, dict]]:
    from protocolcheck.audit.engine import audit_paths
    from protocolcheck.net.qr import StudyQuery, find_studies, pull_studies

    started = time.perf_counter()
    moved = 0
    audits: dict[str, dict] = {}
    matches = find_studies(peer, StudyQuery())  # type: ignore[arg-type]
    pulled = pull_studies(peer, matches)  # type: ignore[arg-type]
    try:
        for study in pulled:
            assert study.folder is not None, study.error
            moved += sum(p.stat().st_size for p in Path(study.folder).rglob("*") if p.is_file())
            audits.update((r.study_instance_uid, r.to_dict()) for r in audit_paths([study.folder], options))  # type: ignore[arg-type]
    finally:
        pulled.close()  # type: ignore[attr-defined]
    return time.perf_counter() - started, moved, audits


def _wado(url: str, options: object) -> tuple[float, int, dict[str, dict]]:
    from protocolcheck.audit.engine import audit_records
    from protocolcheck.net.dicomweb import DicomwebSource, WebPeer
    from protocolcheck.net.qr import StudyQuery

    started = time.perf_counter()
    source = DicomwebSource(WebPeer(url))
    audits: dict[str, dict] = {}
    for match in source.find_studies(StudyQuery()):
        audits.update((r.study_instance_uid, r.to_dict())
                      for r in audit_records(source.study_records(match), options))  # type: ignore[arg-type]
    return time.perf_counter() - started, source.bytes_received, audits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=6)
    parser.add_argument("--matrix", type=int, default=512, help="image rows = columns (real MR: 256-512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path; the fastest counts")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)

    from peers import orthanc, storescu

    from protocolcheck.audit.engine import AuditOptions
    from protocolcheck.clinical.library import load_library
    from protocolcheck.net.common import Peer

    options = AuditOptions(library=load_library())
    with tempfile.TemporaryDirectory(prefix="pc-bench-web-") as tmp:
        base = Path(tmp)
        files = _corpus(base / "corpus", args.studies, args.matrix)
        with orthanc(base / "orthanc", worklist=False, dicomweb=True,
                     modalities={"PROTOCOLCHECK": ("127.0.0.1", 1)}) as server:
            sent = storescu(server.port, [base / "corpus"], called=server.aet, timeout=600)
            if sent.returncode != 0:
                raise SystemExit(f"storescu failed: {sent.stderr[-2000:]}")
            peer = Peer("127.0.0.1", server.port, server.aet)
            runs = {"c-get": [_c_get(peer, options) for _ in range(args.repeat)],
                    "wado-rs": [_wado(server.dicomweb_url, options) for _ in range(args.repeat)]}
    best = {name: min(results, key=lambda r: r[0]) for name, results in runs.items()}
    if best["c-get"][2] != best["wado-rs"][2]:
        raise SystemExit("the two paths audited differently; the comparison is void")
    numbers = {
        "studies": args.studies, "instances": files, "matrix": args.matrix,
        **{name: {"seconds": round(sec, 3), "headers_per_second": round(files / sec, 1),
                  "bytes_per_study": round(moved / args.studies)} for name, (sec, moved, _a) in best.items()},
    }
    numbers["speed_ratio"] = round(numbers["c-get"]["seconds"] / numbers["wado-rs"]["seconds"], 2)  # type: ignore[index]
    numbers["bytes_ratio"] = round(numbers["wado-rs"]["bytes_per_study"] / numbers["c-get"]["bytes_per_study"], 4)  # type: ignore[index]
    if args.json:
        print(json.dumps(numbers, indent=2))
        return 0
    print(f"{files} instances in {args.studies} studies, {args.matrix}x{args.matrix} images, fastest of {args.repeat}")
    print(f"{'path':8} {'seconds':>8} {'headers/s':>10} {'bytes/study':>12}")
    for name in ("c-get", "wado-rs"):
        row = numbers[name]
        print(f"{name:8} {row['seconds']:8.2f} {row['headers_per_second']:10.1f} {row['bytes_per_study']:12,}")  # type: ignore[index]
    print(f"WADO-RS metadata is {numbers['speed_ratio']}x as fast as C-GET and moves "
          f"{numbers['bytes_ratio'] * 100:.2f}% of its bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
