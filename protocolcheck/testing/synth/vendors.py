"""How each vendor writes a series: its facts, the physics of each kind of series, and the series text
(descriptions, sequence names, scan options, private elements) a scanner of that vendor writes."""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocolcheck.dicom.geometry import Plane
from protocolcheck.testing.synth.spec import Kind, SeriesSpec, Vendor

# ------------------------------------------------------------------------------------ vendor facts

_VENDOR_INFO: dict[Vendor, dict[str, Any]] = {
    Vendor.SIEMENS: {
        "manufacturer": "SIEMENS",
        "model": {3.0: "Skyra", 1.5: "Aera"},
        "software": "syngo MR E11",
        "station": "AWP45123",
        "ct_model": "SOMATOM Force",
        "ct_software": "syngo CT VB20A",
    },
    Vendor.SIEMENS_XA: {
        "manufacturer": "Siemens Healthineers",
        "model": {3.0: "MAGNETOM Vida", 1.5: "MAGNETOM Sola"},
        "software": "syngo MR XA31",
        "station": "AWP167012",
    },
    Vendor.GE: {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "model": {3.0: "DISCOVERY MR750", 1.5: "Optima MR450w"},
        "software": "27\\LX\\MR Software release:DV26.0_R03_1831.b",
        "station": "GEMR1OC0",
        "ct_model": "Revolution CT",
        "ct_software": "rev_ct_sw.23",
    },
    Vendor.PHILIPS: {
        "manufacturer": "Philips Medical Systems",
        "model": {3.0: "Ingenia", 1.5: "Achieva"},
        "software": "5.4.1\\5.4.1.0",
        "station": "PHILIPS-MR3T",
    },
    Vendor.CANON: {
        "manufacturer": "CANON_MEC",
        "model": {3.0: "Vantage Galan 3T", 1.5: "Vantage Orian"},
        "software": "V6.0*R004",
        "station": "CANONMR01",
    },
    Vendor.HITACHI: {
        "manufacturer": "Hitachi Medical Corporation",
        "model": {3.0: "TRILLIUM OVAL", 1.5: "ECHELON OVAL"},
        "software": "V5.2",
        "station": "ECHELON01",
    },
    Vendor.UIH: {
        "manufacturer": "UIH",
        "model": {3.0: "uMR 780", 1.5: "uMR 570"},
        "software": "R004",
        "station": "UMR780",
    },
}


@dataclass(frozen=True)
class _Physics:
    tr: float
    te: float
    ti: float | None
    flip: float
    etl: int
    thickness: float
    gap: float
    pixel: float
    acq_matrix: tuple[int, int]
    minutes: float  # scan duration, for acquisition times
    b_values: tuple[int, ...] = ()


def _physics(spec: SeriesSpec, vendor: Vendor, fs: float) -> _Physics:
    """TR/TE/TI/flip/ETL and geometry typical for the kind, field strength and vendor."""
    k = spec.kind_
    three = fs >= 2.5
    weighting = (spec.weighting or "").upper()
    if k is Kind.LOCALIZER:
        return _Physics(8.6, 4.0, None, 20, 1, 7.0, 0.0, 1.6, (256, 160), 0.5)
    if k in (Kind.T1_TSE, Kind.T1_FS_POST) or (k is Kind.DIXON and weighting == "T1"):
        tr = 700.0 if three else 550.0
        if k is Kind.DIXON:
            tr = 650.0 if three else 520.0
        return _Physics(tr, 10.0 if three else 12.0, None, 150 if vendor is Vendor.SIEMENS else 90, 3,
                        4.0, 0.4, 0.78, (384, 307), 3.5)
    if k in (Kind.T2_TSE, Kind.T2_FS, Kind.DIXON):
        return _Physics(4500.0 if three else 4000.0, 95.0 if three else 90.0, None,
                        150 if vendor is Vendor.SIEMENS else 90, 17, 4.0, 0.4, 0.78, (384, 307), 3.8)
    if k is Kind.PD:
        return _Physics(3000.0, 30.0, None, 150 if vendor is Vendor.SIEMENS else 90, 7, 4.0, 0.4, 0.7,
                        (384, 307), 3.5)
    if k is Kind.STIR:
        return _Physics(5000.0 if three else 4500.0, 60.0 if three else 55.0, 220.0 if three else 160.0,
                        150 if vendor is Vendor.SIEMENS else 90, 15, 4.0, 0.4, 0.9, (320, 256), 4.5)
    if k is Kind.FLAIR:
        return _Physics(9000.0, 85.0, 2500.0, 150, 16, 5.0, 0.5, 0.9, (320, 256), 3.5)
    if k is Kind.GRE_T2STAR:
        return _Physics(600.0, 20.0, None, 20, 1, 5.0, 0.5, 0.9, (320, 256), 3.0)
    if k is Kind.MPRAGE_3D:
        if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
            return _Physics(2300.0 if three else 2000.0, 2.3, 900.0, 8, 1, 1.0, 0.0, 1.0, (256, 256), 5.5)
        return _Physics(8.2, 3.2, 450.0, 12, 1, 1.0, 0.0, 1.0, (256, 256), 5.0)  # GE BRAVO / Philips TFE
    if k in (Kind.SPACE_3D, Kind.SPACE_STIR_3D):
        ti = (220.0 if three else 160.0) if k is Kind.SPACE_STIR_3D else None
        return _Physics(3000.0 if k is Kind.SPACE_STIR_3D else 1500.0, 120.0 if ti is None else 90.0, ti,
                        120, 70, 1.0, 0.0, 1.0, (320, 320), 6.0)
    if k is Kind.DWI:
        return _Physics(5000.0, 70.0, None, 90, 1, 5.0, 1.0, 1.5, (160, 128), 3.0, (0, 800))
    if k is Kind.CT_LOCALIZER:
        return _Physics(0, 0, None, 0, 0, 1.0, 0.0, 1.0, (512, 512), 0.2)
    if k is Kind.CT_AXIAL:
        return _Physics(0, 0, None, 0, 0, 0.625, 0.0, 0.7, (512, 512), 0.2)
    if k is Kind.CT_REFORMAT:
        return _Physics(0, 0, None, 0, 0, 3.0, 0.0, 0.7, (512, 512), 0.5)
    raise ValueError(f"unknown kind {k}")


# ------------------------------------------------------------------------------ series text per vendor


def _plane_token(vendor: Vendor, plane: Plane) -> str:
    lower = {Plane.AXIAL: "tra", Plane.CORONAL: "cor", Plane.SAGITTAL: "sag"}
    upper = {Plane.AXIAL: "AX", Plane.CORONAL: "COR", Plane.SAGITTAL: "SAG"}
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA, Vendor.UIH):
        return lower[plane]
    if vendor is Vendor.PHILIPS:
        return {Plane.AXIAL: "TRA", Plane.CORONAL: "COR", Plane.SAGITTAL: "SAG"}[plane]
    return upper[plane]


def _description(vendor: Vendor, spec: SeriesSpec) -> str:
    """The series description a technologist on this vendor typically leaves."""
    k, fsat, post = spec.kind_, spec.is_fat_sat, spec.is_post
    p = _plane_token(vendor, spec.plane_)
    obl = abs(spec.tilt_deg) >= 5
    w = (spec.weighting or ("T1" if k is Kind.T1_FS_POST else "T2")).upper()
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
        o = "_obl" if obl else ""
        fs = "_fs" if fsat else ""
        pc = "_post" if post else ""
        return {
            Kind.LOCALIZER: "localizer",
            Kind.T1_TSE: f"t1_tse{fs}_{p}{o}{pc}",
            Kind.T1_FS_POST: f"t1_tse{fs}_{p}{o}{pc}",
            Kind.T2_TSE: f"t2_tse{fs}_{p}{o}{pc}",
            Kind.T2_FS: f"t2_tse{fs}_{p}{o}",
            Kind.PD: f"pd_tse{fs}_{p}{o}",
            Kind.STIR: f"t2_tirm_{p}{o}_stir",
            Kind.DIXON: f"{w.lower()}_tse_dixon_{p}{o}{pc}",
            Kind.MPRAGE_3D: f"t1_mprage_{p}_p2_iso{pc}",
            Kind.SPACE_3D: f"{w.lower()}_spc{fs}_{p}_p2_iso{pc}",
            Kind.SPACE_STIR_3D: f"t2_spc_stir_{p}_p2_iso",
            Kind.DWI: f"ep2d_diff_{p}",
            Kind.FLAIR: f"t2_tirm_{p}_dark-fluid",
            Kind.GRE_T2STAR: f"t2_fl2d_{p}_hemo",
        }[k]
    if vendor in (Vendor.GE, Vendor.CANON, Vendor.HITACHI):
        P = p + (" OBL" if obl else "")
        fs = " FS" if fsat else ""
        pc = " +C" if post else ""
        if vendor is Vendor.HITACHI:
            return {
                Kind.LOCALIZER: "Scanogram",
                Kind.T1_TSE: f"{'FS ' if fsat else ''}T1W FSE {P}{pc}",
                Kind.T1_FS_POST: f"FS T1W FSE {P}{pc}",
                Kind.T2_TSE: f"{'FS ' if fsat else ''}T2W FSE {P}",
                Kind.T2_FS: f"FS T2W FSE {P}",
                Kind.PD: f"PDW FSE {P}",
                Kind.STIR: f"STIR {P}",
                Kind.DIXON: f"{w}W FSE DIXON {P}{pc}",
                Kind.MPRAGE_3D: f"3D T1W GE {P}{pc}",
                Kind.SPACE_3D: f"3D {w}W FSE {P}",
                Kind.SPACE_STIR_3D: f"3D STIR {P}",
                Kind.DWI: f"DWI {P}",
                Kind.FLAIR: f"FLAIR {P}",
                Kind.GRE_T2STAR: f"T2*W GE {P}",
            }[k]
        if vendor is Vendor.CANON:
            return {
                Kind.LOCALIZER: "Locator",
                Kind.T1_TSE: f"FSE T1{fs} {P}{pc}",
                Kind.T1_FS_POST: f"FSE T1 FS {P}{pc}",
                Kind.T2_TSE: f"FSE T2{fs} {P}",
                Kind.T2_FS: f"FSE T2 FS {P}",
                Kind.PD: f"FSE PD {P}",
                Kind.STIR: f"STIR {P}",
                Kind.DIXON: f"FSE {w} WFS {P}{pc}",
                Kind.MPRAGE_3D: f"3D MPRAGE {P}{pc}",
                Kind.SPACE_3D: f"3D FSE {w} {P}",
                Kind.SPACE_STIR_3D: f"3D STIR {P}",
                Kind.DWI: f"DWI {P}",
                Kind.FLAIR: f"FLAIR {P}",
                Kind.GRE_T2STAR: f"FE T2* {P}",
            }[k]
        return {
            Kind.LOCALIZER: "3-PLANE LOC",
            Kind.T1_TSE: f"{P} T1 FSE{fs}{pc}",
            Kind.T1_FS_POST: f"{P} T1 FS{pc}",
            Kind.T2_TSE: f"{P} T2 FSE{fs}",
            Kind.T2_FS: f"{P} T2 FSE FS",
            Kind.PD: f"{P} PD FSE",
            Kind.STIR: f"{P} STIR",
            Kind.DIXON: f"{P} {w} FLEX{pc}",
            Kind.MPRAGE_3D: f"{P} 3D BRAVO{pc}",
            Kind.SPACE_3D: f"{P} CUBE {w}{pc}",
            Kind.SPACE_STIR_3D: f"{P} CUBE STIR",
            Kind.DWI: f"{P} DWI",
            Kind.FLAIR: f"{P} T2 FLAIR",
            Kind.GRE_T2STAR: f"{P} GRE T2*",
        }[k]
    if vendor is Vendor.PHILIPS:
        spir = "_SPIR" if fsat else ""
        gd = "_GD" if post else ""
        return {
            Kind.LOCALIZER: "SURVEY",
            Kind.T1_TSE: f"T1W_TSE{spir}_{p}{gd}",
            Kind.T1_FS_POST: f"T1W_TSE{spir}_{p}{gd}",
            Kind.T2_TSE: f"T2W_TSE{spir}_{p}",
            Kind.T2_FS: f"T2W_TSE{spir}_{p}",
            Kind.PD: f"PDW_TSE_{p}",
            Kind.STIR: f"STIR_{p}",
            Kind.DIXON: f"{w}W_mDIXON_TSE_{p}{gd}",
            Kind.MPRAGE_3D: f"T1W_3D_TFE_{p}{gd}",
            Kind.SPACE_3D: f"{w}W_3D_VISTA_{p}",
            Kind.SPACE_STIR_3D: f"3D_STIR_VISTA_{p}",
            Kind.DWI: f"DWI_{p}",
            Kind.FLAIR: f"T2W_FLAIR_{p}",
            Kind.GRE_T2STAR: f"T2*W_FFE_{p}",
        }[k]
    # UIH
    fs = "_fs" if fsat else ""
    pc = "_+c" if post else ""
    o = "_obl" if obl else ""
    return {
        Kind.LOCALIZER: "localizer",
        Kind.T1_TSE: f"t1_fse{fs}_{p}{o}{pc}",
        Kind.T1_FS_POST: f"t1_fse_fs_{p}{o}{pc}",
        Kind.T2_TSE: f"t2_fse{fs}_{p}{o}",
        Kind.T2_FS: f"t2_fse_fs_{p}{o}",
        Kind.PD: f"pd_fse_{p}{o}",
        Kind.STIR: f"t2_fse_stir_{p}{o}",
        Kind.DIXON: f"{w.lower()}_fse_dixon_{p}{o}{pc}",
        Kind.MPRAGE_3D: f"t1_gre_mprage_{p}{pc}",
        Kind.SPACE_3D: f"{w.lower()}_fse_mx3d_{p}",
        Kind.SPACE_STIR_3D: f"t2_fse_mx3d_stir_{p}",
        Kind.DWI: f"dwi_{p}",
        Kind.FLAIR: f"t2_flair_{p}",
        Kind.GRE_T2STAR: f"t2star_gre_{p}",
    }[k]


@dataclass(frozen=True)
class _Profile:
    """The vendor-specific acquisition-describing header values of one series."""

    sequence_name: str | None
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    image_type: tuple[str, ...]
    private: tuple[tuple[int, str, int, str, Any], ...] = ()  # (group, creator, offset, VR, value)


def _weighting(spec: SeriesSpec) -> str:
    k = spec.kind_
    if spec.weighting:
        return spec.weighting.upper()
    if k in (Kind.T1_TSE, Kind.T1_FS_POST, Kind.MPRAGE_3D):
        return "T1"
    if k is Kind.PD:
        return "PD"
    return "T2"


def _is_inversion(k: Kind) -> bool:
    return k in (Kind.STIR, Kind.FLAIR, Kind.SPACE_STIR_3D, Kind.MPRAGE_3D)


def _profile(vendor: Vendor, spec: SeriesSpec, ph: _Physics) -> _Profile:
    """Sequence name, Scanning Sequence/Variant, Scan Options, Image Type and private tags."""
    k, fsat = spec.kind_, spec.is_fat_sat
    sseq: tuple[str, ...]
    svar: tuple[str, ...]
    itype: tuple[str, ...]
    priv: tuple[tuple[int, str, int, str, Any], ...]
    gre = k in (Kind.LOCALIZER, Kind.GRE_T2STAR, Kind.MPRAGE_3D)
    epi = k is Kind.DWI
    inv = _is_inversion(k)
    if vendor in (Vendor.SIEMENS, Vendor.SIEMENS_XA):
        opts: list[str] = []
        if inv and not gre:
            opts.append("IR")
        if k is Kind.MPRAGE_3D:
            opts.append("IR")
        if not gre and not epi:
            opts.append("PFP")
        if fsat or epi:
            opts.append("FS")
        name = {
            Kind.LOCALIZER: "*fl2d1",
            Kind.GRE_T2STAR: "*fl2d1r4",
            Kind.MPRAGE_3D: "*tfl3d1_16ns",
            Kind.SPACE_3D: "*spc_125ns",
            Kind.SPACE_STIR_3D: "*spcir_125ns",
            Kind.STIR: "*tir2d1_15",
            Kind.FLAIR: "*tir2d1_16",
            Kind.DWI: "*ep_b800t",
        }.get(k, f"*tse2d1_{ph.etl}")
        if k is Kind.MPRAGE_3D:
            sseq, svar = ("GR", "IR"), ("SK", "SP", "MP")
        elif gre:
            sseq, svar = ("GR",), ("SP", "OSP")
        elif epi:
            sseq, svar = ("EP",), ("SK", "SP")
        elif inv:
            sseq, svar = ("SE", "IR"), ("SK", "SP", "MP", "OSP")
        else:
            sseq, svar = ("SE",), ("SK", "SP", "OSP")
        itype = ("ORIGINAL", "PRIMARY", "M", "ND", "NORM")
        if epi:
            itype = ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "NORM")
        if k is Kind.MPRAGE_3D or k in (Kind.SPACE_3D, Kind.SPACE_STIR_3D):
            itype = ("ORIGINAL", "PRIMARY", "M", "ND", "NORM")
        priv = ((0x0051, "SIEMENS MR HEADER", 0x0F, "LO", "BO1,2;SP4-6"),)
        return _Profile(name, sseq, svar, tuple(opts), itype, priv)

    if vendor is Vendor.GE:
        freq = {Plane.AXIAL: "FSA_GEMS", Plane.CORONAL: "FSS_GEMS", Plane.SAGITTAL: "FSS_GEMS"}[spec.plane_]
        if k is Kind.LOCALIZER:
            opts_t: tuple[str, ...] = ("FAST_GEMS",)
            psd, internal = "3-plane", "FGRE"
        elif k is Kind.MPRAGE_3D:
            opts_t = ("FAST_GEMS", "EDR_GEMS", "IR_GEMS", "ACC_GEMS")
            psd, internal = "efgre3d", "EFGRE3D"
        elif k in (Kind.SPACE_3D, Kind.SPACE_STIR_3D):
            opts_t = ("FAST_GEMS", "EDR_GEMS", "ACC_GEMS") + (("IR_GEMS",) if k is Kind.SPACE_STIR_3D else ()) + (
                ("FS",) if fsat else ())
            psd, internal = "cube", "CUBE"
        elif k is Kind.STIR:
            opts_t = ("IR_GEMS", "FAST_GEMS", "EDR_GEMS", freq, "ACC_GEMS")
            psd, internal = "fsirm", "FSE-IR"
        elif k is Kind.FLAIR:
            opts_t = ("FAST_GEMS", "EDR_GEMS", "T2FLAIR_GEMS", "ACC_GEMS")
            psd, internal = "fsirm", "FSE-IR"
        elif k is Kind.DWI:
            opts_t = ("EPI_GEMS", "FS", "ACC_GEMS")
            psd, internal = "epi2", "EPI"
        elif k is Kind.GRE_T2STAR:
            opts_t = ("FAST_GEMS", "EDR_GEMS", freq)
            psd, internal = "fgre", "FGRE"
        elif k is Kind.DIXON:
            opts_t = ("FAST_GEMS", "EDR_GEMS", freq, "FLEX_GEMS", "ACC_GEMS")
            psd, internal = "fse-flex", "FSE-XL"
        else:  # T1/T2/PD FSE
            opts_t = ("FAST_GEMS", "EDR_GEMS", freq, "SAT_GEMS", "ACC_GEMS")
            if fsat:
                opts_t = ("FAST_GEMS", "EDR_GEMS", "FS", "ACC_GEMS")
            psd, internal = "fse-xl", "FSE-XL"
        if k is Kind.MPRAGE_3D:
            sseq, svar = ("GR", "IR"), ("SS", "SK", "MP")
        elif gre:
            sseq, svar = ("GR",), ("SS", "SK")
        elif epi:
            sseq, svar = ("EP",), ("SK", "SS")
        elif inv:
            sseq, svar = ("SE", "IR"), ("SK", "OSP")
        else:
            sseq, svar = ("SE",), ("SK", "OSP")
        priv = (
            (0x0019, "GEMS_ACQU_01", 0x9C, "LO", psd),
            (0x0019, "GEMS_ACQU_01", 0x9E, "LO", internal),
        )
        return _Profile(None, sseq, svar, opts_t, ("ORIGINAL", "PRIMARY", "OTHER"), priv)

    if vendor is Vendor.PHILIPS:
        if k is Kind.LOCALIZER:
            tech, sseq, svar, itype = "FFE", ("GR",), ("SP",), ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
        elif k is Kind.MPRAGE_3D:
            tech, sseq, svar, itype = "T1TFE", ("GR",), ("MP", "SP"), ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
        elif k is Kind.GRE_T2STAR:
            tech, sseq, svar, itype = "FFE", ("GR",), ("SP",), ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
        elif k is Kind.DWI:
            tech, sseq, svar, itype = "DwiSE", ("SE",), ("SK",), ("ORIGINAL", "PRIMARY", "DW_SE", "DW", "SE")
        elif inv:
            tech, sseq, svar, itype = "IR", ("IR",), ("SK",), ("ORIGINAL", "PRIMARY", "M_IR", "M", "IR")
            if k in (Kind.SPACE_STIR_3D,):
                tech = "TSE"
        else:
            tech, sseq, svar, itype = "TSE", ("SE",), ("SK",), ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE")
        opts_p: tuple[str, ...] = ("FS",) if fsat else ("OTHER",)
        if k is Kind.DIXON:
            opts_p = ("OTHER",)
        prepulse = "INVERSION" if inv else "NO"
        priv = (
            (0x2001, "Philips Imaging DD 001", 0x20, "LO", tech),
            (0x2001, "Philips Imaging DD 001", 0x21, "CS", "Y" if fsat and k is not Kind.DIXON else "N"),
            (0x2001, "Philips Imaging DD 001", 0x1C, "CS", prepulse),
        )
        return _Profile(None, sseq, svar, opts_p, itype, priv)

    if vendor is Vendor.CANON:
        # Canon often writes no Sequence Name; Scan Options carry FS / IR.
        opts_c: list[str] = []
        if fsat or epi:
            opts_c.append("FS")
        if inv:
            opts_c.append("IR")
        if k is Kind.MPRAGE_3D:
            sseq, svar = ("GR", "IR"), ("SP", "MP")
        elif gre:
            sseq, svar = ("GR",), ("SP",)
        elif epi:
            sseq, svar = ("EP",), ("SK",)
        elif inv:
            sseq, svar = ("IR", "SE"), ("SK",)
        else:
            sseq, svar = ("SE",), ("SK",)
        return _Profile(None, sseq, svar, tuple(opts_c), ("ORIGINAL", "PRIMARY", "OTHER"))

    if vendor is Vendor.HITACHI:
        opts_h: list[str] = []
        if fsat or epi:
            opts_h.append("FS")
        if inv:
            opts_h.append("IR")
        name = {Kind.LOCALIZER: "GE2D", Kind.GRE_T2STAR: "GE2D", Kind.MPRAGE_3D: "RSSG3D", Kind.DWI: "SSEPI",
                Kind.STIR: "IR_FSE", Kind.FLAIR: "IR_FSE"}.get(k, "FSE3D" if spec.is_3d else "FSE")
        if gre:
            sseq, svar = (("GR", "IR") if k is Kind.MPRAGE_3D else ("GR",)), ("SP",)
        elif epi:
            sseq, svar = ("EP",), ("SK",)
        elif inv:
            sseq, svar = ("IR",), ("SK",)
        else:
            sseq, svar = ("SE",), ("SK",)
        return _Profile(name, sseq, svar, tuple(opts_h), ("ORIGINAL", "PRIMARY", "OTHER"))

    # UIH
    opts_u: list[str] = []
    if fsat or epi:
        opts_u.append("FS")
    if inv:
        opts_u.append("IR")
    name = {Kind.LOCALIZER: "gre_fsp", Kind.GRE_T2STAR: "gre", Kind.MPRAGE_3D: "gre_fsp_3d", Kind.DWI: "epi_dwi",
            Kind.STIR: "fse_ir", Kind.FLAIR: "fse_ir"}.get(k, "fse_mx" if spec.is_3d else "fse")
    if gre:
        sseq, svar = (("GR", "IR") if k is Kind.MPRAGE_3D else ("GR",)), ("SP",)
    elif epi:
        sseq, svar = ("EP",), ("SK",)
    elif inv:
        sseq, svar = ("SE", "IR"), ("SK",)
    else:
        sseq, svar = ("SE",), ("SK",)
    return _Profile(name, sseq, svar, tuple(opts_u), ("ORIGINAL", "PRIMARY", "M", "ND"))


