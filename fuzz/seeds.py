"""Seed inputs for the fuzzer, gathered once per run.

DICOM: every file of ``sample_dicom/`` (ten vendor studies and two corrupt files), small files bundled
with pydicom (character sets, big endian, no file meta, deflated, compressed, SR/RT objects), synthetic
studies from :mod:`protocolcheck.synth` in the syntaxes it can write (implicit, big endian, deflated, no
file meta, enhanced MR) and the hand-made seeds in ``fuzz/corpus/``. Text: the shipped protocol files,
the recommender's rules.yaml, ``sample_dicom/context.csv`` and ``fuzz/corpus/*.csv``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
PYDICOM_SEEDS = (
    "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm", "MR_truncated.dcm",
    "MR_small_padded.dcm", "MR_small_RLE.dcm", "ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "image_dfl.dcm",
    "meta_missing_tsyntax.dcm", "nested_priv_SQ.dcm", "no_meta_group_length.dcm", "priv_SQ.dcm", "UN_sequence.dcm",
    "empty_charset_LEI.dcm", "badVR.dcm", "reportsi.dcm", "reportsi_with_empty_number_tags.dcm", "rtplan_truncated.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm", "SC_rgb_small_odd_big_endian.dcm", "test-SR.dcm",
    "chrH31.dcm", "chrX1.dcm", "chrSQEncoding.dcm", "chrJapMultiExplicitIR6.dcm", "chrFrenMulti.dcm", "chrArab.dcm",
    "chrKoreanMulti.dcm", "chrI2.dcm",
)


@dataclass
class Corpus:
    """Everything the targets mutate, as bytes (names are for reports only)."""

    dicom_files: list[tuple[str, bytes]] = field(default_factory=list)
    studies: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)
    protocols: list[tuple[str, bytes]] = field(default_factory=list)
    rules: bytes = b""
    contexts: list[tuple[str, bytes]] = field(default_factory=list)
    patient_names: set[str] = field(default_factory=set)  # of the DICOM seeds, for the privacy oracle

    def summary(self) -> str:
        return (f"{len(self.dicom_files)} DICOM files, {len(self.studies)} studies, {len(self.protocols)} protocols, "
                f"rules.yaml, {len(self.contexts)} context CSVs")


def _pydicom_seeds() -> list[tuple[str, bytes]]:
    import pydicom

    base = Path(pydicom.__file__).parent / "data"
    out = []
    for name in PYDICOM_SEEDS:
        for sub in ("test_files", "charset_files"):
            path = base / sub / name
            if path.is_file():
                out.append((f"pydicom:{name}", path.read_bytes()))
                break
    return out


def _synth_studies(cache: Path) -> list[tuple[str, dict[str, bytes]]]:
    """A few synthetic studies in each syntax synth writes (deterministic bytes; cached on disk)."""
    from protocolcheck.testing import synth
    from protocolcheck.testing.synth import Syntax, Vendor

    studies = []
    variants = (
        ("synth-implicit-ge", synth.plexus_study(Vendor.GE, "FZ1", slices=2), Syntax.IMPLICIT_LE, True),
        ("synth-bigendian-philips", synth.plexus_study(Vendor.PHILIPS, "FZ2", slices=2, dixon=True), Syntax.EXPLICIT_BE,
         True),
        ("synth-deflated-canon", synth.plexus_study(Vendor.CANON, "FZ3", slices=2), Syntax.DEFLATED, True),
        ("synth-nometa-siemens", synth.plexus_study(Vendor.SIEMENS, "FZ4", slices=2), Syntax.IMPLICIT_LE, False),
        ("synth-xa-enhanced", synth.plexus_study(Vendor.SIEMENS_XA, "FZ5", slices=2)
         if hasattr(Vendor, "SIEMENS_XA") else None, Syntax.EXPLICIT_LE, True),
    )
    from dataclasses import replace

    for name, spec, syntax, meta in variants:
        if spec is None:
            continue
        folder = cache / name
        if not folder.is_dir():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    synth.write_study(replace(spec, syntax=syntax, file_meta=meta), folder)
            except Exception:  # a synth option that does not exist just gives fewer seeds
                continue
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        if files:
            studies.append((name, files))
    return studies


def load_corpus(cache: Path | None = None) -> Corpus:
    """Gather every seed (synthetic studies are written once into ``cache``)."""
    cache = cache or Path(tempfile.gettempdir()) / f"protocolcheck-fuzz-seeds-{os.getuid()}"
    cache.mkdir(parents=True, exist_ok=True)
    corpus = Corpus()
    samples = REPO / "sample_dicom"
    for study in sorted(p for p in samples.iterdir() if p.is_dir()) if samples.is_dir() else ():
        files = {p.name: p.read_bytes() for p in sorted(study.iterdir()) if p.is_file()}
        if not study.name.startswith("99"):
            corpus.studies.append((study.name, files))
        corpus.dicom_files += [(f"{study.name}/{n}", d) for n, d in files.items()]
    corpus.dicom_files += _pydicom_seeds()
    for name, files in _synth_studies(cache):
        corpus.studies.append((name, files))
        corpus.dicom_files += [(f"{name}/{n}", d) for n, d in list(files.items())[:6]]
    if CORPUS_DIR.is_dir():
        for path in sorted(CORPUS_DIR.rglob("*")):
            if path.is_file() and path.suffix in (".dcm", ""):
                corpus.dicom_files.append((f"corpus:{path.name}", path.read_bytes()))
            elif path.is_file() and path.suffix == ".csv":
                corpus.contexts.append((f"corpus:{path.name}", path.read_bytes()))
    protocols_dir = REPO / "protocols"
    for path in sorted(protocols_dir.glob("*.yaml")):
        if path.name == "rules.yaml":
            corpus.rules = path.read_bytes()
        else:
            corpus.protocols.append((path.name, path.read_bytes()))
    corpus.patient_names = _patient_names(corpus.dicom_files)
    context = samples / "context.csv"
    if context.is_file():
        corpus.contexts.insert(0, ("sample_dicom/context.csv", context.read_bytes()))
    return corpus


def _patient_names(files: list[tuple[str, bytes]]) -> set[str]:
    """Patient names (5+ characters) written in the seeds, as text, to look for in messages."""
    import io

    import pydicom

    names = set()
    for _name, data in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True,
                                     specific_tags=["PatientName", "SpecificCharacterSet"])
            name = str(ds.get("PatientName", "") or "")
        except Exception:  # a seed that cannot be read has no name to look for
            continue
        if len(name) >= 5:
            names.add(name)
    return names
