"""Shared pytest fixtures: the committed sample studies and synthetic multi-vendor corpora.

Fixtures (use them from any test module):

- ``sample_dir``: the committed ``sample_dicom/`` folder (with ``context.csv``).
- ``synth_corpus``: session-scoped; one study per vendor/scenario written by :mod:`protocolcheck.synth`
  into a temp folder. ``synth_corpus.root`` is the folder, ``synth_corpus.studies[name]`` a study
  folder, ``synth_corpus.specs[name]`` the :class:`~protocolcheck.synth.StudySpec` that made it.
- ``write_synth``: function-scoped factory ``write_synth(spec, name=None) -> Path`` writing one study
  into ``tmp_path`` and returning its folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from protocolcheck.audit.engine import AuditOptions
from protocolcheck.clinical.library import load_library
from protocolcheck.jobs.live import ExamState, ExamView, LiveMonitor
from protocolcheck.testing import synth

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SynthCorpus:
    """Studies written by synth: folder per study name, and the specs that made them."""

    root: Path
    studies: dict[str, Path]
    specs: dict[str, synth.StudySpec]


def corpus_specs() -> dict[str, synth.StudySpec]:
    """A small multi-vendor corpus covering the main plexus scenarios (names are stable keys)."""
    V = synth.Vendor
    return {
        "siemens_complete": synth.plexus_study(V.SIEMENS, "SYN-SIE-01"),
        "siemens_xa_complete": synth.plexus_study(V.SIEMENS_XA, "SYN-XA-01"),
        "siemens_xa_no_oblique": synth.plexus_study(V.SIEMENS_XA, "SYN-XA-02", oblique=False),
        "ge_complete": synth.plexus_study(V.GE, "SYN-GE-01", field_strength=1.5),
        "ge_no_fluid_fs": synth.plexus_study(V.GE, "SYN-GE-02", field_strength=1.5, fluid_fat_suppressed=False),
        "philips_complete": synth.plexus_study(V.PHILIPS, "SYN-PH-01"),
        "philips_no_post": synth.plexus_study(V.PHILIPS, "SYN-PH-02", post_contrast=False),
        "philips_dixon": synth.plexus_study(V.PHILIPS, "SYN-PH-03", dixon=True),
        "canon_complete": synth.plexus_study(V.CANON, "SYN-CA-01", field_strength=1.5),
        "hitachi_complete": synth.plexus_study(V.HITACHI, "SYN-HI-01", field_strength=1.5),
        "uih_complete": synth.plexus_study(V.UIH, "SYN-UI-01"),
        "pelvis_standard": synth.pelvis_study(V.SIEMENS, "SYN-PEL-01"),
        "ct_contrast": synth.ct_study(V.GE, "SYN-CT-01", with_contrast=True),
        "ct_no_contrast": synth.ct_study(V.SIEMENS, "SYN-CT-02", with_contrast=False),
    }


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The committed sample studies (``sample_dicom/``)."""
    path = REPO_ROOT / "sample_dicom"
    if not any(path.glob("*/*.dcm")):
        pytest.skip("sample_dicom/ has not been generated (python tools/make_sample_dicom.py)")
    return path


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory) -> SynthCorpus:
    """A multi-vendor corpus written once per test session."""
    root = tmp_path_factory.mktemp("synth_corpus")
    specs = corpus_specs()
    studies = {}
    for name, spec in specs.items():
        folder = root / name
        synth.write_study(spec, folder)
        studies[name] = folder
    return SynthCorpus(root, studies, specs)


@pytest.fixture
def write_synth(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``write_synth(spec, name=None)`` writes one study under ``tmp_path``; returns its folder."""

    def _write(spec: synth.StudySpec, name: str | None = None) -> Path:
        folder = tmp_path / (name or spec.accession)
        synth.write_study(spec, folder)
        return folder

    return _write


@pytest.fixture(autouse=True, scope="session")
def _private_results_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never write to the user's default results store (~/.local/share/protocolcheck)."""
    import os

    if "PROTOCOLCHECK_DB" not in os.environ:
        os.environ["PROTOCOLCHECK_DB"] = str(tmp_path_factory.mktemp("store") / "results.db")


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Commands run in-process (click's CliRunner) set up the ``protocolcheck`` and ``pynetdicom`` loggers for a
    terminal (their own handler, ``propagate`` off); put them back after each test, so a later test's
    ``caplog`` still sees their records."""
    import logging

    saved = {name: (list(logger.handlers), logger.level, logger.propagate)
             for name in ("protocolcheck", "pynetdicom") for logger in (logging.getLogger(name),)}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


IdleVerdicts = Callable[[Path, Path, str], tuple[Path, list[ExamView]]]


@pytest.fixture(scope="session")
def idle_verdicts() -> IdleVerdicts:
    """``make(source, store, accession)``: a synthetic plexus exam without STIR written to ``source``, copied into
    ``store`` as ``listen`` stores it and judged by the live monitor the way ``listen`` judges it; (the study's
    folder in the store, its idle verdict after 3 series and after all of them)."""

    def make(source: Path, store: Path, accession: str) -> tuple[Path, list[ExamView]]:
        synth.write_study(synth.plexus_study(synth.Vendor.SIEMENS, accession, fluid_fat_suppressed=False), source)
        by_series: dict[str, list[Path]] = {}
        study = ""
        for path in sorted(source.glob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            study = str(ds.StudyInstanceUID)
            target = store / study / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            by_series.setdefault(str(ds.SeriesInstanceUID), []).append(target)
        now = [1000.0]
        monitor = LiveMonitor(AuditOptions(library=load_library()), series_idle=1, clock=lambda: now[0])
        views: list[ExamView] = []
        for count in (3, len(by_series)):
            for series in list(by_series)[:count]:
                for path in by_series[series]:
                    monitor.instance(study, series, path)
            monitor.step(monitor.drain())
            monitor.study_idle(study)
            now[0] += 5
            monitor.step(monitor.drain())
            view = monitor.view(study)
            assert view is not None and view.state is ExamState.IDLE and view.series_received == count
            views.append(view)
        return store / study, views

    return make
