"""Clinical context for a study or an order: trauma date, indication, contraindications.

Comes from command-line options, a context CSV keyed by accession number (or Study Instance UID),
or a worklist item. A bad CSV is rejected as a whole with every problem listed (file, line, column,
what to fix): a row is never silently dropped.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from protocolcheck.clinical.indication import icd10_codes
from protocolcheck.clinical.rules import load_rules
from protocolcheck.dicom.safeio import open_regular
from protocolcheck.errors import InputError

KEY_COLUMNS = ("accession_number", "study_instance_uid")
# (each is a ClinicalContext field of the same name; _parse_row passes them by name)
BOOL_COLUMNS = ("mri_contraindicated", "gadolinium_contraindicated", "dermatomal", "known_malignancy",
                "prior_radiation", "iodinated_contrast_contraindicated", "pregnant")
KNOWN_COLUMNS = KEY_COLUMNS + ("trauma_date", "indication", "egfr", "exception") + BOOL_COLUMNS

_TRUE = {"yes", "y", "true", "1", "x"}
_FALSE = {"no", "n", "false", "0", ""}


class ContextError(InputError, ValueError):
    """A context file or option that cannot be used; ``problems`` lists every one of them."""

    headline = "the context file cannot be used"


@dataclass(frozen=True)
class ClinicalContext:
    """What is known about the patient and the question, independent of where it came from."""

    indication: str = ""
    trauma_date: dt.date | None = None
    mri_contraindicated: bool | None = None
    gadolinium_contraindicated: bool | None = None
    egfr: float | None = None
    dermatomal: bool | None = None
    known_malignancy: bool | None = None
    prior_radiation: bool | None = None
    source: str = ""  # e.g. "ctx.csv line 3", "--trauma-date", "worklist"
    iodinated_contrast_contraindicated: bool | None = None  # CT contrast (added for the recommender)
    pregnant: bool | None = None
    # Other free text about the patient, read for contraindications and a trauma date (never for the
    # indication's categories): (where it was written, the text), e.g. ("order text", "MRI pelvis, pacemaker").
    texts: tuple[tuple[str, str], ...] = ()
    # Where each explicitly given field came from, when the fields came from different places.
    origins: tuple[tuple[str, str], ...] = ()
    exception: str = ""  # a clinical reason to deviate, e.g. "suspected hematoma, imaging needed now"

    @property
    def icd10_codes(self) -> tuple[str, ...]:
        """ICD-10-CM codes found in the indication text, normalised (the one parser: clinical.indication)."""
        return icd10_codes(self.indication)

    def origin(self, name: str) -> str:
        """Where field ``name`` came from ("ctx.csv line 3", "options", "worklist ...")."""
        return dict(self.origins).get(name, self.source)

    def merged(self, override: ClinicalContext) -> ClinicalContext:
        """This context with every field that ``override`` sets replacing ours."""
        changes: dict[str, Any] = {  # each value of its field's type (read from override)
            name: getattr(override, name)
            for name in FACT_FIELDS
            if getattr(override, name) not in (None, "")
        }
        texts = tuple(dict.fromkeys(self.texts + override.texts))
        if not changes and texts == self.texts:
            return self
        origins = {name: self.origin(name) for name in FACT_FIELDS if getattr(self, name) not in (None, "")}
        origins.update({name: override.origin(name) for name in changes})
        source = ", ".join(dict.fromkeys(s for s in (self.source, override.source) if s))
        return replace(self, **changes, texts=texts, source=source,
                       origins=tuple(sorted(origins.items())))


FACT_FIELDS = ("indication", "trauma_date", "mri_contraindicated", "gadolinium_contraindicated", "egfr", "dermatomal",
               "known_malignancy", "prior_radiation", "iodinated_contrast_contraindicated", "pregnant", "exception")


def parse_date(text: str) -> dt.date:
    """ISO date (YYYY-MM-DD) or DICOM DA (YYYYMMDD); ValueError names the expected forms."""
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date; use YYYY-MM-DD (e.g. 2026-03-14)")


def parse_bool(text: str) -> bool | None:
    value = text.strip().lower()
    if value in ("", "unknown", "?"):
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not yes/no; use yes, no, true, false, 1 or 0")


@dataclass
class ContextTable:
    """Context rows keyed by accession number and by Study Instance UID."""

    path: str = ""
    by_accession: dict[str, ClinicalContext] = field(default_factory=dict)
    by_study_uid: dict[str, ClinicalContext] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def lookup(self, accession_number: str = "", study_instance_uid: str = "") -> ClinicalContext | None:
        if accession_number and accession_number in self.by_accession:
            self.used.add("A:" + accession_number)
            return self.by_accession[accession_number]
        if study_instance_uid and study_instance_uid in self.by_study_uid:
            self.used.add("S:" + study_instance_uid)
            return self.by_study_uid[study_instance_uid]
        return None

    def unused(self) -> list[str]:
        """Keys of rows that matched no study (reported so that typos are not silently ignored)."""
        keys = [f"accession {k}" for k in self.by_accession if "A:" + k not in self.used]
        keys += [f"study UID {k}" for k in self.by_study_uid if "S:" + k not in self.used]
        return keys


def load_context_csv(path: str | Path, egfr_range: tuple[float, float] | None = None) -> ContextTable:
    """Load and validate a context CSV; raise :class:`ContextError` listing every problem.

    ``egfr_range`` is the plausible eGFR range (default: ``egfr_range`` of the shipped rules.yaml)."""
    if egfr_range is None:
        egfr_range = load_rules().egfr_range
    name = str(path)
    try:
        handle = open_regular(name, "r", newline="", encoding="utf-8-sig")  # a named pipe: refused, not waited on
    except OSError as exc:
        raise ContextError([f"{name}: cannot open ({exc.strerror or exc})"]) from exc
    table = ContextTable(path=name)
    with handle:
        rows = _read_rows(handle, name, table)
    problems = _index_rows(rows, name, table, egfr_range)
    if problems:
        raise ContextError(problems)
    return table


def _read_rows(handle: IO[Any], name: str, table: ContextTable) -> list[tuple[int, dict[str, str]]]:
    """The non-blank rows with their line numbers, keyed by the lower-cased header; unknown columns are
    warned about in ``table``; ContextError when the file has no usable header or is not UTF-8 CSV."""
    try:
        sample = handle.read(4096)
        handle.seek(0)
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample.strip() else csv.excel
    except csv.Error:
        dialect = csv.excel
    except UnicodeDecodeError as exc:
        raise ContextError([_not_utf8(name, exc)]) from exc
    reader = csv.DictReader(handle, dialect=dialect)
    try:
        header = [c.strip().lower() for c in (reader.fieldnames or [])]
    except UnicodeDecodeError as exc:
        raise ContextError([_not_utf8(name, exc)]) from exc
    except csv.Error as exc:
        raise ContextError([f"{name} line 1: {exc}"]) from exc
    if not header:
        raise ContextError([f"{name}: empty file; the first line must name the columns, "
                            "e.g. accession_number,trauma_date,indication"])
    reader.fieldnames = header
    if not any(k in header for k in KEY_COLUMNS):
        raise ContextError([f"{name} line 1: no key column; add 'accession_number' (or 'study_instance_uid')"])
    table.warnings.extend(f"{name} line 1: unknown column {column!r} ignored (known: {', '.join(KNOWN_COLUMNS)})"
                          for column in header if column not in KNOWN_COLUMNS)
    try:
        return list(_rows(reader))
    except csv.Error as exc:
        raise ContextError([f"{name} line {reader.line_num}: {exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ContextError([_not_utf8(name, exc)]) from exc


def _index_rows(rows: list[tuple[int, dict[str, str]]], name: str, table: ContextTable,
                egfr_range: tuple[float, float]) -> list[str]:
    """Parse each row into ``table`` by accession and Study UID; the problems (a bad value, no key, a key
    given twice)."""
    problems: list[str] = []
    for line, row in rows:
        context, row_problems = _parse_row(row, f"{name} line {line}", egfr_range)
        problems.extend(row_problems)
        if row_problems:
            continue
        accession = (row.get("accession_number") or "").strip()
        study_uid = (row.get("study_instance_uid") or "").strip()
        if not accession and not study_uid:
            problems.append(f"{name} line {line}: no accession_number or study_instance_uid; "
                            "fill one in or delete the row")
            continue
        for key, index, label in ((accession, table.by_accession, "accession_number"),
                                  (study_uid, table.by_study_uid, "study_instance_uid")):
            if not key:
                continue
            if key in index:
                problems.append(f"{name} line {line}: {label} {key!r} already given on {index[key].source}; "
                                "keep one row per study")
            else:
                index[key] = context
    return problems


def _not_utf8(name: str, exc: UnicodeDecodeError) -> str:
    return f"{name}: not UTF-8 text (found byte 0x{exc.object[exc.start]:02x}); save the file as 'CSV UTF-8'"


def _rows(reader: csv.DictReader) -> Iterable[tuple[int, dict[str, str]]]:
    for row in reader:
        if None in row:  # more cells than header columns
            extra = row.pop(None)
            row["__extra__"] = ",".join(str(x) for x in extra)
        if not any((v or "").strip() for k, v in row.items() if k != "__extra__"):
            continue  # blank line
        yield reader.line_num, row


def _parse_row(row: dict[str, str], where: str, egfr_range: tuple[float, float]) -> tuple[ClinicalContext, list[str]]:
    """One CSV row as a context (``where`` names it in messages), or the problems of its values."""
    problems: list[str] = []
    if row.get("__extra__"):
        problems.append(f"{where}: more cells than columns ({row['__extra__']!r}); quote values containing commas")
    trauma_date = _parse_trauma_date(row, where, problems)
    egfr = _parse_egfr(row, where, egfr_range, problems)
    flags: dict[str, bool | None] = {}
    for column in BOOL_COLUMNS:
        text = row.get(column)
        if text is None:
            continue
        try:
            flags[column] = parse_bool(text)
        except ValueError as exc:
            problems.append(f"{where}, column {column}: {exc}")
    if problems:
        return ClinicalContext(), problems
    return ClinicalContext(
        indication=(row.get("indication") or "").strip(), source=where,
        exception=" ".join((row.get("exception") or "").split()), trauma_date=trauma_date, egfr=egfr,
        mri_contraindicated=flags.get("mri_contraindicated"),
        gadolinium_contraindicated=flags.get("gadolinium_contraindicated"),
        dermatomal=flags.get("dermatomal"), known_malignancy=flags.get("known_malignancy"),
        prior_radiation=flags.get("prior_radiation"),
        iodinated_contrast_contraindicated=flags.get("iodinated_contrast_contraindicated"),
        pregnant=flags.get("pregnant"),
    ), []


def _parse_trauma_date(row: dict[str, str], where: str, problems: list[str]) -> dt.date | None:
    trauma = (row.get("trauma_date") or "").strip()
    if not trauma:
        return None
    try:
        return parse_date(trauma)
    except ValueError as exc:
        problems.append(f"{where}, column trauma_date: {exc}")
        return None


def _parse_egfr(row: dict[str, str], where: str, egfr_range: tuple[float, float], problems: list[str]) -> float | None:
    egfr = (row.get("egfr") or "").strip()
    if not egfr:
        return None
    try:
        number = float(egfr)
        if not math.isfinite(number) or not egfr_range[0] <= number <= egfr_range[1]:
            raise ValueError
        return number
    except ValueError:
        problems.append(f"{where}, column egfr: {egfr!r} is not an eGFR in mL/min/1.73 m2 (a number "
                        f"{egfr_range[0]:g}-{egfr_range[1]:g}, e.g. 45)")
        return None
