"""The classifier on REAL clinical scanner output: 135 series (4,601 header-only files) from
``../shared/realdata/real-mr-dev.tar.gz``, scored against an expert's ``labels.csv`` (issue 13).

The tarball is found beside the repository (``<repo>/../shared/realdata/``; CI runs in a fresh clone
with a copy of ``shared/`` beside it) or at ``$PROTOCOLCHECK_REALDATA`` (the folder holding the tarball,
the tarball itself, or an unpacked ``real-mr-dev`` folder). It is unpacked once per session into a
temporary folder; every file is read with the project's scanner, grouped into studies with
``group_studies`` and classified with ``classify_study`` — the public API the CLI uses — and each
series is joined to its label row on Series Instance UID. The tests skip (saying where they looked)
only when the data set is absent.

Label conventions (``shared/realdata/README.md``): ``STIR`` and ``FLAIR`` are weighting values that
mean T2 with that inversion (a T1-FLAIR is labelled ``T1`` with inversion ``FLAIR``); ``mixed=yes``
marks series holding several image types, where fat suppression is not scored; plane ``unknown``
marks series with several orientations (a three-plane localizer).

Scoring: a series may be split into several stacks; the series answer for a field is the stacks'
common answer, ``unknown`` when they disagree (plane: several planes *is* the right ``unknown``);
a series holding derived or localizer images is derived or a localizer.
``unknown`` is never correct; a wrong answer is a definite answer that differs from the label. Each
field must reach :data:`TARGET_ACCURACY` with at most :data:`MAX_WRONG_RATE` wrong — the bar issue 13
sets for held-out scanners, so this development set must clear it with margin to spare. A failing
field prints the per-field and per-vendor table and every miss with its evidence.
"""

from __future__ import annotations

import csv
import os
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from protocolcheck.classify import SeriesClass, classify_study
from protocolcheck.dicom.records import InstanceHeader
from protocolcheck.dicom.scan import scan
from protocolcheck.dicom.study import group_studies

REPO_ROOT = Path(__file__).resolve().parent.parent
TARBALL = "real-mr-dev.tar.gz"
FIELDS = ("weighting", "inversion", "fat_suppressed", "post_contrast", "plane", "acquisition", "localizer", "derived")
TARGET_ACCURACY = 0.98  # issue 13: >= 98% correct per field (unknown is not correct)
MAX_WRONG_RATE = 0.01  # issue 13: <= 1% wrong per field
UNKNOWN = "unknown"
SERIES_IN_SET = 135


# ---------------------------------------------------------------------------------------- the data

def realdata_candidates() -> list[Path]:
    """Where the data set may be: $PROTOCOLCHECK_REALDATA first, then ``<repo>/../shared/realdata``."""
    out = []
    env = os.environ.get("PROTOCOLCHECK_REALDATA", "").strip()
    if env:
        out.append(Path(env))
    out.append(REPO_ROOT.parent / "shared" / "realdata")
    return out


def find_realdata() -> tuple[Path, Path | None] | None:
    """``(tarball or unpacked folder, labels.csv beside it or None)`` of the first candidate that exists."""
    for c in realdata_candidates():
        if c.is_file() and c.name.endswith((".tar.gz", ".tgz")):
            labels = c.parent / "labels.csv"
            return c, labels if labels.is_file() else None
        if (c / TARBALL).is_file():
            return c / TARBALL, (c / "labels.csv") if (c / "labels.csv").is_file() else None
        for folder in (c, c / "real-mr-dev"):
            if (folder / "labels.csv").is_file() and any(p.is_dir() for p in folder.iterdir()):
                return folder, folder / "labels.csv"
    return None


@dataclass(frozen=True)
class RealData:
    """The unpacked set: label rows by Series Instance UID and the classified stacks of every series."""

    root: Path
    labels: dict[str, dict[str, str]]
    series: dict[str, list[SeriesClass]]
    unreadable: int


def unpack(source: Path, into: Path) -> Path:
    """The unpacked folder (``source`` itself when it is one); members can only land inside ``into``."""
    if source.is_dir():
        return source
    with tarfile.open(source) as tar:
        tar.extractall(into, filter="data")  # the 'data' filter refuses absolute paths, '..' and links out
    found = [p.parent for p in into.rglob("labels.csv")]
    return found[0] if found else into


def classify_folder(root: Path) -> tuple[dict[str, list[SeriesClass]], int]:
    """Every stack under ``root`` classified, by Series Instance UID; and how many files were unreadable."""
    headers: list[InstanceHeader] = []
    bad = 0
    for record in scan([root]):
        if isinstance(record, InstanceHeader):
            headers.append(record)
        elif not record.path.endswith(".csv"):
            bad += 1
    series: dict[str, list[SeriesClass]] = {}
    for study in group_studies(headers):
        for c in classify_study(study):
            series.setdefault(c.series_instance_uid, []).append(c)
    return series, bad


@pytest.fixture(scope="session")
def realdata(tmp_path_factory: pytest.TempPathFactory) -> RealData:
    found = find_realdata()
    if found is None:
        pytest.skip("real-data set absent: no real-mr-dev.tar.gz (or unpacked real-mr-dev/) at "
                    + " or ".join(str(c) for c in realdata_candidates())
                    + " (set PROTOCOLCHECK_REALDATA to the folder holding it)")
    source, labels_path = found
    root = unpack(source, tmp_path_factory.mktemp("realdata"))
    labels_path = labels_path or root / "labels.csv"
    with labels_path.open(newline="", encoding="utf-8") as fh:
        labels = {row["SeriesInstanceUID"]: row for row in csv.DictReader(fh)}
    series, bad = classify_folder(root)
    return RealData(root, labels, series, bad)


# ------------------------------------------------------------------------------------------- scoring

def expected(label: dict[str, str], field: str) -> str | None:
    """The label's value for ``field`` in the classifier's vocabulary; None when the field is not scored."""
    weighting = label["weighting"]
    if field == "weighting":
        return "T2" if weighting in ("STIR", "FLAIR") else weighting
    if field == "inversion":
        return label["inversion"]
    if field == "fat_suppressed":
        return None if label["mixed"] == "yes" else label["fat_suppressed"]
    if field == "post_contrast":
        return label["post_contrast"]
    if field == "plane":
        return label["plane"]
    if field == "acquisition":
        return {"yes": "3D", "no": "2D"}.get(label["is_3d"], UNKNOWN)
    if field == "localizer":
        return label["is_localizer"]
    if field == "derived":
        return label["is_derived"]
    raise KeyError(field)


def _tri(value: bool | None) -> str:
    return UNKNOWN if value is None else "yes" if value else "no"


def stack_answer(c: SeriesClass, field: str) -> str:
    """One stack's answer in the label vocabulary."""
    if field == "weighting":
        return c.weighting.value
    if field == "inversion":
        if c.inversion is not None:
            return c.inversion.value
        undecided = any("-> unknown" in e for e in c.evidence.get("inversion", []))
        return UNKNOWN if undecided else "none"
    if field == "fat_suppressed":
        return _tri(c.fat_suppressed)
    if field == "post_contrast":
        return _tri(c.post_contrast)
    if field == "plane":
        return c.plane or UNKNOWN
    if field == "acquisition":
        return c.acquisition.value if c.acquisition else UNKNOWN
    if field == "localizer":
        return _tri(c.localizer)
    if field == "derived":
        return _tri(c.derived)
    raise KeyError(field)


def series_answer(stacks: Iterable[SeriesClass], field: str) -> str:
    """The stacks' common answer; unknown when they disagree (or when the series was not classified). A
    series holding derived (or localizer) images is a derived (localizer) series: any stack says yes."""
    answers = {stack_answer(c, field) for c in stacks}
    if field in ("derived", "localizer") and "yes" in answers:
        return "yes"
    return answers.pop() if len(answers) == 1 else UNKNOWN


def vendor_name(label: dict[str, str]) -> str:
    return (label["Manufacturer"].split() or ["?"])[0].upper()


@dataclass(frozen=True)
class Outcome:
    field: str
    vendor: str
    uid: str
    description: str
    truth: str
    answer: str

    @property
    def correct(self) -> bool:
        return self.truth == self.answer

    @property
    def unknown(self) -> bool:
        return not self.correct and self.answer == UNKNOWN

    @property
    def wrong(self) -> bool:
        return not self.correct and not self.unknown


def outcomes(data: RealData) -> list[Outcome]:
    out = []
    for uid, label in data.labels.items():
        stacks = data.series.get(uid, [])
        for field in FIELDS:
            truth = expected(label, field)
            if truth is not None:
                out.append(Outcome(field, vendor_name(label), uid, label["SeriesDescription"], truth,
                                   series_answer(stacks, field)))
    return out


def score(rows: Iterable[Outcome]) -> dict[str, float]:
    c: Counter[str] = Counter()
    for o in rows:
        c["n"] += 1
        c["correct"] += o.correct
        c["wrong"] += o.wrong
        c["unknown"] += o.unknown
    n = c["n"] or 1
    return {"n": c["n"], "correct": c["correct"], "wrong": c["wrong"], "unknown": c["unknown"],
            "accuracy": c["correct"] / n, "wrong_rate": c["wrong"] / n}


def report(data: RealData, misses_of: str | None = None) -> str:
    """Per-field table, per-vendor accuracy, then every miss (of one field, or all) with its evidence."""
    rows = outcomes(data)
    lines = [f"{'field':15} {'n':>4} {'correct':>7} {'wrong':>5} {'unknown':>7} {'accuracy':>8} {'wrong%':>6}"]
    for field in FIELDS:
        s = score(o for o in rows if o.field == field)
        lines.append(f"{field:15} {s['n']:4} {s['correct']:7} {s['wrong']:5} {s['unknown']:7} "
                     f"{s['accuracy']:8.3f} {100 * s['wrong_rate']:6.1f}")
    vendors = sorted({o.vendor for o in rows})
    lines += ["", f"{'vendor':9} {'series':>6} " + " ".join(f"{f[:9]:>9}" for f in FIELDS)]
    for v in vendors:
        n = len({o.uid for o in rows if o.vendor == v})
        cells = []
        for field in FIELDS:
            s = score(o for o in rows if o.vendor == v and o.field == field)
            cells.append(f"{s['accuracy']:9.3f}" if s["n"] else f"{'-':>9}")
        lines.append(f"{v:9} {n:6} " + " ".join(cells))
    lines.append("")
    for o in rows:
        if o.correct or (misses_of and o.field != misses_of):
            continue
        kind = "unknown" if o.unknown else "WRONG"
        key = "fat_suppression" if o.field == "fat_suppressed" else o.field
        evidence = "; ".join(e for c in data.series.get(o.uid, [])[:1] for e in c.evidence.get(key, []))
        lines.append(f"{kind:7} {o.field:14} label={o.truth:8} got={o.answer:8} {o.vendor:8} {o.description!r}"
                     f"\n          {evidence}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- tests

def test_every_labelled_series_is_read_and_classified(realdata: RealData) -> None:
    assert len(realdata.labels) == SERIES_IN_SET, f"labels.csv has {len(realdata.labels)} series"
    missing = [uid for uid in realdata.labels if uid not in realdata.series]
    assert not missing, f"{len(missing)} labelled series not found among the classified files: {missing[:5]}"
    assert realdata.unreadable == 0, f"{realdata.unreadable} files of the real set could not be read"


@pytest.mark.parametrize("field", FIELDS)
def test_accuracy_on_real_clinical_series(realdata: RealData, field: str) -> None:
    s = score(o for o in outcomes(realdata) if o.field == field)
    assert s["n"] > 0
    ok = s["accuracy"] >= TARGET_ACCURACY and s["wrong_rate"] <= MAX_WRONG_RATE
    assert ok, (f"{field}: {s['accuracy']:.3f} correct (target {TARGET_ACCURACY}), {s['wrong']} wrong = "
                f"{100 * s['wrong_rate']:.1f}% (max {100 * MAX_WRONG_RATE:g}%)\n\n" + report(realdata, field))


def test_every_field_names_its_evidence(realdata: RealData) -> None:
    """Every decided field names the header facts; every unknown says what was missing."""
    for stacks in realdata.series.values():
        for c in stacks:
            for key in ("weighting", "inversion", "fat_suppression", "post_contrast", "plane", "acquisition",
                        "localizer", "derived"):
                assert c.evidence.get(key) and all(isinstance(e, str) and e for e in c.evidence[key]), (
                    c.series_description, key, c.evidence.get(key))


# Header damage the held-out sets include: stripped elements, empty or odd values, private blocks gone.
_STRIPPED = ("ImageOrientationPatient", "ImagePositionPatient", "RepetitionTime", "EchoTime", "InversionTime",
             "ScanningSequence", "SequenceVariant", "ScanOptions", "Manufacturer", "SeriesDescription", "ProtocolName",
             "ImageType", "MRAcquisitionType", "MagneticFieldStrength", "StudyDate", "AcquisitionTime", "SeriesTime",
             "ContrastBolusAgent", "SequenceName", "FlipAngle", "SeriesNumber", "Modality", "StudyDescription")
_ODD: dict[str, Any] = {"Manufacturer": "ACME MEDICAL", "RepetitionTime": "0", "EchoTime": "-1",
                        "MagneticFieldStrength": "15000", "ImageOrientationPatient": ["0", "0", "0", "0", "0", "0"],
                        "ImageType": ["DERIVED"], "ScanOptions": ["FS_GEMS", "", "IR"],
                        "SeriesDescription": "+ - / * GD C-",
                        "InversionTime": "99999", "AcquisitionTime": "25", "StudyDate": "notadate",
                        "ContrastBolusAgent": "NONE GIVEN", "SequenceVariant": ["MP", "??"]}


def _damaged_copies(data: RealData, out: Path) -> list[Path]:
    """One file of every labelled series written two of three ways: stripped, odd values, private blocks removed."""
    import random

    import pydicom

    rng = random.Random(13)
    paths = []
    firsts: dict[Path, Path] = {}
    for path in sorted(data.root.rglob("*.dcm")):
        firsts.setdefault(path.parent, path)
    kinds = ("stripped", "odd", "no-private")
    for i, path in enumerate(firsts.values()):
        for kind in (kinds[i % 3], kinds[(i + 1) % 3]):  # two damages per series, every damage on every vendor
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if kind == "stripped":
                for keyword in rng.sample(_STRIPPED, 8):
                    if keyword in ds:
                        delattr(ds, keyword)
            elif kind == "odd":
                for keyword in rng.sample(sorted(_ODD), 6):
                    setattr(ds, keyword, _ODD[keyword])
            else:
                ds.remove_private_tags()
            target = out / f"{i:03d}-{kind}.dcm"
            ds.save_as(target, enforce_file_format=False)
            paths.append(target)
    return paths


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the odd values written on purpose
def test_damaged_real_files_classify_without_traceback(realdata: RealData, tmp_path: Path) -> None:
    """Stripped, odd and re-saved copies of the real files: every stack classified, every field with evidence."""
    paths = _damaged_copies(realdata, tmp_path)
    series, _bad = classify_folder(tmp_path)  # a traceback anywhere in reading or classifying fails here
    assert sum(len(stacks) for stacks in series.values()) >= len(paths) // 2
    for stacks in series.values():
        for c in stacks:
            assert all(c.evidence.get(key) for key in ("weighting", "inversion", "fat_suppression", "post_contrast",
                                                        "plane", "acquisition", "localizer", "derived")), c


def test_scoring_rules() -> None:
    """The label conventions as read here (a wrong reading would make every number above meaningless)."""
    label = {"weighting": "STIR", "inversion": "STIR", "mixed": "yes", "fat_suppressed": "yes", "is_3d": "no",
             "post_contrast": "no", "plane": "unknown", "is_localizer": "no", "is_derived": "no"}
    assert expected(label, "weighting") == "T2" and expected(label, "inversion") == "STIR"
    assert expected(label, "fat_suppressed") is None  # mixed series: not scored
    assert expected({**label, "weighting": "T1", "inversion": "FLAIR"}, "weighting") == "T1"  # T1-FLAIR
    assert expected(label, "acquisition") == "2D"
    assert Outcome("plane", "X", "u", "d", "unknown", "unknown").correct
    assert Outcome("post_contrast", "X", "u", "d", "no", "unknown").unknown
    assert Outcome("weighting", "X", "u", "d", "T1", "T2").wrong


if __name__ == "__main__":  # pragma: no cover - manual report: python tests/test_classify_realdata.py [field]
    import sys
    import tempfile

    located = find_realdata()
    if located is None:
        raise SystemExit("real-data set absent")
    with tempfile.TemporaryDirectory() as tmp:
        src, lab = located
        unpacked = unpack(src, Path(tmp))
        lab = lab or unpacked / "labels.csv"
        with lab.open(newline="", encoding="utf-8") as fh:
            labs = {row["SeriesInstanceUID"]: row for row in csv.DictReader(fh)}
        found_series, unreadable = classify_folder(unpacked)
        print(report(RealData(unpacked, labs, found_series, unreadable), sys.argv[1] if len(sys.argv) > 1 else None))
