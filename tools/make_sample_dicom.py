#!/usr/bin/env python3
"""Write the committed sample studies (``sample_dicom/``) with :mod:`protocolcheck.synth`.

Usage: ``python tools/make_sample_dicom.py [OUTDIR]`` (default ``sample_dicom/`` beside this folder).

Deterministic: fixed dates, times and UIDs, so running it twice gives byte-identical files. Each study
goes into its own folder; ``context.csv`` gives the clinical context keyed by accession number, and
``README.md`` says what ``protocolcheck audit sample_dicom --context sample_dicom/context.csv`` should
report for each study. Existing ``*.dcm`` files in the study folders are replaced.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from protocolcheck.testing import synth  # noqa: E402
from protocolcheck.testing.synth import Kind, SeriesSpec, StudySpec, Vendor  # noqa: E402


@dataclass(frozen=True)
class Sample:
    """One sample study: folder name, spec, clinical context row and the expected audit outcome."""

    folder: str
    spec: StudySpec
    indication: str
    expected_status: str
    expected_findings: str
    about: str
    trauma_date: str = ""
    mri_contraindicated: str = "no"
    gadolinium_contraindicated: str = "no"
    egfr: str = ""
    dermatomal: str = "no"


def _iso(dicom_date: str, days_before: int = 0) -> str:
    d = dt.datetime.strptime(dicom_date, "%Y%m%d").date() - dt.timedelta(days=days_before)
    return d.isoformat()


def _uninformative(series: tuple[SeriesSpec, ...]) -> tuple[SeriesSpec, ...]:
    """Replace every description/protocol name by 'Series N' (as some sites' exports do)."""
    return tuple(replace(s, description=f"Series {i + 1}", protocol_name=f"Series {i + 1}")
                 for i, s in enumerate(series))


def samples() -> list[Sample]:
    """The sample studies, in folder order."""
    siemens = synth.plexus_study(Vendor.SIEMENS, "SAMPLE0001", field_strength=3.0, study_date="20250303",
                                 study_time="081500")
    # a plexus protocol commonly adds an axial DWI; it must not disturb the audit
    siemens = replace(siemens, series=siemens.series[:5] + (SeriesSpec(Kind.DWI, "axial", -30.0, 3),)
                      + siemens.series[5:])
    ge = synth.plexus_study(Vendor.GE, "SAMPLE0002", field_strength=1.5, study_date="20250304",
                            study_time="093000", fluid_fat_suppressed=False, tilt_deg=25.0)
    philips_no_post = synth.plexus_study(Vendor.PHILIPS, "SAMPLE0003", field_strength=3.0,
                                         study_date="20250305", study_time="110000", post_contrast=False)
    xa = synth.plexus_study(Vendor.SIEMENS_XA, "SAMPLE0004", field_strength=3.0, study_date="20250306",
                            study_time="074500", oblique=False)
    canon_date = "20250307"
    canon = synth.plexus_study(Vendor.CANON, "SAMPLE0005", field_strength=1.5, study_date=canon_date,
                               study_time="131500", tilt_deg=28.0)
    dixon = synth.plexus_study(Vendor.PHILIPS, "SAMPLE0006", field_strength=3.0, study_date="20250310",
                               study_time="084000", dixon=True, tilt_deg=32.0)
    pelvis = synth.pelvis_study(Vendor.HITACHI, "SAMPLE0007", field_strength=1.5, study_date="20250311",
                                study_time="102000")
    ct_contrast = synth.ct_study(Vendor.GE, "SAMPLE0008", with_contrast=True, study_date="20250312",
                                 study_time="143000")
    ct_plain = synth.ct_study(Vendor.SIEMENS, "SAMPLE0009", with_contrast=False, study_date="20250313",
                              study_time="151500")
    uih = synth.plexus_study(Vendor.UIH, "SAMPLE0010", field_strength=3.0, study_date="20250314",
                             study_time="090000", tilt_deg=22.0)
    uih = replace(uih, series=_uninformative(uih.series))
    return [
        Sample("01_siemens_plexus_complete", siemens, "lumbosacral plexopathy G54.1", "pass", "none",
               "Siemens Skyra 3 T (syngo MR E11), MRI lumbosacral plexus wo+w: localizer; oblique coronal "
               "T1 TSE (*tse2d1_3); oblique coronal STIR (*tir2d1_15, TI 220 ms); oblique axial T2 TSE; "
               "oblique axial T2 TSE FS (Scan Options FS); oblique axial DWI (b 0/800); post-contrast oblique "
               "coronal and oblique axial T1 TSE FS (Contrast/Bolus Agent empty, as Siemens often leaves it; the "
               "descriptions say _post). Oblique coronal tilted +30 deg, oblique axial -30 deg: orthogonal."),
        Sample("02_ge_plexus_no_fluid_fs", ge, "lumbosacral plexopathy G54.1", "fail",
               "missing-sequence (fluid-fat-suppressed)",
               "GE Optima MR450w 1.5 T: T1 FSE oblique coronal, T2 FSE oblique axial WITHOUT fat "
               "suppression, post-contrast T1 FS oblique coronal/axial. Traps: Scan Options carry "
               "FSA_GEMS/FSS_GEMS (readout direction) and SAT_GEMS (spatial saturation), neither is fat "
               "suppression; descriptions contain 'FSE'; Protocol Name is the exam-level "
               "'MRI LUMBOSACRAL PLEXUS WO+W CONTRAST' on every series (also the pre-contrast ones)."),
        Sample("03_philips_plexus_no_post", philips_no_post, "piriformis syndrome G57.01", "fail",
               "missing-sequence (post-contrast-t1-fat-suppressed)",
               "Philips Ingenia 3 T, ordered WITH contrast (72197, 'wo+w'), but no post-contrast series: "
               "T1W TSE cor, STIR cor (Image Type M_IR), T2W TSE tra, T2W SPIR tra (Scan Options FS, "
               "private (2001,1021) SPIR = Y). Oblique planes orthogonal."),
        Sample("04_siemens_xa_plexus_no_oblique", xa, "lumbosacral plexopathy G54.1", "fail",
               "missing-sequence (orthogonal-oblique-planes)",
               "Siemens MAGNETOM Vida 3 T (syngo MR XA31), Enhanced MR Image Storage: one multi-frame "
               "object per series (Pulse Sequence Name, Spectrally Selected Suppression, Inversion "
               "Recovery, Acquisition Contrast, Frame Type in functional groups; the localizer has three "
               "orientations in per-frame groups). All sequences present but only TRUE coronal and TRUE "
               "axial planes (no oblique plexus planes)."),
        Sample("05_canon_plexus_trauma_10d", canon, "S34.4XXA lumbosacral plexus injury", "fail",
               "trauma-too-early",
               "Canon Vantage Orian 1.5 T, complete oblique plexus protocol (no Sequence Name, as Canon "
               "often omits it; Contrast/Bolus Agent set on post series), acquired 10 days after the "
               "trauma date in context.csv: imaging should wait about 1 month.",
               trauma_date=_iso(canon_date, 10)),
        Sample("06_philips_plexus_dixon", dixon, "lumbosacral plexopathy G54.1", "pass", "none",
               "Philips Ingenia 3 T with mDIXON: T1W TSE cor obl; T2W mDIXON TSE cor obl with W/F/IP/OP "
               "in ONE series (Image Type ORIGINAL\\PRIMARY\\W\\W\\DIXON etc.) = the fat-suppressed "
               "T2; T2W TSE tra obl; post-contrast T1W mDIXON cor and tra obl (water images = the "
               "fat-suppressed post-contrast T1)."),
        Sample("07_hitachi_pelvis_standard", pelvis, "lumbosacral plexopathy G54.1", "fail", "wrong-protocol",
               "Hitachi ECHELON OVAL 1.5 T, standard 'MR PELVIS WO': true sagittal/axial/coronal T1/T2 FSE, "
               "no plexus views, no fat suppression. The indication is plexopathy: a standard pelvis MRI "
               "is not supported for it."),
        Sample("08_ge_ct_contrast_pacemaker", ct_contrast, "lumbosacral plexopathy G54.1; pacemaker",
               "pass", "none (info notes possible)",
               "GE Revolution CT abdomen/pelvis WITH IV contrast (Omnipaque 350, route IV): scout, 0.625 mm "
               "axial source, coronal and sagittal reformats (DERIVED\\SECONDARY\\REFORMATTED). MRI is "
               "contraindicated (pacemaker), so CT with IV contrast is the recommended alternative.",
               mri_contraindicated="yes"),
        Sample("09_siemens_ct_no_contrast", ct_plain, "lumbosacral plexopathy G54.1", "fail", "wrong-protocol",
               "Siemens SOMATOM Force CT abdomen/pelvis WITHOUT contrast for plexopathy in a patient "
               "without MRI contraindication: the plexus MRI is the exam to do (and CT, when used, "
               "needs IV contrast)."),
        Sample("10_uih_plexus_uninformative_names", uih, "lumbosacral plexopathy G54.1", "pass", "none",
               "UIH uMR 780 3 T complete oblique plexus protocol where every Series Description and "
               "Protocol Name is 'Series N': classification must come from the acquisition parameters "
               "(TR/TE/TI, Scan Options FS/IR, Contrast/Bolus Agent 'Gadavist' on post series, "
               "orientation)."),
    ]


CONTEXT_COLUMNS = ("accession_number", "trauma_date", "indication", "mri_contraindicated",
                   "gadolinium_contraindicated", "egfr", "dermatomal")


def write_context(path: Path, items: list[Sample]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CONTEXT_COLUMNS)
    for s in items:
        writer.writerow([s.spec.accession, s.trauma_date, s.indication, s.mri_contraindicated,
                         s.gadolinium_contraindicated, s.egfr, s.dermatomal])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def write_corrupt(folder: Path) -> list[Path]:
    """A DICOM file truncated in the middle of its header, and a text file named like DICOM."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = StudySpec(Vendor.SIEMENS, "SAMPLE0099", (SeriesSpec(Kind.T1_TSE, "coronal", 30.0, slices=1),),
                     study_date="20250315", study_description="MR LUMBOSACRAL PLEXUS WO+W CONTRAST")
    tmp = folder / "_full.tmp"
    written = synth.write_study(spec, tmp)
    data = written[0].read_bytes()
    for p in written:
        p.unlink()
    tmp.rmdir()
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(data[:700])  # ends inside a group 0008 text value, long before the pixels
    text = folder / "not_dicom.dcm"
    text.write_text("This is a scanner export log saved with a .dcm name; it is not a DICOM file.\n",
                    encoding="utf-8")
    return [truncated, text]


def write_readme(path: Path, items: list[Sample]) -> None:
    lines = [
        "# Sample DICOM studies",
        "",
        "Synthetic, vendor-realistic studies written by `python tools/make_sample_dicom.py` with",
        "`protocolcheck.synth` (tiny 32x32 or 16x16 pixel data; fake names like `SAMPLE^SIEMENS`; no real",
        "patient data). The script is deterministic: rerunning it gives byte-identical files.",
        "",
        "Run:",
        "",
        "```",
        "protocolcheck audit sample_dicom --context sample_dicom/context.csv",
        "```",
        "",
        "`context.csv` gives the clinical context per accession number (indication with ICD-10-CM code,",
        "trauma date, contraindications). Requirement ids used below: `t1`, `t2`, `fluid-fat-suppressed`,",
        "`post-contrast-t1-fat-suppressed`, `orthogonal-oblique-planes`.",
        "",
        "| folder | accession | scanner | study description | expected status | expected findings |",
        "|---|---|---|---|---|---|",
    ]
    for s in items:
        manufacturer, model = synth.scanner_of(s.spec)
        strength = "" if s.spec.modality_ == "CT" else f" {s.spec.field_strength:g} T"
        lines.append(f"| `{s.folder}` | {s.spec.accession} | {manufacturer} {model}{strength} "
                     f"| {s.spec.study_description} | {s.expected_status} | {s.expected_findings} |")
    lines.append("| `99_corrupt` | - | - | `truncated.dcm` (DICOM cut mid-header), `not_dicom.dcm` (text) "
                 "| (no study) | unreadable-file for each, naming the file |")
    lines += ["", "## Studies", ""]
    for s in items:
        lines.append(f"### `{s.folder}` ({s.spec.accession})")
        lines.append("")
        lines.append(s.about)
        lines.append("")
        lines.append(f"Context: indication \"{s.indication}\""
                     + (f", trauma date {s.trauma_date}" if s.trauma_date else "")
                     + (", MRI contraindicated" if s.mri_contraindicated == "yes" else "") + ".")
        lines.append(f"Expected: **{s.expected_status}**; findings: {s.expected_findings}.")
        lines.append("")
    lines += [
        "### `99_corrupt`",
        "",
        "`truncated.dcm` is a valid Siemens image cut to 700 bytes (inside the header);",
        "`not_dicom.dcm` is a text file with a DICOM-like name. Each must become an `unreadable-file`",
        "finding that names the file; neither may stop the audit of the other studies.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else REPO / "sample_dicom"
    out.mkdir(parents=True, exist_ok=True)
    items = samples()
    total = 0
    for s in items:
        folder = out / s.folder
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.dcm"):
            old.unlink()
        total += len(synth.write_study(s.spec, folder))
    total += len(write_corrupt(out / "99_corrupt"))
    write_context(out / "context.csv", items)
    write_readme(out / "README.md", items)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {total} files, {size / 1024:.0f} KiB, into {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
